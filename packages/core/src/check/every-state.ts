/**
 * Every state of every trace checked (`explore --every-state`). A reduced search runs few
 * schedules of each Mazurkiewicz trace (Optimal-DPOR one), and the invariants are checked at the
 * states those schedules pass through. Another order of the same trace's independent steps
 * passes through other states: with task A's step a and task B's independent step b, the run
 * that took a first checked the state after a alone, never the state after b alone. The final
 * state is the same, but a check that relates what a writes to what b writes (or to what a later
 * step of either puts right) can fail only in the state the run skipped.
 *
 * The states any order of a trace passes through are its ideals: the sets of steps closed under
 * "must come before" (the same task's earlier steps, earlier steps whose footprints conflict,
 * and the step that woke a task from a wait), each reached by running its steps in the
 * schedule's order. After each complete schedule, every ideal of its trace that the schedule did
 * not pass through and no earlier schedule checked (the same steps in the same conflicting order)
 * is run and checked. With every trace's ideals checked, every state of every schedule the
 * search covers is: each is an ideal of the trace of a complete schedule that extends it.
 *
 * It costs about a step per state and a replay per branch of the ideals, and a trace of k
 * independent steps has 2^k ideals: for the scenarios a user steps through and for tests, not
 * for the largest explorations.
 */
import {
  explore,
  type CompletedRun,
  type ExploreOptions,
  type ExploreResult,
  type ExploreSystem,
  type ExploreViolation,
} from "../exec/explorer.js";
import { TaskStepper } from "../exec/scheduler.js";
import { Hash64, conflictPredecessors } from "../exec/trace-key.js";

export interface EveryStateResult extends ExploreResult {
  /** States checked besides those the schedules passed through (each once). */
  otherStates: number;
}

/**
 * `explore` with every state of every trace its complete schedules cover checked. A violation
 * found in a state no schedule passed through is reported with the schedule that reaches it.
 */
export function exploreEveryState(
  make: () => ExploreSystem,
  opts: ExploreOptions = {},
): EveryStateResult {
  const checked = new Set<string>();
  let otherStates = 0;
  let found: { violations: ExploreViolation[]; choices: number[] } | null = null;
  const userComplete = opts.onComplete;
  const r = explore(make, {
    ...opts,
    onComplete: (sys, run) => {
      const own = userComplete?.(sys, run) ?? null;
      if (own !== null) return own;
      const v = checkIdeals(make, run, checked, () => otherStates++, opts.checkEveryStep !== false);
      if (v === null) return null;
      found = v;
      return v.violations[0]!;
    },
  });
  const f = found as { violations: ExploreViolation[]; choices: number[] } | null;
  if (f !== null && r.violation !== null)
    r.violation = { ...r.violation, violations: f.violations, choices: f.choices };
  return { ...r, otherStates };
}

/**
 * Checks the ideals of `run`'s trace that `checked` has not seen and the run did not pass
 * through; the first violation with the schedule that reaches it, or null.
 */
function checkIdeals(
  make: () => ExploreSystem,
  run: CompletedRun,
  checked: Set<string>,
  counted: () => void,
  everyStep: boolean,
): { violations: ExploreViolation[]; choices: number[] } | null {
  const { tasks, fps, waker, store } = run;
  const n = tasks.length;
  let taskCount = 0;
  for (let i = 0; i < n; i++) taskCount = Math.max(taskCount, tasks[i]! + 1);
  // Per step, its place in its task and the steps of other tasks it must follow directly: the
  // latest one of each other task whose footprint conflicts with its own, and the step that woke
  // its task from a wait (a task that waits to retry, or for a
  // lock, cannot take its next step before then, though that step may conflict with nothing of
  // the waker's: without the edge, an ideal could hold a state no schedule reaches).
  const preds = conflictPredecessors(store, tasks, fps, n, taskCount);
  const pos = new Int32Array(n);
  const seen = new Int32Array(taskCount);
  for (let j = 0; j < n; j++) {
    pos[j] = seen[tasks[j]!]!++;
    if (waker[j]! >= 0 && tasks[waker[j]!] !== tasks[j]) preds[j]!.push(waker[j]!);
  }
  // An ideal is how many of each task's steps it holds; its key says which steps those are and
  // how they are ordered (`IdealKeys`), so that an ideal another run had is known. The run
  // passed through its own prefixes and checked them (with `checkEveryStep`; else only its end).
  const keys = new IdealKeys(run, taskCount, pos, preds);
  const counts = new Array<number>(taskCount).fill(0);
  if (everyStep) checked.add(keys.of(counts));
  for (let i = 0; i < n; i++) {
    counts[tasks[i]!]!++;
    if (everyStep || i === n - 1) checked.add(keys.of(counts));
  }
  // Depth first over the ideals, each reached once from its canonical parent: the ideal without
  // its last step in the schedule's order (a child adds a step that comes after all of the
  // parent's). A child's steps in the schedule's order are then its parent's and one more, so
  // the system that holds a state goes on to the next by one step while the search goes down,
  // and is run again from the start only where it goes back up (`Replayer`).
  const replayer = new Replayer(make, tasks);
  try {
    const stack: { ideal: number[]; last: number }[] = [
      { ideal: new Array<number>(taskCount).fill(0), last: -1 },
    ];
    while (stack.length > 0) {
      const { ideal, last } = stack.pop()!;
      const key = keys.of(ideal);
      if (!checked.has(key)) {
        checked.add(key);
        counted();
        const steps: number[] = [];
        for (let i = 0; i <= last; i++) if (pos[i]! < ideal[tasks[i]!]!) steps.push(i);
        const v = replayer.check(steps);
        if (v !== null) return v;
      }
      // Children, pushed so that the one with the earliest step comes off the stack first.
      for (let e = n - 1; e > last; e--) {
        const t = tasks[e]!;
        if (pos[e] !== ideal[t]) continue;
        if (!preds[e]!.every((i) => pos[i]! < ideal[tasks[i]!]!)) continue;
        const next = ideal.slice();
        next[t]!++;
        stack.push({ ideal: next, last: e });
      }
    }
  } finally {
    replayer.release();
  }
  return null;
}

