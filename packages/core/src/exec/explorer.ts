/**
 * The explorer: a stateless, depth-first search over the scheduler's choices (each schedule is
 * run from scratch, as CHESS does), with two bounds on the search:
 *
 * - a *preemption bound*: a schedule may switch away from a task that could have gone on at
 *   most K times (switching when the running task blocks or finishes is free);
 * - *sleep sets*: after exploring step t from a state, a sibling branch that takes step u first
 *   keeps t asleep for as long as the steps it takes are independent of t (their footprints do
 *   not conflict), because running t there would only reorder independent steps into a run
 *   already explored. Every Mazurkiewicz trace keeps at least one representative.
 *
 * Invariants are checked after every step that changed the state they read (`stateVersion`) and
 * at the end of every schedule (only the end-of-run checks when the last state was just found
 * clean); the search stops at the first violation and returns its choices, which `replay`
 * reproduces exactly. Note that the
 * reduction checks the states of the representative it runs: an intermediate state that only
 * another ordering of independent steps passes through is not visited.
 */
import type { Clock } from "./clock.js";
import { grown } from "../mem/typed-arrays.js";
import { FootprintRecorder, FootprintStore } from "./footprint.js";
import { enabledTasks, stepTask, type Task } from "./scheduler.js";

export interface ExploreViolation {
  check: string;
  message: string;
  step: number;
}

/** One fresh instance of the system under test. */
export interface ExploreSystem {
  tasks: Task[];
  clock: Clock;
  /** Where SPTE reads are recorded (the page-table pool's `fp`). */
  setRecorder(fp: FootprintRecorder | null): void;
  /** Invariant violations of the current state; `final` once every task has finished. */
  check(final: boolean): ExploreViolation[];
  /**
   * `check(true)` of a state that `check(false)` found clean and that has not changed since
   * (same `stateVersion`): only the checks that hold at the end of a run alone can fail.
   */
  checkEnd?(): ExploreViolation[];
  /** Turns an error thrown by a step into a violation, or returns null to let it propagate. */
  classify(e: unknown): ExploreViolation | null;
  /**
   * A number that changes whenever the state the invariants read may have changed. A step that
   * leaves it alone (a read, a failed try) cannot break an invariant that held before it, so the
   * check after it is skipped.
   */
  stateVersion?(): number;
  /** Called once the explorer is done with this instance: it may give its storage back. */
  release?(): void;
}

export interface ExploreOptions {
  maxSchedules?: number;
  preemptionBound?: number;
  /** Called about every `progressMs` with the counts so far. */
  onProgress?: (p: ExploreProgress) => void;
  progressMs?: number;
  /** Check invariants after every step (default) or only at the end of each schedule. */
  checkEveryStep?: boolean;
  /** Sleep-set reduction (default on); off explores every interleaving within the bound. */
  reduction?: boolean;
}

export interface ExploreProgress {
  schedules: number;
  steps: number;
  skippedByReduction: number;
  prunedByBound: number;
  seconds: number;
}

export interface ExploreResult extends ExploreProgress {
  exhausted: boolean;
  preemptionBound: number;
  violation: { violations: ExploreViolation[]; choices: number[]; schedule: number } | null;
}

/**
 * The search path, flattened: node `d` is the state after `d` choices, and its fields sit in
 * typed arrays indexed by depth (per-task fields at `d * tasks + t`), so that a step adds no
 * object, Map or array. Footprints are handles into one `FootprintStore`; a node's sleep set and
 * the footprints of the choices explored from it are per-task handles, -1 for none.
 */
class SearchPath {
  /** How many nodes the path holds. */
  length = 0;
  private cap = 0;
  /** The enabled tasks of each node, ascending (`nEnabled[d]` of them from `d * tasks`). */
  enabled = new Int32Array(0);
  nEnabled = new Int32Array(0);
  /** The task that took the step into the node (-1 at the start). */
  prev = new Int32Array(0);
  /** Preemptions used by the choices before the node. */
  preemptions = new Int32Array(0);
  /** Choices explored from the node, in order, the current one last. */
  done = new Int32Array(0);
  nDone = new Int32Array(0);
  /** Sleep set on arrival: task → footprint of the step it would take here, -1 if awake. */
  sleep = new Int32Array(0);
  /** Footprint of the step each explored choice took here, -1 if none yet. */
  fps = new Int32Array(0);
  /** `store.count` when the node was made: its footprints and its subtree's come after. */
  fpMark = new Int32Array(0);

  constructor(readonly tasks: number) {}

  /**
   * Readies the node at depth `d` (the path's length) with no sleepers and nothing explored,
   * before its sleep set is known; it joins the path (`length = d + 1`) once its state turns out
   * to have a choice.
   */
  prepare(d: number, storeCount: number): void {
    while (d >= this.cap) this.grow();
    this.nEnabled[d] = 0;
    this.nDone[d] = 0;
    this.fpMark[d] = storeCount;
    this.sleep.fill(-1, d * this.tasks, (d + 1) * this.tasks);
    this.fps.fill(-1, d * this.tasks, (d + 1) * this.tasks);
  }

