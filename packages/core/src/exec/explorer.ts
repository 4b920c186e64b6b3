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
import { FootprintRecorder, FootprintStore, fewNames, resourceName } from "./footprint.js";
import { deadlock, stepTask, type Task } from "./scheduler.js";
import { traceKey } from "./trace-key.js";
import { NO_CHANGE, WaitTracker } from "./wait-tracker.js";
import { RaceFinder } from "./races.js";
import { ReversalOrder, type RunSteps } from "./reversal-order.js";
import { weakInitial, WakeupTrees } from "./wakeup-tree.js";

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
  /**
   * Invariant violations of the current state; `final` once every task has finished.
   * `skipBackend`: the backend's own checks are left out (see `backendCheckVersion`).
   */
  check(final: boolean, skipBackend?: boolean): ExploreViolation[];
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
  /**
   * Like `stateVersion`, for the state the backend's own checks read: a step that leaves it
   * alone but moves `stateVersion` (it changed only guest memory state, which they do not read)
   * is followed by the core's checks alone.
   */
  backendCheckVersion?(): number;
  /** Called once the explorer is done with this instance: it may give its storage back. */
  release?(): void;
  /**
   * With `audit`: before each step, `begin`; after it, `end` returns the changes the step's
   * footprint does not record (empty when it records them all).
   */
  audit?: {
    begin(): void;
    end(rec: FootprintRecorder, task: string): string[];
    /** The whole state, each part named (`FootprintAudit.state`): what the state audits compare. */
    state?(): Map<string, string>;
  };
}

export type ExploreAlgorithm = "sleep" | "optimal";

export interface ExploreOptions {
  maxSchedules?: number;
  preemptionBound?: number;
  /** Called about every `progressMs` with the counts so far. */
  onProgress?: (p: ExploreProgress) => void;
  progressMs?: number;
  /** Check invariants after every step (default) or only at the end of each schedule. */
  checkEveryStep?: boolean;
  /** Partial-order reduction (default on); off explores every interleaving within the bound. */
  reduction?: boolean;
  /**
   * The reduction: `optimal` (Optimal-DPOR with wakeup trees: one complete run per trace, few
   * cut by a sleep set: "Steps that branch" below) or `sleep` (sleep sets alone, which branch at every node and cut the
   * runs they find redundant). `optimal` unless the search is bounded, which needs `sleep`
   * (asking for `optimal` throws): an optimal search reaches some traces only
   * through reorderings that cost more preemptions than the bound allows. A split optimal
   * search branches as sleep sets do above the split depth and is optimal in each subtree on
   * its own (`optimalFrom`), since a node's wakeup tree fills from the runs of every subtree
   * below it: complete runs stay one per trace, and more runs are cut (above the depth, and in
   * subtrees whose root has sleepers).
   */
  algorithm?: ExploreAlgorithm;
  /**
   * Fail a step that changes shared state its footprint does not record as written (a
   * "footprint-audit" violation naming the step and the state). For tests: it is slow.
   */
  audit?: boolean;
  /** Count the distinct Mazurkiewicz traces of the complete schedules (`traces`). */
  countTraces?: boolean;
  /** Called with the trace key and the choices of every complete schedule (with `countTraces`). */
  onTrace?: (key: string, choices: Int32Array) => void;
  /**
   * Called at the end of every complete schedule that passed its checks, while `sys` still holds
   * the state the schedule ended in: a violation ends the search there, as a check's would (the
   * trace-state audit, `check/trace-state-audit.ts`; every state of a trace,
   * `check/every-state.ts`). Trace keys are made for it as for `countTraces`.
   */
  onComplete?: (sys: ExploreSystem, run: CompletedRun) => ExploreViolation | null;
  /**
   * Explore a share of the search (`explore --shard K/N`): the nodes at depth `depth` are
   * numbered in the order the search meets them, and only the subtrees below the nodes `owns`
   * takes are explored. See `ExploreSplit`.
   */
  split?: ExploreSplit;
}

/** A complete schedule, as `onComplete` sees it. */
export interface CompletedRun {
  /** Its Mazurkiewicz trace (`traceKey`). */
  key: string;
  /** The task of each step: the schedule's choices. */
  tasks: Int32Array;
  /** The footprint of each step, a handle into `store` (-1: none recorded). */
  fps: Int32Array;
  /** The step that woke each step's task from a wait, -1 if it did not wait. */
  waker: Int32Array;
  store: FootprintStore;
}

/**
 * How a search is shared out. Every share walks the tree above `depth` as the whole search
 * does (its runs are short: they stop where they reach `depth` in a subtree that is not
 * theirs), so each subtree's root has the sleep set and the bound it has in the whole search,
 * and the shares together run below `depth` exactly the schedules the whole search runs there.
 * What happens above `depth` (a run that ends there, a node whose choices are used up) is
 * counted by the share that owns the next subtree to come, so every schedule, step and branch
 * is counted once: the shares' counts add up to the whole search's.
 */
