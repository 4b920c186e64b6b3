/**
 * Fault injection through scenarios (`inject: [{ call, nth, status, times }]`): the TDX module
 * model returns the chosen status on the nth call of a leaf for the VM's TD, and KVM's side must
 * react as the kernel does (docs/tdx-module.md §5 and §6): retry a busy SEPT.ADD / AUG through the fault
 * path, kick and retry a busy REMOVE once then KVM_BUG_ON, leak a page whose RECLAIM fails.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import {
  KIND_ADD,
  recordedStep,
  R_INJECTED,
  RunInputError,
  buildRun,
  exploreScenario,
  parseScenarioText,
  runScenario,
  type RunResult,
  type TdpEvent,
} from "@tdpemu/core/testing";
import { PT_EPT, PT_NDA, PT_TDR, SEPT_FREE, TdxBackend } from "../src/testing.js";
import { tdx } from "./tdx-source.js";

interface Call {
  name: string;
  detail: string;
  status: string;
  injected?: boolean;
}

function scenarioText(o: { inject?: string[]; vcpu: string[]; host?: string[] }): string {
  const lines = [
    "name: fault-injection",
    "vm: { memory: 8MiB, gpaw: 48, vcpus: 1 }",
    "backend: tdx",
    "schedule: { mode: round-robin, interleave: false }",
  ];
  if (o.inject) lines.push("inject:", ...o.inject.map((f) => `  - ${f}`));
  lines.push("vcpus:", `  - - ${o.vcpu[0]}`, ...o.vcpu.slice(1).map((op) => `    - ${op}`));
  if (o.host) lines.push("host:", ...o.host.map((op) => `  - ${op}`));
  return lines.join("\n") + "\n";
}

/** Runs a scenario with a fresh TdxBackend and records every SEAMCALL in order. */
function run(o: {
  inject?: string[];
  vcpu: string[];
  host?: string[];
}): RunResult & { be: TdxBackend; calls: Call[] } {
  const calls: Call[] = [];
  const onEvent = (e: TdpEvent) => {
    if (e.type === "call")
      calls.push({
        name: e.name,
        detail: e.detail,
        status: e.status,
        ...(e.injected ? { injected: true } : {}),
      });
  };
  const r = runScenario(parseScenarioText(scenarioText(o), "fault-injection.yaml"), {
    backend: tdx,
    onEvent,
  });
  return { ...r, be: r.vm.backend as TdxBackend, calls };
}

const ACCEPT_ONE = ["{ op: accept, gpa: 0x0 }"];
const ACCEPT_THEN_SHARE = [
  "{ op: accept, gpa: 0x0, count: 2 }",
  "{ op: convert, gpa: 0x0, size: 4KiB, to: shared }",
];

function septStateAt(be: TdxBackend, gfn: number): number {
  for (const [g, level, state] of be.module.septEntries(be.td))
    if (level === 0 && g === gfn) return state;
  return SEPT_FREE;
}

describe("a busy SEPT.ADD or AUG: the fault unfreezes and retries", () => {
  it("baseline without injection: one AUG, three SEPT.ADD, no retry", () => {
    const { report } = run({ vcpu: ACCEPT_ONE });
    expect(report.backendStats.calls["TDH.MEM.PAGE.AUG"]).toBe(1);
    expect(report.backendStats.calls["TDH.MEM.SEPT.ADD"]).toBe(3);
    expect(report.stats.faultRetries).toBe(0);
    expect(report.backendStats.busy).toBe(0);
    expect(report.invariants.violations).toEqual([]);
  });

  it("AUG busy on its first call: retried, the page is accepted, the failed call is counted", () => {
    const { report, calls } = run({
      inject: ["{ call: TDH.MEM.PAGE.AUG, nth: 1, status: OPERAND_BUSY }"],
      vcpu: ACCEPT_ONE,
    });
    expect(report.stats.faultRetries).toBeGreaterThanOrEqual(1);
    expect(report.backendStats.busy).toBeGreaterThanOrEqual(1);
    expect(report.backendStats.calls["TDH.MEM.PAGE.AUG"]).toBe(2);
    // Busy is contention, not an error; the event says the status was injected.
    expect(report.backendStats.errors).toEqual({});
    expect(calls.filter((c) => c.name === "TDH.MEM.PAGE.AUG").map((c) => c.status)).toEqual([
      "OPERAND_BUSY",
      "SUCCESS",
    ]);
    expect(
      calls.filter((c) => c.name === "TDH.MEM.PAGE.AUG").map((c) => c.injected === true),
    ).toEqual([true, false]);
    // The tables linked before the busy AUG stay: no SEPT.ADD is repeated.
    expect(report.backendStats.calls["TDH.MEM.SEPT.ADD"]).toBe(3);
    expect(report.ops[0]!.result).toEqual({ ok: 1, exceptions: 0 });
    expect(report.stats.pages["4k"]).toBe(1);
    expect(report.invariants.violations).toEqual([]);
  });

  it("SEPT.ADD busy on its second call (the level-2 table): retried, the walk finishes", () => {
    const { report, calls } = run({
      inject: ["{ call: TDH.MEM.SEPT.ADD, nth: 2, status: OPERAND_BUSY }"],
      vcpu: ACCEPT_ONE,
    });
    expect(report.stats.faultRetries).toBeGreaterThanOrEqual(1);
    expect(report.backendStats.busy).toBeGreaterThanOrEqual(1);
    expect(report.backendStats.calls["TDH.MEM.SEPT.ADD"]).toBe(4);
    expect(
      calls
        .filter((c) => c.name === "TDH.MEM.SEPT.ADD")
        .map((c) => `${c.detail.split(" page")[0]} ${c.status}`),
    ).toEqual([
      "gpa 0x0 L4 [tdx 3] SUCCESS",
      "gpa 0x0 L3 [tdx 2] OPERAND_BUSY",
      "gpa 0x0 L3 [tdx 2] SUCCESS",
      "gpa 0x0 L2 [tdx 1] SUCCESS",
    ]);
    expect(report.backendStats.calls["TDH.MEM.PAGE.AUG"]).toBe(1);
    expect(report.stats.tablePages).toBe(3);
    expect(report.ops[0]!.result).toEqual({ ok: 1, exceptions: 0 });
    expect(report.invariants.violations).toEqual([]);
  });

  it("SEPT.ADD busy several times in a row: retried as often as it takes", () => {
    const { report } = run({
      inject: ["{ call: TDH.MEM.SEPT.ADD, nth: 1, status: OPERAND_BUSY, times: 3 }"],
      vcpu: ACCEPT_ONE,
    });
    expect(report.stats.faultRetries).toBe(3);
    expect(report.backendStats.busy).toBe(3);
    expect(report.backendStats.calls["TDH.MEM.SEPT.ADD"]).toBe(6);
    expect(report.invariants.violations).toEqual([]);
  });
});

