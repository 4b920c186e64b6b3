/**
 * Shrinking a violating schedule to one with the fewest preemptions, by iterative preemption
 * bounding (Musuvathi and Qadeer, PLDI 2007): explore with bound 0, 1, 2, ... (sleep sets,
 * complete within each bound) and take the first schedule that ends in a violation of the same
 * check. The search's own choice keeps the running task, so the schedule found is short too.
 */
import type { ExploreViolation } from "../exec/explorer.js";
import { exploreScenario, type ExploreScenarioOptions } from "./explore-scenario.js";
import type { Scenario } from "./schema.js";

export interface Shrunk {
  choices: number[];
  violations: ExploreViolation[];
  /** The fewest preemptions a schedule with this violation needs (within the budget). */
  preemptions: number;
}

/**
 * The schedule with the fewest preemptions (at most `maxBound`) that ends in a violation of
 * `check`; null if none is found with at most `budget` schedules per bound.
 */
export function shrinkSchedule(
  scn: Scenario,
  opts: Omit<ExploreScenarioOptions, "preemptionBound" | "algorithm" | "maxSchedules" | "split">,
  check: string,
  maxBound = 6,
  budget = 100_000,
): Shrunk | null {
  for (let bound = 0; bound <= maxBound; bound++) {
    const r = exploreScenario(scn, {
      ...opts,
      preemptionBound: bound,
      algorithm: "sleep",
      maxSchedules: budget,
      onProgress: undefined,
      onTrace: undefined,
      countTraces: false,
    });
    if (r.violation?.violations[0]?.check === check)
      return {
        choices: r.violation.choices,
        violations: r.violation.violations,
        preemptions: bound,
      };
  }
  return null;
}