export interface ExploreSplit {
  depth: number;
  /** Whether this share explores subtree `index` (asked once per index, in increasing order). */
  owns(index: number): boolean;
  /**
   * The whole search's `maxSchedules`, where the shares run side by side and share one count
   * (`explore --jobs`); without it each share stops at `maxSchedules` of its own (shards).
   */
  budget?: ScheduleBudget;
}

/**
 * Schedules the shares of a search take from one count. A share takes one before each run and
 * settles it after: counted, or given back when the run reached another share's subtree. The
 * shares together count at most the search's cap.
 */
export interface ScheduleBudget {
  /**
   * One schedule for the next run; false when the search has none left. While other shares'
   * runs hold the last ones it waits for them to settle: any may come back.
   */
  take(): boolean;
  settle(counted: boolean): void;
}

export interface ExploreProgress {
  schedules: number;
  steps: number;
  skippedByReduction: number;
  prunedByBound: number;
  /** Schedules that ran every task to its end. */
  complete: number;
  /** Schedules cut short because every way on was asleep (sleep-set blocked) or over the bound. */
  cut: number;
  /**
   * Schedules dropped because they starved a task: a livelock found while another task stayed
   * enabled and never ran (see `FAIRNESS_WINDOW`).
   */
  unfair: number;
  seconds: number;
}

export interface ExploreResult extends ExploreProgress {
  exhausted: boolean;
  /** Distinct Mazurkiewicz traces among the complete schedules, with `countTraces`; else null. */
  traces: number | null;
  preemptionBound: number;
  /**
   * The violation the search stopped at; `position` orders the violations of a split search's
   * shares as the whole search would meet them (the least comes first; 0 when not split).
   */
  violation: {
    violations: ExploreViolation[];
    choices: number[];
    schedule: number;
    position: number;
  } | null;
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
  /** Per explored choice: 1 if its task could go on right after its step (not waiting, not done). */
  goesOn = new Int32Array(0);
  /** Per explored choice, under a bound: 1 if its step changed what another task's attempt touched (`WaitTracker.affectsAttempts`). */
  affects = new Int32Array(0);
  /** `store.count` when the node was made: its footprints and its subtree's come after. */
  fpMark = new Int32Array(0);
  /** Optimal-DPOR: the node's wakeup tree (a node of `WakeupTrees`; its first child is the choice taken). */
  root = new Int32Array(0);
  /** What the step of the choice taken yielded (`stepTask`), and 1 if its task finished with it. */
  outcome = new Int32Array(0);
  finished = new Int32Array(0);
  /** The node whose choice woke the task of this node's choice from a wait, -1 if it did not wait. */
  waker = new Int32Array(0);

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
    this.goesOn = perTask(this.goesOn);
    this.affects = perTask(this.affects);
    this.fpMark = per(this.fpMark);
    this.root = per(this.root);
    this.outcome = per(this.outcome);
    this.finished = per(this.finished);
    this.waker = per(this.waker);
    this.cap = cap;
  }
}

/**
 * How many of the last nodes a livelocked schedule must be fair over: a task enabled at each of
 * them must have run in one. A livelock report needs a thousand retries of one task, so the
 * window lies within them.
 */
const FAIRNESS_WINDOW = 200;

/** Whether, over the last `FAIRNESS_WINDOW` nodes up to `d`, some task was always enabled and never chosen. */
function starves(p: SearchPath, d: number): boolean {
  const from = Math.max(0, d - FAIRNESS_WINDOW + 1);
  for (let t = 0; t < p.tasks; t++) {
    let always = true;
    let ran = false;
    for (let e = from; e <= d && always && !ran; e++) {
      if (!p.isEnabled(e, t)) always = false;
      else if (p.choice(e) === t) ran = true;
    }
    if (always && !ran) return true;
  }
  return false;
}

/** What a run returns when it reached a subtree of another share (`ExploreSplit`): not a violation. */
const ABANDONED: ExploreViolation[] = [
  { check: "abandoned", message: "the subtree is another share's", step: -1 },
];

function grownTo(a: Int32Array<ArrayBuffer>, cap: number): Int32Array<ArrayBuffer> {
  return grown(a, new Int32Array(cap));
}