  /** The choice the path takes at `d`. */
  choice(d: number): number {
    return this.done[d * this.tasks + this.nDone[d]! - 1]!;
  }

  isEnabled(d: number, t: number): boolean {
    const base = d * this.tasks;
    for (let k = 0; k < this.nEnabled[d]!; k++) if (this.enabled[base + k] === t) return true;
    return false;
  }

  isDone(d: number, t: number): boolean {
    const base = d * this.tasks;
    for (let k = 0; k < this.nDone[d]!; k++) if (this.done[base + k] === t) return true;
    return false;
  }

  addDone(d: number, t: number): void {
    this.done[d * this.tasks + this.nDone[d]!++] = t;
  }

  private grow(): void {
    const cap = Math.max(64, this.cap * 2);
    const per = (a: Int32Array<ArrayBuffer>) => grownTo(a, cap);
    const perTask = (a: Int32Array<ArrayBuffer>) => grownTo(a, cap * this.tasks);
    this.enabled = perTask(this.enabled);
    this.nEnabled = per(this.nEnabled);
    this.prev = per(this.prev);
    this.preemptions = per(this.preemptions);
    this.done = perTask(this.done);
    this.nDone = per(this.nDone);
    this.sleep = perTask(this.sleep);
    this.fps = perTask(this.fps);
    this.fpMark = per(this.fpMark);
    this.cap = cap;
  }
}

function grownTo(a: Int32Array<ArrayBuffer>, cap: number): Int32Array<ArrayBuffer> {
  return grown(a, new Int32Array(cap));
}

