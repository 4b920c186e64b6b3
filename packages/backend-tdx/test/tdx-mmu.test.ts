/**
 * TDX end to end: the mirror root, KVM's hooks and the TDX module model, against the facts of
 * docs/tdx-module.md (SEAMCALL counts, states, the freeze protocol and the 2M/4K race).
 */
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import {
  ACCESS_FAULT,
  ACCESS_OK,
  ExecCtx,
  Host,
  Vm,
  checkInvariants,
  exploreScenario,
  guestAcceptPage,
  guestAccessPage,
  hostOps,
  loadScenario,
  parseScenarioText,
  runScenario,
  runToEnd,
  type TdpEvent,
} from "@tdpemu/core/testing";
import {
  PT_NDA,
  PT_REG,
  SEPT_BLOCKED,
  SEPT_FREE,
  SEPT_MAPPED,
  SEPT_PENDING,
  SeamModule,
  TdxBackend,
  pamtFrames,
  tdmrFramesFor,
} from "../src/testing.js";
import { newTdx, tdx } from "./tdx-source.js";

const MiB = 2 ** 20;

function tdVm(opts: { memory?: number; gpaw?: 48 | 52; vcpus?: number } = {}) {
  const memory = opts.memory ?? 16 * MiB;
  const host = new Host({ memory: 2 * memory + 64 * MiB });
  const be = newTdx(host);
  const vm = new Vm(
    host,
    { memory, gpaw: opts.gpaw ?? 48, vcpus: opts.vcpus ?? 1, hostPageLevel: 1 },
    be,
  );
  return { vm, be, host };
}

function septState(be: TdxBackend, gfn: number): number {
  for (const [g, level, state] of be.module.septEntries(be.td))
    if (level === 0 && g === gfn) return state;
  return SEPT_FREE;
}

