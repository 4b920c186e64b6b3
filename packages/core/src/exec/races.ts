/**
 * The races of a run, for Optimal-DPOR: pairs of steps e and e' of different tasks whose
 * footprints conflict, e before e', with nothing between them in the happens-before order (the
 * order of the steps of each task, and of conflicting steps). Reversing such a race gives a run
 * of another trace; for each, `reversal` builds `notdep(e).e'`: the steps after e that do not
 * happen after it, in the run's order, then e'. Run from the state before e, that sequence puts
 * e' before e and keeps every other order the run had.
 *
 * A step taken after a wait also happens after the step that woke its task (`wakers`): moved
 * before it, the task could not have run, though the footprints may not say so (a retried fault
 * re-reads what changed only in a later step of its new attempt).
 *
 * Happens-before is kept as vector clocks: `clock[j * T + u]` is how many steps of task u
 * happen before step j or are it. Built afresh per run, in typed arrays reused from run to run.
 */
import type { FootprintStore } from "./footprint.js";
import { grown } from "../mem/typed-arrays.js";
import type { StepSequence } from "./wakeup-tree.js";

export class RaceFinder {
  private clock = new Int32Array(0);
  /** Per step: its index among its task's steps. */
  private pos = new Int32Array(0);
  private covered: Int32Array;
  private perTask: Int32Array;
  private cursor: Int32Array;
  /** Per task, the indexes of its steps (`n` slots per task). */
  private steps = new Int32Array(0);
  /**
   * The last reversal (`reversal`): its steps' tasks, footprints (handles in the run's store)
   * and wakers, and `vSteps`, the index of each in the run.
   */
  readonly reversalSeq: StepSequence = {
    tasks: new Int32Array(64),
    fps: new Int32Array(64),
    wakers: new Int32Array(64),
    len: 0,
  };
  vSteps = new Int32Array(64);
  /** Scratch for `reversal`: step → its index in the reversal. */
  private vIndex = new Int32Array(64);

  constructor(private readonly T: number) {
    this.covered = new Int32Array(T);
    this.perTask = new Int32Array(T);
    this.cursor = new Int32Array(T);
  }

  /**
   * Computes the happens-before order of the run's steps `[0, n)` (task `tasks[k]`, footprint
   * `fps[k]`, woken by step `wakers[k]` or -1), and calls `race(i, j)` for every race with `j >= from` (the races of the earlier
   * steps were found by the run that first took them), by increasing j, then decreasing i.
   */
  analyze(
    store: FootprintStore,
    tasks: Int32Array,
    fps: Int32Array,
    wakers: Int32Array,
    n: number,
    from: number,
    race: (i: number, j: number) => void,
  ): void {
    const T = this.T;
    if (this.clock.length < n * T) {
      this.clock = grown(this.clock, new Int32Array(2 * n * T));
      this.pos = grown(this.pos, new Int32Array(2 * n));
      this.steps = new Int32Array(2 * n * T);
    }
    const clock = this.clock;
    const steps = this.steps;
    // Each task's steps in order: `steps[u * n + k]` is task u's k-th. A task's steps up to one
    // that happens before j all do, so each scan below goes back from a task's latest step only
    // to the first one known to happen before j (`clock[row + u]` of them do).
    const count = this.perTask;
    count.fill(0);
    for (let j = 0; j < n; j++) {
      const t = tasks[j]!;
      const row = j * T;
      if (count[t]! > 0)
        for (let u = 0, prev = steps[t * n + count[t]! - 1]! * T; u < T; u++)
          clock[row + u] = clock[prev + u]!;
      else clock.fill(0, row, row + T);
      this.pos[j] = count[t]!;
      steps[t * n + count[t]!] = j;
      clock[row + t] = ++count[t]!;
      if (wakers[j]! >= 0) this.join(row, wakers[j]! * T);
      // For every other task, its latest step that conflicts with j.
      for (let u = 0; u < T; u++) {
        if (u === t) continue;
        for (let k = count[u]! - 1; k >= clock[row + u]!; k--) {
          const i = steps[u * n + k]!;
          if (store.dependsOn(fps[i]!, fps[j]!)) {
            this.join(row, i * T);
            break;
          }
        }
      }
    }
    // The races into each step j: from the latest step back (in the run's order, across tasks),
    // a conflicting step i of another task is in a race with j unless it happens before
    // something else that happens before j.
    const covered = this.covered;
    const cursor = this.cursor;
    count.fill(0);
    for (let j = 0; j < n; j++) {
      const t = tasks[j]!;
      if (j >= from) {
        const c0 = this.pos[j]! > 0 ? steps[t * n + this.pos[j]! - 1]! * T : -1;
        for (let u = 0; u < T; u++) {
          covered[u] = c0 < 0 ? 0 : clock[c0 + u]!;
          cursor[u] = count[u]! - 1;
        }
        // The step that woke j's task is no race: j cannot come first.
        const wk = wakers[j]!;
        if (wk >= 0)
          for (let u = 0; u < T; u++) covered[u] = Math.max(covered[u]!, clock[wk * T + u]!);
        for (;;) {
          let i = -1;
          let owner = -1;
          for (let u = 0; u < T; u++) {
            if (u === t || cursor[u]! < covered[u]!) continue;
            const cand = steps[u * n + cursor[u]!]!;
            if (cand > i) {
              i = cand;
              owner = u;
            }
          }
          if (i < 0) break;
          cursor[owner]!--;
          if (!store.dependsOn(fps[i]!, fps[j]!)) continue;
          race(i, j);
          for (let w = 0; w < T; w++)
            if (clock[i * T + w]! > covered[w]!) covered[w] = clock[i * T + w]!;
        }
      }
      count[t]!++;
    }
  }

  /** Clock row `to` := its join with row `from`. */
  private join(to: number, from: number): void {
    const clock = this.clock;
    for (let w = 0; w < this.T; w++)
      if (clock[from + w]! > clock[to + w]!) clock[to + w] = clock[from + w]!;
  }

  /** Builds `notdep(i).j` of the run last analysed into `reversalSeq` (with wakers) and `vSteps`. */
  reversal(
    tasks: Int32Array,
    fps: Int32Array,
    wakers: Int32Array,
    n: number,
    i: number,
    j: number,
  ): void {
    const v = this.reversalSeq;
    if (v.tasks.length < n) {
      v.tasks = new Int32Array(2 * n);
      v.fps = new Int32Array(2 * n);
      v.wakers = new Int32Array(2 * n);
      this.vSteps = new Int32Array(2 * n);
      this.vIndex = new Int32Array(2 * n);
    }
    v.len = 0;
    const ti = tasks[i]!;
    const pi = this.pos[i]!;
    // The steps after i that do not happen after it, in order, then j.
    for (let k = i + 1; k <= n; k++) {
      const s = k === n ? j : k;
      if (k < n && (k === j || this.clock[k * this.T + ti]! > pi)) continue;
      const wk = wakers[s]!;
      this.vIndex[s] = v.len;
      v.tasks[v.len] = tasks[s]!;
      v.fps[v.len] = fps[s]!;
      // A waker in the reversal came before s in the run; one before step i is not in it.
      v.wakers[v.len] = wk > i ? this.vIndex[wk]! : -1;
      this.vSteps[v.len++] = s;
    }
  }
}
