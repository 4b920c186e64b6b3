/**
 * The scheduler: which coroutine takes the next step. Modes: `random` (seeded), `round-robin`,
 * and `replay` (a recorded list of choices). Every run records its choices, so any run can be
 * replayed exactly. A choice is the index of the chosen task among all tasks; only an *enabled*
 * task may be chosen: not finished, and not blocked on a lock whose state has not changed since.
 */
import type { Clock } from "./clock.js";
import { BLOCKED, RETRY_WAIT, type Op } from "./ctx.js";
import { R_TASKS } from "./footprint.js";
import { Prng } from "./prng.js";
import { DeadlockError } from "./rwlock.js";

export type ScheduleMode = "random" | "round-robin" | "replay";

export interface Task {
  readonly name: string;
  readonly op: Op<unknown>;
  done: boolean;
  /** `clock.version` when the task last yielded BLOCKED or RETRY_WAIT; -1 when it did not. */
  blockedAt?: number;
  /** What it yielded then: BLOCKED or RETRY_WAIT. */
  blockKind?: number;
}

export class ReplayDivergence extends Error {}

function waiting(t: Task, clock: Clock, kind: number): boolean {
  return t.blockKind === kind && t.blockedAt === clock.version;
}

/**
 * The tasks that may take the next step, ascending: unfinished, not BLOCKED since the last
 * change, and not waiting to RETRY unless no one else can run. Empty with unfinished tasks left
 * means a deadlock.
 */
export function enabledTasks(tasks: readonly Task[], clock: Clock, out: number[] = []): number[] {
  out.length = 0;
  let soft = 0;
  for (let i = 0; i < tasks.length; i++) {
    const t = tasks[i]!;
    if (t.done || waiting(t, clock, BLOCKED)) continue;
    if (waiting(t, clock, RETRY_WAIT)) {
      soft++;
      continue;
    }
    out.push(i);
  }
  if (out.length === 0 && soft > 0) {
    for (let i = 0; i < tasks.length; i++) if (!tasks[i]!.done && waiting(tasks[i]!, clock, RETRY_WAIT)) out.push(i);
  }
  return out;
}

/** Runs one step of `t`: up to its next yield, or to its end. */
export function stepTask(t: Task, clock: Clock): void {
  const r = t.op.next();
  if (r.done) {
    t.done = true;
    t.blockedAt = -1;
    // Other tasks may wait for this one to finish (the host's teardown waits for the vCPUs).
    clock.touch(R_TASKS);
  } else if (r.value === BLOCKED || r.value === RETRY_WAIT) {
    t.blockKind = r.value;
    t.blockedAt = clock.version;
  } else {
    t.blockedAt = -1;
  }
}

/** Thrown when every unfinished task is blocked. */
export function deadlock(tasks: readonly Task[]): DeadlockError {
  const blocked = tasks.filter((t) => !t.done).map((t) => t.name);
  return new DeadlockError(`deadlock: ${blocked.join(", ")} all wait for a lock that no one will release`);
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
      if (this.replayPos >= this.replay.length) throw new ReplayDivergence(`the schedule ends after ${this.replay.length} choices but tasks are still runnable`);
      choice = this.replay[this.replayPos++]!;
      if (!enabled.includes(choice)) {
        throw new ReplayDivergence(`choice ${this.replayPos - 1} names task ${choice}, which cannot run there (runnable: ${enabled.join(", ")})`);
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
    for (;;) {
      enabledTasks(tasks, clock, enabled);
      if (enabled.length === 0) {
        if (tasks.every((t) => t.done)) {
          if (this.mode === "replay" && this.replayPos < this.replay.length) {
            throw new ReplayDivergence(`every task finished after ${this.replayPos} of the schedule's ${this.replay.length} choices`);
          }
          return true;
        }
        throw deadlock(tasks);
      }
      if (this.mode === "replay" && this.replayPos >= this.replay.length) return false;
      const t = tasks[this.pick(enabled)]!;
      stepTask(t, clock);
      afterStep?.(t);
    }
  }
}