describe("a busy REMOVE (under the write lock): kick every vCPU, retry once, then KVM_BUG_ON", () => {
  it("baseline: converting an accepted page to shared is BLOCK, TRACK, REMOVE, WBINVD", () => {
    const { report, calls, be, vm } = run({ vcpu: ACCEPT_THEN_SHARE });
    expect(
      calls
        .filter(
          (c) =>
            c.name.startsWith("TDH.MEM.RANGE") ||
            c.name.startsWith("TDH.MEM.TRACK") ||
            c.name.startsWith("TDH.MEM.PAGE.REMOVE") ||
            c.name.startsWith("TDH.PHYMEM"),
        )
        .map((c) => c.name),
    ).toEqual([
      "TDH.MEM.RANGE.BLOCK",
      "TDH.MEM.TRACK",
      "TDH.MEM.PAGE.REMOVE",
      "TDH.PHYMEM.PAGE.WBINVD",
    ]);
    expect(septStateAt(be, 0)).toBe(SEPT_FREE);
    expect(vm.attributes.isPrivate(0)).toBe(false);
    expect(report.invariants.violations).toEqual([]);
  });

  it("REMOVE busy once: retried after the kick, the conversion completes, REMOVE counted twice", () => {
    const { report, calls, be, vm } = run({
      inject: ["{ call: TDH.MEM.PAGE.REMOVE, nth: 1, status: OPERAND_BUSY }"],
      vcpu: ACCEPT_THEN_SHARE,
    });
    expect(report.invariants.violations).toEqual([]);
    expect(report.backendStats.calls["TDH.MEM.PAGE.REMOVE"]).toBe(2);
    expect(report.backendStats.calls["TDH.MEM.RANGE.BLOCK"]).toBe(1);
    expect(report.backendStats.busy).toBe(1);
    expect(report.backendStats.errors).toEqual({});
    expect(calls.filter((c) => c.name === "TDH.MEM.PAGE.REMOVE").map((c) => c.status)).toEqual([
      "OPERAND_BUSY",
      "SUCCESS",
    ]);
    expect(be.bugged).toBe(false);
    // The page is gone from the S-EPT and back to the host (NDA); its neighbour is untouched.
    expect(septStateAt(be, 0)).toBe(SEPT_FREE);
    expect(septStateAt(be, 1)).not.toBe(SEPT_FREE);
    const pfn = vm.memslots.find(0)!.gmem!.peekPfn(0);
    if (pfn >= 0) expect(be.module.pamt.type(pfn)).toBe(PT_NDA);
    expect(report.ops.find((o) => o.op === "convert")!.result).toEqual({ changed: 1 });
    // After the kick no vCPU is left in guest mode.
    for (const v of be.td.vcpus.values()) expect(v.inGuest).toBe(false);
  });

  it("REMOVE busy twice in a row (times: 2): KVM_BUG_ON, the VM is bugged, a kvm-bug violation names the call", () => {
    const { report, be } = run({
      inject: ["{ call: TDH.MEM.PAGE.REMOVE, nth: 1, status: OPERAND_BUSY, times: 2 }"],
      vcpu: ACCEPT_THEN_SHARE,
    });
    expect(be.bugged).toBe(true);
    expect(report.backendStats.calls["TDH.MEM.PAGE.REMOVE"]).toBe(2);
    const bugs = report.invariants.violations.filter((v) => v.check === "kvm-bug");
    expect(bugs).toHaveLength(1);
    expect(bugs[0]!.message).toContain("TDH.MEM.PAGE.REMOVE");
    expect(bugs[0]!.message).toContain("0x8000020000000000 (OPERAND_BUSY)");
    expect(report.invariants.violations.every((v) => v.check === "kvm-bug")).toBe(true);
  });

  it("a busy BLOCK is retried once too; a non-busy REMOVE error is a KVM bug at once", () => {
    const blocked = run({
      inject: ["{ call: TDH.MEM.RANGE.BLOCK, nth: 1, status: OPERAND_BUSY }"],
      vcpu: ACCEPT_THEN_SHARE,
    });
    expect(blocked.report.invariants.violations).toEqual([]);
    expect(blocked.report.backendStats.calls["TDH.MEM.RANGE.BLOCK"]).toBe(2);

    const failed = run({
      inject: ["{ call: TDH.MEM.PAGE.REMOVE, nth: 1, status: TLB_TRACKING_NOT_DONE }"],
      vcpu: ACCEPT_THEN_SHARE,
    });
    expect(failed.report.backendStats.calls["TDH.MEM.PAGE.REMOVE"]).toBe(1);
    expect(failed.report.invariants.violations.map((v) => v.check)).toEqual(["kvm-bug"]);
    expect(failed.report.invariants.violations[0]!.message).toContain("TDH.MEM.PAGE.REMOVE");
    expect(failed.report.invariants.violations[0]!.message).toContain("TLB_TRACKING_NOT_DONE");
  });
});

