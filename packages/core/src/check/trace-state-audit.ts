/**
 * The trace-state audit: the commutation audit's check made over whole schedules. Two complete
 * schedules of one Mazurkiewicz trace order every two steps whose footprints conflict the same
 * way, and differ only in the order of steps the footprints call independent; if every step
 * records what it reads and writes, they end in the same state. A read left unrecorded is seen
 * where it matters: the step that read behaves otherwise in one of the two orders, and the two
 * schedules end apart. The commutation audit swaps two steps at the states its random walks
 * reach; this audit compares every schedule of a search without reduction (which runs each
 * trace in all its orders) with the first schedule of its trace, so it sees an unrecorded read
 * wherever the search goes, however deep in the schedule and however many steps the two orders
 * move apart.
 *
 * It costs the search without reduction (every interleaving, within a bound) and a copy of the
 * state at the end of each schedule: a test runs it over scenarios small enough.
 */
import {
  explore,
  type ExploreOptions,
  type ExploreResult,
  type ExploreSystem,
  type ExploreViolation,
} from "../exec/explorer.js";
import { TaskStepper } from "../exec/scheduler.js";
import { Hash64 } from "../exec/trace-key.js";
import { stateDiff } from "./footprint-audit.js";

export interface TraceStateAuditOptions {
  /** Schedules explored at most (default 1,000). */
  maxSchedules?: number;
  /** Their preemption bound (default none). */
  preemptionBound?: number;
  /** Progress, as `explore` gives it. */
  onProgress?: ExploreOptions["onProgress"];
}

export interface TraceStateAuditResult {
  schedules: number;
  /** Complete schedules: each compared with the first of its trace. */
  complete: number;
  traces: number;
  /** Traces run in two orders or more (the ones the audit compared). */
  compared: number;
  exhausted: boolean;
  /**
   * Two schedules of one trace that ended apart (`check` "footprint-audit"), or the violation
   * of another check the search stopped at; null if none.
   */
  violation: ExploreViolation | null;
  /** With a finding, the two schedules' choices: the trace's first, and the one that ended apart. */
  apart: { first: number[]; second: number[] } | null;
}

/** Two states compare by this digest: the parts in name order, each with its value. */
function digest(state: Map<string, string>): string {
  const hash = new Hash64();
  for (const n of [...state.keys()].sort()) {
    const s = `${n}=${state.get(n)!};`;
    for (let i = 0; i < s.length; i++) hash.mix(s.charCodeAt(i));
  }
  return `${hash.text()}:${state.size}`;
}

/** The state a fresh system ends in after `choices` (the earlier schedule, to name what differs). */
function replayedState(make: () => ExploreSystem, choices: ArrayLike<number>): Map<string, string> {
  const sys = make();
  try {
    const stepper = new TaskStepper(sys.tasks, sys.clock);
    for (let i = 0; i < choices.length; i++) stepper.step(choices[i]!);
    return stateOf(sys);
  } finally {
    sys.release?.();
  }
}

function stateOf(sys: ExploreSystem): Map<string, string> {
  const state = sys.audit?.state?.();
  if (state === undefined)
    throw new Error("auditTraceStates: the system's audit has no state() (a FootprintAudit)");
  return state;
}

export function auditTraceStates(
  make: () => ExploreSystem,
  opts: TraceStateAuditOptions = {},
): TraceStateAuditResult {
  // Per trace: the digest of the state its first schedule ended in, its choices, and whether a
  // second schedule came.
  const seen = new Map<string, { digest: string; choices: Int32Array; again: boolean }>();
  let apart: TraceStateAuditResult["apart"] = null;
  const r: ExploreResult = explore(make, {
    reduction: false,
    maxSchedules: opts.maxSchedules ?? 1000,
    preemptionBound: opts.preemptionBound,
    onProgress: opts.onProgress,
    onComplete: (sys, { key, tasks: choices }) => {
      const state = stateOf(sys);
      const d = digest(state);
      const first = seen.get(key);
      if (first === undefined) {
        seen.set(key, { digest: d, choices: choices.slice(), again: false });
        return null;
      }
      first.again = true;
      if (first.digest === d) return null;
      apart = { first: Array.from(first.choices), second: Array.from(choices) };
      const diff = stateDiff(replayedState(make, first.choices), state);
      return {
        check: "footprint-audit",
        message:
          `two schedules of one trace end in different states (${diff}): the footprints call ` +
          `the steps they order differently independent, so a step read or changed something ` +
          `it did not record (the trace's first schedule: [${apart.first.join(", ")}])`,
        step: sys.clock.tick,
      };
    },
  });
  let compared = 0;
  for (const t of seen.values()) if (t.again) compared++;
  return {
    schedules: r.schedules,
    complete: r.complete,
    traces: seen.size,
    compared,
    exhausted: r.exhausted,
    violation: r.violation?.violations[0] ?? null,
    apart,
  };
}
