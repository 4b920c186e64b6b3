/**
 * The scheduler: which coroutine takes the next step. Modes: `random` (seeded), `round-robin`,
 * and `replay` (a recorded list of choices). Every run records its choices, so any run can be
 * replayed exactly. A choice is the index of the chosen task among all tasks, and only runnable
 * (not finished) tasks may be chosen.
 */
import type { Op } from "./ctx.js";
import { Prng } from "./prng.js";

export type ScheduleMode = "random" | "round-robin" | "replay";

export interface Task {
  readonly name: string;
  readonly op: Op<unknown>;
  done: boolean;
}

export class ReplayDivergence extends Error {}

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

  /** Picks the next task among the runnable ones. */
  pick(tasks: readonly Task[]): number {
    let choice: number;
    if (this.mode === "replay") {
      if (this.replayPos >= this.replay.length) throw new ReplayDivergence(`the schedule ends after ${this.replay.length} choices but tasks are still runnable`);
      choice = this.replay[this.replayPos++]!;
      if (choice < 0 || choice >= tasks.length || tasks[choice]!.done) {
        throw new ReplayDivergence(`choice ${this.replayPos - 1} names task ${choice}, which is not runnable`);
      }
    } else if (this.mode === "round-robin") {
      choice = this.rr;
      do choice = (choice + 1) % tasks.length;
      while (tasks[choice]!.done);
      this.rr = choice;
    } else {
      let runnable = 0;
      for (const t of tasks) if (!t.done) runnable++;
      let k = this.prng.below(runnable);
      choice = 0;
      for (; choice < tasks.length; choice++) {
        if (tasks[choice]!.done) continue;
        if (k-- === 0) break;
      }
    }
    this.choices.push(choice);
    return choice;
  }

  /**
   * Runs the tasks to completion, one step at a time. `afterStep` runs after every step (the
   * explorer checks invariants there). Errors thrown by a task propagate.
   */
  run(tasks: Task[], afterStep?: (task: Task) => void): void {
    let live = tasks.filter((t) => !t.done).length;
    while (live > 0) {
      const t = tasks[this.pick(tasks)]!;
      const r = t.op.next();
      if (r.done) {
        t.done = true;
        live--;
      }
      afterStep?.(t);
    }
  }
}
