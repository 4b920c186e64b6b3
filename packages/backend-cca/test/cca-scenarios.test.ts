/**
 * The example scenarios on the CCA backend (what `tdpemu run --backend cca` does), the realm's
 * own scenarios, the cost of a fresh realm's faults, and the race the freeze protocol prevents.
 */
import { readFileSync, readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import {
  exploreScenario,
  parseScenarioText,
  runScenario,
  type RunResult,
} from "@tdpemu/core/testing";
import { GRANULE_NS, type CcaBackend } from "../src/testing.js";
import { cca } from "./cca-helpers.js";

const SCENARIOS = fileURLToPath(new URL("../../../scenarios/", import.meta.url));

function scenario(name: string, backend = "cca") {
  const path = `${SCENARIOS}${name}.yaml`;
  return parseScenarioText(
    readFileSync(path, "utf8").replace(/^backend: .*$/m, `backend: ${backend}`),
    path,
  );
}

function run(name: string): RunResult {
  return runScenario(scenario(name), { backend: cca });
}

function expectClean(r: RunResult): void {
  expect(r.report.backend).toBe("cca");
  expect(r.report.complete).toBe(true);
  expect(r.report.invariants.violations).toEqual([]);
  expect(r.report.invariants.checked).toBeGreaterThan(0);
  expect(r.report.stats.leakedPages).toBe(0);
  expect(r.report.backendStats.busy).toBe(0);
}

/** Every granule the realm's run delegated, counted against the undelegations. */
function granulesBack(r: RunResult): boolean {
  const be = r.vm.backend as CcaBackend;
  const c = r.report.backendStats.calls;
  return (
    c.RMI_GRANULE_DELEGATE === c.RMI_GRANULE_UNDELEGATE &&
    be.rmm.granules.state.every((s) => s === GRANULE_NS)
  );
}

describe("example scenarios on the cca backend", () => {
  // dirty-log refuses a guest_memfd memslot, sev-vmpl and cost-snp-validate need VMPLs
  // (RMPADJUST): input errors on cca.
  const skip = new Set(["dirty-log", "sev-vmpl", "cost-snp-validate"]);
  const names = readdirSync(SCENARIOS)
    .filter((f) => f.endsWith(".yaml"))
    .map((f) => f.slice(0, -5))
    .filter((n) => !skip.has(n));
  for (const name of names) {
    it(`${name} runs without a violation`, () => {
      const r = run(name);
      expectClean(r);
      expect(r.report.backendStats.calls.RMI_REALM_CREATE).toBe(1);
    });
  }

  it("dirty-log and sev-vmpl are refused as input errors, naming why", () => {
    expect(() => run("dirty-log")).toThrow(/guest_memfd: KVM_MEM_LOG_DIRTY_PAGES is not allowed/);
    expect(() => run("sev-vmpl")).toThrow(/vmpl/i);
  });
});

describe("a realm's life", () => {
  it("populates measured, activates, faults in, maps unprotected, and gives every granule back", () => {
    const r = run("cca-realm-life");
    expectClean(r);
    const c = r.report.backendStats.calls;
    expect(c.RMI_DATA_CREATE).toBe(16);
    expect(c.RMI_DATA_CREATE_UNKNOWN).toBe(64);
    expect(c.RMI_RTT_MAP_UNPROTECTED).toBeGreaterThanOrEqual(4);
    expect(c.RMI_RTT_UNMAP_UNPROTECTED).toBe(4);
    expect(c.RMI_DATA_DESTROY).toBe(80);
    expect(c.RMI_REC_CREATE).toBe(2);
    expect(c.RMI_REC_DESTROY).toBe(2);
    expect(c.RMI_REALM_DESTROY).toBe(1);
    expect((r.vm.backend as CcaBackend).realm.measurements).toBe(16 + 32);
    expect(granulesBack(r)).toBe(true);
  });

  it("orders the teardown leaf first: every DATA_DESTROY before the first RTT_DESTROY, the realm last", () => {
    const events: string[] = [];
    const r = runScenario(scenario("cca-realm-life"), {
      backend: cca,
      onEvent: (e) => {
        if (e.type === "call" && e.status === "RMI_SUCCESS") events.push(e.name);
      },
    });
    expectClean(r);
    const lastData = events.lastIndexOf("RMI_DATA_DESTROY");
    const firstRtt = events.indexOf("RMI_RTT_DESTROY");
    expect(lastData).toBeLessThan(firstRtt);
    expect(events.indexOf("RMI_REC_DESTROY")).toBeGreaterThan(
      events.lastIndexOf("RMI_RTT_DESTROY"),
    );
    expect(events.indexOf("RMI_REALM_DESTROY")).toBeGreaterThan(
      events.lastIndexOf("RMI_REC_DESTROY"),
    );
    expect(events.at(-2)).toBe("RMI_GRANULE_UNDELEGATE");
  });
});

describe("a conversion", () => {
  it("asks for RIPAS EMPTY, the VMM destroys the data, KVM completes with RMI_RTT_SET_RIPAS, and back", () => {
    const events: string[] = [];
    const r = runScenario(scenario("cca-convert"), {
      backend: cca,
      onEvent: (e) => {
        if (e.type === "call") events.push(e.name);
      },
    });
    expectClean(r);
    const c = r.report.backendStats.calls;
    expect(c.RMI_DATA_DESTROY).toBe(4);
    expect(c.RMI_RTT_MAP_UNPROTECTED).toBeGreaterThanOrEqual(4);
    expect(c.RMI_RTT_UNMAP_UNPROTECTED).toBe(4);
    expect(c.RMI_DATA_CREATE_UNKNOWN).toBe(20);
    // KVM's order (`kvm_complete_ripas_change` after the VMM's conversion): the request, the
    // exit, the data destroyed, then SET_RIPAS.
    const i = events.indexOf("RSI_IPA_STATE_SET");
    expect(events.slice(i, i + 2)).toEqual(["RSI_IPA_STATE_SET", "REC exit (RIPAS_CHANGE)"]);
    expect(events.indexOf("RMI_DATA_DESTROY", i)).toBeLessThan(
      events.indexOf("RMI_RTT_SET_RIPAS", i),
    );
  });

  // Linux's `rsi_set_memory_range_protected` passes RSI_CHANGE_DESTROYED (only the boot's
  // `_safe` variant does not): a page the host destroyed becomes RAM again when the realm asks.
  it("to RAM over a page the host zapped (RIPAS DESTROYED): RSI_CHANGE_DESTROYED, the page is the realm's again", () => {
    const text = `
name: cca-destroyed-to-ram
vm: { memory: 16MiB, gpaw: 48, vcpus: 1 }
backend: cca
schedule: { mode: round-robin, interleave: false }
vcpus:
  - - { op: access, gpa: 0x2000, write: true }
    - { op: psc, gpa: 0x2000, size: 4KiB, to: private }
    - { op: access, gpa: 0x2000, write: true }
host:
  - { op: zap, gpa: 0x2000, size: 4KiB }
`;
    const r = runScenario(parseScenarioText(text, "cca-destroyed-to-ram.yaml"), { backend: cca });
    expect(r.report.invariants.violations).toEqual([]);
    expect(r.report.ops.map((o) => `${o.who} ${o.op} ${JSON.stringify(o.result)}`)).toEqual([
      'vcpu0 access {"ok":1,"exceptions":0,"mmio":0}',
      'host zap {"zapped":1}',
      'vcpu0 psc {"changed":0,"pages":1,"exceptions":0}',
      'vcpu0 access {"ok":1,"exceptions":0,"mmio":0}',
    ]);
    expect(r.report.backendStats.calls["REC exit (DESTROYED)"]).toBeUndefined();
    expect(r.report.backendStats.errors["RMI_ERROR_RTT (level 3)"]).toBeUndefined();
  });
});

describe("a fresh realm's faults", () => {
  it("cost exactly 1,024 RMI_DATA_CREATE_UNKNOWN for 4 MiB of private memory", () => {
    const r = runScenario(
      parseScenarioText(
        `
name: cca-4mib
vm: { memory: 64MiB, gpaw: 48, vcpus: 1 }
backend: cca
schedule: { mode: round-robin, interleave: false }
vcpus:
  - - { op: access, gpa: 0x0, count: 1024, write: true }
`,
        "cca-4mib.yaml",
      ),
      { backend: cca },
    );
    expectClean(r);
    expect(r.report.backendStats.calls.RMI_DATA_CREATE_UNKNOWN).toBe(1024);
    expect(r.report.stats.faults).toBe(1024);
  });
});

describe("SYSTEM_OFF", () => {
  it("after the realm's PSCI SYSTEM_OFF no REC runs again (RMI_ERROR_REALM, index 1), and the teardown still gives everything back", () => {
    const events: string[] = [];
    const r = runScenario(
      parseScenarioText(
        `
name: cca-system-off
vm: { memory: 8MiB, gpaw: 48, vcpus: 1 }
backend: cca
schedule: { mode: round-robin, interleave: false }
vcpus:
  - - { op: access, gpa: 0x0, count: 4, write: true }
    - { op: access, gpa: 0x100000, count: 4, write: true }
host:
  - { op: cca.system-off, vcpu: 0 }
  - { op: teardown }
`,
        "cca-system-off.yaml",
      ),
      {
        backend: cca,
        onEvent: (e) => {
          if (e.type === "call") events.push(`${e.name} ${e.status}`);
        },
      },
    );
    expect(r.report.invariants.violations).toEqual([]);
    expect(r.report.ops.map((o) => `${o.op} ${JSON.stringify(o.result)}`)).toEqual([
      'access {"ok":4,"exceptions":0,"mmio":0}',
      'cca.system-off {"status":0}',
      'access {"ok":0,"exceptions":4,"mmio":0}',
      "teardown {}",
    ]);
    expect(events).toContain("RMI_REC_ENTER RMI_ERROR_REALM (index 1)");
    expect(granulesBack(r)).toBe(true);
    // A vCPU the realm does not have, or a realm not running yet: -EINVAL, nothing changed.
    const bad = runScenario(
      parseScenarioText(
        `
name: cca-system-off-bad
vm: { memory: 8MiB, gpaw: 48, vcpus: 1 }
backend: cca
host:
  - { op: cca.system-off, vcpu: 3 }
  - { op: cca.system-off }
`,
        "bad.yaml",
      ),
      { backend: cca },
    );
    expect(bad.report.ops.map((o) => o.result.status)).toEqual([-22, -22]);
    expect((bad.vm.backend as CcaBackend).realm.state).toBe(0);
  });
});

describe("unprotected mappings follow the direct root", () => {
  it("a shared 2M page split by the host: the RTT_CREATE under the block already maps its pages, the 4K leaves find them mapped", () => {
    const events: string[] = [];
    const r = runScenario(
      parseScenarioText(
        `
name: cca-shared-split
vm: { memory: 4MiB, gpaw: 48, vcpus: 1, hugepages: 2MiB }
backend: cca
schedule: { mode: round-robin, interleave: false }
vcpus:
  - - { op: convert, gpa: 0x0, size: 2MiB, to: shared }
    - { op: access, gpa: 0xf3000, shared: true, write: true }
host:
  - { op: age, gpa: 0x0, size: 2MiB }
  - { op: split, gpa: 0x0, size: 2MiB }
  - { op: zap, gpa: 0x0, size: 2MiB }
  - { op: teardown }
`,
        "cca-shared-split.yaml",
      ),
      {
        backend: cca,
        check: "op",
        onEvent: (e) => {
          if (e.type === "call") events.push(`${e.name} ${e.detail} ${e.status}`);
        },
      },
    );
    expectClean(r);
    expect(r.report.ops.map((o) => `${o.op} ${JSON.stringify(o.result)}`)).toContain(
      'split {"split":1}',
    );
    // One 2M mapping, split by RTT_CREATE into 512 pages, each unmapped by the zap.
    expect(
      events.filter((e) => e.startsWith("RMI_RTT_MAP_UNPROTECTED") && e.endsWith("RMI_SUCCESS")),
    ).toEqual(["RMI_RTT_MAP_UNPROTECTED ipa 0x800000000000 level 2 pa 0x4000d8 RMI_SUCCESS"]);
    expect(r.report.backendStats.calls.RMI_RTT_UNMAP_UNPROTECTED).toBeGreaterThanOrEqual(512);
    expect(granulesBack(r)).toBe(true);
  });
});

describe("the race the freeze protocol prevents, on CCA", () => {
  it("freeze: no interleaving fails, and the space is exhausted", () => {
    const r = exploreScenario(scenario("cca-race-2m-4k"), { backend: cca });
    expect(r.violation).toBeNull();
    expect(r.exhausted).toBe(true);
    expect(r.schedules).toBeGreaterThan(1000);
  }, 120_000);

  it("atomic-then-hook: a vCPU maps data under a table whose RTT does not exist yet, a KVM bug", () => {
    const scn = scenario("cca-race-2m-4k");
    scn.options.strategy = "atomic-then-hook";
    const r = exploreScenario(scn, { backend: cca, preemptionBound: 2 });
    expect(r.violation?.violations[0]?.message).toMatch(
      /RMI_DATA_CREATE_UNKNOWN of ipa 0x(0|1000) failed: RMI_ERROR_RTT \(level 2\)/,
    );
  });
});
