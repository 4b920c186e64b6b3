/**
 * `tdpemu audit`: a scenario run under three audits, which hold the footprints the core and the
 * backend record to what their steps do. The footprint audit explores a sample of schedules
 * (bounded) and fails a step that changed state it did not record as written; the commutation
 * audit takes random walks and fails two steps whose footprints are independent but which do
 * not commute (a read left unrecorded); the trace-state audit explores without reduction and
 * fails two schedules of one trace that end in different states (a read left unrecorded,
 * wherever the search goes). For a backend that records its own accesses
 * (`recordsOwnAccesses`), a plugin's above all: the explorer's "exhausted" rests on them.
 */
import { auditCommutation, type CommuteAuditResult } from "../check/commute-audit.js";
import { auditTraceStates, type TraceStateAuditResult } from "../check/trace-state-audit.js";
import type { ExploreViolation } from "../exec/explorer.js";
import {
  exploreScenario,
  scenarioSystem,
  type ExploreScenarioOptions,
} from "./explore-scenario.js";
import type { Scenario } from "./schema.js";

export interface AuditScenarioOptions extends Pick<
  ExploreScenarioOptions,
  "backend" | "hostMemory" | "mmu" | "inject"
> {
  /** Schedules the footprint audit explores (default 200). */
  maxSchedules?: number;
  /** Their preemption bound (default 1): the sample reaches every task's steps early. */
  preemptionBound?: number;
  /** The commutation audit's random walks (default 8), their seed (default 1) and length (default 400 steps). */
  walks?: number;
  seed?: number;
  maxDepth?: number;
  /** Schedules the trace-state audit explores without reduction (default 1,000; 0: none). */
  traceSchedules?: number;
  /** Progress: of the footprint audit's search, and after each walk. */
  onProgress?: ExploreScenarioOptions["onProgress"];
  onWalk?: (taken: number) => void;
}

export interface AuditScenarioResult {
  footprint: {
    schedules: number;
    steps: number;
    /** Every schedule within the bound was explored. */
    exhausted: boolean;
    /** The footprint audit's finding, or the violation the search stopped at (another check). */
    violation: ExploreViolation | null;
  };
  commutation: CommuteAuditResult;
  /** The trace-state audit's search (with the preemption bound above), or null if not asked for. */
  traces: TraceStateAuditResult | null;
}

export function auditScenario(scn: Scenario, opts: AuditScenarioOptions): AuditScenarioResult {
  const system = {
    backend: opts.backend,
    hostMemory: opts.hostMemory,
    mmu: opts.mmu,
    inject: opts.inject,
  };
  const r = exploreScenario(scn, {
    ...system,
    audit: true,
    maxSchedules: opts.maxSchedules ?? 200,
    preemptionBound: opts.preemptionBound ?? 1,
    onProgress: opts.onProgress,
  });
  const commutation = auditCommutation(scenarioSystem(scn, { ...system, audit: true }), {
    walks: opts.walks ?? 8,
    seed: opts.seed ?? 1,
    maxDepth: opts.maxDepth,
    onWalk: opts.onWalk,
  });
  const traceSchedules = opts.traceSchedules ?? 1000;
  const traces =
    traceSchedules === 0
      ? null
      : auditTraceStates(scenarioSystem(scn, { ...system, audit: true }), {
          maxSchedules: traceSchedules,
          preemptionBound: opts.preemptionBound ?? 1,
        });
  return {
    traces,
    footprint: {
      schedules: r.schedules,
      steps: r.steps,
      exhausted: r.exhausted,
      violation: r.violation?.violations[0] ?? null,
    },
    commutation,
  };
}