export function explore(make: () => ExploreSystem, opts: ExploreOptions = {}): ExploreResult {
  const maxSchedules = opts.maxSchedules ?? Infinity;
  const bound = opts.preemptionBound ?? Infinity;
  const checkEveryStep = opts.checkEveryStep ?? true;
  const reduction = opts.reduction ?? true;
  const t0 = performance.now();
  let lastProgress = t0;
  const rec = new FootprintRecorder();
  const store = new FootprintStore();
  /** Made with the first system, when the number of tasks is known. */
  let path: SearchPath | null = null;
  let schedules = 0;
  let steps = 0;
  let skippedByReduction = 0;
  let prunedByBound = 0;
  let violation: ExploreResult["violation"] = null;
  /** A violation of the step `take` just ran, if any. */
  let stepViolation: ExploreViolation | null = null;

  const progress = (): ExploreProgress => ({
    schedules, steps, skippedByReduction, prunedByBound, seconds: (performance.now() - t0) / 1000,
  });

  /** Takes one step of task `c` with recording on; returns its footprint's handle, or -1 with `stepViolation` set. */
  const take = (sys: ExploreSystem, c: number): number => {
    rec.reset();
    steps++;
    try {
      stepTask(sys.tasks[c]!, sys.clock);
    } catch (e) {
      const v = sys.classify(e);
      if (v === null) throw e;
      stepViolation = v;
      return -1;
    }
    return rec.saveTo(store);
  };

  /** Choosing `c` at node `d` preempts the task that took the step into it, which could have gone on. */
  const isPreemption = (p: SearchPath, d: number, c: number) => {
    const prev = p.prev[d]!;
    return prev >= 0 && c !== prev && p.isEnabled(d, prev);
  };

  /**
   * Runs one schedule: replays the choices of `path[0..from)`, takes `first` at depth `from` if
   * given, then goes on with the default policy (keep the running task, else the lowest enabled
   * one) while the sleep sets and the bound allow. Returns violations found, if any.
   */
  const runSchedule = (from: number, first: number | null): ExploreViolation[] | null => {
    const sys = make();
    path ??= new SearchPath(sys.tasks.length);
    try {
      return runOn(sys, path, from, first);
    } finally {
      sys.release?.();
    }
  };

  const runOn = (sys: ExploreSystem, p: SearchPath, from: number, first: number | null): ExploreViolation[] | null => {
    // The prefix replays choices whose footprints were recorded when they were first taken (the
    // nodes keep them), so it runs without a recorder: nothing is noted or copied per step.
    sys.clock.fp = null;
    sys.setRecorder(null);
    for (let d = 0; d < from; d++) {
      steps++;
      try {
        stepTask(sys.tasks[p.choice(d)]!, sys.clock);
      } catch (e) {
        if (sys.classify(e) === null) throw e;
        throw new Error("explorer: a replayed prefix failed; the system is not deterministic");
      }
    }
    sys.clock.fp = rec;
    sys.setRecorder(rec);
    const T = p.tasks;
    let depth = from;
    /** `stateVersion` of the last state found clean, -2 if none (or no versions). */
    let checkedAt = -2;
    const version = () => (sys.stateVersion ? sys.stateVersion() : -2);
    const checkStep = (): ExploreViolation[] => {
      const v = version();
      if (v !== -2 && v === checkedAt) return [];
      const found = sys.check(false);
      checkedAt = v;
      return found;
    };
    /** At the end of the schedule: a state checked clean and unchanged since needs only the end-of-run checks. */
    const checkEnd = (): ExploreViolation[] => {
      if (sys.checkEnd && checkedAt !== -2 && version() === checkedAt) return sys.checkEnd();
      return sys.check(true);
    };
    if (first !== null) {
      // The replayed state is clean: when a schedule first reached it, it was checked, or it
      // was unchanged from a state that was (the start alone is never checked). So a first step
      // that changes nothing the invariants read needs no check, as in the loop below.
      if (from > 0 && checkEveryStep) checkedAt = version();
      const f = take(sys, first);
      if (f < 0) return [stepViolation!];
      p.fps[from * T + first] = f;
      depth = from + 1;
      p.prepare(depth, store.count);
      childSleep(p, from, first, f);
      if (checkEveryStep) {
        const v = checkStep();
        if (v.length > 0) return v;
      }
    } else {
      p.prepare(depth, store.count);
    }
    const enabled: number[] = [];
    for (;;) {
      // Node `depth` is prepared with its sleep set; it joins the path if there is a choice.
      enabledTasks(sys.tasks, sys.clock, enabled);
      if (enabled.length === 0) {
        if (sys.tasks.every((t) => t.done)) return checkEnd();
        return [{ check: "deadlock", message: `deadlock: ${sys.tasks.filter((t) => !t.done).map((t) => t.name).join(", ")} all wait`, step: sys.clock.step }];
      }
      const d = depth;
      const base = d * T;
      p.length = d + 1;
      for (let k = 0; k < enabled.length; k++) p.enabled[base + k] = enabled[k]!;
      p.nEnabled[d] = enabled.length;
      const prev = d === 0 ? -1 : p.choice(d - 1);
      const preemptions = d === 0 ? 0 : p.preemptions[d - 1]! + (isPreemption(p, d - 1, prev) ? 1 : 0);
      p.prev[d] = prev;
      p.preemptions[d] = preemptions;
      let c = -1;
      if (prev >= 0 && p.isEnabled(d, prev) && p.sleep[base + prev] === -1) c = prev;
      else {
        for (const i of enabled) {
          if (p.sleep[base + i] !== -1) continue;
          if (isPreemption(p, d, i) && preemptions + 1 > bound) continue;
          c = i;
          break;
        }
      }
      if (c < 0) {
        // Every way on is asleep (already covered) or over the bound: this branch adds nothing.
        return null;
      }
      p.addDone(d, c);
      const f = take(sys, c);
      if (f < 0) return [stepViolation!];
      p.fps[base + c] = f;
      depth++;
      p.prepare(depth, store.count);
      childSleep(p, d, c, f);
      if (checkEveryStep) {
        const v = checkStep();
        if (v.length > 0) return v;
      }
    }
  };

  /**
   * The sleep set of node `d + 1`, reached by taking `c` (footprint `f`) at node `d`: the
   * inherited sleepers and the earlier siblings that are independent of it.
   */
  function childSleep(p: SearchPath, d: number, c: number, f: number): void {
    if (!reduction) return;
    const T = p.tasks;
    const from = d * T;
    const to = from + T;
    for (let t = 0; t < T; t++) {
      if (t === c) continue;
      // A task sleeps on arrival or was explored from here, never both.
      const ft = p.sleep[from + t] !== -1 ? p.sleep[from + t]! : p.fps[from + t]!;
      if (ft !== -1 && !store.dependsOn(ft, f)) p.sleep[to + t] = ft;
    }
  }

  let found = runSchedule(0, null);
  schedules++;
  const p = path!;
  while (found === null || found.length === 0) {
    if (schedules >= maxSchedules) break;
    // Backtrack to the deepest state with a choice left.
    let next = -1;
    let nextChoice = -1;
    while (p.length > 0) {
      const d = p.length - 1;
      const base = d * p.tasks;
      const nEnabled = p.nEnabled[d]!;
      let u = -1;
      for (let k = 0; k < nEnabled; k++) {
        const i = p.enabled[base + k]!;
        if (p.isDone(d, i) || p.sleep[base + i] !== -1) continue;
        if (isPreemption(p, d, i) && p.preemptions[d]! + 1 > bound) continue;
        u = i;
        break;
      }
      if (u >= 0) {
        p.addDone(d, u);
        next = d;
        nextChoice = u;
        break;
      }
      for (let k = 0; k < nEnabled; k++) {
        const i = p.enabled[base + k]!;
        if (p.isDone(d, i)) continue;
        if (p.sleep[base + i] !== -1) skippedByReduction++;
        else prunedByBound++;
      }
      // The node and its subtree's footprints go.
      p.length = d;
      store.truncate(p.fpMark[d]!);
    }
    if (next < 0) break;
    found = runSchedule(next, nextChoice);
    schedules++;
    const now = performance.now();
    if (opts.onProgress && now - lastProgress >= (opts.progressMs ?? 1000)) {
      lastProgress = now;
      opts.onProgress(progress());
    }
  }
  if (found !== null && found.length > 0) {
    const choices: number[] = [];
    for (let d = 0; d < p.length; d++) choices.push(p.choice(d));
    violation = { violations: found, choices, schedule: schedules };
  }
  const exhausted = violation === null && p.length === 0;
  return { ...progress(), exhausted, preemptionBound: bound, violation };
}
