/**
 * 2 MiB private pages (`options.tdxHugePages`, the TDX huge-page series for KVM): AUG and
 * ACCEPT at 2M once the TD runs, the split of a 2M leaf before a 4K conversion or zap inside it
 * (BLOCK at 2M, TRACK, DEMOTE), the guest's accept level honored (split, then guest-inhibit),
 * and the removal of a 2M page (REMOVE at 2M and 512 WBINVDs, or one RECLAIM after terminate).
 */
import { describe, expect, it } from "vitest";
import {
  exploreScenario,
  loadScenario,
  parseScenarioText,
  runScenario,
  type RunResult,
  type TdpEvent,
} from "@tdpemu/core/testing";
import { tdx } from "./tdx-source.js";

/** A scenario on a 64 MiB TD backed by 2 MiB guest_memfd folios, huge pages on unless `huge: false`. */
function run(
  vcpu: string,
  opts: { huge?: boolean; host?: string; events?: TdpEvent[]; sequential?: boolean } = {},
): RunResult {
  const text = [
    "name: tdx-huge",
    "vm: { memory: 64MiB, vcpus: 1, hugepages: 2MiB }",
    "backend: tdx",
    `options: { tdxHugePages: ${opts.huge ?? true} }`,
    // Whole ops in turn, the vCPU's first: the host's op then finds what the guest did.
    ...(opts.sequential ? ["schedule: { mode: round-robin, interleave: false }"] : []),
    "vcpus:",
    "  - " +
      vcpu
        .trim()
        .split("\n")
        .map((l, i) => (i === 0 ? l : "    " + l))
        .join("\n"),
    ...(opts.host
      ? [
          "host:",
          ...opts.host
            .trim()
            .split("\n")
            .map((l) => "  " + l),
        ]
      : []),
  ].join("\n");
  const events = opts.events;
  return runScenario(parseScenarioText(text, "tdx-huge.yaml"), {
    backend: tdx,
    onEvent: events ? (e) => events.push(e) : undefined,
  });
}

const calls = (r: RunResult) => r.report.backendStats.calls;

