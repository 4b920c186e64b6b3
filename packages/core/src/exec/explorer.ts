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
import { FootprintRecorder, type StepFootprint } from "./footprint.js";
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

interface Node {
  enabled: number[];
  /** The task that took the step into this state (-1 at the start). */
  prev: number;
  /** Preemptions used by the choices before this state. */
  preemptions: number;
  /** Sleep set on arrival: task → footprint of the step it would take here. */
  sleep: Map<number, StepFootprint>;
  /** Choices explored from here, the current one last, and their footprints. */
  done: number[];
  fps: Map<number, StepFootprint>;
}

export function explore(make: () => ExploreSystem, opts: ExploreOptions = {}): ExploreResult {
  const maxSchedules = opts.maxSchedules ?? Infinity;
  const bound = opts.preemptionBound ?? Infinity;
  const checkEveryStep = opts.checkEveryStep ?? true;
  const reduction = opts.reduction ?? true;
  const t0 = performance.now();
  let lastProgress = t0;
  const rec = new FootprintRecorder();
  const path: Node[] = [];
  let schedules = 0;
  let steps = 0;
  let skippedByReduction = 0;
  let prunedByBound = 0;
  let violation: ExploreResult["violation"] = null;

  const progress = (): ExploreProgress => ({
    schedules, steps, skippedByReduction, prunedByBound, seconds: (performance.now() - t0) / 1000,
  });

  /** Takes one step of task `c` with recording on; returns its footprint or a violation. */
  const take = (sys: ExploreSystem, c: number): StepFootprint | ExploreViolation => {
    rec.reset();
    steps++;
    try {
      stepTask(sys.tasks[c]!, sys.clock);
    } catch (e) {
      const v = sys.classify(e);
      if (v === null) throw e;
      return v;
    }
    return rec.snapshot();
  };

  const isPreemption = (node: Node, c: number) => node.prev >= 0 && c !== node.prev && node.enabled.includes(node.prev);

  /**
   * Runs one schedule: replays the choices of `path[0..from)`, takes `first` at depth `from` if
   * given, then goes on with the default policy (keep the running task, else the lowest enabled
   * one) while the sleep sets and the bound allow. Returns violations found, if any.
   */
  const runSchedule = (from: number, first: number | null): ExploreViolation[] | null => {
    const sys = make();
    try {
      return runOn(sys, from, first);
    } finally {
      sys.release?.();
    }
  };

  const runOn = (sys: ExploreSystem, from: number, first: number | null): ExploreViolation[] | null => {
    // The prefix replays choices whose footprints were recorded when they were first taken (the
    // nodes keep them), so it runs without a recorder: nothing is noted or copied per step.
    sys.clock.fp = null;
    sys.setRecorder(null);
    for (let d = 0; d < from; d++) {
      const node = path[d]!;
      steps++;
      try {
        stepTask(sys.tasks[node.done[node.done.length - 1]!]!, sys.clock);
      } catch (e) {
        if (sys.classify(e) === null) throw e;
        throw new Error("explorer: a replayed prefix failed; the system is not deterministic");
      }
    }
    sys.clock.fp = rec;
    sys.setRecorder(rec);
    let depth = from;
    let sleep: Map<number, StepFootprint>;
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
      const node = path[from]!;
      // The replayed state is clean: when a schedule first reached it, it was checked, or it
      // was unchanged from a state that was (the start alone is never checked). So a first step
      // that changes nothing the invariants read needs no check, as in the loop below.
      if (from > 0 && checkEveryStep) checkedAt = version();
      const r = take(sys, first);
      if (!("ids" in r)) return [r];
      node.fps.set(first, r);
      sleep = childSleep(node, first, r);
      depth = from + 1;
      if (checkEveryStep) {
        const v = checkStep();
        if (v.length > 0) return v;
      }
    } else {
      sleep = new Map();
    }
    const enabled: number[] = [];
    for (;;) {
      enabledTasks(sys.tasks, sys.clock, enabled);
      if (enabled.length === 0) {
        if (sys.tasks.every((t) => t.done)) return checkEnd();
        return [{ check: "deadlock", message: `deadlock: ${sys.tasks.filter((t) => !t.done).map((t) => t.name).join(", ")} all wait`, step: sys.clock.step }];
      }
      const prevNode = path[depth - 1];
      const prev = depth === 0 ? -1 : prevNode!.done[prevNode!.done.length - 1]!;
      const preemptions = depth === 0 ? 0 : prevNode!.preemptions + (isPreemption(prevNode!, prev) ? 1 : 0);
      const node: Node = { enabled: [...enabled], prev, preemptions, sleep, done: [], fps: new Map() };
      let c = -1;
      if (enabled.includes(prev) && !sleep.has(prev)) c = prev;
      else {
        for (const i of enabled) {
          if (sleep.has(i)) continue;
          if (isPreemption(node, i) && preemptions + 1 > bound) continue;
          c = i;
          break;
        }
      }
      if (c < 0) {
        // Every way on is asleep (already covered) or over the bound: this branch adds nothing.
        path.push(node);
        return null;
      }
      node.done.push(c);
      path.push(node);
      const r = take(sys, c);
      if (!("ids" in r)) return [r];
      node.fps.set(c, r);
      sleep = childSleep(node, c, r);
      depth++;
      if (checkEveryStep) {
        const v = checkStep();
        if (v.length > 0) return v;
      }
    }
  };

  /** Sleep set after taking `c` (footprint `f`) at `node`: earlier siblings and inherited sleepers independent of it. */
  function childSleep(node: Node, c: number, f: StepFootprint): Map<number, StepFootprint> {
    const out = new Map<number, StepFootprint>();
    if (!reduction) return out;
    for (const [t, ft] of node.sleep) if (t !== c && !ft.dependsOn(f)) out.set(t, ft);
    for (const t of node.done) {
      if (t === c) continue;
      const ft = node.fps.get(t)!;
      if (!ft.dependsOn(f)) out.set(t, ft);
    }
    return out;
  }

  let found = runSchedule(0, null);
  schedules++;
  while (found === null || found.length === 0) {
    if (schedules >= maxSchedules) break;
    // Backtrack to the deepest state with a choice left.
    let next: [number, number] | null = null;
    while (path.length > 0) {
      const d = path.length - 1;
      const node = path[d]!;
      let u = -1;
      for (const i of node.enabled) {
        if (node.done.includes(i) || node.sleep.has(i)) continue;
        if (isPreemption(node, i) && node.preemptions + 1 > bound) continue;
        u = i;
        break;
      }
      if (u >= 0) {
        node.done.push(u);
        next = [d, u];
        break;
      }
      for (const i of node.enabled) {
        if (node.done.includes(i)) continue;
        if (node.sleep.has(i)) skippedByReduction++;
        else prunedByBound++;
      }
      path.pop();
    }
    if (next === null) break;
    path.length = next[0] + 1;
    found = runSchedule(next[0], next[1]);
    schedules++;
    const now = performance.now();
    if (opts.onProgress && now - lastProgress >= (opts.progressMs ?? 1000)) {
      lastProgress = now;
      opts.onProgress(progress());
    }
  }
  if (found !== null && found.length > 0) {
    violation = { violations: found, choices: path.map((n) => n.done[n.done.length - 1]!), schedule: schedules };
  }
  const exhausted = violation === null && path.length === 0;
  return { ...progress(), exhausted, preemptionBound: bound, violation };
}