describe("a failing RECLAIM at teardown leaks the page", () => {
  const TEARDOWN = ["{ op: teardown }"];

  /** The RECLAIM calls of a clean teardown, in order, and which of them reclaim an S-EPT page. */
  function reclaimOrder(): { pages: number[]; septPages: Set<number> } {
    const { calls, report } = run({ vcpu: ACCEPT_ONE, host: TEARDOWN });
    expect(report.stats.leakedPages).toBe(0);
    expect(report.invariants.violations).toEqual([]);
    const page = (c: Call) => Number(/page (\d+)/.exec(c.detail)![1]);
    const septPages = new Set(calls.filter((c) => c.name === "TDH.MEM.SEPT.ADD").map(page));
    const pages = calls.filter((c) => c.name === "TDH.PHYMEM.PAGE.RECLAIM").map(page);
    expect(septPages.size).toBe(3);
    expect(pages.filter((p) => septPages.has(p))).toHaveLength(3);
    return { pages, septPages };
  }

  it("pages are reclaimed in kvm_arch_destroy_vm's order: the vCPU's (tdx_vcpu_free), the S-EPT pages (kvm_mmu_uninit_vm), the TDCS pages, the TDR", () => {
    const { pages, septPages } = reclaimOrder();
    const { be } = run({ vcpu: ACCEPT_ONE, host: TEARDOWN });
    const tdcs = new Set(be.td.tdcx);
    const kind = (p: number) =>
      p === be.tdr ? "TDR" : tdcs.has(p) ? "TDCS" : septPages.has(p) ? "S-EPT" : "vCPU";
    // Five TDCX pages, then the TDVPR, all of them before any S-EPT page.
    expect(pages.map(kind)).toEqual([
      ...Array<string>(6).fill("vCPU"),
      ...Array<string>(3).fill("S-EPT"),
      ...Array<string>(tdcs.size).fill("TDCS"),
      "TDR",
    ]);
  });

  it("RECLAIM of an S-EPT page fails (LIFECYCLE_STATE_INCORRECT): the page leaks, the TDR with it, no other violation", () => {
    const { pages, septPages } = reclaimOrder();
    const nth = pages.findIndex((p) => septPages.has(p)) + 1;
    const victim = pages[nth - 1]!;
    const { report, be, calls, host, vm } = run({
      inject: [`{ call: TDH.PHYMEM.PAGE.RECLAIM, nth: ${nth}, status: LIFECYCLE_STATE_INCORRECT }`],
      vcpu: ACCEPT_ONE,
      host: TEARDOWN,
    });
    // The very call the count pointed at failed.
    const failed = calls.filter(
      (c) => c.name === "TDH.PHYMEM.PAGE.RECLAIM" && c.status !== "SUCCESS",
    );
    expect(failed[0]).toEqual({
      name: "TDH.PHYMEM.PAGE.RECLAIM",
      detail: `page ${victim}`,
      status: "LIFECYCLE_STATE_INCORRECT",
      injected: true,
    });
    expect(report.stats.leakedPages).toBeGreaterThanOrEqual(1);
    const causes = Object.keys(report.stats.leakCauses);
    expect(causes.some((c) => c.includes("LIFECYCLE_STATE_INCORRECT"))).toBe(true);
    // The S-EPT page is still the module's (the TD's child), so the TDR cannot be reclaimed either.
    expect(be.module.pamt.type(victim)).toBe(PT_EPT);
    expect(be.module.pamt.owner(victim)).toBe(be.tdr);
    expect(be.module.pamt.type(be.tdr)).toBe(PT_TDR);
    expect(causes.some((c) => c.includes("TD_ASSOCIATED_PAGES_EXIST"))).toBe(true);
    expect(report.stats.leakedPages).toBe(2);
    expect(Object.values(report.stats.leakCauses).reduce((a, b) => a + b, 0)).toBe(
      report.stats.leakedPages,
    );
    // The host never gets the leaked page back: its block stays the VM's.
    expect(host.frames.ownerOfPfn(victim)).toBe(vm.owner);
    expect(be.module.hostRead(victim)).toBeNull();
    // A leak on purpose is not a violation; the teardown ran to the end.
    expect(report.invariants.violations).toEqual([]);
    expect(be.bugged).toBe(false);
    expect(vm.dead).toBe(true);
  });

  it("every S-EPT RECLAIM fails (times covers them all): three S-EPT pages and the TDR leak", () => {
    const { pages, septPages } = reclaimOrder();
    const first = pages.findIndex((p) => septPages.has(p)) + 1;
    const last = pages.length - [...pages].reverse().findIndex((p) => septPages.has(p));
    expect(last - first + 1).toBe(3); // the S-EPT pages are reclaimed one after the other
    const { report } = run({
      inject: [
        `{ call: TDH.PHYMEM.PAGE.RECLAIM, nth: ${first}, status: LIFECYCLE_STATE_INCORRECT, times: 3 }`,
      ],
      vcpu: ACCEPT_ONE,
      host: TEARDOWN,
    });
    expect(report.stats.leakedPages).toBe(4);
    expect(report.invariants.violations).toEqual([]);
  });

  it("no private page is RECLAIMed: each left the S-EPT by REMOVE before the HKID was freed", () => {
    const { pages, septPages } = reclaimOrder();
    const { calls, be } = run({ vcpu: ACCEPT_ONE, host: TEARDOWN });
    const page = (c: Call) => Number(/page (\d+)/.exec(c.detail)![1]);
    const controlPages = new Set([be.tdr]);
    const reclaimedOther = pages.filter((p) => !septPages.has(p) && !controlPages.has(p));
    // What is RECLAIMed besides the S-EPT pages and the TDR are the TDCS pages and the vCPU's
    // TDVPR and five TDCX pages.
    expect(reclaimedOther).toHaveLength(6 + 1 + 5);
    const names = calls.map((c) => c.name);
    expect(names.lastIndexOf("TDH.MEM.PAGE.REMOVE")).toBeGreaterThan(-1);
    expect(names.lastIndexOf("TDH.MEM.PAGE.REMOVE")).toBeLessThan(
      names.indexOf("TDH.MNG.KEY.FREEID"),
    );
    expect(calls.filter((c) => c.name === "TDH.PHYMEM.PAGE.RECLAIM").map(page)).toEqual(pages);
  });
});