describe("TDX: private faults through the mirror and the S-EPT", () => {
  it("512 private 4 KiB faults over GPA 0-2 MiB on a fresh runnable TD cost 3 SEPT.ADD and 512 AUG", () => {
    const { vm, be } = tdVm();
    for (let p = 0; p < 512; p++)
      expect(runToEnd(guestAcceptPage(vm, vm.vcpus[0]!, p * 4096))).toBe("ok");
    const calls = be.stats().calls;
    expect(calls["TDH.MEM.SEPT.ADD"]).toBe(3);
    expect(calls["TDH.MEM.PAGE.AUG"]).toBe(512);
    expect(calls["TDH.MR.FINALIZE"]).toBe(1);
    expect(vm.mmu.stats.pages[1]).toBe(512);
    expect(vm.mmu.stats.tablePages).toBe(3);
    expect(checkInvariants(vm, { final: true }).violations).toEqual([]);
    // Every accepted page is MAPPED in the S-EPT, a REG page of the TD in the PAMT.
    const pfn = vm.memslots.find(7)!.gmem!.peekPfn(7);
    expect(septState(be, 7)).toBe(SEPT_MAPPED);
    expect(be.module.pamt.type(pfn)).toBe(PT_REG);
    expect(be.module.pamt.owner(pfn)).toBe(be.tdr);
  });

  it("a 5-level TD (GPAW 52) adds 4 S-EPT tables for its first private page", () => {
    const { vm, be } = tdVm({ gpaw: 52 });
    runToEnd(guestAcceptPage(vm, vm.vcpus[0]!, 0));
    expect(be.stats().calls["TDH.MEM.SEPT.ADD"]).toBe(4);
    expect(checkInvariants(vm, { final: true }).violations).toEqual([]);
  });

  it("a private access to a page not yet accepted gets AUG'd, then #VE (PENDING), counted", () => {
    const { vm, be } = tdVm();
    expect(runToEnd(guestAccessPage(vm, vm.vcpus[0]!, 0x3000, false, false))).toBe("exception");
    expect(septState(be, 3)).toBe(SEPT_PENDING);
    expect(be.veCount[0]).toBe(1);
    expect(be.stats().calls["#VE"]).toBe(1);
    expect(runToEnd(guestAcceptPage(vm, vm.vcpus[0]!, 0x3000))).toBe("ok");
    expect(runToEnd(guestAccessPage(vm, vm.vcpus[0]!, 0x3000, true, false))).toBe("ok");
    // A second ACCEPT is answered PAGE_ALREADY_ACCEPTED, a warning, not an error.
    expect(runToEnd(guestAcceptPage(vm, vm.vcpus[0]!, 0x3000))).toBe("ok");
    expect(be.stats().errors).toEqual({});
  });

  it("converting a private page to shared: BLOCK, TRACK, REMOVE, WBINVD; the page leaves the TD", () => {
    const { vm, be } = tdVm();
    runToEnd(guestAcceptPage(vm, vm.vcpus[0]!, 0x5000));
    const pfn = vm.memslots.find(5)!.gmem!.peekPfn(5);
    runToEnd(hostOps.convertMemory(vm, vm.hostCtx, 5, 6, false));
    const calls = be.stats().calls;
    for (const leaf of [
      "TDH.MEM.RANGE.BLOCK",
      "TDH.MEM.TRACK",
      "TDH.MEM.PAGE.REMOVE",
      "TDH.PHYMEM.PAGE.WBINVD",
    ])
      expect(calls[leaf], leaf).toBe(1);
    expect(septState(be, 5)).toBe(SEPT_FREE);
    expect(be.module.pamt.type(pfn)).toBe(PT_NDA);
    // The shared alias now works through the direct root; the mirror and the S-EPT still agree.
    expect(runToEnd(guestAccessPage(vm, vm.vcpus[0]!, 0x5000, true, true))).toBe("ok");
    expect(checkInvariants(vm, { final: true }).violations).toEqual([]);
  });

  it("populate before finalize: premap, PAGE.ADD and MR.EXTEND; finalize; then the guest runs", () => {
    const scn = parseScenarioText(
      `
name: populate
vm: { memory: 16MiB }
backend: tdx
schedule: { mode: round-robin, interleave: false }
host:
  - { op: populate, gpa: 0x0, size: 16KiB }
  - { op: finalize }
`,
      "populate.yaml",
    );
    const r = runScenario(scn, { backend: tdx });
    expect(r.report.invariants.violations).toEqual([]);
    const calls = r.report.backendStats.calls;
    expect(calls["TDH.MEM.PAGE.ADD"]).toBe(4);
    expect(calls["TDH.MR.EXTEND"]).toBe(64);
    expect(calls["TDH.MEM.PAGE.AUG"]).toBeUndefined();
    expect(calls["TDH.MR.FINALIZE"]).toBe(1);
    expect((r.vm.backend as TdxBackend).nrPremapped).toBe(0);
  });

  it("teardown: private pages leave the S-EPT while the TD has its key; then the HKID is freed and the S-EPT and control pages are reclaimed; the frames go back", () => {
    const { vm, be, host } = tdVm();
    for (let p = 0; p < 600; p++) runToEnd(guestAcceptPage(vm, vm.vcpus[0]!, p * 4096));
    const order: string[] = [];
    vm.events.subscribe((e) => {
      if (e.type === "call" && /REMOVE|KEY\.FREEID|RECLAIM/.test(e.name)) order.push(e.name);
    });
    runToEnd(hostOps.teardown(vm, vm.hostCtx));
    const calls = be.stats().calls;
    expect(calls["TDH.MNG.KEY.FREEID"]).toBe(1);
    // The guest_memfd's release: every private page BLOCKed, REMOVEd and written back, keyed.
    expect(calls["TDH.MEM.RANGE.BLOCK"]).toBe(600);
    expect(calls["TDH.MEM.PAGE.REMOVE"]).toBe(600);
    expect(calls["TDH.PHYMEM.PAGE.WBINVD"]).toBe(600 + 1); // and the TDR's, under the global KeyID
    expect(order.lastIndexOf("TDH.MEM.PAGE.REMOVE")).toBeLessThan(
      order.indexOf("TDH.MNG.KEY.FREEID"),
    );
    expect(order.indexOf("TDH.PHYMEM.PAGE.RECLAIM")).toBeGreaterThan(
      order.indexOf("TDH.MNG.KEY.FREEID"),
    );
    // 4 S-EPT pages + 6 TDCS + 1 TDVPR and its 5 TDCX + the TDR.
    expect(calls["TDH.PHYMEM.PAGE.RECLAIM"]).toBe(4 + 6 + 1 + 5 + 1);
    expect(vm.mmu.stats.leakedPages).toBe(0);
    expect(be.module.tds.has(be.tdr)).toBe(false);
    // The table pool's block, and the blocks the host keeps for the TDX module's PAMT.
    const pamt = pamtFrames(tdmrFramesFor(host.frames.totalFrames)).reduce((a, b) => a + b);
    expect(host.frames.usedFrames).toBe(512 + Math.ceil(pamt / 512) * 512);
  });
});

