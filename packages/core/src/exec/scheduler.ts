/**
 * The scheduler: which coroutine takes the next step. Modes: `random` (seeded), `round-robin`,
 * and `replay` (a recorded list of choices). Every run records its choices, so any run can be
 * replayed exactly. A choice is the index of the chosen task among all tasks; only an *enabled*
 * task may be chosen: not finished, and not blocked on a lock whose state has not changed since.
 */
import type { Clock } from "./clock.js";
import { BLOCKED, RETRY_WAIT, type ExecCtx, type Op } from "./ctx.js";
import { FootprintRecorder, FootprintStore, taskDoneId } from "./footprint.js";
import { Prng } from "./prng.js";
import { DeadlockError } from "./rwlock.js";
import { NO_CHANGE, UNKNOWN_CHANGE, WaitTracker } from "./wait-tracker.js";
import { ErrorOfKind } from "../error-kind.js";

export type ScheduleMode = "random" | "round-robin" | "replay";

export interface Task {
  readonly name: string;
  readonly op: Op<unknown>;
  done: boolean;
  /**
   * The execution context the task's code runs in (its lock and RCU state), if it has one: while
   * the task takes a step, the clock names it (`Clock.ctx`), so that a lock assertion asks the
   * running task whether it holds the lock (its own state) instead of reading the lock's words.
   */
  readonly ctx?: ExecCtx;
}

export class ReplayDivergence extends ErrorOfKind("ReplayDivergence") {}

/**
 * Runs one step of task `index`: up to its next yield, or to its end. Returns what it yielded
 * (0 for an ordinary atomic point, BLOCKED, RETRY_WAIT); a task that ends records that its own
 * completion changed (the host's teardown waits for the vCPUs).
 */
export function stepTask(tasks: readonly Task[], index: number, clock: Clock): number {
  const t = tasks[index]!;
  // What was running before (nothing, outside a step: setup, a test's own calls, the checks) is
  // what runs after.
  const outerCtx = clock.ctx;
  const outerInStep = clock.inStep;
  clock.task = t.name;
  clock.ctx = t.ctx ?? null;
  clock.tick++;
  clock.inStep = true;
  let r: ReturnType<Op<unknown>["next"]>;
  try {
    r = t.op.next();
  } finally {
    clock.ctx = outerCtx;
    clock.inStep = outerInStep;
  }
  if (r.done) {
    t.done = true;
    clock.touch(taskDoneId(index));
    return 0;
  }
  return r.value === BLOCKED || r.value === RETRY_WAIT ? r.value : 0;
}

/** Whether task `index` has finished, as another task reads it (its completion is a resource). */
export function isTaskDone(tasks: readonly Task[], index: number, clock: Clock): boolean {
  clock.fp?.read(taskDoneId(index));
  return tasks[index]!.done;
}

/** Thrown when every unfinished task is blocked. */
export function deadlock(tasks: readonly Task[], tracker?: WaitTracker): DeadlockError {
  const waiting = tasks.flatMap((t, i) => (t.done ? [] : [i]));
  const names = waiting.map((i) => tasks[i]!.name).join(", ");
  if (tracker && waiting.every((i) => tracker.waitKind[i] === RETRY_WAIT)) {
    return new DeadlockError(
      `livelock: ${names} retry their faults, and nothing that they read can change any more`,
    );
  }
  return new DeadlockError(`deadlock: ${names} all wait for something that no one will change`);
}

/**
 * Steps a run's tasks one at a time and knows which may go next (`WaitTracker`), from the
 * footprint each step records. Every way of running tasks step by step (the scheduler's modes,
 * the terminal UI) goes through it, so a schedule means the same everywhere, and the explorer's
 * schedules replay exactly.
 */
export class TaskStepper {
  private readonly rec = new FootprintRecorder();
  /** The footprints of the steps taken (`last`). */
  readonly footprints = new FootprintStore();
  readonly tracker: WaitTracker;
  /** The footprint of the last step in `footprints`; -1 if it was not recorded (no interleaving). */
  last = -1;