// A fault whose AUG got the injected BUSY returns RET_PF_RETRY, and its own call advanced the
// counter: the next AUG succeeds. The explorer held the retry back until another task changed
// something it had read, as if it would end the same way, and reported a livelock (or, where
// another task did wake it, never ran the schedules where it retried first).
describe("exploring with an injected fault", () => {
  const text = `
name: inject-retry
vm: { memory: 8MiB, gpaw: 48, vcpus: 1 }
backend: tdx
inject:
  - { call: TDH.MEM.PAGE.AUG, nth: 1, status: OPERAND_BUSY }
vcpus:
  - - { op: accept, gpa: 0x0 }
host:
  - { op: zap, gpa: 0x0, size: 4KiB }
`;

  it("a retry after the task's own injected failure may run at once: no false livelock, the space is exhausted", () => {
    const r = exploreScenario(parseScenarioText(text, "inject-retry.yaml"), { backend: tdx });
    expect(r.violation?.violations ?? []).toEqual([]);
    expect(r.exhausted).toBe(true);
  });

  it("the reduced search reaches every trace of the unreduced one (bound 2)", () => {
    const scn = parseScenarioText(text, "inject-retry.yaml");
    const opts = { backend: tdx, countTraces: true, preemptionBound: 2 };
    const reduced = exploreScenario(scn, opts);
    const full = exploreScenario(scn, { ...opts, reduction: false });
    expect(full.exhausted).toBe(true);
    expect(reduced.traces).toBe(full.traces);
    expect(reduced.traces).toBeGreaterThan(1);
  });

  // Every counted call marks R_INJECTED for its own task's wait (above). A write of it would make
  // any two counted calls conflict, of different leaves and tasks too, which only their counters
  // may: on the 2M/4K race with AUG's first call busy, 48,760 traces instead of 32,484.
  it("a counted call updates R_INJECTED commutatively: calls of different leaves do not conflict through it", () => {
    const built = buildRun(parseScenarioText(text, "inject-retry.yaml"), { backend: tdx });
    const be = built.vm.backend as TdxBackend;
    const rec = recordedStep(built.clock, () => be.module.memTrack(be.tdr));
    expect(rec.kindOf(R_INJECTED)).toBe(KIND_ADD);
  });

  it("the 2M/4K race with AUG's first call busy: the reduced search reaches the unreduced one's traces (bound 2)", () => {
    const scn = parseScenarioText(
      readFileSync(
        fileURLToPath(new URL("../../../scenarios/tdx-race-2m-4k.yaml", import.meta.url)),
        "utf8",
      ),
      "tdx-race-2m-4k.yaml",
    );
    const opts = {
      backend: tdx,
      countTraces: true,
      preemptionBound: 2,
      inject: [{ call: "TDH.MEM.PAGE.AUG", nth: 1, status: "OPERAND_BUSY", times: 1 }],
    };
    const reduced = exploreScenario(scn, opts);
    const full = exploreScenario(scn, { ...opts, reduction: false });
    expect(full.exhausted).toBe(true);
    expect(reduced.violation).toBeNull();
    expect(reduced.traces).toBe(full.traces);
  });
});