describe("TDX huge pages: 2 MiB private pages", () => {
  it("4 MiB accepted at 2M on a fresh TD costs exactly 2 SEPT.ADD, 2 AUG and 2 ACCEPT", () => {
    const r = run(`
- { op: accept, gpa: 0x400000, count: 2, size: 2MiB }
- { op: access, gpa: 0x400000, count: 1024, write: true }`);
    expect(r.report.invariants.violations).toEqual([]);
    const c = calls(r);
    expect(c["TDH.MEM.SEPT.ADD"]).toBe(2);
    expect(c["TDH.MEM.PAGE.AUG"]).toBe(2);
    expect(c["TDG.MEM.PAGE.ACCEPT"]).toBe(2);
    expect(c["TD exit (ACCEPT)"]).toBe(2);
    expect(c["#VE"] ?? 0).toBe(0);
    expect(r.report.stats.pages).toMatchObject({ "4k": 0, "2m": 2 });
    expect(r.report.ops.map((o) => o.result)).toEqual([
      { ok: 2, exceptions: 0 },
      { ok: 1024, exceptions: 0, mmio: 0 },
    ]);
  });

  it("converting one 4K page inside a 2M page to shared costs 1 DEMOTE and 1 REMOVE; the other 511 stay accepted", () => {
    const events: TdpEvent[] = [];
    const r = run(
      `
- { op: accept, gpa: 0x400000, count: 1, size: 2MiB }
- { op: convert, gpa: 0x401000, size: 4KiB, to: shared }
- { op: access, gpa: 0x400000, count: 1, write: true }
- { op: access, gpa: 0x402000, count: 510, write: true }`,
      { events },
    );
    expect(r.report.invariants.violations).toEqual([]);
    const c = calls(r);
    expect(c["TDH.MEM.PAGE.DEMOTE"]).toBe(1);
    expect(c["TDH.MEM.PAGE.REMOVE"]).toBe(1);
    expect(c["TDH.MEM.PAGE.AUG"]).toBe(1);
    expect(c["#VE"] ?? 0).toBe(0);
    expect(r.report.stats.pages).toMatchObject({ "4k": 511, "2m": 0 });
    // BLOCK at 2M, TRACK, DEMOTE: the kernel's order of `tdx_sept_split_private_spte`, before the 4K removal.
    const seq = events.flatMap((e) =>
      e.type === "call" && e.name.startsWith("TDH.MEM.") ? [e.name] : [],
    );
    expect(seq.slice(seq.indexOf("TDH.MEM.RANGE.BLOCK"))).toEqual([
      "TDH.MEM.RANGE.BLOCK",
      "TDH.MEM.TRACK",
      "TDH.MEM.PAGE.DEMOTE",
      "TDH.MEM.RANGE.BLOCK",
      "TDH.MEM.TRACK",
      "TDH.MEM.PAGE.REMOVE",
    ]);
    expect(
      r.report.ops.slice(2).map((o) => (o.result as { exceptions: number }).exceptions),
    ).toEqual([0, 0]);
  });

  it("a page converted back to private is mapped 4K under the table the split left (disallowed_hugepage_adjust), never merged", () => {
    const r = run(`
- { op: accept, gpa: 0x400000, count: 1, size: 2MiB }
- { op: convert, gpa: 0x401000, size: 4KiB, to: shared }
- { op: convert, gpa: 0x401000, size: 4KiB, to: private }
- { op: access, gpa: 0x401000, count: 1, write: true }
- { op: accept, gpa: 0x401000, count: 1 }
- { op: access, gpa: 0x400000, count: 512, write: true }`);
    expect(r.report.invariants.violations).toEqual([]);
    const c = calls(r);
    // The 2M AUG, then the refault of the converted page: AUG at 4K, a #VE, the 4K ACCEPT.
    expect(c["TDH.MEM.PAGE.AUG"]).toBe(2);
    expect(c["#VE"]).toBe(1);
    expect(r.report.stats.pages).toMatchObject({ "4k": 512, "2m": 0 });
    expect(r.report.ops.map((o) => (o.result as { exceptions?: number }).exceptions ?? 0)).toEqual([
      0, 0, 0, 1, 0, 0,
    ]);
  });

  it("a 4K zap inside a 2M private page splits it first: only that page is removed", () => {
    const r = run(
      `
- { op: accept, gpa: 0x400000, count: 1, size: 2MiB }`,
      {
        host: `
- { op: zap, gpa: 0x5ff000, size: 4KiB }`,
        sequential: true,
      },
    );
    expect(r.report.invariants.violations).toEqual([]);
    expect(calls(r)["TDH.MEM.PAGE.DEMOTE"]).toBe(1);
    expect(calls(r)["TDH.MEM.PAGE.REMOVE"]).toBe(1);
    expect(r.report.stats.pages).toMatchObject({ "4k": 511, "2m": 0 });
  });

  it("recovery merges a split 2M page back with PROMOTE once its 512 pages are MAPPED again; refused (UNBLOCK) while one is PENDING", () => {
    const events: TdpEvent[] = [];
    const r = run(
      `
- { op: accept, gpa: 0x400000, count: 1, size: 2MiB }
- { op: access, gpa: 0x401000, count: 1 }
- { op: accept, gpa: 0x401000, count: 1 }
- { op: access, gpa: 0x400000, count: 512, write: true }`,
      {
        host: `
- { op: zap, gpa: 0x401000, size: 4KiB }
- { op: recover, gpa: 0x400000, size: 2MiB }
- { op: recover, gpa: 0x400000, size: 2MiB }`,
        sequential: true,
        events,
      },
    );
    expect(r.report.invariants.violations).toEqual([]);
    const c = calls(r);
    expect(c["TDH.MEM.PAGE.PROMOTE"]).toBe(2);
    expect(c["TDH.MEM.RANGE.UNBLOCK"]).toBe(1);
    // The zapped page's WBINVD, and the merged-away S-EPT page's before the host has it back.
    expect(c["TDH.PHYMEM.PAGE.WBINVD"]).toBe(2);
    const promotes = events.flatMap((e) =>
      e.type === "call" && e.name === "TDH.MEM.PAGE.PROMOTE" ? [e.status] : [],
    );
    expect(promotes).toEqual(["EPT_INVALID_PROMOTE_CONDITIONS", "SUCCESS"]);
    // The refaulted page was AUGed 4K and PENDING (a #VE) at the first recovery, accepted before the second.
    expect(c["#VE"]).toBe(1);
    expect(r.report.stats.pages).toMatchObject({ "4k": 0, "2m": 1 });
    expect(r.report.stats.tablePages).toBe(2);
    expect(
      r.report.ops
        .filter((o) => o.op === "access")
        .map((o) => (o.result as { exceptions: number }).exceptions),
    ).toEqual([1, 0]);
  });

  it("off (the default, as mainline), the same accepts map 4K: 1024 AUG", () => {
    const r = run(
      `
- { op: access, gpa: 0x400000, count: 1024, write: true }`,
      { huge: false },
    );
    expect(r.report.invariants.violations).toEqual([]);
    expect(calls(r)["TDH.MEM.PAGE.AUG"]).toBe(1024);
    expect(r.report.stats.pages).toMatchObject({ "4k": 1024, "2m": 0 });
  });

  it("a guest that touches before it accepts gets a 2M PENDING page; its 4K ACCEPT makes KVM split it (DEMOTE) and map 4K from then on", () => {
    const r = run(`
- { op: access, gpa: 0x400000, count: 1 }
- { op: accept, gpa: 0x400000, count: 2 }
- { op: access, gpa: 0x400000, count: 2, write: true }
- { op: accept, gpa: 0x600000, count: 1 }`);
    expect(r.report.invariants.violations).toEqual([]);
    const c = calls(r);
    // The access: AUG at 2M and a #VE (PENDING). The first 4K ACCEPT exits with its level:
    // split, guest-inhibit; the retry accepts the PENDING 4K page DEMOTE left.
    expect(c["#VE"]).toBe(1);
    expect(c["TDH.MEM.PAGE.DEMOTE"]).toBe(1);
    expect(c["TDG.MEM.PAGE.ACCEPT"]).toBe(3);
    // The next 2 MiB's 4K ACCEPT: split of nothing, inhibit, AUG at 4K.
    expect(c["TDH.MEM.PAGE.AUG"]).toBe(2);
    expect(r.report.stats.pages).toMatchObject({ "4k": 513, "2m": 0 });
    expect(r.report.ops.map((o) => (o.result as { exceptions: number }).exceptions)).toEqual([
      1, 0, 0, 0,
    ]);
  });

  it("the guest-inhibit bit a 4K accept set holds for shared mappings too (a bit of disallow_lpage)", () => {
    const inhibited = run(`
- { op: accept, gpa: 0x400000, count: 1 }
- { op: convert, gpa: 0x400000, size: 2MiB, to: shared }
- { op: access, gpa: 0x400000, count: 512, write: true, shared: true }`);
    expect(inhibited.report.invariants.violations).toEqual([]);
    expect(inhibited.report.stats.pages).toMatchObject({ "4k": 512, "2m": 0 });
    const free = run(`
- { op: convert, gpa: 0x400000, size: 2MiB, to: shared }
- { op: access, gpa: 0x400000, count: 512, write: true, shared: true }`);
    expect(free.report.stats.pages).toMatchObject({ "4k": 0, "2m": 1 });
  });

  it("a 2M ACCEPT over 4K mappings is refused (PAGE_SIZE_MISMATCH): the guest gets the error", () => {
    const events: TdpEvent[] = [];
    const r = run(
      `
- { op: accept, gpa: 0x400000, count: 1 }
- { op: accept, gpa: 0x400000, count: 1, size: 2MiB }`,
      { events },
    );
    expect(r.report.invariants.violations).toEqual([]);
    expect(r.report.ops[1]!.result).toEqual({ ok: 0, exceptions: 1 });
    const last = events.filter((e) => e.type === "call" && e.name === "TDG.MEM.PAGE.ACCEPT").pop();
    expect(last).toMatchObject({ status: "PAGE_SIZE_MISMATCH" });
  });

  it("pages added before finalize are 4K even with huge pages on (no 2M PAGE.ADD)", () => {
    const r = run(
      `
- { op: access, gpa: 0x400000, count: 1 }`,
      {
        host: `
- { op: populate, gpa: 0x200000, size: 2MiB }
- { op: finalize }`,
      },
    );
    expect(r.report.invariants.violations).toEqual([]);
    expect(calls(r)["TDH.MEM.PAGE.ADD"]).toBe(512);
    expect(r.report.stats.pages).toMatchObject({ "4k": 512, "2m": 1 });
  });

  it("teardown removes a 2M page with one BLOCK, TRACK and REMOVE at 2M and 512 WBINVDs; terminate with one RECLAIM", () => {
    const torn = run(
      `
- { op: accept, gpa: 0x400000, count: 1, size: 2MiB }`,
      {
        host: `
- { op: teardown }`,
        sequential: true,
      },
    );
    expect(torn.report.invariants.violations).toEqual([]);
    expect(calls(torn)).toMatchObject({
      "TDH.MEM.RANGE.BLOCK": 1,
      "TDH.MEM.PAGE.REMOVE": 1,
      "TDH.PHYMEM.PAGE.WBINVD": 512 + 1,
    });
    const terminated = run(
      `
- { op: accept, gpa: 0x400000, count: 1, size: 2MiB }`,
      {
        host: `
- { op: terminate }`,
        sequential: true,
      },
    );
    expect(terminated.report.invariants.violations).toEqual([]);
    expect(calls(terminated)["TDH.MEM.RANGE.BLOCK"]).toBeUndefined();
    expect(calls(terminated)["TDH.MEM.PAGE.REMOVE"]).toBeUndefined();
    expect(terminated.report.stats.leakedPages).toBe(0);
  });
});

