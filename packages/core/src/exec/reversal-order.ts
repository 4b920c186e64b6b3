/**
 * The order a reversed race runs in, where tasks wait on each other.
 *
 * Optimal-DPOR's reversal `notdep(e).e'` keeps the run's order of its steps, and in the paper's
 * model any such order can run: a step is disabled only until its task's own earlier steps have
 * run. Here a task that waits (a lock, a retried fault) is enabled by *another* task's step, and
 * that step is no edge of happens-before (`races.ts`): `notdep(e)` may hold a step whose task
 * only e, or a step after e, woke, and steps after it that it does not conflict with. So the
 * steps are placed one at a time, on a copy of the wait tracker in the state before e: each
 * time the first step, in the run's order, whose task can run and that no step left unplaced
 * must precede (an earlier step of its task, or one it conflicts with). What cannot be placed
 * comes after e in any run that reverses the race, and is left out; e' goes last, if it can run
 * then and follows nothing left out.
 *
 * Every step left out must be explained: its task waits for a step that is e, happens after e,
 * or is left out itself, or it must follow a step that is left out. Anything else means the
 * footprints missed what enabled a task in the run, and the explorer stops rather than prune on
 * it.
 */
import type { FootprintStore } from "./footprint.js";
import type { RaceFinder } from "./races.js";
import type { WaitTracker } from "./wait-tracker.js";

const UNPLACED = 0;
const PLACED = 1;
const LEFT_OUT = 2;

/** What the explorer knows of each step of the run, by its index in the run. */
export interface RunSteps {
  tasks: Int32Array;
  /** What the step yielded (`stepTask`). */
  outcome: Int32Array;
  /** 1 if the step finished its task. */
  finished: Int32Array;
  /** The step that woke its task from a wait, -1 if it did not wait. */
  waker: Int32Array;
}

export class ReversalOrder {
  private state = new Uint8Array(64);
  private tasks = new Int32Array(64);
  private fps = new Int32Array(64);
  private steps = new Int32Array(64);
  private wakers = new Int32Array(64);

  /**
   * Puts the reversal `rf` last built for the race of steps `i` and `j` into an order that can
   * run from the state before step i, as `sim` holds it (the tracker is stepped; it reads the
   * footprints in `store` and adds none). Sets the sequence's wakers (the index in it of the step
   * that woke each step's task, -1 if none there). Returns false if step j cannot come before
   * step i.
   */
  order(
    sim: WaitTracker,
    store: FootprintStore,
    rf: RaceFinder,
    run: RunSteps,
    i: number,
  ): boolean {
    const v = rf.reversalSeq;
    const len = v.len;
    const last = len - 1;
    if (this.state.length < len) {
      this.state = new Uint8Array(2 * len);
      this.tasks = new Int32Array(2 * len);
      this.fps = new Int32Array(2 * len);
      this.steps = new Int32Array(2 * len);
      this.wakers = new Int32Array(2 * len);
    }
    const state = this.state;
    state.fill(UNPLACED, 0, len);
    const base = sim.logLength;
    let out = 0;
    /** The first step not yet placed: the scans start there. */
    let lo = 0;
    for (;;) {
      let k = -1;
      for (let c = lo; c < last && k < 0; c++) {
        if (state[c] !== UNPLACED || !sim.enabled(v.tasks[c]!)) continue;
        if (!this.mustFollowUnplaced(store, v.tasks, v.fps, lo, c)) k = c;
      }
      if (k < 0) break;
      this.place(sim, rf, k, out++, base);
      const s = rf.vSteps[k]!;
      sim.onStep(v.tasks[k]!, v.fps[k]!, run.outcome[s]!, run.finished[s] === 1);
      while (lo < last && state[lo] !== UNPLACED) lo++;
    }
    const tj = v.tasks[last]!;
    let follows = false;
    for (let c = lo; c < last; c++) {
      if (state[c] !== UNPLACED) continue;
      state[c] = LEFT_OUT;
      if (!this.explained(store, rf, run, i, c)) {
        const s = rf.vSteps[c]!;
        throw new Error(
          `explorer: a reordered run cannot take step ${s} (task ${v.tasks[c]}): the footprints miss what enabled it`,
        );
      }
      if (v.tasks[c] === tj || store.dependsOn(v.fps[c]!, v.fps[last]!)) follows = true;
    }
    if (follows || !sim.enabled(tj)) return false;
    this.place(sim, rf, last, out++, base);
    v.len = out;
    v.tasks.set(this.tasks.subarray(0, out));
    v.fps.set(this.fps.subarray(0, out));
    v.wakers.set(this.wakers.subarray(0, out));
    rf.vSteps.set(this.steps.subarray(0, out));
    return true;
  }

  /** Whether step `c` of the reversal must come after one of `[lo, c)` not yet placed. */
  private mustFollowUnplaced(
    store: FootprintStore,
    tasks: Int32Array,
    fps: Int32Array,
    lo: number,
    c: number,
  ): boolean {
    for (let a = lo; a < c; a++)
      if (
        this.state[a] === UNPLACED &&
        (tasks[a] === tasks[c] || store.dependsOn(fps[a]!, fps[c]!))
      )
        return true;
    return false;
  }

  /** Puts step `k` of the reversal `rf` holds at position `at` of the new order. */
  private place(sim: WaitTracker, rf: RaceFinder, k: number, at: number, base: number): void {
    const v = rf.reversalSeq;
    this.state[k] = PLACED;
    this.tasks[at] = v.tasks[k]!;
    this.fps[at] = v.fps[k]!;
    this.steps[at] = rf.vSteps[k]!;
    // The tracker logs the placed steps from `base` on, in order: its log index of the waker is
    // the waker's position in the new order.
    const w = sim.wakerOf(v.tasks[k]!);
    this.wakers[at] = w >= base ? w - base : -1;
  }

  /** Whether step `c` of the reversal (left out) could not run before step i of the run either. */
  private explained(
    store: FootprintStore,
    rf: RaceFinder,
    run: RunSteps,
    i: number,
    c: number,
  ): boolean {
    const v = rf.reversalSeq;
    for (let a = 0; a < c; a++)
      if (
        this.state[a] === LEFT_OUT &&
        (v.tasks[a] === v.tasks[c] || store.dependsOn(v.fps[a]!, v.fps[c]!))
      )
        return true;
    const w = run.waker[rf.vSteps[c]!]!;
    if (w < i) return false;
    if (w === i || rf.happensBefore(run.tasks, i, w)) return true;
    // The waker is in the reversal: left out too, or its last step (which goes after c).
    for (let a = 0; a < v.len; a++)
      if (rf.vSteps[a] === w) return a === v.len - 1 || this.state[a] === LEFT_OUT;
    return false;
  }
}