describe("bad inject input", () => {
  it("a misspelled call name is bad input, not a fault that never fires", () => {
    const scn = parseScenarioText(
      scenarioText({
        inject: ["{ call: TDH.MEM.PAGE.AUGG, nth: 1, status: OPERAND_BUSY }"],
        vcpu: ACCEPT_ONE,
      }),
      "bad-call.yaml",
    );
    expect(() => runScenario(scn, { backend: tdx })).toThrow(
      /unknown TDX call 'TDH\.MEM\.PAGE\.AUGG'/,
    );
  });

  it("an unknown status name: runScenario throws RunInputError naming it", () => {
    const scn = parseScenarioText(
      scenarioText({
        inject: ["{ call: TDH.MEM.PAGE.AUG, nth: 1, status: NOT_A_TDX_STATUS }"],
        vcpu: ACCEPT_ONE,
      }),
      "bad-inject.yaml",
    );
    expect(() => runScenario(scn, { backend: tdx })).toThrow(RunInputError);
    expect(() => runScenario(scn, { backend: tdx })).toThrow(/NOT_A_TDX_STATUS/);
  });

  it("a success is not a fault: the call would be skipped and KVM would go on as if it had run", () => {
    const scn = parseScenarioText(
      scenarioText({
        inject: ["{ call: TDH.MEM.PAGE.AUG, nth: 1, status: SUCCESS }"],
        vcpu: ACCEPT_ONE,
      }),
      "bad-inject.yaml",
    );
    expect(() => runScenario(scn, { backend: tdx })).toThrow(RunInputError);
    expect(() => runScenario(scn, { backend: tdx })).toThrow(
      /status SUCCESS cannot be injected.*inject an error status/,
    );
  });

  it("a status name with an operand is not a name either (operands are not injected)", () => {
    const scn = parseScenarioText(
      scenarioText({
        inject: ["{ call: TDH.MEM.PAGE.AUG, nth: 1, status: 'OPERAND_BUSY|RCX' }"],
        vcpu: ACCEPT_ONE,
      }),
      "bad-inject.yaml",
    );
    expect(() => runScenario(scn, { backend: tdx })).toThrow(RunInputError);
  });
});

describe("only TDX_OPERAND_BUSY is contention to KVM (tdx_operand_busy)", () => {
  it("AUG with OPERAND_BUSY_HOST_PRIORITY: no retry, KVM_BUG_ON names the call and the status", () => {
    const { report, be } = run({
      inject: ["{ call: TDH.MEM.PAGE.AUG, nth: 1, status: OPERAND_BUSY_HOST_PRIORITY }"],
      vcpu: ACCEPT_ONE,
    });
    expect(be.bugged).toBe(true);
    expect(report.backendStats.calls["TDH.MEM.PAGE.AUG"]).toBe(1);
    expect(report.stats.faultRetries).toBe(0);
    expect(report.invariants.violations.map((v) => v.check)).toEqual(["kvm-bug"]);
    expect(report.invariants.violations[0]!.message).toContain(
      "TDH.MEM.PAGE.AUG failed: 0x8000020400000000 (OPERAND_BUSY_HOST_PRIORITY)",
    );
  });

  it("SEPT.ADD with PREVIOUS_TLB_EPOCH_BUSY: a KVM bug, not -EBUSY and a retried fault", () => {
    const { report, be } = run({
      inject: ["{ call: TDH.MEM.SEPT.ADD, nth: 1, status: PREVIOUS_TLB_EPOCH_BUSY }"],
      vcpu: ACCEPT_ONE,
    });
    expect(be.bugged).toBe(true);
    expect(report.backendStats.calls["TDH.MEM.SEPT.ADD"]).toBe(1);
    expect(report.invariants.violations[0]!.message).toContain(
      "TDH.MEM.SEPT.ADD failed: 0x8000020100000000 (PREVIOUS_TLB_EPOCH_BUSY)",
    );
  });

  it("a busy REMOVE with OPERAND_BUSY_HOST_PRIORITY is not kicked and retried: one REMOVE, then KVM_BUG_ON", () => {
    const { report, be } = run({
      inject: ["{ call: TDH.MEM.PAGE.REMOVE, nth: 1, status: OPERAND_BUSY_HOST_PRIORITY }"],
      vcpu: ACCEPT_THEN_SHARE,
    });
    expect(be.bugged).toBe(true);
    expect(report.backendStats.calls["TDH.MEM.PAGE.REMOVE"]).toBe(1);
  });
});