// The premap count is checked after every explorer step: between a premapped leaf's freeze
// and its publish, KVM has counted it (`set_external_spte` ran) while the mirror shows no leaf.
describe("TDX: the TD's whole life explored", () => {
  for (const name of ["tdx-populate-teardown", "tdx-terminate"]) {
    it(`scenarios/${name}.yaml: exhausted, no violation (the premap count allows a leaf being set)`, () => {
      const r = exploreScenario(loadScenario(`scenarios/${name}.yaml`), { backend: tdx });
      expect(r.violation).toBeNull();
      expect(r.exhausted).toBe(true);
    });
  }
});

describe("TDX: the 2M/4K race and the freeze protocol", () => {
  const scn = loadScenario("scenarios/tdx-race-2m-4k.yaml");

  it("atomic-then-hook: the explorer finds the AUG that fails with EPT_WALK_FAILED, and replay reproduces it", () => {
    const r = exploreScenario(scn, { backend: tdx, mmu: { strategy: "atomic-then-hook" } });
    expect(r.violation).not.toBeNull();
    const v = r.violation!.violations[0]!;
    expect(v.check).toBe("kvm-bug");
    expect(v.message).toMatch(
      /TDH\.MEM\.PAGE\.AUG failed: 0xC0000B0000000001 \(EPT_WALK_FAILED\|RCX\)/,
    );
    const rep = runScenario(scn, {
      backend: tdx,
      replay: r.violation!.choices,
      interleave: true,
      mmu: { strategy: "atomic-then-hook" },
    });
    expect(rep.report.invariants.violations[0]!.message).toBe(v.message);
  });

  it("freeze: no interleaving fails (exhausted within a preemption bound of 2)", () => {
    const r = exploreScenario(scn, { backend: tdx, preemptionBound: 2 });
    expect(r.violation).toBeNull();
    expect(r.exhausted).toBe(true);
    expect(r.schedules).toBeGreaterThan(100);
  });

  it("freeze: a vCPU that meets the FROZEN entry retries its fault", () => {
    let retried = false;
    for (let seed = 1; seed <= 40 && !retried; seed++) {
      const s = { ...scn, schedule: { mode: "random" as const, seed } };
      const r = runScenario(s, { backend: tdx, interleave: true });
      expect(r.report.invariants.violations).toEqual([]);
      if (r.report.stats.faultRetries > 0) retried = true;
    }
    expect(retried).toBe(true);
  });
});

describe("TDX: vCPU entry (TDH.VP.ENTER)", () => {
  it("KVM enters a vCPU only when it is out of guest mode: N faulting accesses cost N + 1 VP.ENTER, not one per attempt", () => {
    const { vm, be } = tdVm();
    const v = vm.vcpus[0]!;
    // Each access: an EPT violation (TD exit), AUG, VP.ENTER again, then #VE on the PENDING page.
    // The #VE is delivered inside the guest, so the next access needs no entry of its own.
    for (let p = 0; p < 8; p++)
      expect(runToEnd(guestAccessPage(vm, v, p * 4096, true, false))).toBe("exception");
    expect(be.stats().calls["TDH.VP.ENTER"]).toBe(1 + 8);
    expect(be.stats().calls["#VE"]).toBe(8);
    expect(be.td.vcpus.get([...be.td.vcpus.keys()][0]!)!.inGuest).toBe(true);
    // A remote TLB flush kicks the vCPU out: its next access enters again, once.
    runToEnd(hostOps.zapGfnRange(vm, vm.hostCtx, 0, 1));
    expect(be.td.vcpus.get([...be.td.vcpus.keys()][0]!)!.inGuest).toBe(false);
    expect(runToEnd(guestAccessPage(vm, v, 4 * 4096, true, false))).toBe("exception");
    expect(runToEnd(guestAccessPage(vm, v, 5 * 4096, true, false))).toBe("exception");
    expect(be.stats().calls["TDH.VP.ENTER"]).toBe(1 + 8 + 1);
    expect(checkInvariants(vm, { final: false }).violations).toEqual([]);
  });
});

