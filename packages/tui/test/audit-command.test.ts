/**
 * `tdpemu audit`: a scenario under the footprint, commutation and trace-state audits, for a backend
 * author who wants to know that the explorer's reduction can trust what the backend records.
 * Clean on the built-ins (exit 0); a plugin that claims to record its own accesses and records
 * none is caught (exit 1), naming the two steps; bad input is one line and exit 2.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { main } from "../src/index.js";
import { captureIo, expectOneLine } from "./capture-io.js";

const dir = mkdtempSync(join(tmpdir(), "tdpemu-audit-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function audit(...args: string[]) {
  const o = captureIo();
  const code = await main(["audit", ...args], o);
  return { code, out: o.outText(), err: o.errText() };
}

// It says it records its own accesses, and records nothing: the guest's checked translations
// are counted behind the explorer's back, and the host op reads the count.
writeFileSync(
  join(dir, "forgetful.mjs"),
  `
class Forgetful {
  name = "forgetful";
  description = "test plugin that claims to record its own accesses";
  usesMirrorRoot = false;
  hasPrivateMemory = false;
  recordsOwnAccesses = true;
  checked = 0;
  hostOps = { checked: { description: "how many translations the backend checked", params: {} } };
  checkTranslation() { this.checked++; return 0; }
  runHostOp() { return this.checked; }
  stats() { return { calls: {}, busy: 0, errors: {} }; }
}
export const registration = { name: "forgetful", description: "test plugin", register(c) { c.register(Symbol.for("tdpemu.Backend"), { useClass: Forgetful }); } };
`,
);
const forgetful = join(dir, "forgetful.yaml");
writeFileSync(
  forgetful,
  `name: forgetful
vm: { memory: 4MiB, vcpus: 1 }
backend: ./forgetful.mjs
vcpus:
  - - { op: access, gpa: 0x0, write: true }
    - { op: access, gpa: 0x1000 }
host:
  - { op: forgetful.checked }
`,
);

describe("tdpemu audit", () => {
  it("finds a built-in backend's steps recording all they touch, and says how much it checked", async () => {
    const r = await audit("scenarios/tdx-race-2m-4k.yaml");
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    const lines = r.out.split("\n");
    expect(lines[0]).toBe("scenario    tdx-race-2m-4k  (backend tdx)");
    expect(lines[1]).toMatch(
      /^footprints {2}[\d,]+ schedules, [\d,]+ steps explored under the footprint audit \(preemption bound 1, exhausted\): every change recorded$/,
    );
    expect(lines[2]).toMatch(
      /^commutes {4}8 walks \(seed 1\): [\d,]+ states with two tasks or more enabled, [\d,]+ pairs of steps run in both orders, [1-9][\d,]* with independent footprints: all commute$/,
    );
    expect(lines[3]).toMatch(
      /^traces {6}[\d,]+ schedules without reduction \(preemption bound 1, exhausted\): [\d,]+ traces, [1-9][\d,]* run in two orders or more, each ending in one state$/,
    );
    expect(lines[4]).toBe("result      clean");
  });

  it("--json gives the same as one document", async () => {
    const r = await audit("scenarios/race-shared-table.yaml", "--backend", "sev", "--json");
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out) as {
      backend: string;
      clean: boolean;
      footprint: {
        schedules: number;
        exhausted: boolean;
        violation: unknown;
        preemptionBound: number;
      };
      traces: {
        violation: unknown;
        apart: unknown;
        exhausted: boolean;
        traces: number;
        complete: number;
        compared: number;
      };
      commutation: {
        walks: number;
        seed: number;
        maxDepth: number;
        independent: number;
        findings: string[];
      };
    };
    expect(j.backend).toBe("sev");
    expect(j.clean).toBe(true);
    expect(j.footprint.violation).toBeNull();
    expect(j.footprint.preemptionBound).toBe(1);
    expect(j.footprint.schedules).toBeGreaterThan(1);
    expect(j.commutation.walks).toBe(8);
    expect(j.commutation.maxDepth).toBe(400);
    expect(j.commutation.independent).toBeGreaterThan(0);
    expect(j.commutation.findings).toEqual([]);
    expect(j.traces).toMatchObject({ violation: null, apart: null, exhausted: true });
    expect(j.traces.compared).toBeGreaterThan(0);
    expect(j.traces.traces).toBeLessThan(j.traces.complete);
    // --trace-schedules 0 leaves the trace-state audit out.
    const none = await audit(
      "scenarios/race-shared-table.yaml",
      "--trace-schedules",
      "0",
      "--json",
    );
    expect(JSON.parse(none.out)).toMatchObject({ traces: null, clean: true });
  });

  it("catches a plugin that reads state it does not record, naming both steps (exit 1)", async () => {
    const r = await audit(forgetful, "--allow-plugins");
    expect(r.err).toBe("");
    expect(r.code).toBe(1);
    // Its footprints say nothing of its state, so the footprint audit has nothing to compare:
    // the commutation audit is what sees it.
    expect(r.out).toMatch(/footprints .*: every change recorded/);
    expect(r.out).toMatch(
      /the steps of vcpu0 and host record independent footprints but do not commute: the two orders end in different states: the ops' results/,
    );
    // And two schedules of one trace (the host's read before and after an access) end apart.
    expect(r.out).toMatch(
      /traces .*:\n {2}two schedules of one trace end in different states \(the ops' results\)/,
    );
    expect(r.out).toMatch(/\n {2}the schedule that ended apart: \[\d+(, \d+)*\]/);
    expect(r.out).toMatch(/result {6}\d+ findings?: steps record less than they touch/);
  });

  it("says when its walks stop short of the end (--max-depth), and takes one walk where no step has a choice", async () => {
    const short = await audit("scenarios/tdx-race-2m-4k.yaml", "--max-depth", "5", "--json");
    expect(short.code).toBe(0);
    const c = (JSON.parse(short.out) as { commutation: { walks: number; cutWalks: number } })
      .commutation;
    expect(c).toMatchObject({ walks: 8, cutWalks: 8 });
    const text = await audit("scenarios/tdx-race-2m-4k.yaml", "--max-depth", "5");
    expect(text.out).toMatch(
      /8 walks \(seed 1; 8 stopped at 5 steps with tasks still to run \(--max-depth\)\)/,
    );
    // One vCPU and no host program: every walk is the first.
    const alone = await audit("scenarios/sev-hugepages.yaml", "--max-schedules", "1", "--json");
    expect(alone.code).toBe(0);
    expect(JSON.parse(alone.out)).toMatchObject({ commutation: { walks: 1, states: 0 } });
  });

  it("refuses bad input in one line, exit 2", async () => {
    expectOneLine(await audit(), /audit: which scenario\?/);
    expectOneLine(
      await audit("scenarios/tdx-race-2m-4k.yaml", "--walks", "0"),
      /audit: --walks: expected a whole number of at least 1, got '0'/,
    );
    expectOneLine(
      await audit("scenarios/tdx-race-2m-4k.yaml", "--trace-schedules", "many"),
      /audit: --trace-schedules: expected a whole number of at least 0, got 'many'/,
    );
    expectOneLine(
      await audit("scenarios/tdx-race-2m-4k.yaml", "--preemption-bound", "x"),
      /audit: --preemption-bound: expected a whole number of at least 0 \(or none\), got 'x'/,
    );
    expectOneLine(await audit(forgetful), /forgetful\.mjs/);
  });

  it("has its usage under --help", async () => {
    const o = captureIo();
    expect(await main(["audit", "--help"], o)).toBe(0);
    expect(o.outText()).toMatch(/tdpemu audit <scenario>/);
    expect(o.outText()).toMatch(/--walks <n>/);
    expect(o.outText()).toMatch(/--trace-schedules <n>/);
  });
});
