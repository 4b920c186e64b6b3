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
 * "must come before" (the same task's earlier steps, and earlier steps whose footprints
 * conflict), each reached by running its steps in the schedule's order. After each complete
 * schedule, every ideal of its trace that the schedule did not pass through and no earlier
 * schedule checked (the same steps in the same conflicting order: the same trace key) is run
 * from a fresh system and checked. With every trace's ideals checked, every state of every
 * schedule the search covers is: each is an ideal of the trace of a complete schedule that
 * extends it.
 *
 * It costs a replay per state, and a trace of k independent steps has 2^k ideals: for the
 * scenarios a user steps through and for tests, not for the largest explorations.
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
import { traceKey } from "../exec/trace-key.js";

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
      const v = checkIdeals(make, run, checked, () => otherStates++);
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
): { violations: ExploreViolation[]; choices: number[] } | null {
  const { tasks, fps, store } = run;
  const n = tasks.length;
  let taskCount = 0;
  for (let i = 0; i < n; i++) taskCount = Math.max(taskCount, tasks[i]! + 1);
  // Per task, its steps in order; per step, its place in its task and the steps of other tasks
  // it must follow directly.
  const byTask: number[][] = Array.from({ length: taskCount }, () => []);
  const pos = new Int32Array(n);
  const preds: number[][] = Array.from({ length: n }, () => []);
  for (let j = 0; j < n; j++) {
    const t = tasks[j]!;
    pos[j] = byTask[t]!.length;
    for (let u = 0; u < taskCount; u++) {
      if (u === t) continue;
      const evs = byTask[u]!;
      for (let k = evs.length - 1; k >= 0; k--) {
        const i = evs[k]!;
        if (fps[i]! >= 0 && fps[j]! >= 0 && store.dependsOn(fps[i]!, fps[j]!)) {
          preds[j]!.push(i);
          break;
        }
      }
    }
    byTask[t]!.push(j);
  }
  // An ideal is how many of each task's steps it holds. The run passes through its prefixes.
  const counts = new Array<number>(taskCount).fill(0);
  const passed = new Set<string>([counts.join(",")]);
  for (let i = 0; i < n; i++) {
    counts[tasks[i]!]!++;
    passed.add(counts.join(","));
  }
  // Breadth first from the empty ideal: add any task's next step whose predecessors are in.
  const start = new Array<number>(taskCount).fill(0);
  const queue: number[][] = [start];
  const seen = new Set<string>([start.join(",")]);
  for (let q = 0; q < queue.length; q++) {
    const ideal = queue[q]!;
    const name = ideal.join(",");
    if (!passed.has(name)) {
      const steps: number[] = [];
      for (let i = 0; i < n; i++) {
        const t = tasks[i]!;
        if (pos[i]! < ideal[t]!) steps.push(i);
      }
      const key = traceKey(
        store,
        steps.map((i) => tasks[i]!),
        steps.map((i) => fps[i]!),
        steps.length,
        taskCount,
      );
      if (!checked.has(key)) {
        checked.add(key);
        counted();
        const choices = steps.map((i) => tasks[i]!);
        const v = checkState(make, choices);
        if (v !== null) return v;
      }
    }
    for (let t = 0; t < taskCount; t++) {
      const k = ideal[t]!;
      if (k === byTask[t]!.length) continue;
      const step = byTask[t]![k]!;
      if (!preds[step]!.every((i) => pos[i]! < ideal[tasks[i]!]!)) continue;
      const next = ideal.slice();
      next[t]!++;
      const nextName = next.join(",");
      if (seen.has(nextName)) continue;
      seen.add(nextName);
      queue.push(next);
    }
  }
  return null;
}

/**
 * The invariants' violations in the state `choices` reach from a fresh system, with the
 * schedule that shows them, or null. A step that throws a violation on the way (a KVM_BUG_ON
 * the other order avoided) is one too, its schedule ending at that step.
 */
function checkState(
  make: () => ExploreSystem,
  choices: number[],
): { violations: ExploreViolation[]; choices: number[] } | null {
  const sys = make();
  try {
    const stepper = new TaskStepper(sys.tasks, sys.clock);
    for (let k = 0; k < choices.length; k++) {
      try {
        stepper.step(choices[k]!);
      } catch (e) {
        const v = sys.classify(e);
        if (v === null) throw e;
        return { violations: [v], choices: choices.slice(0, k + 1) };
      }
    }
    const violations = sys.check(false);
    return violations.length > 0 ? { violations, choices } : null;
  } finally {
    sys.release?.();
  }
}