describe("TDX huge pages: the 2M/4K race with a 2 MiB leaf (scenarios/tdx-race-2m-leaf.yaml)", () => {
  const scn = loadScenario("scenarios/tdx-race-2m-leaf.yaml");

  it("atomic-then-hook: the explorer finds a SEAMCALL below a table the S-EPT does not have yet (EPT_WALK_FAILED)", () => {
    const r = exploreScenario(scn, { backend: tdx, mmu: { strategy: "atomic-then-hook" } });
    expect(r.violation).not.toBeNull();
    expect(r.violation!.violations[0]!.message).toMatch(
      /SEAMCALL TDH\.MEM\.(PAGE\.AUG|SEPT\.ADD) failed: .*EPT_WALK_FAILED/,
    );
  });

  it("freeze: every interleaving ends with no violation, and both orders of the race are among them", () => {
    const outcomes = new Set<string>();
    const r = exploreScenario(scn, { backend: tdx });
    expect(r.violation).toBeNull();
    expect(r.exhausted).toBe(true);
    // The orders a user should see among random schedules: vCPU 1's 2 MiB page split for vCPU 2
    // (a DEMOTE), and vCPU 1's 2 MiB ACCEPT refused (PAGE_SIZE_MISMATCH) because vCPU 2's 4K
    // accept came first and KVM mapped vCPU 1's fault 4K.
    for (let seed = 1; seed <= 400 && outcomes.size < 2; seed++) {
      const run = runScenario(
        { ...scn, schedule: { mode: "random", seed } },
        { backend: tdx, interleave: true },
      );
      expect(run.report.invariants.violations).toEqual([]);
      if ((run.report.backendStats.calls["TDH.MEM.PAGE.DEMOTE"] ?? 0) > 0) outcomes.add("split");
      else if ((run.report.ops[0]!.result as { exceptions: number }).exceptions === 1)
        outcomes.add("4K first");
    }
    expect([...outcomes].sort()).toEqual(["4K first", "split"]);
  });
});