/**
 * Keys of a run's ideals. Two ideals, of this run or another, hold the same state when they hold
 * the same steps (per task, the same footprints) in the same order of conflicting steps. That
 * order is told, step by step, by how many steps of each task must come before it (a vector
 * clock, from the run's own "must come before"), which an ideal does not change: every step a
 * step must follow is in any ideal that holds it. So a step's hash of its task, footprint and
 * vector clock is made once per run, each task's prefixes are hashed once, and an ideal's key is
 * its tasks' prefix hashes: a few operations, where the ideal's trace key (`traceKey`) would
 * cost its steps times the tasks.
 */
class IdealKeys {
  private readonly prefix1: Int32Array[] = [];
  private readonly prefix2: Int32Array[] = [];

  constructor(run: CompletedRun, taskCount: number, pos: Int32Array, preds: number[][]) {
    const { tasks, fps, store } = run;
    const n = tasks.length;
    const clocks = new Int32Array(n * taskCount);
    const last = new Int32Array(taskCount).fill(-1);
    const hash = new Hash64();
    const lengths = new Int32Array(taskCount);
    for (let j = 0; j < n; j++) lengths[tasks[j]!]!++;
    for (let t = 0; t < taskCount; t++) {
      this.prefix1.push(new Int32Array(lengths[t]! + 1));
      this.prefix2.push(new Int32Array(lengths[t]! + 1));
      this.prefix1[t]![0] = hash.h1 ^ t;
      this.prefix2[t]![0] = hash.h2 ^ t;
    }
    for (let j = 0; j < n; j++) {
      const t = tasks[j]!;
      const vc = j * taskCount;
      // The steps before j: its task's earlier ones, and everything before its direct
      // predecessors in other tasks (their clocks, and themselves).
      const mine = last[t]!;
      if (mine >= 0)
        for (let u = 0; u < taskCount; u++) clocks[vc + u] = clocks[mine * taskCount + u]!;
      for (const i of preds[j]!) {
        for (let u = 0; u < taskCount; u++)
          clocks[vc + u] = Math.max(clocks[vc + u]!, clocks[i * taskCount + u]!);
        clocks[vc + tasks[i]!] = Math.max(clocks[vc + tasks[i]!]!, pos[i]! + 1);
      }
      last[t] = j;
      hash.h1 = this.prefix1[t]![pos[j]!]!;
      hash.h2 = this.prefix2[t]![pos[j]!]!;
      for (let u = 0; u < taskCount; u++) hash.mix(clocks[vc + u]!);
      hash.mixFootprint(store, fps[j]!);
      this.prefix1[t]![pos[j]! + 1] = hash.h1;
      this.prefix2[t]![pos[j]! + 1] = hash.h2;
    }
  }

  /** The key of the ideal that holds the first `counts[t]` steps of each task t. */
  of(counts: readonly number[]): string {
    let key = "";
    for (let t = 0; t < counts.length; t++)
      key += `${(this.prefix1[t]![counts[t]!]! >>> 0).toString(36)}.${(this.prefix2[t]![counts[t]!]! >>> 0).toString(36)},`;
    return key;
  }
}

/**
 * One system at a time, holding the state after some of the run's steps (`at`, in the
 * schedule's order): a state whose steps begin with those is reached by taking the rest; any
 * other, from a fresh system.
 */
class Replayer {
  private sys: ExploreSystem | null = null;
  private stepper: TaskStepper | null = null;
  private at: number[] = [];
  private readonly enabled: number[] = [];

  constructor(
    private readonly make: () => ExploreSystem,
    private readonly tasks: Int32Array,
  ) {}

  /**
   * The invariants' violations in the state after `steps` (the run's steps, in its order), with
   * the schedule that shows them, or null. A step that throws a violation on the way (a
   * KVM_BUG_ON the other order avoided) is one too, its schedule ending at that step.
   */
  check(steps: readonly number[]): { violations: ExploreViolation[]; choices: number[] } | null {
    let k = 0;
    while (k < this.at.length && k < steps.length && this.at[k] === steps[k]) k++;
    if (this.sys === null || k < this.at.length) {
      this.release();
      this.sys = this.make();
      this.stepper = new TaskStepper(this.sys.tasks, this.sys.clock);
      k = 0;
    }
    const sys = this.sys;
    for (; k < steps.length; k++) {
      const task = this.tasks[steps[k]!]!;
      // The order holds every wake-up, so each step's task can run where the replay takes it.
      if (!this.stepper!.enabled(this.enabled).includes(task))
        throw new Error(
          `exploreEveryState: replaying [${steps
            .slice(0, k + 1)
            .map((i) => this.tasks[i])
            .join(", ")}], task ${task} cannot run at step ${k}: a state no schedule reaches`,
        );
      try {
        this.stepper!.step(task);
        this.at.push(steps[k]!);
      } catch (e) {
        const v = sys.classify(e);
        if (v === null) throw e;
        const choices = steps.slice(0, k + 1).map((i) => this.tasks[i]!);
        this.release();
        return { violations: [v], choices };
      }
    }
    const violations = sys.check(false);
    return violations.length > 0 ? { violations, choices: steps.map((i) => this.tasks[i]!) } : null;
  }

  release(): void {
    this.sys?.release?.();
    this.sys = null;
    this.stepper = null;
    this.at = [];
  }
}