describe("TDX: KVM_TDX_INIT_VCPU", () => {
  it("each vCPU is TDH.VP.CREATE, five TDH.VP.ADDCX (its TDCX pages), TDH.VP.INIT on its CPU and three TDH.VP.WR (posted interrupts), in that order", () => {
    const events: TdpEvent[] = [];
    const r = runScenario(
      parseScenarioText(
        "name: v\nvm: { memory: 16MiB, vcpus: 2 }\nbackend: tdx\nvcpus: [[], []]",
        "v.yaml",
      ),
      { backend: tdx, onEvent: (e) => events.push(e) },
    );
    expect(r.report.backendStats.calls).toMatchObject({
      "TDH.VP.CREATE": 2,
      "TDH.VP.ADDCX": 10,
      "TDH.VP.INIT": 2,
      "TDH.VP.WR": 6,
      "TDH.MNG.RD": 2,
    });
    const vp = events.flatMap((e) =>
      e.type === "call" && e.name.startsWith("TDH.VP.") ? [`${e.name} ${e.detail}`] : [],
    );
    const one = [
      "TDH.VP.CREATE",
      ...Array<string>(5).fill("TDH.VP.ADDCX"),
      "TDH.VP.INIT",
      "TDH.VP.WR",
      "TDH.VP.WR",
      "TDH.VP.WR",
    ];
    expect(vp.map((x) => x.split(" ")[0])).toEqual([...one, ...one]);
    expect(vp[6]).toMatch(/lp 0$/);
    expect(vp[16]).toMatch(/lp 1$/);
    // POSTED_INTR_NV, POSTED_INTR_DESC_ADDR, then PIN_BASED_VM_EXEC_CONTROL: the order the module needs.
    expect(vp.slice(7, 10).map((x) => x.replace(/^.* field /, ""))).toEqual([
      "0x2",
      "0x2016",
      "0x4000",
    ]);
  });
});

describe("TDX: tdx_handle_ept_violation", () => {
  const scn = loadScenario("scenarios/tdx-race-2m-4k.yaml");

  it("a private fault that returns RET_PF_RETRY is retried in KVM, with no VP.ENTER and no second ACCEPT in between", () => {
    // Every interleaving of the 2M/4K race in which a vCPU meets the other's FROZEN entry.
    const seen = { retried: 0 };
    for (let seed = 1; seed <= 40; seed++) {
      const s = { ...scn, schedule: { mode: "random" as const, seed } };
      const events: TdpEvent[] = [];
      const r = runScenario(s, { backend: tdx, interleave: true, onEvent: (e) => events.push(e) });
      expect(r.report.invariants.violations).toEqual([]);
      if (r.report.stats.faultRetries === 0) continue;
      seen.retried++;
      // Two vCPUs, one ACCEPT each: each enters once, exits once (its first ACCEPT), and is
      // entered again once, where its ACCEPT runs to the end.
      expect(r.report.backendStats.calls["TDH.VP.ENTER"]).toBe(4);
      expect(r.report.backendStats.calls["TD exit (ACCEPT)"]).toBe(2);
      expect(r.report.backendStats.calls["TDG.MEM.PAGE.ACCEPT"]).toBe(2);
      // After a fault that ended in "retry", that vCPU's next event is its next fault.
      const vcpuEvents = (id: number) =>
        events.filter(
          (e) =>
            (e.type === "fault" && e.vcpu === id) ||
            (e.type === "call" && (e.name === "TDH.VP.ENTER" || e.name === "TDG.MEM.PAGE.ACCEPT")),
        );
      for (const id of [0, 1]) {
        const ev = vcpuEvents(id);
        ev.forEach((e, i) => {
          if (e.type === "fault" && e.result === "retry")
            expect(ev.slice(i + 1).find((x) => x.type === "fault" && x.vcpu === id)).toBeDefined();
        });
      }
    }
    expect(seen.retried).toBeGreaterThan(0);
  });

  it("alone, a busy AUG is retried in KVM: one more AUG, but no more VP.ENTER or ACCEPT than without it", () => {
    const clean = tdVm();
    expect(runToEnd(guestAcceptPage(clean.vm, clean.vm.vcpus[0]!, 0x1000))).toBe("ok");
    const { vm, be } = tdVm();
    be.injectFault(vm, { call: "TDH.MEM.PAGE.AUG", nth: 1, status: "OPERAND_BUSY", times: 1 });
    expect(runToEnd(guestAcceptPage(vm, vm.vcpus[0]!, 0x1000))).toBe("ok");
    const calls = be.stats().calls;
    expect(calls["TDH.MEM.PAGE.AUG"]).toBe(2);
    expect(vm.mmu.stats.faultRetries).toBe(1);
    expect(calls["TDH.VP.ENTER"]).toBe(clean.be.stats().calls["TDH.VP.ENTER"]);
    expect(calls["TDG.MEM.PAGE.ACCEPT"]).toBe(clean.be.stats().calls["TDG.MEM.PAGE.ACCEPT"]);
  });

  it("a private read is handled as a write fault: the exit qualification of an S-EPT violation is ignored", () => {
    const { vm } = tdVm();
    const faults: TdpEvent[] = [];
    vm.events.subscribe((e) => {
      if (e.type === "fault") faults.push(e);
    });
    expect(runToEnd(guestAccessPage(vm, vm.vcpus[0]!, 0x3000, false, false))).toBe("exception");
    expect(faults).toHaveLength(1);
    expect(faults[0]).toMatchObject({ type: "fault", private: true, write: true, result: "fixed" });
  });
});