export function explore(make: () => ExploreSystem, opts: ExploreOptions = {}): ExploreResult {
  const maxSchedules = opts.maxSchedules ?? Infinity;
  const bound = opts.preemptionBound ?? Infinity;
  const checkEveryStep = opts.checkEveryStep ?? true;
  const reduction = opts.reduction ?? true;
  const bounded = bound !== Infinity;
  const optimal = reduction && (opts.algorithm ?? (bounded ? "sleep" : "optimal")) === "optimal";
  // It would not be complete (docs/explorer.md): the caller must not ask.
  if (optimal && bounded)
    throw new Error("explore: a bounded search needs the sleep-set algorithm");
  const t0 = performance.now();
  let lastProgress = t0;
  const rec = new FootprintRecorder();
  /** With the audit: what the invariant checks read (`auditCheckReads`). */
  const checkRec = new FootprintRecorder();
  const audited = opts.audit === true;
  const store = new FootprintStore();
  /** Made with the first system, when the number of tasks is known. */
  let path: SearchPath | null = null;
  let schedules = 0;
  let steps = 0;
  let skippedByReduction = 0;
  let prunedByBound = 0;
  let complete = 0;
  let cut = 0;
  let unfair = 0;
  const traceKeys = opts.countTraces || opts.onComplete ? new Set<string>() : null;
  /** Made with the first system, like the path. */
  let tracker: WaitTracker | null = null;
  /** Optimal-DPOR's wakeup trees and race finder, and a tracker to try reordered runs on. */
  const wut = optimal ? new WakeupTrees() : null;
  let races: RaceFinder | null = null;
  let simTracker: WaitTracker | null = null;
  let violation: ExploreResult["violation"] = null;
  /** A violation of the step `take` just ran, if any. */
  let stepViolation: ExploreViolation | null = null;
  const split = opts.split ?? null;
  const splitDepth = split === null ? Infinity : split.depth;
  /**
   * The depth from which the search is optimal: 0, or, split, the split depth. Above it a split
   * optimal search branches as sleep sets do (every enabled, awake task), so that each subtree
   * is searched on its own: a race whose first step lies above the split depth asks for a
   * branch there, and sleep sets run that branch anyway (docs/explorer.md). Infinity with
   * sleep sets alone.
   */
  const optimalFrom = !optimal ? Infinity : split === null ? 0 : splitDepth;
  /** Subtree roots (nodes at `splitDepth`) met so far, in the order of the search. */
  let subtrees = 0;
  const ownership: boolean[] = [];
  const owns = (i: number): boolean => (split === null ? true : (ownership[i] ??= split.owns(i)));
  /** The subtree the current run is in, -1 while it is above `splitDepth`. */
  let runSubtree = -1;
  /** The trace of the current run if it completed, counted once the run is known to count. */
  let pendingTrace: { key: string; tasks: Int32Array } | null = null;
  /** Where the search is, as an ordered number: 2i inside subtree i, 2i - 1 above the cut before it; 0 unsplit. */
  const position = () => (split === null ? 0 : runSubtree >= 0 ? 2 * runSubtree : 2 * subtrees - 1);

  const progress = (): ExploreProgress => ({
    schedules,
    steps,
    skippedByReduction,
    prunedByBound,
    complete,
    cut,
    unfair,
    seconds: (performance.now() - t0) / 1000,
  });

  /** What the last step `take` took yielded, and the depth of the step that woke its task (-1: none). */
  let lastOutcome = 0;
  let lastWaker = -1;
  /** The tracker's log length at depth 0 (it logs the tasks finished from the start first). */
  let logBase = 0;

  /** Takes one step of task `c` with recording on; returns its footprint's handle, or -1 with `stepViolation` set. */
  const take = (sys: ExploreSystem, c: number): number => {
    rec.reset();
    steps++;
    let outcome: number;
    const auditor = opts.audit ? sys.audit : undefined;
    const waker = tracker!.wakerOf(c);
    auditor?.begin();
    try {
      outcome = stepTask(sys.tasks, c, sys.clock);
    } catch (e) {
      const v = sys.classify(e);
      if (v === null) throw e;
      stepViolation = v;
      return -1;
    }
    if (auditor) {
      const missed = auditor.end(rec, sys.tasks[c]!.name);
      if (missed.length > 0) {
        stepViolation = {
          check: "footprint-audit",
          message: missed.join("; "),
          step: sys.clock.tick,
        };
        return -1;
      }
    }
    const h = rec.saveTo(store);
    lastOutcome = outcome;
    lastWaker = waker < 0 ? -1 : waker - logBase;
    tracker!.onStep(c, h, outcome, sys.tasks[c]!.done);
    return h;
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
    if (path === null) {
      path = new SearchPath(sys.tasks.length);
      if (wut !== null) {
        path.prepare(0, 0);
        path.root[0] = wut.root();
        races = new RaceFinder(sys.tasks.length);
        lastRun = new Int32Array(sys.tasks.length);
        simTracker = new WaitTracker(sys.tasks.length, store);
      }
    }
    tracker ??= new WaitTracker(sys.tasks.length, store);
    tracker.reset();
    for (let i = 0; i < sys.tasks.length; i++)
      if (sys.tasks[i]!.done) tracker.onStep(i, NO_CHANGE, 0, true);
    logBase = tracker.logLength;
    if (from === 0) tracker.save(0);
    // A run from a node inside a subtree stays in it (the search is depth-first).
    runSubtree = from >= splitDepth ? subtrees - 1 : -1;
    pendingTrace = null;
    const before = { steps, complete, cut, unfair };
    let found: ExploreViolation[] | null;
    try {
      found = runOn(sys, path, from, first);
    } finally {
      sys.release?.();
    }
    // A run that is not this share's leaves no count behind (its violation, if any, every share
    // running it finds and reports with its position).
    runCounted = found !== ABANDONED && (runSubtree >= 0 || owns(subtrees));
    if (!runCounted) ({ steps, complete, cut, unfair } = before);
    else {
      // Set by `completed`, inside the run (out of sight of the compiler's narrowing).
      const trace = pendingTrace as { key: string; tasks: Int32Array } | null;
      if (trace !== null) {
        traceKeys!.add(trace.key);
        opts.onTrace?.(trace.key, trace.tasks);
      }
    }
    return found;
  };
  /** Whether the last run counts for this share (`runSchedule`). */
  let runCounted = true;

  /**
   * The run just stepped into node `depth`. The first node at `splitDepth` a run reaches is a
   * subtree's root: the run goes on only if the subtree is this share's.
   */
  const entersForeignSubtree = (depth: number): boolean => {
    if (depth !== splitDepth) return false;
    runSubtree = subtrees++;
    return !owns(runSubtree);
  };

  const runOn = (
    sys: ExploreSystem,
    p: SearchPath,
    from: number,
    first: number | null,
  ): ExploreViolation[] | null => {
    // The prefix replays choices whose footprints were recorded when they were first taken (the
    // nodes keep them), so it runs without a recorder: nothing is noted or copied per step. Nor
    // is the wait tracker told of its steps: it goes back to the state it saved after the
    // prefix's last step, when a run first took it (its log still holds the prefix's steps).
    sys.clock.setRecorder(null);
    sys.setRecorder(null);
    const tr = tracker!;
    for (let d = 0; d < from; d++) {
      steps++;
      try {
        stepTask(sys.tasks, p.choice(d), sys.clock);
      } catch (e) {
        if (sys.classify(e) === null) throw e;
        throw new Error("explorer: a replayed prefix failed; the system is not deterministic");
      }
    }
    if (from > 0) tr.restore(from);
    sys.clock.setRecorder(rec);
    sys.setRecorder(rec);
    const T = p.tasks;
    let depth = from;
    /** `stateVersion` of the last state found clean, -2 if none (or no versions). */
    let checkedAt = -2;
    const version = () => (sys.stateVersion ? sys.stateVersion() : -2);
    /** `backendCheckVersion` of the last state whose backend checks found it clean, -2 if none. */
    let backendCleanAt = -2;
    const backendVersion = () => (sys.backendCheckVersion ? sys.backendCheckVersion() : -2);
    /**
     * The invariants of the current state, the backend's left out if what they read is what
     * they last found clean. With the audit they run anyway, and must agree.
     */
    const checkState = (final: boolean): ExploreViolation[] => {
      const bv = backendVersion();
      const skip = bv !== -2 && bv === backendCleanAt;
      let found = unrecorded(() => sys.check(final, skip));
      if (skip && audited && found.length === 0)
        found = missed(final, "the backend's invariants", "the backend check version");
      if (found.length === 0) backendCleanAt = bv;
      return found;
    };
    /**
     * The invariants read the state through the same accessors as the steps; what they read is
     * no step's footprint, so nothing records while they run (it would only cost time).
     */
    const unrecorded = (f: () => ExploreViolation[]): ExploreViolation[] => {
      sys.clock.setRecorder(audited ? checkRec : null);
      sys.setRecorder(audited ? checkRec : null);
      checkRec.reset();
      let found: ExploreViolation[];
      try {
        found = f();
      } finally {
        sys.clock.setRecorder(rec);
        sys.setRecorder(rec);
      }
      return audited && found.length === 0 ? auditCheckReads(sys) : found;
    };
    /**
     * Under the audit, what a check the versions would have skipped finds: a step changed what
     * `whose` checks read without moving `version`, a footprint-audit finding each.
     */
    const missed = (final: boolean, whose: string, version: string): ExploreViolation[] =>
      unrecorded(() => sys.check(final)).map((m) =>
        m.check === "footprint-audit"
          ? m
          : {
              check: "footprint-audit",
              message: `a step changed what ${whose} read without moving ${version}: ${m.message}`,
              step: m.step,
            },
      );
    const checkStep = (): ExploreViolation[] => {
      const v = version();
      if (v !== -2 && v === checkedAt) {
        // The audit checks anyway: a state the invariants read that changed without moving
        // the version would have gone unchecked.
        if (!audited) return [];
        return missed(false, "the invariants", "the check version");
      }
      const found = checkState(false);
      checkedAt = v;
      return found;
    };
    /** At the end of the schedule: a state checked clean and unchanged since needs only the end-of-run checks. */
    const checkEnd = (): ExploreViolation[] => {
      if (sys.checkEnd && checkedAt !== -2 && version() === checkedAt)
        return unrecorded(() => sys.checkEnd!());
      return checkState(true);
    };
    if (first !== null) {
      // The replayed state is clean: when a schedule first reached it, it was checked, or it
      // was unchanged from a state that was (the start alone is never checked). So a first step
      // that changes nothing the invariants read needs no check, as in the loop below.
      if (from > 0 && checkEveryStep) {
        checkedAt = version();
        backendCleanAt = backendVersion();
      }
      const f = take(sys, first);
      if (f < 0) return stepFailed(p, from);
      tookStep(sys, p, from, first, f);
      depth = from + 1;
      if (entersForeignSubtree(depth)) return ABANDONED;
      tr.save(depth);
      p.prepare(depth, store.count);
      if (wut !== null) p.root[depth] = wut.firstChild(p.root[from]!);
      childSleep(p, from, first, f);
      if (checkEveryStep) {
        const v = checkStep();
        if (v.length > 0) return v;
      }
    } else {
      p.prepare(depth, store.count);
    }
    const enabled: number[] = [];
    if (wut !== null) {
      lastRun.fill(-1);
      for (let e = 0; e < depth; e++) lastRun[p.choice(e)] = e;
    }
    for (;;) {
      // Node `depth` is prepared with its sleep set; it joins the path if there is a choice.
      tr.enabledTasks(enabled);
      if (enabled.length === 0) {
        if (sys.tasks.every((t) => t.done)) {
          const v = checkEnd();
          return v.length === 0 ? completed(p, sys) : v;
        }
        const stuck = deadlock(sys.tasks, tr).message;
        return [
          {
            check: stuck.startsWith("livelock") ? "livelock" : "deadlock",
            message: stuck,
            step: sys.clock.tick,
          },
        ];
      }
      const d = depth;
      const base = d * T;
      p.length = d + 1;
      for (let k = 0; k < enabled.length; k++) p.enabled[base + k] = enabled[k]!;
      p.nEnabled[d] = enabled.length;
      const prev = d === 0 ? -1 : p.choice(d - 1);
      const preemptions =
        d === 0 ? 0 : p.preemptions[d - 1]! + (isPreemption(p, d - 1, prev) ? 1 : 0);
      p.prev[d] = prev;
      p.preemptions[d] = preemptions;
      // Optimal-DPOR goes where the node's wakeup tree says; where it says nothing, the choice is
      // free, as with sleep sets: keep the running task, else the lowest enabled one.
      const wake = d >= optimalFrom ? nextWakeup(p, d) : -1;
      let c = wake >= 0 ? wut!.taskOf(wake) : -1;
      if (c >= 0) {
        // Taken from the tree.
      } else if (d >= optimalFrom && (c = starved(p, d, enabled)) >= 0) {
        // A task kept waiting too long goes first.
      } else if (prev >= 0 && p.isEnabled(d, prev) && p.sleep[base + prev] === -1) c = prev;
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
        cut++;
        return null;
      }
      if (wut !== null) {
        if (wake < 0) wut.addChild(p.root[d]!, c);
        lastRun[c] = d;
      }
      p.addDone(d, c);
      const f = take(sys, c);
      if (f < 0) return stepFailed(p, d);
      tookStep(sys, p, d, c, f);
      depth++;
      if (entersForeignSubtree(depth)) return ABANDONED;
      tr.save(depth);
      p.prepare(depth, store.count);
      if (wut !== null) p.root[depth] = wut.firstChild(p.root[d]!);
      childSleep(p, d, c, f);
      if (checkEveryStep) {
        const v = checkStep();
        if (v.length > 0) return v;
      }
    }
  };

  /**
   * With the audit, what a check read is recorded, and none of it may be a resource the clock
   * says no check reads (`Clock.isChecked`): a change of it alone skips the next check.
   */
  function auditCheckReads(sys: ExploreSystem): ExploreViolation[] {
    const unread = checkRec.touched().filter((id) => !sys.clock.isChecked(id));
    if (unread.length === 0) return [];
    return [
      {
        check: "footprint-audit",
        message: `the invariant checks read ${fewNames(unread.map(resourceName), 3)}, which the clock says no check reads`,
        step: sys.clock.tick,
      },
    ];
  }

  /** Optimal-DPOR: per task, the depth it last took a step at in the run (-1: none yet). */
  let lastRun = new Int32Array(0);

  /**
   * Optimal-DPOR's free choice at node `d`, kept fair: an enabled, awake task that has not run
   * for half the fairness window, the one that waited longest; -1 if none. Sleep sets branch to
   * every task at every node, so a run that starves one is dropped (`stepFailed`) and a sibling
   * runs it; an optimal search runs only the branches a race asks for, and a step that commutes
   * with a livelock races with none of it: without this it would never run, and every run that
   * ends in the livelock would be dropped as unfair.
   */
  function starved(p: SearchPath, d: number, enabled: readonly number[]): number {
    let c = -1;
    for (const t of enabled) {
      if (p.sleep[d * p.tasks + t] !== -1 || d - lastRun[t]! < FAIRNESS_WINDOW / 2) continue;
      if (c < 0 || lastRun[t]! < lastRun[c]!) c = t;
    }
    return c;
  }

  /** Notes at node `d` what the step of its choice `c` (footprint `f`) did. */
  function tookStep(sys: ExploreSystem, p: SearchPath, d: number, c: number, f: number): void {
    const at = d * p.tasks + c;
    p.fps[at] = f;
    p.goesOn[at] = tracker!.enabled(c) ? 1 : 0;
    p.affects[at] = bound !== Infinity && tracker!.affectsAttempts(c, f) ? 1 : 0;
    p.outcome[d] = lastOutcome;
    p.waker[d] = lastWaker;
    // The step's own footprint, not the one it had in the run its wakeup sequence came from: the
    // last step of a reversal may behave otherwise once it runs first, and an insertion further
    // up compares with what the step did here.
    if (wut !== null) wut.setFootprint(wut.firstChild(p.root[d]!), wut.store.addFrom(store, f));
    p.finished[d] = sys.tasks[c]!.done ? 1 : 0;
  }

  /**
   * The first step node `d`'s wakeup tree has left to run; -1 if none. In the paper's model its
   * task is always enabled and awake here; with tasks that wait, a sequence merged into the tree
   * below a prefix other than its own may not be (`addReversals`). A step of a sleeping task
   * begins only runs its earlier branch covers: the step goes, and what was merged below it goes
   * back into the tree (`dropFirstChild`). A task that cannot run here makes the node branch to
   * every task that can, as sleep sets would, so nothing is lost.
   */
  function nextWakeup(p: SearchPath, d: number): number {
    const r = p.root[d]!;
    for (;;) {
      const fc = wut!.firstChild(r);
      if (fc < 0) return -1;
      const t = wut!.taskOf(fc);
      if (p.isEnabled(d, t) && p.sleep[d * p.tasks + t] === -1 && !p.isDone(d, t)) return fc;
      wut!.dropFirstChild(r);
      skippedByReduction++;
      if (!p.isEnabled(d, t)) branchToAll(p, d);
    }
  }

  /** Node `d`'s wakeup tree gets a branch to every enabled, awake task not explored there yet, as sleep sets would branch. */
  function branchToAll(p: SearchPath, d: number): void {
    const base = d * p.tasks;
    const r = p.root[d]!;
    for (let k = 0; k < p.nEnabled[d]!; k++) {
      const u = p.enabled[base + k]!;
      if (!p.isDone(d, u) && p.sleep[base + u] === -1 && !wut!.hasChild(r, u)) wut!.addChild(r, u);
    }
  }

  /** The steps of the last run, for `addReversals`. */
  let evTasks = new Int32Array(64);
  let evFps = new Int32Array(64);
  let noneTaken = new Uint8Array(64);
  const reversalOrder = new ReversalOrder();

  // Steps that branch: why a sleeper vetoes a reversal only with a step of its own in it, and why
  // a reversal's last step may have no footprint.
  //
  // Optimal-DPOR's model (Abdulla et al., JACM 2017, section 3) has events whose footprint
  // follows from their task's earlier events: a reversed race changes the value a read returns,
  // never what it touches. A tdpemu step is a whole stretch of code between two yields, and it
  // branches on what it reads within the stretch: run after another order of the steps before
  // it, it may touch other state. The paper's test lets a sleeper whose step is none of the
  // reversal's veto it when that step commutes with all of it ("weak initial"), for the runs
  // the sleeper stands for then hold the reversal's trace. But the trace the reversal is for has
  // step i after it, and step i, moved behind step j, may then write what the sleeper reads
  // (Found by generated programs of four tasks: t0 writes c0; t1 adds to c2; t2 reads c1; t3
  // branches twice on c2 (odd: write c1, else read c0). The trace "t0 writes, t3 branches (c2
  // even), t1 adds, t3 branches (c2 odd: writes c1), t2 reads" was lost: t2, asleep where the
  // second branch raced with the add, commuted with the add and with that branch as it ran.)
  // Asking step i and the steps after it to commute too, as this explorer did, still lost
  // traces: their footprints are also the ones they had before the reversal. So a sleeper whose
  // step is not in the reversal never vetoes. Where the sleeper did cover the reversal, its
  // sequence now runs anyway and ends cut by the sleep set (`cut`).
  //
  // Likewise step j's footprint in the reversal is its footprint after step i, whose writes it
  // may have read: where step i modified what step j touched, the reversal holds step j with no
  // footprint (-1), and `weakInitial` then treats it as conflicting with everything. Otherwise
  // the tree's insertion compared new sequences with a step j that would branch the other way
  // once run first, and took them as covered by a branch that did not cover them (four tasks:
  // t0 adds to c2; t1 branches on c2; t2 branches on c0, then writes c2; t3 reads c0, then c2: 36
  // of 40 traces). The tree learns the step's footprint when it runs (`setFootprint`).

  /**
   * Optimal-DPOR, after a run (complete or not; a violation ends the search): for each race of
   * the run whose reversal can run and starts with no task asleep at the race's node, the
   * reversal goes into that node's wakeup tree (Abdulla et al., JACM 2017, Algorithm 2, lines
   * 2-6; there at the end of maximal runs only, here after cut and unfair runs too: their races
   * are real, and no other run may reach them). The run's first `same` steps are the last
   * run's, whose races the finder keeps (`RaceFinder.analyze`).
   */
  function addReversals(p: SearchPath, same: number): void {
    const T = p.tasks;
    let n = p.length;
    // The last node may hold no step: the run ended there (cut, or its step failed).
    if (n > 0 && (p.nDone[n - 1] === 0 || p.fps[(n - 1) * T + p.choice(n - 1)] === -1)) n--;
    if (evTasks.length < n) {
      evTasks = new Int32Array(2 * n);
      evFps = new Int32Array(2 * n);
      noneTaken = new Uint8Array(2 * n);
    }
    for (let d = 0; d < n; d++) {
      evTasks[d] = p.choice(d);
      evFps[d] = p.fps[d * T + evTasks[d]!]!;
    }
    const rf = races!;
    const w = wut!;
    const run = { tasks: evTasks, outcome: p.outcome, finished: p.finished, waker: p.waker };
    rf.analyze(
      store,
      evTasks,
      evFps,
      n,
      (i, j) => {
        // Above the split depth every branch is run (`optimalFrom`).
        if (i < optimalFrom) return;
        rf.reversal(evTasks, evFps, n, i, j);
        if (!runsFrom(i, rf, run)) return;
        const v = rf.reversalSeq;
        const len = v.len;
        // Step j, run before step i, may read what step i wrote there and take another branch:
        // its footprint from this run is then not known to be its footprint there.
        if (store.modifiesSome(evFps[i]!, evFps[j]!)) v.fps[len - 1] = -1;
        // A task asleep at node i (arrived asleep, or explored there already) whose step is a weak
        // initial of the reversal, one of its steps: every run the reversal asks for then has
        // that step first, which the runs the sleeper stands for cover. One whose step is none
        // of the reversal's vetoes nothing ("Steps that branch", above).
        const base = i * T;
        const cur = evTasks[i]!;
        for (let q = 0; q < T; q++) {
          if (q === cur) continue;
          const fq =
            p.sleep[base + q] !== -1 ? p.sleep[base + q]! : p.isDone(i, q) ? p.fps[base + q]! : -1;
          if (fq === -1) continue;
          const x = weakInitial(store, q, fq, v, noneTaken);
          if (x >= 0 && x < len) return;
        }
        w.insert(p.root[i]!, v, store);
      },
      same,
    );
    w.compact(p.root[0]!);
  }

  /**
   * Puts the reversal in `rf` into an order that can run from node `i` (`ReversalOrder`, on a
   * copy of the wait tracker as it was there); false if its last step cannot come first.
   */
  function runsFrom(i: number, rf: RaceFinder, run: RunSteps): boolean {
    simTracker!.copyFrom(tracker!, i);
    // The trial adds nothing to the store: a wait set is footprints already there.
    return reversalOrder.order(simTracker!, store, rf, run, i);
  }

  /** A complete schedule ran: its trace is counted. */
  function completed(p: SearchPath, sys: ExploreSystem): ExploreViolation[] {
    complete++;
    if (traceKeys === null) return [];
    const n = p.length;
    const tasks = new Int32Array(n);
    const fps = new Int32Array(n);
    for (let d = 0; d < n; d++) {
      tasks[d] = p.choice(d);
      fps[d] = p.fps[d * p.tasks + tasks[d]!]!;
    }
    pendingTrace = { key: traceKey(store, tasks, fps, n, p.tasks), tasks };
    const v = opts.onComplete?.(sys, {
      key: pendingTrace.key,
      tasks,
      fps,
      waker: p.waker.subarray(0, n),
      store,
    });
    return v ? [v] : [];
  }

  /**
   * The step taken at node `d` threw a violation. A livelock (a task that retried a fault
   * MAX_TRIES times) counts only on a fair schedule: if another task was enabled at every node
   * of the last `FAIRNESS_WINDOW` and never ran, the retries only show that it was starved (on
   * real hardware it runs on a CPU of its own), and the schedule is dropped (null).
   */
  function stepFailed(p: SearchPath, d: number): ExploreViolation[] | null {
    const v = stepViolation!;
    if (v.check === "livelock" && starves(p, d)) {
      unfair++;
      return null;
    }
    return [v];
  }

  /**
   * The sleep set of node `d + 1`, reached by taking `c` (footprint `f`) at node `d`: the
   * inherited sleepers and the earlier siblings that are independent of it.
   */
  function childSleep(p: SearchPath, d: number, c: number, f: number): void {
    if (!reduction) return;
    const T = p.tasks;
    const from = d * T;
    const to = from + T;
    const bounded = bound !== Infinity;
    const cPreempts = bounded && isPreemption(p, d, c);
    for (let t = 0; t < T; t++) {
      if (t === c) continue;
      // A task sleeps on arrival or was explored from here, never both.
      let ft = p.sleep[from + t]!;
      if (ft === -1) {
        ft = p.fps[from + t]!;
        // Under a preemption bound, a sibling t explored here stands for a schedule of this
        // branch that runs t's step later only if moving that step to the front keeps the
        // schedule within the bound. The move costs at most
        //   [choosing t here preempts] - [choosing c here preempts] + [t goes on after it]
        // preemptions more (the last term: t is switched away from right after its step, to c,
        // where the later schedule let it run on); when that can be positive, t stays awake.
        // So does a t whose step changed something another task's attempt had touched: moved
        // to the front, it wakes that task earlier (or makes its next retry stale at once), and
        // a later switch away from that task, free while it waited, becomes a preemption.
        if (
          ft !== -1 &&
          bounded &&
          ((isPreemption(p, d, t) ? 1 : 0) - (cPreempts ? 1 : 0) + p.goesOn[from + t]! > 0 ||
            p.affects[from + t] === 1)
        )
          continue;
      }
      if (ft !== -1 && !store.dependsOn(ft, f)) p.sleep[to + t] = ft;
    }
  }

  const result = (exhausted: boolean): ExploreResult => ({
    ...progress(),
    exhausted,
    traces: traceKeys === null ? null : traceKeys.size,
    preemptionBound: bound,
    violation,
  });
  const budget = split?.budget ?? null;
  /** Counts the run just made (or not), and settles its schedule with the budget. */
  const counted = (): void => {
    if (runCounted) schedules++;
    budget?.settle(runCounted);
  };
  // The other shares took every schedule before this one ran any.
  if (budget !== null && !budget.take()) return result(false);
  let found = runSchedule(0, null);
  counted();
  const p = path!;
  /** The depth the last run branched at: its steps before it are the run before's. */
  let branched = 0;
  while (found === null || found.length === 0 || found === ABANDONED) {
    if (wut !== null) addReversals(p, branched);
    // Backtrack to the deepest state with a choice left.
    let next = -1;
    let nextChoice = -1;
    while (p.length > 0) {
      const d = p.length - 1;
      const base = d * p.tasks;
      const nEnabled = p.nEnabled[d]!;
      let u = -1;
      // The choice explored from here leaves the wakeup tree.
      if (wut !== null && p.nDone[d]! > 0) wut.removeFirstChild(p.root[d]!);
      if (d >= optimalFrom) {
        // The next one the tree has left is taken.
        const fc = nextWakeup(p, d);
        if (fc >= 0) u = wut!.taskOf(fc);
      } else {
        for (let k = 0; k < nEnabled; k++) {
          const i = p.enabled[base + k]!;
          if (p.isDone(d, i) || p.sleep[base + i] !== -1) continue;
          if (isPreemption(p, d, i) && p.preemptions[d]! + 1 > bound) continue;
          u = i;
          break;
        }
        // Above the split depth of an optimal search the branch becomes the node's tree's one
        // child, so that the nodes below it have trees.
        if (u >= 0 && wut !== null) wut.addChild(p.root[d]!, u);
      }
      if (u >= 0) {
        p.addDone(d, u);
        next = d;
        nextChoice = u;
        break;
      }
      // Above the split depth every share passes here: the one that owns the next subtree counts.
      const counts = d >= splitDepth || owns(subtrees);
      for (let k = 0; k < nEnabled && counts; k++) {
        const i = p.enabled[base + k]!;
        if (p.isDone(d, i)) continue;
        // Optimal-DPOR leaves out every choice no race asked for: each is only a reordering.
        if (p.sleep[base + i] !== -1 || d >= optimalFrom) skippedByReduction++;
        else prunedByBound++;
      }
      // The node and its subtree's footprints go.
      p.length = d;
      store.truncate(p.fpMark[d]!);
    }
    if (next < 0) break;
    // The cap, or no schedule left in the budget: the search stops here, not exhausted (the
    // node just chosen is on the path). Checked only once a choice is left, so a search whose
    // last schedule is the cap's is exhausted.
    if (schedules >= maxSchedules) break;
    if (budget !== null && !budget.take()) break;
    found = runSchedule(next, nextChoice);
    branched = next;
    counted();
    const now = performance.now();
    if (opts.onProgress && now - lastProgress >= (opts.progressMs ?? 1000)) {
      lastProgress = now;
      opts.onProgress(progress());
    }
  }
  if (found !== null && found.length > 0 && found !== ABANDONED) {
    const choices: number[] = [];
    for (let d = 0; d < p.length; d++) choices.push(p.choice(d));
    violation = { violations: found, choices, schedule: schedules, position: position() };
  }
  return result(violation === null && p.length === 0);
}
