/**
 * `tdpemu explore`: the explorer over a scenario. Every schedule builds the scenario afresh
 * (host, VM, backend) and runs its programs step by step, with every atomic point a choice.
 */
import type { Backend } from "../backend/backend.js";
import type { BackendSource } from "../backend/backend-source.js";
import { exploreEveryState } from "../check/every-state.js";
import { FootprintAudit } from "../check/footprint-audit.js";
import { checkEndOfRun } from "../check/invariants.js";
import {
  explore,
  type ExploreOptions,
  type ExploreResult,
  type ExploreSystem,
} from "../exec/explorer.js";
import type { MmuOptions } from "../mmu/tdp-mmu.js";
import { buildRun, classifyRunError } from "./runner.js";
import type { InjectSpec, Scenario } from "./schema.js";

export interface ExploreScenarioOptions extends ExploreOptions {
  /** Check every state of every trace, not only those the schedules pass (`exploreEveryState`). */
  everyState?: boolean;
  /** Where each schedule's backend comes from: a source, or a function that makes a fresh one. */
  backend: BackendSource | (() => Backend);
  hostMemory?: number;
  mmu?: MmuOptions;
  inject?: InjectSpec[];
}

/** The search's result; `otherStates` with `everyState` (else null). */
export function exploreScenario(
  scn: Scenario,
  opts: ExploreScenarioOptions,
): ExploreResult & { otherStates: number | null } {
  if (opts.everyState) return exploreEveryState(scenarioSystem(scn, opts), opts);
  return { ...explore(scenarioSystem(scn, opts), opts), otherStates: null };
}

/**
 * What the explorer runs for a scenario: a function that builds it afresh, as one system (with
 * `audit`, a `FootprintAudit` of it too: `auditCommutation` takes the same).
 */
export function scenarioSystem(
  scn: Scenario,
  opts: Omit<ExploreScenarioOptions, keyof ExploreOptions> & { audit?: boolean },
): () => ExploreSystem {
  const backend = opts.backend;
  return () => {
    const built = buildRun(scn, {
      backend: typeof backend === "function" ? backend() : backend,
      hostMemory: opts.hostMemory,
      mmu: opts.mmu,
      inject: opts.inject,
      interleave: true,
    });
    // One VM on its own host, on one clock, storing only through its MMU: the invariant walk
    // may rescan only the tables stored to since its last pass.
    built.host.pool.trackWrites(built.clock);
    return {
      tasks: built.tasks,
      clock: built.clock,
      setRecorder: (fp) => {
        built.host.pool.fp = fp;
      },
      check: (final, skipBackend) => built.check(final, skipBackend).violations,
      checkEnd: () => checkEndOfRun(built.vm).violations,
      classify: (e) => classifyRunError(e, scn, built)?.[0] ?? null,
      stateVersion: built.checkVersion,
      backendCheckVersion: built.backendCheckVersion,
      // The host is this schedule's alone: its storage can go to the next schedule's.
      release: () => built.host.release(),
      audit: opts.audit
        ? new FootprintAudit(built.vm, built.tasks, built.results, [built.finalized])
        : undefined,
    };
  };
}