describe("TDX: releasing the HKID (tdx_mmu_release_hkid) and freeing the TD (tdx_vm_free)", () => {
  it("KEY.FREEID needs TDH.PHYMEM.CACHE.WB after VPFLUSHDONE; KVM issues it once (one package), then the TDR's WBINVD after its RECLAIM", () => {
    const { vm, be, host } = tdVm();
    expect(runToEnd(guestAcceptPage(vm, vm.vcpus[0]!, 0x1000))).toBe("ok");
    const calls: string[] = [];
    vm.events.subscribe((e) => {
      if (e.type === "call") calls.push(`${e.name} ${e.detail} ${e.status}`);
    });
    runToEnd(hostOps.teardown(vm, vm.hostCtx));
    const names = calls.map((c) => c.split(" ")[0]);
    const at = (name: string) => names.indexOf(name);
    expect(at("TDH.MNG.VPFLUSHDONE")).toBeLessThan(at("TDH.PHYMEM.CACHE.WB"));
    expect(at("TDH.PHYMEM.CACHE.WB")).toBeLessThan(at("TDH.MNG.KEY.FREEID"));
    expect(names.filter((n) => n === "TDH.PHYMEM.CACHE.WB")).toHaveLength(1);
    expect(calls[at("TDH.MNG.KEY.FREEID")]).toMatch(/SUCCESS$/);
    // The TDR is reclaimed last and its cache lines written back under the global KeyID (1; TDs get 2 on).
    expect(be.hkid).toBeGreaterThan(1);
    const last = calls.slice(-2);
    expect(last).toEqual([
      `TDH.PHYMEM.PAGE.RECLAIM page ${be.tdr} SUCCESS`,
      `TDH.PHYMEM.PAGE.WBINVD page ${be.tdr} hkid 1 SUCCESS`,
    ]);
    expect(vm.mmu.stats.leakedPages).toBe(0);
    expect(host.frames.ownerOfPfn(be.tdr)).not.toBe(vm.owner);
  });

  it("the module: KEY.FREEID before the write-back is WBCACHE_NOT_COMPLETE; a CACHE.WB with no HKID waiting only warns", () => {
    const m = new SeamModule(4096);
    m.mngCreate(0, 2);
    m.mngKeyConfig(0);
    m.mngAddcx(0, 1);
    m.mngInit(0, { gpaw: 48, septVeDisable: false });
    expect(m.phymemCacheWb(0).status).toBe(0x0000082100000000n); // NO_HKID_READY_TO_WBCACHE
    expect(m.mngVpflushdone(0).status).toBe(0n);
    expect(m.mngKeyFreeid(0).status).toBe(0x8000081700000000n); // WBCACHE_NOT_COMPLETE
    expect(m.phymemCacheWb(0).status).toBe(0n);
    expect(m.mngKeyFreeid(0).status).toBe(0n);
  });
});