describe("RECLAIM is never retried (__tdx_reclaim_page)", () => {
  it("a RECLAIM of an S-EPT page that returns OPERAND_BUSY is called once and the page leaks", () => {
    const clean = run({ vcpu: ACCEPT_ONE, host: ["{ op: teardown }"] });
    const reclaims = clean.report.backendStats.calls["TDH.PHYMEM.PAGE.RECLAIM"]!;
    const page = (c: Call) => Number(/page (\d+)/.exec(c.detail)![1]);
    const septPages = new Set(clean.calls.filter((c) => c.name === "TDH.MEM.SEPT.ADD").map(page));
    const nth =
      clean.calls
        .filter((c) => c.name === "TDH.PHYMEM.PAGE.RECLAIM")
        .findIndex((c) => septPages.has(page(c))) + 1;
    expect(nth).toBeGreaterThan(0);
    const { report, calls } = run({
      inject: [`{ call: TDH.PHYMEM.PAGE.RECLAIM, nth: ${nth}, status: OPERAND_BUSY }`],
      vcpu: ACCEPT_ONE,
      host: ["{ op: teardown }"],
    });
    // The same number of RECLAIMs as without the injection: the busy one is not called again.
    expect(report.backendStats.calls["TDH.PHYMEM.PAGE.RECLAIM"]).toBe(reclaims);
    expect(
      calls.filter((c) => c.name === "TDH.PHYMEM.PAGE.RECLAIM" && c.status === "OPERAND_BUSY"),
    ).toHaveLength(1);
    expect(Object.keys(report.stats.leakCauses).some((c) => c.includes("OPERAND_BUSY"))).toBe(true);
    expect(report.stats.leakedPages).toBe(2); // the S-EPT page, and the TDR that still has a child
  });
});

// KVM_TDX_TERMINATE_VM (tdx_terminate_vm, then the teardown): the HKID goes first, and the
// guest_memfd's release finds a dead VM without one, so each private page is RECLAIMed
// (tdx_sept_remove_private_spte's !is_hkid_assigned branch), never BLOCKed, TRACKed or REMOVEd.
describe("terminate: the HKID released first, private pages reclaimed", () => {
  const TWO_PRIVATE = ["{ op: accept, gpa: 0x0, count: 2 }"];

  it("no BLOCK, TRACK, REMOVE or WBINVD of a private page; each RECLAIMed once after KEY.FREEID", () => {
    const { report, calls, be } = run({ vcpu: TWO_PRIVATE, host: ["{ op: terminate }"] });
    expect(report.invariants.violations).toEqual([]);
    expect(report.stats.leakedPages).toBe(0);
    expect(report.ops.find((o) => o.op === "terminate")!.result).toEqual({ status: 0 });
    const names = calls.map((c) => c.name);
    for (const n of ["TDH.MEM.RANGE.BLOCK", "TDH.MEM.TRACK", "TDH.MEM.PAGE.REMOVE"])
      expect(names).not.toContain(n);
    const page = (c: Call) => Number(/page (\d+)/.exec(c.detail)![1]);
    const augPages = calls.filter((c) => c.name === "TDH.MEM.PAGE.AUG").map(page);
    expect(augPages).toHaveLength(2);
    const freeid = names.indexOf("TDH.MNG.KEY.FREEID");
    const reclaims = calls
      .map((c, i) => ({ c, i }))
      .filter(({ c }) => c.name === "TDH.PHYMEM.PAGE.RECLAIM");
    for (const p of augPages) {
      const at = reclaims.filter(({ c }) => page(c) === p);
      expect(at).toHaveLength(1);
      expect(at[0]!.i).toBeGreaterThan(freeid);
      expect(at[0]!.c.status).toBe("SUCCESS");
    }
    // The only WBINVD is the TDR's, under the global KeyID, at the very end.
    expect(calls.filter((c) => c.name === "TDH.PHYMEM.PAGE.WBINVD").map(page)).toEqual([be.tdr]);
  });

  it("scenarios/tdx-terminate.yaml: 48 RECLAIMs (32 private pages, 3 S-EPT pages, 13 control pages), nothing removed", () => {
    const path = fileURLToPath(new URL("../../../scenarios/tdx-terminate.yaml", import.meta.url));
    const { report } = runScenario(parseScenarioText(readFileSync(path, "utf8"), path), {
      backend: tdx,
    });
    expect(report.invariants.violations).toEqual([]);
    const calls = report.backendStats.calls;
    // Control pages: the TDR, six TDCS pages, the vCPU's TDVPR and its five TDCX pages.
    expect(calls["TDH.PHYMEM.PAGE.RECLAIM"]).toBe(32 + 3 + 1 + 6 + 1 + 5);
    expect(calls["TDH.MEM.PAGE.ADD"]! + calls["TDH.MEM.PAGE.AUG"]!).toBe(32);
    for (const n of ["TDH.MEM.RANGE.BLOCK", "TDH.MEM.TRACK", "TDH.MEM.PAGE.REMOVE"])
      expect(calls[n]).toBeUndefined();
    expect(report.stats.leakedPages).toBe(0);
  });

  it("the ordinary teardown of the same TD REMOVEs both pages before KEY.FREEID instead", () => {
    const { report, calls } = run({ vcpu: TWO_PRIVATE, host: ["{ op: teardown }"] });
    expect(report.invariants.violations).toEqual([]);
    const names = calls.map((c) => c.name);
    expect(names.filter((n) => n === "TDH.MEM.PAGE.REMOVE")).toHaveLength(2);
    expect(names.lastIndexOf("TDH.MEM.PAGE.REMOVE")).toBeLessThan(
      names.indexOf("TDH.MNG.KEY.FREEID"),
    );
  });

  it("a private page whose RECLAIM fails after terminate: leaked, and the caller's KVM_BUG_ON", () => {
    const clean = run({ vcpu: TWO_PRIVATE, host: ["{ op: terminate }"] });
    const augPage = Number(
      /page (\d+)/.exec(clean.calls.find((c) => c.name === "TDH.MEM.PAGE.AUG")!.detail)![1],
    );
    const nth =
      clean.calls
        .filter((c) => c.name === "TDH.PHYMEM.PAGE.RECLAIM")
        .findIndex((c) => c.detail === `page ${augPage}`) + 1;
    const { report } = run({
      vcpu: TWO_PRIVATE,
      host: ["{ op: terminate }"],
      inject: [`{ call: TDH.PHYMEM.PAGE.RECLAIM, nth: ${nth}, status: PAGE_METADATA_INCORRECT }`],
    });
    expect(report.stats.leakedPages).toBe(1);
    expect(report.invariants.violations.map((v) => v.message)).toEqual([
      expect.stringMatching(/remove_external_spte failed \(-5\)/),
    ]);
  });
});

