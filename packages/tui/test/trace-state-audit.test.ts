/**
 * The trace-state audit over every shipped scenario on every backend that accepts it: searched
 * without reduction (preemption bound 1), the schedules of one Mazurkiewicz trace all end in
 * the same state. And it finds a read left unrecorded wherever it happens in the schedule,
 * naming the part of the state the two schedules disagree on.
 */
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import {
  FootprintAudit,
  auditTraceStates,
  buildRun,
  classifyRunError,
  loadScenario,
  parseScenarioText,
  scenarioSystem,
  type Op,
  type Scenario,
} from "@tdpemu/core/testing";
import { builtinRegistry } from "../src/registry.js";
import { shippedScenarioFiles, shrunk, unlessRefused } from "./shrunk-scenario.js";

const registry = builtinRegistry();

/** The audit's result for `scn` on `backend`, or null if the backend refuses the scenario. */
function audit(scn: Scenario, backend: string, maxSchedules: number) {
  return unlessRefused(() =>
    auditTraceStates(scenarioSystem(scn, { backend: registry.source(backend), audit: true }), {
      maxSchedules,
      preemptionBound: 1,
    }),
  );
}

const files = shippedScenarioFiles;

/**
 * Schedules per scenario and backend: 150, but 20 for zap-refault, whose schedules each take
 * some 1,500 guest accesses (150 took 200 s on the four backends).
 */
const BUDGET: Record<string, number> = { "zap-refault.yaml": 20 };

describe("the trace-state audit", () => {
  for (const file of files) {
    it(`finds every trace of ${file} ending in one state, on every backend that takes it`, () => {
      const scn = shrunk(loadScenario(resolve("scenarios", file)));
      let ran = 0;
      for (const backend of ["plain", "sev", "tdx", "cca"]) {
        const r = audit(scn, backend, BUDGET[file] ?? 150);
        if (r === null) continue;
        ran++;
        // A violation of another check (a scenario made to show one) stops the search; one of
        // this audit's would be a footprint-audit finding.
        expect(r.violation?.check === "footprint-audit" ? r.violation.message : null).toBeNull();
        expect(r.apart).toBeNull();
        expect(r.traces).toBeLessThanOrEqual(r.complete);
      }
      expect(ran).toBeGreaterThan(0);
    }, 300_000);
  }

  /**
   * A scenario with one more task that, after `delay` empty steps, notes what `seq` reads (the
   * invalidation sequence, which the host's zap moves) among the ops' results: the state the
   * run ends in then says whether it ran before or after the zap.
   */
  function withReader(delay: number, seq: (built: ReturnType<typeof buildRun>) => number) {
    const scn = parseScenarioText(
      `
name: reader
vm: { memory: 4MiB, vcpus: 1 }
backend: plain
vcpus:
  - - { op: access, gpa: 0x0, write: true }
host:
  - { op: zap, gpa: 0x0, size: 4KiB }
`,
      "reader.yaml",
    );
    return auditTraceStates(
      () => {
        const built = buildRun(scn, { backend: registry.source("plain"), interleave: true });
        function* reader(): Op {
          for (let i = 0; i < delay; i++) yield;
          built.results.push({ op: "reader", seq: seq(built) } as never);
        }
        const tasks = [...built.tasks, { name: "reader", op: reader(), done: false }];
        return {
          tasks,
          clock: built.clock,
          setRecorder: () => {},
          check: (final) => built.check(final).violations,
          classify: (e) => classifyRunError(e, scn, built)?.[0] ?? null,
          release: () => built.host.release(),
          audit: new FootprintAudit(built.vm, tasks, built.results, [built.finalized]),
        };
      },
      { maxSchedules: 5000, preemptionBound: 2 },
    );
  }

  it("finds a read left unrecorded, naming what the two schedules of one trace end apart on", () => {
    // The sequence read behind its accessor's back: the reader's steps record nothing, so every
    // order of them around the zap is one trace, and they end with different results.
    const r = withReader(30, (built) => (built.vm.mmu as unknown as { seq: number }).seq);
    expect(r.violation?.check).toBe("footprint-audit");
    expect(r.violation?.message).toMatch(
      /two schedules of one trace end in different states \(the ops' results\).*the trace's first schedule: \[/,
    );
    expect(r.apart).not.toBeNull();
    expect(r.apart!.first).not.toEqual(r.apart!.second);
  });

  it("finds nothing when the same read is recorded: the orders are then different traces", () => {
    const r = withReader(30, (built) => built.vm.mmu.invalidateSeq);
    expect(r.violation).toBeNull();
    expect(r.traces).toBeGreaterThan(1);
    expect(r.compared).toBeGreaterThan(0);
  });
});