describe("TDX: a GFN no memslot covers (kvm_mmu_faultin_pfn, kvm_handle_noslot_fault)", () => {
  it("a private access exits to userspace (not emulated MMIO), and a VMM with nothing to convert stops the vCPU", () => {
    const { vm } = tdVm();
    expect(runToEnd(guestAcceptPage(vm, vm.vcpus[0]!, 0x1000))).toBe("ok");
    runToEnd(hostOps.deleteMemslot(vm, vm.hostCtx, 0));
    const exits = vm.mmu.stats.memoryFaultExits;
    expect(() => runToEnd(guestAccessPage(vm, vm.vcpus[0]!, 0x1000, true, false))).toThrow(
      /KVM_EXIT_MEMORY_FAULT for a private access to gfn 0x1, which no memslot covers/,
    );
    expect(vm.mmu.stats.memoryFaultExits).toBe(exits + 1);
    expect(vm.mmu.stats.mmioExits).toBe(0);
  });

  it("a shared access to it is emulated MMIO, after the attributes are checked first", () => {
    const { vm } = tdVm();
    runToEnd(hostOps.deleteMemslot(vm, vm.hostCtx, 0));
    // GFN 0x2 is private by the attributes; a shared access is a mismatch first: the VMM makes it
    // shared (KVM_SET_MEMORY_ATTRIBUTES needs no memslot), then the access is MMIO.
    expect(runToEnd(guestAccessPage(vm, vm.vcpus[0]!, 0x2000, true, true))).toBe("mmio");
    expect(vm.mmu.stats.memoryFaultExits).toBe(1);
    expect(vm.mmu.stats.mmioExits).toBe(1);
    expect(vm.attributes.isPrivate(2)).toBe(false);
  });
});

describe("TDX: memory type of a TD's leaves", () => {
  it("WB without IPAT on the mirror and on the shared EPT (KVM_X86_QUIRK_IGNORE_GUEST_PAT is off for TDs)", () => {
    const { vm } = tdVm();
    const sptes: { mirror: boolean; newLo: number }[] = [];
    vm.events.subscribe((e) => {
      if (e.type === "spte" && e.level === 1 && (e.newLo & 7) !== 0)
        sptes.push({ mirror: e.mirror, newLo: e.newLo });
    });
    expect(runToEnd(guestAcceptPage(vm, vm.vcpus[0]!, 0x1000))).toBe("ok");
    expect(runToEnd(guestAccessPage(vm, vm.vcpus[0]!, 0x3000, true, true))).toBe("ok");
    expect(sptes.some((x) => x.mirror)).toBe(true);
    expect(sptes.some((x) => !x.mirror)).toBe(true);
    for (const x of sptes) expect(x.newLo & 0x78).toBe(0x30); // memtype WB (6 << 3), bit 6 (IPAT) clear
  });
});

describe("TDX: the root list (kvm_tdp_mmu_alloc_root)", () => {
  it("KVM allocates the mirror root first and adds each new root at the head: the direct root comes first", () => {
    const { vm } = tdVm();
    runToEnd(vm.reloadRoots(vm.vcpus[0]!, false));
    expect(vm.mmu.roots.map((r) => r.mirror)).toEqual([false, true]);
    expect(vm.mmu.roots[1]).toBe(vm.vcpus[0]!.mirrorRoot);
  });
});

describe("TDX: flush ranges", () => {
  it("a conversion flushes the whole VM (kvm_handle_gfn_range), a zap only its range (kvm_zap_gfn_range)", () => {
    const { vm } = tdVm();
    for (const gpa of [0x1000, 0x2000])
      expect(runToEnd(guestAcceptPage(vm, vm.vcpus[0]!, gpa))).toBe("ok");
    const flushes: { reason: string; gfn: number; level: number }[] = [];
    vm.events.subscribe((e) => {
      if (e.type === "flush") flushes.push({ reason: e.reason, gfn: e.gfn, level: e.level });
    });
    runToEnd(hostOps.convertMemory(vm, vm.hostCtx, 1, 2, false));
    runToEnd(hostOps.zapGfnRange(vm, vm.hostCtx, 2, 3));
    expect(flushes).toEqual([
      { reason: "convert", gfn: 0, level: 0 },
      { reason: "zap", gfn: 2, level: 1 },
    ]);
  });
});