  constructor(
    readonly tasks: readonly Task[],
    readonly clock: Clock,
  ) {
    this.tracker = new WaitTracker(tasks.length, this.footprints);
    for (let i = 0; i < tasks.length; i++)
      if (tasks[i]!.done) this.tracker.onStep(i, NO_CHANGE, 0, true);
  }

  /** The tasks that may take the next step, ascending, into `out`. */
  enabled(out: number[] = []): number[] {
    return this.tracker.enabledTasks(out);
  }

  /**
   * Takes one step of task `i`, recording its footprint when the run interleaves. A run that does
   * not steps through whole ops (a range of a thousand faults in one step): recording them would
   * cost the fault path most of its speed, and its only waits (for the VM to be finalized, for
   * the vCPUs to finish) are woken by any step of another task that changed shared state.
   * Returns what the step yielded (`stepTask`).
   */
  step(i: number): number {
    const clock = this.clock;
    this.last = -1;
    if (!clock.interleaved) {
      const v = clock.stateVersion;
      const outcome = stepTask(this.tasks, i, clock);
      this.tracker.onStep(
        i,
        clock.stateVersion === v ? NO_CHANGE : UNKNOWN_CHANGE,
        outcome,
        this.tasks[i]!.done,
      );
      return outcome;
    }
    const prev = clock.fp;
    this.rec.reset();
    clock.setRecorder(this.rec);
    let outcome: number;
    try {
      outcome = stepTask(this.tasks, i, clock);
    } finally {
      clock.setRecorder(prev);
    }
    this.last = this.rec.saveTo(this.footprints);
    this.tracker.onStep(i, this.last, outcome, this.tasks[i]!.done);
    return outcome;
  }

  /** Unfinished tasks with nothing enabled: a deadlock, or a livelock of retries. */
  stuck(): DeadlockError {
    return deadlock(this.tasks, this.tracker);
  }
}

export class Scheduler {
  readonly choices: number[] = [];
  private readonly prng: Prng;
  private rr = -1;
  private replayPos = 0;

  constructor(
    readonly mode: ScheduleMode,
    readonly seed: number,
    private readonly replay: readonly number[] = [],
  ) {
    this.prng = new Prng(seed);
  }

  /** Picks the next task among `enabled` (ascending task indexes, not empty). */
  pick(enabled: readonly number[]): number {
    let choice: number;
    if (this.mode === "replay") {
      if (this.replayPos >= this.replay.length)
        throw new ReplayDivergence(
          `the schedule ends after ${this.replay.length} choices but tasks are still runnable`,
        );
      choice = this.replay[this.replayPos++]!;
      if (!enabled.includes(choice)) {
        throw new ReplayDivergence(
          `choice ${this.replayPos - 1} names task ${choice}, which cannot run there (runnable: ${enabled.join(", ")})`,
        );
      }
    } else if (this.mode === "round-robin") {
      choice = enabled.find((i) => i > this.rr) ?? enabled[0]!;
      this.rr = choice;
    } else {
      choice = enabled[this.prng.below(enabled.length)]!;
    }
    this.choices.push(choice);
    return choice;
  }

  /**
   * Runs the tasks to completion, one step at a time; a replay stops where its choices end (a
   * schedule recorded up to a violation). Returns whether every task finished. `afterStep` runs
   * after every step. Errors thrown by a task propagate; unfinished tasks that all wait are a
   * `DeadlockError`.
   */
  run(tasks: Task[], clock: Clock, afterStep?: (task: Task) => void): boolean {
    const enabled: number[] = [];
    const stepper = new TaskStepper(tasks, clock);
    for (;;) {
      stepper.enabled(enabled);
      if (enabled.length === 0) {
        if (tasks.every((t) => t.done)) {
          if (this.mode === "replay" && this.replayPos < this.replay.length) {
            throw new ReplayDivergence(
              `every task finished after ${this.replayPos} of the schedule's ${this.replay.length} choices`,
            );
          }
          return true;
        }
        throw stepper.stuck();
      }
      if (this.mode === "replay" && this.replayPos >= this.replay.length) return false;
      const i = this.pick(enabled);
      stepper.step(i);
      afterStep?.(tasks[i]!);
    }
  }
}
