/**
 * The races of a run, for Optimal-DPOR: pairs of steps e and e' of different tasks whose
 * footprints conflict, e before e', with nothing between them in the happens-before order (the
 * order of the steps of each task, and of conflicting steps). Reversing such a race gives a run
 * of another trace; for each, `reversal` builds `notdep(e).e'`: the steps after e that do not
 * happen after it, in the run's order, then e'. Run from the state before e, that sequence puts
 * e' before e and keeps every other order the run had.
 *
 * The step that woke a waiting task is no edge of this order, although the task could not run
 * before it: a wake is an enabling condition, not a conflict (another step could have woken the
 * task instead, and that run differs only by who woke it). So `notdep(e)` may hold steps of a
 * task that only e, or a step after e, woke; `ReversalOrder` puts the reversal into an order
 * that can run, and leaves those steps out (they come after e in every run that reverses the
 * race).
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
  /** Steps the arrays have room for: the stride of `steps`. */
  private cap = 0;
  /** Per task, the indexes of its steps (`cap` slots per task). */
  private steps = new Int32Array(0);
  /**
   * The races of the run last analysed, in the order `race` was called with them (`raceI[x]`
   * before `raceJ[x]`), and per step j how many of them come before j's or are j's (`racesTo`).
   */
  private raceI = new Int32Array(64);
  private raceJ = new Int32Array(64);
  private nRaces = 0;
  private racesTo = new Int32Array(0);
  /** How many steps of the run last analysed the arrays hold the order and races of. */
  private known = 0;
  /**
   * The last reversal (`reversal`): its steps' tasks and footprints (handles in the run's store),
   * and `vSteps`, the index of each in the run; `ReversalOrder` sets the wakers.
   */
  readonly reversalSeq: StepSequence = {
    tasks: new Int32Array(64),
    fps: new Int32Array(64),
    wakers: new Int32Array(64),
    len: 0,
  };
  vSteps = new Int32Array(64);

  constructor(private readonly T: number) {
    this.covered = new Int32Array(T);
    this.perTask = new Int32Array(T);
    this.cursor = new Int32Array(T);
  }

  /**
   * Computes the happens-before order of the run's steps `[0, n)` (task `tasks[k]`, footprint
   * `fps[k]`), and calls `race(i, j)` for every race, by increasing j, then decreasing i.
   *
   * Every race, not only those into the steps a run added to the prefix it replayed: the
   * reversal of an old race ends with the new run's steps (those of `notdep(e)` after e'), and
   * whether it can run, what it leaves out and whether the wakeup tree already covers it depend
   * on them. Analysing only the new steps lost traces of programs whose tasks wait on each other.
   *
   * But the order among the first `same` steps, and their races, are those of the run analysed
   * last when it had the same first `same` steps (tasks and footprints): a run replays the
   * prefix of the node it branches from. They are kept from that analysis and only the steps
   * after them are compared (a depth-first search's runs share most of their steps: on the
   * three-vCPU race that was two comparisons of footprints in three).
   */
  analyze(
    store: FootprintStore,
    tasks: Int32Array,
    fps: Int32Array,
    n: number,
    race: (i: number, j: number) => void,
    same = 0,
  ): void {
    const T = this.T;
    if (this.cap < n) {
      const cap = Math.max(64, 2 * n);
      this.clock = grown(this.clock, new Int32Array(cap * T));
      this.pos = grown(this.pos, new Int32Array(cap));
      this.racesTo = grown(this.racesTo, new Int32Array(cap));
      // The stride changes: nothing kept.
      this.steps = new Int32Array(cap * T);
      this.cap = cap;
      this.known = 0;
    }
    const from = Math.min(same, this.known, n);
    const cap = this.cap;
    const clock = this.clock;
    const steps = this.steps;
    // Each task's steps in order: `steps[u * cap + k]` is task u's k-th. A task's steps up to one
    // that happens before j all do, so each scan below goes back from a task's latest step only
    // to the first one known to happen before j (`clock[row + u]` of them do).
    const count = this.perTask;
    count.fill(0);
    for (let j = 0; j < from; j++) count[tasks[j]!]!++;
    for (let j = from; j < n; j++) {
      const t = tasks[j]!;
      const row = j * T;
      if (count[t]! > 0)
        for (let u = 0, prev = steps[t * cap + count[t]! - 1]! * T; u < T; u++)
          clock[row + u] = clock[prev + u]!;
      else clock.fill(0, row, row + T);
      this.pos[j] = count[t]!;
      steps[t * cap + count[t]!] = j;
      clock[row + t] = ++count[t]!;
      // For every other task, its latest step that conflicts with j.
      for (let u = 0; u < T; u++) {
        if (u === t) continue;
        for (let k = count[u]! - 1; k >= clock[row + u]!; k--) {
          const i = steps[u * cap + k]!;
          if (store.dependsOn(fps[i]!, fps[j]!)) {
            this.join(row, i * T);
            break;
          }
        }
      }
    }
    // The races into the kept steps, as found before; then those into each later step j: from
    // the latest step back (in the run's order, across tasks), a conflicting step i of another
    // task is in a race with j unless it happens before something else that happens before j.
    this.nRaces = from === 0 ? 0 : this.racesTo[from - 1]!;
    this.known = n;
    for (let x = 0; x < this.nRaces; x++) race(this.raceI[x]!, this.raceJ[x]!);
    const covered = this.covered;
    const cursor = this.cursor;
    count.fill(0);
    for (let j = 0; j < from; j++) count[tasks[j]!]!++;
    for (let j = from; j < n; j++) {
      const t = tasks[j]!;
      const c0 = this.pos[j]! > 0 ? steps[t * cap + this.pos[j]! - 1]! * T : -1;
      for (let u = 0; u < T; u++) {
        covered[u] = c0 < 0 ? 0 : clock[c0 + u]!;
        cursor[u] = count[u]! - 1;
      }
      for (;;) {
        let i = -1;
        let owner = -1;
        for (let u = 0; u < T; u++) {
          if (u === t || cursor[u]! < covered[u]!) continue;
          const cand = steps[u * cap + cursor[u]!]!;
          if (cand > i) {
            i = cand;
            owner = u;
          }
        }
        if (i < 0) break;
        cursor[owner]!--;
        if (!store.dependsOn(fps[i]!, fps[j]!)) continue;
        this.noteRace(i, j);
        race(i, j);
        for (let w = 0; w < T; w++)
          if (clock[i * T + w]! > covered[w]!) covered[w] = clock[i * T + w]!;
      }
      this.racesTo[j] = this.nRaces;
      count[t]!++;
    }
  }

  private noteRace(i: number, j: number): void {
    if (this.nRaces === this.raceI.length) {
      this.raceI = grown(this.raceI, new Int32Array(2 * this.nRaces));
      this.raceJ = grown(this.raceJ, new Int32Array(2 * this.nRaces));
    }
    this.raceI[this.nRaces] = i;
    this.raceJ[this.nRaces++] = j;
  }

  /** Whether step `i` happens before step `k` (`i < k`) in the run last analysed. */
  happensBefore(tasks: Int32Array, i: number, k: number): boolean {
    return this.clock[k * this.T + tasks[i]!]! > this.pos[i]!;
  }

  /** Clock row `to` := its join with row `from`. */
  private join(to: number, from: number): void {
    const clock = this.clock;
    for (let w = 0; w < this.T; w++)
      if (clock[from + w]! > clock[to + w]!) clock[to + w] = clock[from + w]!;
  }

  /** Builds `notdep(i).j` of the run last analysed into `reversalSeq` (no wakers) and `vSteps`. */
  reversal(tasks: Int32Array, fps: Int32Array, n: number, i: number, j: number): void {
    const v = this.reversalSeq;
    if (v.tasks.length < n) {
      v.tasks = new Int32Array(2 * n);
      v.fps = new Int32Array(2 * n);
      v.wakers = new Int32Array(2 * n);
      this.vSteps = new Int32Array(2 * n);
    }
    v.len = 0;
    // The steps after i that do not happen after it, in order, then j.
    for (let k = i + 1; k <= n; k++) {
      const s = k === n ? j : k;
      if (k < n && (k === j || this.happensBefore(tasks, i, k))) continue;
      v.tasks[v.len] = tasks[s]!;
      v.fps[v.len] = fps[s]!;
      this.vSteps[v.len++] = s;
    }
  }
}