// tdx_gmem_post_populate: PAGE.ADD and MR.EXTEND failures are the ioctl's -EIO (-EBUSY for
// contention) to the VMM, not KVM bugs; MR.EXTEND runs only with KVM_TDX_MEASURE_MEMORY_REGION.
describe("populate: errors are the VMM's, and measuring is a flag", () => {
  // A vCPU that never runs: an entering vCPU would finalize the TD before the populate.
  const populate = (ops: string | string[], inject: string[] = []) => {
    const text = [
      "name: populate-errors",
      "vm: { memory: 8MiB, gpaw: 48, vcpus: 1 }",
      "schedule: { mode: round-robin, interleave: false }",
      ...(inject.length > 0 ? ["inject:", ...inject.map((f) => `  - ${f}`)] : []),
      "vcpus: [[]]",
      "host:",
      ...[ops].flat().map((op) => `  - ${op}`),
    ].join("\n");
    return runScenario(parseScenarioText(text, "populate-errors.yaml"), { backend: tdx });
  };

  it("measure: false adds the pages without a single MR.EXTEND", () => {
    const measured = populate("{ op: populate, gpa: 0x0, size: 16KiB }");
    const unmeasured = populate("{ op: populate, gpa: 0x0, size: 16KiB, measure: false }");
    expect(measured.report.backendStats.calls["TDH.MR.EXTEND"]).toBe(64);
    expect(unmeasured.report.backendStats.calls["TDH.MR.EXTEND"]).toBeUndefined();
    expect(unmeasured.report.backendStats.calls["TDH.MEM.PAGE.ADD"]).toBe(4);
    expect(unmeasured.report.ops.find((o) => o.op === "populate")!.result).toEqual({ mapped: 4 });
    expect(unmeasured.report.invariants.violations).toEqual([]);
  });

  it("a PAGE.ADD that fails: the op stops there with -EIO, no KVM bug", () => {
    const { report } = populate("{ op: populate, gpa: 0x0, size: 16KiB }", [
      "{ call: TDH.MEM.PAGE.ADD, nth: 3, status: OPERAND_INVALID }",
    ]);
    expect(report.ops.find((o) => o.op === "populate")!.result).toEqual({
      mapped: 2,
      status: -5,
      detail: "TDH.MEM.PAGE.ADD of gfn 0x2 failed: 0xC000010000000000 (OPERAND_INVALID)",
    });
    expect(report.backendStats.calls["TDH.MEM.PAGE.ADD"]).toBe(3);
    expect(report.invariants.violations.map((v) => v.check)).not.toContain("kvm-bug");
  });

  it("finalize after that PAGE.ADD failed: refused, saying why (the page stays premapped)", () => {
    expect(() =>
      populate(
        ["{ op: populate, gpa: 0x0, size: 16KiB }", "{ op: finalize }"],
        ["{ call: TDH.MEM.PAGE.ADD, nth: 3, status: OPERAND_INVALID }"],
      ),
    ).toThrow(
      /finalize failed \(-22\): KVM_TDX_FINALIZE_VM: 1 premapped page\(s\) never got their TDH\.MEM\.PAGE\.ADD/,
    );
  });

  it("finalize of a TD finalized already: -EINVAL (tdx_td_finalize), the run stops saying why", () => {
    expect(() => populate(["{ op: finalize }", "{ op: finalize }"])).toThrow(
      /finalize failed \(-22\): KVM_TDX_FINALIZE_VM: the TD is finalized already/,
    );
  });

  it("populate after finalize: -EINVAL before anything is mapped (no AUG, no PAGE.ADD)", () => {
    const { report } = populate(["{ op: finalize }", "{ op: populate, gpa: 0x0, size: 16KiB }"]);
    expect(report.ops.find((o) => o.op === "populate")!.result).toEqual({
      mapped: 0,
      status: -22,
      detail: "KVM_TDX_INIT_MEM_REGION: the TD is finalized already",
    });
    expect(report.backendStats.calls["TDH.MEM.PAGE.AUG"]).toBeUndefined();
    expect(report.backendStats.calls["TDH.MEM.PAGE.ADD"]).toBeUndefined();
    expect(report.stats.faults).toBe(0);
    expect(report.invariants.violations).toEqual([]);
  });

  it("a shared GFN is KVM_PRE_FAULT_MEMORY's: -EOPNOTSUPP before the TD is finalized (pre_fault_allowed), mapped after", () => {
    const ops = [
      "{ op: convert, gpa: 0x1000, size: 4KiB, to: shared }",
      "{ op: populate, gpa: 0x1000, size: 4KiB }",
      "{ op: finalize }",
      "{ op: populate, gpa: 0x1000, size: 4KiB }",
    ];
    const { report } = populate(ops);
    const results = report.ops.filter((o) => o.op === "populate").map((o) => o.result);
    expect(results[0]).toEqual({
      mapped: 0,
      status: -95,
      detail: "KVM_PRE_FAULT_MEMORY at GFN 0x1 before the VM is finalized (pre_fault_allowed)",
    });
    expect(results[1]).toEqual({ mapped: 1 });
    expect(report.stats.faults).toBe(1);
    expect(report.invariants.violations).toEqual([]);
  });

  it("a busy PAGE.ADD is -EBUSY; a failing MR.EXTEND is -EIO after the page was added", () => {
    const busy = populate("{ op: populate, gpa: 0x0, size: 16KiB }", [
      "{ call: TDH.MEM.PAGE.ADD, nth: 1, status: OPERAND_BUSY }",
    ]);
    expect(busy.report.ops.find((o) => o.op === "populate")!.result).toEqual({
      mapped: 0,
      status: -16,
      detail: "TDH.MEM.PAGE.ADD of gfn 0x0 failed: 0x8000020000000000 (OPERAND_BUSY)",
    });
    const extend = populate("{ op: populate, gpa: 0x0, size: 16KiB }", [
      "{ call: TDH.MR.EXTEND, nth: 20, status: OPERAND_INVALID }",
    ]);
    expect(extend.report.ops.find((o) => o.op === "populate")!.result).toEqual({
      mapped: 1,
      status: -5,
      detail: "TDH.MR.EXTEND of gpa 0x1300 failed: 0xC000010000000000 (OPERAND_INVALID)",
    });
    expect(extend.report.backendStats.calls["TDH.MEM.PAGE.ADD"]).toBe(2);
    expect(extend.report.invariants.violations.map((v) => v.check)).not.toContain("kvm-bug");
  });
});

