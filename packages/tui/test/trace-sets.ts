/**
 * The traces the explorer reaches, with and without its reduction: the sets of Mazurkiewicz
 * trace keys (`explore --count-traces`) of the complete schedules. "Exhausted" with the
 * reduction is worth something only if these sets are equal: every trace the brute-force
 * search runs, the reduced search runs too.
 */
import { resolve } from "node:path";
import { expect } from "vitest";
import { exploreScenario, loadScenario, type ExploreResult } from "@tdpemu/core";
import { builtinRegistry } from "../src/registry.js";

export function traceSet(scenario: string, backend: string, preemptionBound: number, reduction: boolean): { keys: Set<string>; r: ExploreResult } {
  const registry = builtinRegistry();
  const keys = new Set<string>();
  const r = exploreScenario(loadScenario(resolve("scenarios", scenario)), {
    backend: registry.source(backend), preemptionBound, reduction, countTraces: true,
    // The invariants have their own tests; the trace sets do not depend on them.
    checkEveryStep: false,
    onTrace: (k) => keys.add(k),
  });
  return { keys, r };
}

/** The reduced search reaches exactly the traces of the full one, in fewer schedules. */
export function expectSameTraces(scenario: string, backend: string, preemptionBound = Infinity): { reduced: ExploreResult; full: ExploreResult } {
  const reduced = traceSet(scenario, backend, preemptionBound, true);
  const full = traceSet(scenario, backend, preemptionBound, false);
  expect(reduced.r.exhausted).toBe(true);
  expect(full.r.exhausted).toBe(true);
  expect(reduced.r.violation).toBeNull();
  expect(full.r.violation).toBeNull();
  expect(reduced.r.traces).toBe(reduced.keys.size);
  expect(full.r.traces).toBe(full.keys.size);
  const missed = [...full.keys].filter((k) => !reduced.keys.has(k));
  const extra = [...reduced.keys].filter((k) => !full.keys.has(k));
  expect({ missed: missed.length, extra: extra.length }).toEqual({ missed: 0, extra: 0 });
  expect(full.keys.size).toBeGreaterThan(1);
  expect(reduced.r.schedules).toBeLessThan(full.r.schedules);
  return { reduced: reduced.r, full: full.r };
}
