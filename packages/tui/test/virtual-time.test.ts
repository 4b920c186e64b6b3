/**
 * Virtual time (costs/*.yaml): every event the model counts has a cost with a source on its
 * backend's table, a run reports its clocks per task, and compare puts the estimates side by
 * side with where the time goes.
 */
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  BackendRegistry,
  VirtualTime,
  builtinCostTables,
  costKey,
  defaultCostTable,
  loadScenario,
  parseCostTable,
  runScenario,
  type Report,
  type TdpEvent,
  type VirtualTimeReport,
} from "@tdpemu/core";
import { builtinRegistry, main } from "../src/index.js";
import { captureIo as io } from "./capture-io.js";
import {
  COST_CHECKS,
  costValidationCase,
  formatCostValidation,
} from "../src/bench/cost-validation.js";

const dir = mkdtempSync(join(tmpdir(), "tdpemu-costs-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function tdpemu(...args: string[]) {
  const o = io();
  const code = await main(args, o);
  return { code, out: o.outText(), err: o.errText() };
}

describe("the cost tables", () => {
  it("there is one per built-in backend, and every entry says where its figure comes from", () => {
    const reg: BackendRegistry = builtinRegistry();
    for (const b of reg.list()) expect(defaultCostTable(b.name), b.name).not.toBeNull();
    for (const t of builtinCostTables()) {
      for (const [k, e] of Object.entries(t.events)) {
        expect(e.source.length, `${t.source}: ${k}`).toBeGreaterThan(10);
        expect(["measured", "derived", "estimate"]).toContain(e.kind);
      }
    }
  });

  it("every event the model counts on every example scenario has a cost on its backend's table", () => {
    const reg = builtinRegistry();
    const unpriced: string[] = [];
    let runs = 0;
    for (const f of readdirSync("scenarios").filter((x) => x.endsWith(".yaml"))) {
      const scn = loadScenario(join("scenarios", f));
      if (scn.vm.memory > 2 ** 30) continue;
      for (const b of reg.list().map((x) => x.name)) {
        const vt = new VirtualTime(defaultCostTable(b)!);
        try {
          runScenario(scn, { backend: reg.source(b), onEvent: vt.onEvent });
        } catch {
          continue; // an op the backend refuses: not this test's business
        }
        runs++;
        for (const k of Object.keys(vt.report().unpriced)) unpriced.push(`${b}: ${k} (${f})`);
      }
    }
    expect(runs).toBeGreaterThan(40);
    expect(unpriced).toEqual([]);
  });

  it("a table without a source, or with a cost that is not a number, is refused at its line", () => {
    const bad = (body: string) => () =>
      parseCostTable(`platform: p\nbackend: plain\nevents:\n${body}\n`, "t.yaml");
    expect(bad("  fault: { ns: 10, kind: estimate }")).toThrow(
      /^t\.yaml:4: events\.fault: missing key 'source'|events\.fault\.source: expected/,
    );
    expect(bad("  fault: { ns: fast, kind: measured, source: a paper }")).toThrow(
      /t\.yaml:4: events\.fault\.ns: expected a cost in nanoseconds, got "fast"/,
    );
    expect(bad("  fault: { ns: 10, kind: guess, source: me }")).toThrow(
      /events\.fault\.kind: expected one of measured, derived, estimate, got "guess"/,
    );
  });
});

describe("the clocks", () => {
  const table = parseCostTable(
    "platform: p\nbackend: tdx\nevents:\n" +
      ["fault", "fault-private", "fault-private-2m", "fault-2m", "flush", "X"]
        .map((k, i) => `  ${k}: { ns: ${(i + 1) * 10}, kind: estimate, source: a test }`)
        .join("\n"),
    "t.yaml",
  );
  const ev = (e: Partial<TdpEvent> & { type: TdpEvent["type"] }): TdpEvent =>
    ({ step: 1, task: "vcpu0", vm: 0, ...e }) as TdpEvent;

  it("a fault is priced by whether it was private and the size it mapped; calls by name", () => {
    expect(costKey(ev({ type: "fault", private: true, result: "fixed", level: 1 }))).toBe(
      "fault-private",
    );
    expect(costKey(ev({ type: "fault", private: true, result: "fixed", level: 2 }))).toBe(
      "fault-private-2m",
    );
    expect(costKey(ev({ type: "fault", private: false, result: "fixed", level: 3 }))).toBe(
      "fault-1g",
    );
    expect(costKey(ev({ type: "fault", private: false, result: "retry", level: 2 }))).toBe("fault");
    expect(costKey(ev({ type: "call", name: "X" }))).toBe("X");
    expect(costKey(ev({ type: "flush" }))).toBe("flush");
    expect(costKey(ev({ type: "spte" }))).toBeNull();
  });

  it("each task's clock advances by its own events; elapsed is the longest, total the sum", () => {
    const vt = new VirtualTime(table);
    vt.onEvent(ev({ type: "fault", private: true, result: "fixed", level: 1 })); // 20
    vt.onEvent(ev({ type: "call", name: "X" })); // 60
    vt.onEvent(ev({ type: "flush", task: "host" })); // 50
    vt.onEvent(ev({ type: "call", name: "Y", task: "host" })); // unpriced
    const r = vt.report();
    expect(r.tasks).toEqual({ host: 50, vcpu0: 80 });
    expect(r.elapsedNs).toBe(80);
    expect(r.totalNs).toBe(130);
    expect(r.kinds.map((k) => [k.key, k.count, k.ns])).toEqual([
      ["X", 1, 60],
      ["flush", 1, 50],
      ["fault-private", 1, 20],
    ]);
    expect(r.kinds.reduce((a, k) => a + k.share, 0)).toBeCloseTo(1);
    expect(r.unpriced).toEqual({ Y: 1 });
    expect(r.lockWaits).toEqual({});
  });

  it("a task that waited for mmu_lock catches up with the clock of the task that let it in", () => {
    const vt = new VirtualTime(table);
    vt.onEvent(ev({ type: "call", name: "X", task: "host" })); // host at 60
    vt.onEvent(ev({ type: "fault", private: false, result: "retry", level: 1 })); // vcpu0 at 10
    vt.onEvent(ev({ type: "lock", mode: "read", after: "host" })); // vcpu0 waited: 60
    vt.onEvent(ev({ type: "flush" })); // vcpu0 at 110
    vt.onEvent(ev({ type: "lock", mode: "write", after: "vcpu0", task: "host" })); // host waits to 110
    vt.onEvent(ev({ type: "lock", mode: "read", after: "host" })); // vcpu0 ahead: no wait
    const r = vt.report();
    expect(r.tasks).toEqual({ host: 110, vcpu0: 110 });
    expect(r.lockWaits).toEqual({ vcpu0: 50, host: 50 });
    expect(r.totalNs).toBe(120);
  });
});

describe("where users look", () => {
  it("run --json reports the virtual time per task, in total and per event kind", async () => {
    const r = await tdpemu("run", "scenarios/tdx-sequential-2m.yaml", "--json");
    expect(r.code).toBe(0);
    const report = JSON.parse(r.out) as Report & { virtualTime: VirtualTimeReport };
    const v = report.virtualTime;
    expect(v.table.source).toBe("costs/tdx-spr.yaml");
    expect(Object.keys(v.tasks).sort()).toEqual(["host", "vcpu0"]);
    const waited = Object.values(v.lockWaits).reduce((a, b) => a + b, 0);
    expect(v.totalNs + waited).toBe(Object.values(v.tasks).reduce((a, b) => a + b, 0));
    expect(v.elapsedNs).toBe(Math.max(...Object.values(v.tasks)));
    const accepts = v.kinds.find((k) => k.key === "TDG.MEM.PAGE.ACCEPT");
    expect(accepts?.count).toBe(
      report.backendStats.calls["TDG.MEM.PAGE.ACCEPT"]! +
        report.backendStats.calls["TD exit (ACCEPT)"]!,
    );
    expect(v.unpriced).toEqual({});
  });

  it("a vCPU that waits for the host's zap under mmu_lock is advanced to the host's release", async () => {
    // Seed 5 of tdx-zap-race makes vcpu0 block on the write lock the host's zap holds.
    const r = await tdpemu("run", "scenarios/tdx-zap-race.yaml", "--json", "--seed", "5");
    const v = (JSON.parse(r.out) as { virtualTime: VirtualTimeReport }).virtualTime;
    expect(v.lockWaits.vcpu0).toBeGreaterThan(0);
    const waited = Object.values(v.lockWaits).reduce((a, b) => a + b, 0);
    expect(v.totalNs + waited).toBe(Object.values(v.tasks).reduce((a, b) => a + b, 0));
  });

  it("--costs picks a table; one for another backend, or a bad file, is one line and exit 2", async () => {
    const mine = join(dir, "slow-plain.yaml");
    writeFileSync(
      mine,
      "platform: slow\nbackend: plain\nevents:\n  fault: { ns: 1000000, kind: estimate, source: a test }\n  flush: { ns: 0, kind: estimate, source: a test }\n",
    );
    const r = await tdpemu(
      "run",
      "scenarios/zap-refault.yaml",
      "--backend",
      "plain",
      "--costs",
      mine,
      "--json",
    );
    expect(r.code).toBe(0);
    const v = (JSON.parse(r.out) as { virtualTime: VirtualTimeReport }).virtualTime;
    expect(v.table.platform).toBe("slow");
    expect(v.kinds[0]).toMatchObject({ key: "fault", ns: v.kinds[0]!.count * 1e6 });
    const wrong = await tdpemu(
      "run",
      "scenarios/zap-refault.yaml",
      "--backend",
      "tdx",
      "--costs",
      mine,
    );
    expect(wrong.code).toBe(2);
    expect(wrong.err).toMatch(
      /--costs: '.*slow-plain\.yaml' prices backend 'plain', and this run is on 'tdx'/,
    );
    const broken = join(dir, "broken.yaml");
    writeFileSync(
      broken,
      "platform: x\nbackend: plain\nevents:\n  fault: { ns: -1, kind: estimate, source: s }\n",
    );
    const b = await tdpemu("run", "scenarios/zap-refault.yaml", "--costs", broken);
    expect(b.code).toBe(2);
    expect(b.err).toMatch(
      /broken\.yaml:4: events\.fault\.ns: expected a cost in nanoseconds, 0 or more, got -1/,
    );
  });

  it("compare shows the estimated time per backend, and TDX's goes to TD exits, AUG and ACCEPT", async () => {
    const r = await tdpemu("compare", "scenarios/tdx-sequential-2m.yaml");
    expect(r.code).toBe(0);
    expect(r.out).toMatch(
      /^est\. time +[0-9.]+ (ms|µs) +[0-9.]+ (ms|µs) +[0-9.]+ (ms|µs) +[0-9.]+ (ms|µs)$/m,
    );
    expect(r.out).toMatch(/^est\. per page accepted /m);
    const j = await tdpemu("compare", "scenarios/tdx-sequential-2m.yaml", "--json");
    const rows = (
      JSON.parse(j.out) as { backends: { backend: string; virtualTime?: VirtualTimeReport }[] }
    ).backends;
    const tdx = rows.find((x) => x.backend === "tdx")!.virtualTime!;
    expect(
      tdx.kinds
        .slice(0, 3)
        .map((k) => k.key)
        .sort(),
    ).toEqual(["TDG.MEM.PAGE.ACCEPT", "TDH.MEM.PAGE.AUG", "TDH.VP.ENTER"]);
    expect(r.out).toMatch(
      /^tdx time: (TDH\.VP\.ENTER|TDG\.MEM\.PAGE\.ACCEPT|TDH\.MEM\.PAGE\.AUG) \d+%/m,
    );
    for (const row of rows) expect(row.virtualTime?.totalNs, row.backend).toBeGreaterThan(0);
  });
});

describe("checked against published measurements (bench cost-validation)", () => {
  it("prices each check's scenario with no unpriced event and reports model, published, ratio and source", () => {
    const m = costValidationCase(builtinRegistry());
    expect(m.rows.map((r) => r.name)).toEqual(COST_CHECKS.map((c) => c.name));
    for (const r of m.rows) {
      expect(r.modelS).toBeGreaterThan(0);
      expect(r.ratio).toBeCloseTo(r.modelS / r.publishedS);
      expect(r.source).toMatch(/\d{4}/);
    }
    expect(m.value).toBe(Math.max(...m.rows.map((r) => Math.max(r.ratio, 1 / r.ratio))));
    const table = formatCostValidation(m.rows);
    for (const r of m.rows) expect(table).toContain(r.source);
    // A ratio beyond 2× names what the model leaves out.
    const far = formatCostValidation([{ ...m.rows[0]!, ratio: 3 }]);
    expect(far).toContain(`leaves out: ${m.rows[0]!.leavesOut}`);
  });
});