describe("TDX: remove_external_spte takes one atomic point per SEAMCALL", () => {
  const REMOVAL = [
    "TDH.MEM.RANGE.BLOCK",
    "TDH.MEM.TRACK",
    "TDH.MEM.PAGE.REMOVE",
    "TDH.PHYMEM.PAGE.WBINVD",
  ];

  it("BLOCK, TRACK with the kick, REMOVE, WBINVD, with the write lock held; between them vCPUs run and see the page blocked", () => {
    const { vm, be } = tdVm({ vcpus: 2 });
    expect(runToEnd(guestAcceptPage(vm, vm.vcpus[0]!, 0x5000))).toBe("ok");
    expect(runToEnd(guestAcceptPage(vm, vm.vcpus[1]!, 0x6000))).toBe("ok");
    const ctx = new ExecCtx("host", true);
    const op = hostOps.convertMemory(vm, ctx, 5, 6, false);
    const steps: string[][] = [];
    let last = { ...be.stats().calls };
    let epochAtBlock = -1;
    for (let r = op.next(); !r.done; r = op.next()) {
      const now = { ...be.stats().calls };
      const made = REMOVAL.filter((n) => (now[n] ?? 0) !== (last[n] ?? 0));
      if (made.length > 0) steps.push(made);
      expect(checkInvariants(vm, { final: false }).violations).toEqual([]);
      if (made.includes("TDH.MEM.RANGE.BLOCK")) {
        expect(ctx.lockMode).toBe(2);
        expect(septState(be, 5)).toBe(SEPT_BLOCKED);
        epochAtBlock = be.td.epoch;
        // Between BLOCK and TRACK: vCPU 0's access to the blocked page is an EPT violation (a TD
        // exit); vCPU 1 goes on in the epoch the page was blocked in.
        expect(be.checkGuestAccess(vm, 0, 0x5000, false, true)).toBe(ACCESS_FAULT);
        expect(be.checkGuestAccess(vm, 1, 0x6000, false, true)).toBe(ACCESS_OK);
      }
      if (made.includes("TDH.MEM.TRACK")) {
        expect(be.td.epoch).toBe(epochAtBlock + 1);
        // The kick: no vCPU is left in the old epoch, so REMOVE finds the tracking done.
        expect(be.td.refcountOf(epochAtBlock & 1)).toBe(0);
        expect(septState(be, 5)).toBe(SEPT_BLOCKED);
      }
      last = now;
    }
    expect(steps).toEqual(REMOVAL.map((n) => [n]));
    expect(septState(be, 5)).toBe(SEPT_FREE);
    expect(checkInvariants(vm, { final: true }).violations).toEqual([]);
  });
  it("the explorer runs vCPUs between BLOCK and REMOVE: an access meets the blocked page, and no interleaving fails (bound 2)", () => {
    let sawBlocked = 0;
    const r = exploreScenario(loadScenario(resolve("scenarios/tdx-zap-race.yaml")), {
      preemptionBound: 2,
      backend: {
        ...tdx,
        create: (host) => {
          const be = newTdx(host);
          const check = be.checkGuestAccess.bind(be);
          be.checkGuestAccess = (vm, vcpu, gpa, write, priv) => {
            // The test looks on from inside the vCPU's step, as an observer: it decides nothing.
            const blocked = vm.clock.observe(() => septState(be, 5) === SEPT_BLOCKED);
            if (gpa === 0x5000 && priv && blocked) sawBlocked++;
            return check(vm, vcpu, gpa, write, priv);
          };
          return be;
        },
      },
    });
    expect(r.violation).toBeNull();
    expect(r.exhausted).toBe(true);
    expect(sawBlocked).toBeGreaterThan(0);
  });
  it("KVM_BUG_ON: a removal after the HKID was released, a table freed while it is assigned", () => {
    const { vm, be } = tdVm();
    runToEnd(guestAcceptPage(vm, vm.vcpus[0]!, 0x5000));
    expect(() => be.freeExternalSpt(vm, 0, 2, 1)).toThrow(
      /KVM_BUG_ON: free_external_spt .* while the HKID is assigned/,
    );
    expect(be.bugged).toBe(true);
    const td2 = tdVm();
    runToEnd(guestAcceptPage(td2.vm, td2.vm.vcpus[0]!, 0x5000));
    const pfn = td2.vm.memslots.find(5)!.gmem!.peekPfn(5);
    td2.be.teardown(td2.vm);
    expect(() => td2.be.removeExternalSpte(td2.vm, 5, 1, pfn)).toThrow(
      /KVM_BUG_ON: remove_external_spte of gfn 0x5 after the HKID was released/,
    );
    expect(td2.be.bugged).toBe(true);
  });
});