describe("finalize: a busy TDH.MR.FINALIZE", () => {
  it("fails KVM_TDX_FINALIZE_VM with -EBUSY, and the error names the SEAMCALL and its status", () => {
    expect(() =>
      run({
        inject: ["{ call: TDH.MR.FINALIZE, nth: 1, status: OPERAND_BUSY }"],
        vcpu: ACCEPT_ONE,
        host: ["{ op: finalize }"],
      }),
    ).toThrow(/finalize failed \(-16\): TDH\.MR\.FINALIZE: 0x8000020000000000 \(OPERAND_BUSY\)/);
  });
});

describe("a failed TDH.VP.ENTER (tdx_exit_handlers_fastpath, tdx_handle_exit)", () => {
  it("busy: KVM enters again and the guest sees nothing; the accept and the access go on", () => {
    const clean = run({ vcpu: [...ACCEPT_ONE, "{ op: access, gpa: 0x0, write: true }"] });
    const { report, calls } = run({
      inject: ["{ call: TDH.VP.ENTER, nth: 1, status: OPERAND_BUSY, times: 2 }"],
      vcpu: [...ACCEPT_ONE, "{ op: access, gpa: 0x0, write: true }"],
    });
    expect(report.ops.map((o) => o.result)).toEqual(clean.report.ops.map((o) => o.result));
    expect(report.ops[0]!.result).toEqual({ ok: 1, exceptions: 0 });
    expect(calls.filter((c) => c.name === "TDH.VP.ENTER").map((c) => c.status)).toEqual([
      "OPERAND_BUSY",
      "OPERAND_BUSY",
      ...clean.calls.filter((c) => c.name === "TDH.VP.ENTER").map((c) => c.status),
    ]);
    expect(report.backendStats.busy).toBe(2);
    expect(report.backendStats.errors).toEqual({});
    expect(report.invariants.violations).toEqual([]);
  });

  it("any other failure: KVM_EXIT_INTERNAL_ERROR, the VMM stops the vCPU; no exception reaches the guest", () => {
    expect(() =>
      run({
        inject: ["{ call: TDH.VP.ENTER, nth: 1, status: OPERAND_INVALID }"],
        vcpu: ACCEPT_ONE,
      }),
    ).toThrow(
      /step 2: vcpu0: KVM_RUN ended with KVM_EXIT_INTERNAL_ERROR \(TDH\.VP\.ENTER failed: 0xC000010000000000 \(OPERAND_INVALID\)\); the VMM stops the vCPU/,
    );
  });
});