describe("TDX huge pages: every change recorded", () => {
  it("the footprint audit finds the split, the honored accept level and PROMOTE record all they change", () => {
    const scn = parseScenarioText(
      [
        "name: tdx-huge-audit",
        "vm: { memory: 4MiB, vcpus: 2, hugepages: 2MiB }",
        "backend: tdx",
        "options: { tdxHugePages: true }",
        "vcpus:",
        "  - - { op: accept, gpa: 0x200000, size: 2MiB }",
        "    - { op: access, gpa: 0x201000 }",
        "    - { op: accept, gpa: 0x201000 }",
        "  - - { op: access, gpa: 0x0 }",
        "    - { op: accept, gpa: 0x0, count: 2 }",
        "host:",
        "  - { op: zap, gpa: 0x201000, size: 4KiB }",
        "  - { op: recover, gpa: 0x200000, size: 2MiB }",
        "  - { op: convert, gpa: 0x3ff000, size: 4KiB, to: shared }",
      ].join("\n"),
      "tdx-huge-audit.yaml",
    );
    const r = exploreScenario(scn, {
      backend: tdx,
      audit: true,
      preemptionBound: 1,
      maxSchedules: 40,
    });
    expect(r.violation?.violations ?? []).toEqual([]);
    expect(r.schedules).toBe(40);
  }, 300_000);
});
