/**
 * What the SEAM module's fast path must keep exactly as it was: the S-EPT entry bits for every
 * state (small and huge PFNs), the entry index of a GFN at every level (GFNs past 2^32 too), the
 * S-EPT page lookup, the event text of every leaf, the order of `backendStats.calls`, the locks a
 * failing leaf releases, and the results a caller may keep.
 */
import { describe, expect, it } from "vitest";
import {
  Host,
  Vm,
  guestAcceptPage,
  guestAccessPage,
  hostOps,
  runToEnd,
  type TdpEvent,
} from "@tdpemu/core/testing";
import {
  OPERAND_R8,
  OPERAND_RCX,
  SEPT_BLOCKED,
  SEPT_FREE,
  SEPT_MAPPED,
  SEPT_NL_BLOCKED,
  SEPT_NL_MAPPED,
  SEPT_PENDING,
  SEPT_PENDING_BLOCKED,
  SeamModule,
  SeptPages,
  TDX_OPERAND_BUSY,
  TDX_OP_STATE_INCORRECT,
  TDX_PAGE_METADATA_INCORRECT,
  TDX_EPT_WALK_FAILED,
  TDX_PAGE_ALREADY_ACCEPTED,
  TDX_SUCCESS,
  makeSeptEntry,
  septIndex,
  septPfn,
  septState,
  septPageWords,
} from "../src/testing.js";
import { SEAMCALL_NAMES, callDetail } from "../src/seam/leaves.js";
import { newTdx } from "./tdx-source.js";
import {
  addSeptTables,
  createVcpu,
  finalizedTd,
  initializedTd,
  releaseHkid,
  runnableTd,
  tdcsPages,
  tdcxPages,
} from "./seam-fixtures.js";

const MiB = 2 ** 20;

function tdVm(vcpus = 1) {
  const host = new Host({ memory: 128 * MiB });
  const be = newTdx(host);
  const events: TdpEvent[] = [];
  const vm = new Vm(host, { memory: 16 * MiB, gpaw: 48, vcpus, hostPageLevel: 1 }, be);
  return { host, vm, be, events };
}

describe("S-EPT entries", () => {
  // [state, pfn, level, lo, hi]: the bits as TDX module 1.5 writes them (docs/tdx-module.md §2),
  // written out by hand: FREE is TDEX|TDBW|TDB with SVE; every leaf, at 4K too, has MT=WB, IPAT
  // and PS (0xF0); MAPPED has RWX, PENDING TDP, BLOCKED TDB.
  const cases: [number, number, number, number, number][] = [
    [SEPT_FREE, 0x1234, 0, 0, 0x80e00000],
    [SEPT_MAPPED, 0x1234, 0, 0x012340f7, 0x80000000],
    [SEPT_MAPPED, 0x1234, 1, 0x012340f7, 0x80000000],
    [SEPT_PENDING, 0x1234, 0, 0x012340f0, 0x81000000],
    [SEPT_PENDING, 0x1234, 1, 0x012340f0, 0x81000000],
    [SEPT_BLOCKED, 0x1234, 0, 0x012340f0, 0x80800000],
    [SEPT_PENDING_BLOCKED, 0x1234, 0, 0x012340f0, 0x81800000],
    [SEPT_NL_MAPPED, 0x1234, 2, 0x01234007, 0x80000000],
    [SEPT_NL_BLOCKED, 0x1234, 2, 0x01234000, 0x80800000],
    // PFN bits 20-31 go to the high half; past 2^32 the exact (double) path.
    [SEPT_MAPPED, 0xfffff, 0, 0xfffff0f7, 0x80000000],
    [SEPT_MAPPED, 0x100000, 0, 0x000000f7, 0x80000001],
    [SEPT_MAPPED, 0xffffffff, 0, 0xfffff0f7, 0x80000fff],
    [SEPT_PENDING, 0x1_2345_6789, 0, 0x567890f0, 0x81001234],
    [SEPT_NL_MAPPED, 0xff_ffff_ffff, 3, 0xfffff007, 0x800fffff],
  ];
  it.each(cases)("state %i over page %i at level %i", (state, pfn, level, lo, hi) => {
    const e = makeSeptEntry(state, pfn, level);
    expect([e.lo, e.hi]).toEqual([lo, hi]);
    expect(septState(e.lo, e.hi, level)).toBe(state);
    if (state !== SEPT_FREE) expect(septPfn(e.lo, e.hi)).toBe(pfn);
  });
});

describe("septIndex", () => {
  const exact = (gfn: number, level: number) => Math.floor(gfn / 512 ** level) % 512;
  it("matches the exact formula below and above 2^32, at every level including 4", () => {
    const gfns = [
      0,
      1,
      511,
      512,
      0x3ffff,
      0x40000,
      0x7fffffff,
      0x80000000,
      0xffffffff,
      2 ** 32,
      2 ** 32 + 0x12345,
      2 ** 40 - 1,
      2 ** 40 + 513,
    ];
    for (const gfn of gfns)
      for (let level = 0; level <= 4; level++)
        expect(septIndex(gfn, level)).toBe(exact(gfn, level));
  });
});

describe("SeptPages", () => {
  it("finds, drops and counts pages at small and huge PFNs", () => {
    const p = new SeptPages();
    const a = septPageWords(p.init(5));
    const b = p.init(3000);
    const c = p.init(2 ** 33 + 7);
    expect([p.get(5), p.get(3000), p.get(2 ** 33 + 7), p.get(6), p.get(7)]).toEqual([
      a,
      b,
      c,
      undefined,
      undefined,
    ]);
    expect(p.count).toBe(3);
    p.drop(3000);
    p.drop(2 ** 33 + 7);
    p.drop(123456);
    expect([p.get(3000), p.get(2 ** 33 + 7), p.count]).toEqual([undefined, undefined, 1]);
    expect(a[0]).toBe(0);
    expect(a[1]).toBe(0x80e00000); // SEPTE_INIT_VALUE: FREE (TDEX|TDBW|TDB) with SVE
  });
});

describe("the event text of every call", () => {
  it("is the text each leaf has always had (VP leaves name their LP)", () => {
    const d = (name: string, tdr: number, ...ops: number[]) => {
      const [a = 0, b = 0, c = 0, e = 0] = ops;
      return callDetail(
        SEAMCALL_NAMES.indexOf(name as (typeof SEAMCALL_NAMES)[number]),
        tdr,
        a,
        b,
        c,
        e,
      );
    };
    expect(d("TDH.MNG.CREATE", 0, 1)).toBe("tdr 0 hkid 1");
    expect(d("TDH.MNG.KEY.CONFIG", 7)).toBe("tdr 7");
    expect(d("TDH.MNG.ADDCX", 0, 1)).toBe("tdr 0 page 1");
    expect(d("TDH.MNG.INIT", 0, 52, 1)).toBe("tdr 0 gpaw 52");
    expect(d("TDH.VP.CREATE", 0, 5)).toBe("tdr 0 tdvpr 5");
    expect(d("TDH.VP.ADDCX", 0, 5, 9)).toBe("tdvpr 5 tdcx 9");
    expect(d("TDH.VP.INIT", 0, 5, 1)).toBe("tdvpr 5 lp 1");
    expect(d("TDH.PHYMEM.PAGE.RDMD", 0, 9)).toBe("page 9");
    expect(d("TDH.MR.FINALIZE", 0)).toBe("tdr 0");
    expect(d("TDH.MR.EXTEND", 0, 0x1100)).toBe("gpa 0x1100");
    expect(d("TDH.VP.FLUSH", 0, 5, 1)).toBe("tdvpr 5 lp 1");
    expect(d("TDH.MNG.VPFLUSHDONE", 0)).toBe("tdr 0");
    expect(d("TDH.MNG.KEY.FREEID", 0)).toBe("tdr 0");
    expect(d("TDH.VP.ENTER", 0, 5)).toBe("tdvpr 5 lp 0");
    expect(d("TDH.MEM.SEPT.ADD", 0, 0x40000000, 2, 6)).toBe("gpa 0x40000000 L3 [tdx 2] page 6");
    expect(d("TDH.MEM.PAGE.AUG", 0, 0x3000, 0, 1027)).toBe("gpa 0x3000 L1 [tdx 0] page 1027");
    expect(d("TDH.MEM.PAGE.ADD", 0, 0x2000, 0, 1024, 9)).toBe("gpa 0x2000 page 1024");
    expect(d("TDH.MEM.RANGE.BLOCK", 0, 0x1000, 0)).toBe("gpa 0x1000 L1 [tdx 0]");
    expect(d("TDH.MEM.RANGE.UNBLOCK", 0, 0x1000, 1)).toBe("gpa 0x1000 L2 [tdx 1]");
    expect(d("TDH.MEM.TRACK", 3)).toBe("tdr 3");
    expect(d("TDH.MEM.PAGE.REMOVE", 0, 0x800000000000, 0)).toBe("gpa 0x800000000000 L1 [tdx 0]");
    expect(d("TDH.MEM.SEPT.REMOVE", 0, 0, 1)).toBe("gpa 0x0 L2 [tdx 1]");
    expect(d("TDH.PHYMEM.PAGE.RECLAIM", -1, 1024)).toBe("page 1024");
    expect(d("TDH.PHYMEM.PAGE.WBINVD", 0, 1024, 1)).toBe("page 1024 hkid 1");
    expect(d("TDG.MEM.PAGE.ACCEPT", 0, 5, 0x200000, 0)).toBe("gpa 0x200000 L1 [tdx 0]");
    expect(d("TDH.MEM.PAGE.AUG", 0, -4096, 0.5, 3)).toBe("gpa 0x-1000 L1.5 [tdx 0.5] page 3");
  });

  it("reaches the event stream with the leaf's name and status", () => {
    const { vm, be } = tdVm();
    const calls: string[] = [];
    vm.events.subscribe((e) => {
      if (e.type === "call") calls.push(`${e.name} ${e.detail} ${e.status}`);
    });
    expect(runToEnd(guestAcceptPage(vm, vm.vcpus[0]!, 0x1000))).toBe("ok");
    expect(calls).toEqual([
      `TDH.MR.FINALIZE tdr ${be.tdr} SUCCESS`,
      `TDH.VP.ENTER tdvpr ${[...be.td.vcpus.keys()][0]} lp 0 SUCCESS`,
      // The first ACCEPT meets no S-EPT entry: the TD exits (EPT violation), no status.
      "TDG.MEM.PAGE.ACCEPT gpa 0x1000 L1 [tdx 0] TD exit (ept-violation)",
      expect.stringMatching(/^TDH\.MEM\.SEPT\.ADD gpa 0x0 L4 \[tdx 3\] page \d+ SUCCESS$/),
      expect.stringMatching(/^TDH\.MEM\.SEPT\.ADD gpa 0x0 L3 \[tdx 2\] page \d+ SUCCESS$/),
      expect.stringMatching(/^TDH\.MEM\.SEPT\.ADD gpa 0x0 L2 \[tdx 1\] page \d+ SUCCESS$/),
      expect.stringMatching(/^TDH\.MEM\.PAGE\.AUG gpa 0x1000 L1 \[tdx 0\] page \d+ SUCCESS$/),
      `TDH.VP.ENTER tdvpr ${[...be.td.vcpus.keys()][0]} lp 0 SUCCESS`,
      "TDG.MEM.PAGE.ACCEPT gpa 0x1000 L1 [tdx 0] SUCCESS",
    ]);
  });
});

describe("backendStats.calls", () => {
  it("lists the calls in the order each was first made, #VE and INVEPT among them", () => {
    const { vm, be } = tdVm();
    expect(runToEnd(guestAccessPage(vm, vm.vcpus[0]!, 0x0, true, false))).toBe("exception");
    runToEnd(hostOps.zapGfnRange(vm, vm.hostCtx, 0, 1));
    // INVEPT first at the vCPU's first entry (kvm_mmu_load flushes for the new root), before the
    // TD is finalized and entered; the zap's remote flush is a request the vCPU has not acted on.
    expect(Object.keys(be.stats().calls)).toEqual([
      "TDH.MNG.CREATE",
      "TDH.MNG.KEY.CONFIG",
      "TDH.MNG.ADDCX",
      "TDH.MNG.INIT",
      "TDH.MNG.RD",
      "TDH.VP.CREATE",
      "TDH.VP.ADDCX",
      "TDH.VP.INIT",
      "TDH.VP.WR",
      "INVEPT",
      "TDH.MR.FINALIZE",
      "TDH.VP.ENTER",
      "TDH.MEM.SEPT.ADD",
      "TDH.MEM.PAGE.AUG",
      "#VE",
      "TDH.MEM.RANGE.BLOCK",
      "TDH.MEM.TRACK",
      "TDH.MEM.PAGE.REMOVE",
      "TDH.PHYMEM.PAGE.WBINVD",
    ]);
    expect(be.stats().calls.INVEPT).toBe(1);
    expect(runToEnd(guestAccessPage(vm, vm.vcpus[0]!, 0x0, true, false))).toBe("exception");
    expect(be.stats().calls.INVEPT).toBe(2);
    expect(be.stats().calls["TDH.VP.ENTER"]).toBe(4);
    // A copy each time: changing it changes nothing.
    be.stats().calls["TDH.VP.ENTER"] = 99;
    expect(be.stats().calls["TDH.VP.ENTER"]).toBe(4);
  });

  it("the module's platform-wide counts agree", () => {
    const { vm, be } = tdVm();
    expect(runToEnd(guestAcceptPage(vm, vm.vcpus[0]!, 0x0))).toBe("ok");
    // The module counts every TDCALL it ran; KVM counts an ACCEPT that ended in a TD exit apart.
    const {
      "#VE": _ve,
      INVEPT: _invept,
      "TD exit (ACCEPT)": exited,
      ...seamcalls
    } = be.stats().calls;
    expect(exited).toBe(1);
    // The platform's bring-up (TDH.SYS.*) is the host kernel's, before any TD: no TD's count.
    const platform = Object.fromEntries(
      Object.entries(be.module.stats.calls).filter(([name]) => !name.startsWith("TDH.SYS.")),
    );
    expect(platform).toEqual({
      ...seamcalls,
      "TDG.MEM.PAGE.ACCEPT": seamcalls["TDG.MEM.PAGE.ACCEPT"]! + exited!,
    });
    expect(be.module.stats.calls["TDH.SYS.INIT"]).toBe(1);
    expect(be.module.stats.busy).toBe(0);
    expect(be.module.stats.errors).toEqual({});
  });
});

describe("locks and results", () => {
  it("a leaf that fails on a busy page lock releases the TDR, op-state and tree locks it took", () => {
    const { vm, be, host } = tdVm();
    expect(runToEnd(guestAcceptPage(vm, vm.vcpus[0]!, 0x0))).toBe("ok");
    const m = be.module;
    const page = host.frames.allocBlocks(1, 1, host.newOwnerId(), "test") * 512;
    const held = m.pamt.lock(page);
    expect(held.tryShared()).toBe(true);
    expect(m.memPageAug(0x1000, 0, be.tdr, page).status).toBe(TDX_OPERAND_BUSY + OPERAND_R8);
    expect(m.pamt.lock(be.tdr).held).toBe(false);
    expect(be.td.opStateLock.held).toBe(false);
    expect(be.td.treeLock.held).toBe(false);
    held.release();
    expect(m.pamt.lock(page).held).toBe(false);
    expect(m.memPageAug(0x1000, 0, be.tdr, page).status).toBe(TDX_SUCCESS);
    expect(m.pamt.lock(page).held).toBe(false);
  });

  it("results are safe to keep: a success cannot be changed by its holder, failures are fresh objects", () => {
    const { vm, be } = tdVm();
    expect(runToEnd(guestAcceptPage(vm, vm.vcpus[0]!, 0x0))).toBe("ok");
    const r = be.module.memTrack(be.tdr);
    expect(r).toEqual({ status: TDX_SUCCESS });
    expect(Object.isFrozen(r)).toBe(true);
    const f1 = be.module.memPageAug(0x1001, 0, be.tdr, 0);
    const f2 = be.module.memPageAug(0x1001, 0, be.tdr, 0);
    expect(f1).not.toBe(f2);
    expect(f1).toEqual(f2);
  });
});

describe("the module's remembered lookups follow the TDs and vCPUs", () => {
  it("a TDR and a TDVPR reclaimed and made again are seen as the new TD and vCPU", () => {
    const m = new SeamModule(4096);
    const build = (hkid: number) => {
      expect(m.mngCreate(0, hkid).status).toBe(TDX_SUCCESS);
      expect(m.mngKeyConfig(0).status).toBe(TDX_SUCCESS);
      for (const page of tdcsPages(0)) expect(m.mngAddcx(0, page).status).toBe(TDX_SUCCESS);
      expect(m.mngInit(0, { gpaw: 48, septVeDisable: false }).status).toBe(TDX_SUCCESS);
      createVcpu(m, 0, 2, 0);
    };
    build(1);
    const first = m.tds.get(0)!;
    expect(m.vpEnter(2, 0).status).toBe(TDX_OP_STATE_INCORRECT);
    expect(m.mrFinalize(0).status).toBe(TDX_SUCCESS);
    expect(m.vpEnter(2, 0).status).toBe(TDX_SUCCESS);
    releaseHkid(m);
    for (const page of [...tdcxPages(2), 2, ...tdcsPages(0), 0])
      expect(m.phymemPageReclaim(page).status).toBe(TDX_SUCCESS);
    expect(m.tds.size).toBe(0);
    expect(m.vpEnter(2, 0).status).toBe(TDX_PAGE_METADATA_INCORRECT + OPERAND_RCX);
    expect(m.mrFinalize(0).status).toBe(TDX_PAGE_METADATA_INCORRECT + OPERAND_RCX);
    m.tdExit(2);
    build(2);
    const second = m.tds.get(0)!;
    expect(second).not.toBe(first);
    expect(m.vpEnter(2, 0).status).toBe(TDX_OP_STATE_INCORRECT);
    expect(m.mrFinalize(0).status).toBe(TDX_SUCCESS);
    expect(m.vpEnter(2, 0).status).toBe(TDX_SUCCESS);
    expect(second.vcpus.get(2)!.inGuest).toBe(true);
    expect(first.vcpus.get(2)!.inGuest).toBe(false);
    expect(second.refcount).toEqual([0, 1]);
    m.tdExit(2);
    expect(second.vcpus.get(2)!.inGuest).toBe(false);
    expect(second.refcount).toEqual([0, 0]);
  });

  it("a vCPU remembered before its TDVPR page changes hands is looked up again (the PAMT's version)", () => {
    const m = finalizedTd();
    expect(m.vpEnter(2, 0).status).toBe(TDX_SUCCESS);
    releaseHkid(m);
    // The TDVPR page alone goes back (the TD stays): no longer a vCPU, though its TD is unchanged.
    expect(m.phymemPageReclaim(2).status).toBe(TDX_SUCCESS);
    expect(m.vpEnter(2, 0).status).toBe(TDX_PAGE_METADATA_INCORRECT + OPERAND_RCX);
    expect(m.vpFlush(2, 0).status).toBe(TDX_PAGE_METADATA_INCORRECT + OPERAND_RCX);
    expect(m.tdgMemPageAccept(2, 0, 0)).toEqual({
      status: TDX_PAGE_METADATA_INCORRECT + OPERAND_RCX,
    });
  });

  it("two TDs on one module: calls that alternate between them reach the right TD", () => {
    const m = initializedTd(initializedTd(), 10, 2, 0);
    expect(m.mrFinalize(10).status).toBe(TDX_SUCCESS);
    expect(m.vpEnter(2, 0).status).toBe(TDX_OP_STATE_INCORRECT);
    expect(m.vpEnter(12, 0).status).toBe(TDX_SUCCESS);
    expect(m.vpEnter(2, 0).status).toBe(TDX_OP_STATE_INCORRECT);
    expect(m.tds.get(10)!.vcpus.get(12)!.inGuest).toBe(true);
    expect(m.tds.get(0)!.vcpus.get(2)!.inGuest).toBe(false);
    expect(m.guestTranslate(12, 0)).toEqual({ exit: "ept-violation" });
    m.tdExit(2);
    expect(m.tds.get(10)!.vcpus.get(12)!.inGuest).toBe(true);
    m.tdExit(12);
    expect(m.tds.get(10)!.vcpus.get(12)!.inGuest).toBe(false);
  });
});

describe("the remembered walk (paging-structure cache) follows every change above 4K", () => {
  it("a 4K table removed and added again over another page: the walks see each change", () => {
    const m = runnableTd();
    expect(m.guestTranslate(2, 0x1000)).toBe("ve");
    expect(m.guestTranslate(2, 0x2000)).toEqual({ exit: "ept-violation" });
    // Take the 4K page and then its table away.
    expect(m.memRangeBlock(0x1000, 0, 0).status).toBe(TDX_SUCCESS);
    expect(m.memTrack(0).status).toBe(TDX_SUCCESS);
    expect(m.memPageRemove(0x1000, 0, 0).status).toBe(TDX_SUCCESS);
    expect(m.guestTranslate(2, 0x1000)).toEqual({ exit: "ept-violation" });
    expect(m.memRangeBlock(0, 1, 0).status).toBe(TDX_SUCCESS);
    expect(m.memPageAug(0x1000, 0, 0, 101).status).toBe(TDX_EPT_WALK_FAILED + OPERAND_RCX);
    expect(m.memTrack(0).status).toBe(TDX_SUCCESS);
    expect(m.memSeptRemove(0, 1, 0).status).toBe(TDX_SUCCESS);
    expect(m.sept.get(12)).toBeUndefined();
    const failed = m.memPageAug(0x1000, 0, 0, 101);
    expect(failed.status).toBe(TDX_EPT_WALK_FAILED + OPERAND_RCX);
    expect(failed.levelState).toBe(1n);
    expect(m.guestTranslate(2, 0x1000)).toEqual({ exit: "ept-violation" });
    // A new 4K table over another page: the walks go through it.
    expect(m.memSeptAdd(0, 1, 0, 13).status).toBe(TDX_SUCCESS);
    expect(m.memPageAug(0x1000, 0, 0, 101).status).toBe(TDX_SUCCESS);
    expect(m.guestTranslate(2, 0x1000)).toBe("ve");
    expect(septPageWords(m.sept.get(13)!)[2]).toBe((101 << 12) | 0xf0); // PENDING: MT=WB, IPAT, PS
    expect(m.entryAt(m.tds.get(0)!, 1, 0)).toEqual({ state: SEPT_PENDING, pfn: 101 });
    // Blocking the 2M-level entry above it stops the walk again.
    expect(m.memRangeBlock(0, 1, 0).status).toBe(TDX_SUCCESS);
    expect(m.guestTranslate(2, 0x1000)).toEqual({ exit: "ept-violation" });
    expect(m.memPageAug(0x3000, 0, 0, 102).status).toBe(TDX_EPT_WALK_FAILED + OPERAND_RCX);
  });
});

describe("locks a leaf takes within its step", () => {
  it("PAGE.REMOVE of a leaf that names the TDR itself: the TDR's lock is the prologue's, so OPERAND_BUSY|RCX", () => {
    const m = runnableTd();
    expect(m.memRangeBlock(0x1000, 0, 0).status).toBe(TDX_SUCCESS);
    expect(m.memTrack(0).status).toBe(TDX_SUCCESS);
    // Corrupt the blocked leaf to point at page 0 (the TDR), as no leaf ever would.
    const t = septPageWords(m.sept.get(12)!);
    const e = makeSeptEntry(SEPT_BLOCKED, 0, 0);
    t[2] = e.lo;
    t[3] = e.hi;
    expect(m.memPageRemove(0x1000, 0, 0).status).toBe(TDX_OPERAND_BUSY + OPERAND_RCX);
    expect(m.pamt.lock(0).held).toBe(false);
    expect([t[2], t[3]]).toEqual([e.lo, e.hi]);
  });

  it("locks held across the step by others make the leaf BUSY and stay held; free ones stay free", () => {
    const m = runnableTd();
    const td = m.tds.get(0)!;
    expect(td.treeLock.tryExclusive()).toBe(true);
    expect(m.memPageAug(0x2000, 0, 0, 101).status).toBe(TDX_OPERAND_BUSY + 0x92n);
    expect(td.treeLock.exclusive).toBe(true);
    td.treeLock.release();
    expect(td.treeLock.tryShared()).toBe(true);
    expect(m.memPageAug(0x2000, 0, 0, 101).status).toBe(TDX_SUCCESS);
    expect(m.memRangeBlock(0x2000, 0, 0).status).toBe(TDX_OPERAND_BUSY + 0x92n);
    expect(td.treeLock.readers).toBe(1);
    td.treeLock.release();
    const page = m.pamt.lock(0);
    expect(page.tryExclusive()).toBe(true);
    expect(m.memPageAug(0x3000, 0, 0, 102).status).toBe(TDX_OPERAND_BUSY + 2n);
    page.release();
    expect([
      td.treeLock.held,
      td.opStateLock.held,
      td.epochLock.held,
      m.pamt.lock(0).held,
      m.pamt.lock(102).held,
    ]).toEqual([false, false, false, false, false]);
  });

  it("a TDR lock with 127 readers ends free after a leaf takes it shared (the Int8 lock wraps, as it always did)", () => {
    const m = runnableTd();
    const l = m.pamt.lock(0);
    for (let i = 0; i < 127; i++) expect(l.tryShared()).toBe(true);
    expect(m.memPageAug(0x2000, 0, 0, 101).status).toBe(TDX_SUCCESS);
    expect(l.held).toBe(false);
  });
});

describe("septEntries", () => {
  it("lists every present entry depth first, as a recursive walk of the tables does", () => {
    const { vm, be } = tdVm();
    for (const gpa of [0x0, 0x1000, 0x3ff000, 0x400000, 0x800000, 0xf34000])
      expect(runToEnd(guestAcceptPage(vm, vm.vcpus[0]!, gpa))).toBe("ok");
    expect(be.module.memRangeBlock(0x1000, 0, be.tdr).status).toBe(TDX_SUCCESS);
    expect(be.module.memRangeBlock(0x800000, 1, be.tdr).status).toBe(TDX_SUCCESS);
    const m = be.module;
    const expected: [number, number, number, number][] = [];
    const visit = (page: number, level: number, base: number) => {
      const t = septPageWords(m.sept.get(page)!);
      for (let i = 0; i < 512; i++) {
        const st = septState(t[2 * i]!, t[2 * i + 1]!, level);
        if (st === SEPT_FREE) continue;
        const gfn = base + i * 512 ** level;
        expected.push([gfn, level, st, septPfn(t[2 * i]!, t[2 * i + 1]!)]);
        if (st === SEPT_NL_MAPPED || st === SEPT_NL_BLOCKED)
          visit(septPfn(t[2 * i]!, t[2 * i + 1]!), level - 1, gfn);
      }
    };
    visit(be.td.septRoot, be.td.rootLevel, 0);
    const listed = [...m.septEntries(be.td)];
    expect(listed).toEqual(expected);
    expect(listed.map(([, level, state]) => `${level}:${state}`)).toContain(`1:${SEPT_NL_BLOCKED}`);
    expect(listed.filter(([, level]) => level === 0)).toHaveLength(6);
  });
});

describe("TDG.MEM.PAGE.ACCEPT where the S-EPT walk stops", () => {
  // The walk stops above the 4K level without building a status (the guest's ACCEPT before the
  // VMM maps the page is the common case): it must still exit exactly where the throwing walk did.
  it("exits to the VMM at a FREE entry above the leaf, and at a blocked table", () => {
    const m = finalizedTd();
    expect(m.vpEnter(2, 0).status).toBe(TDX_SUCCESS);
    expect(m.tdgMemPageAccept(2, 0x1000, 0)).toEqual({ exit: "ept-violation" });
    addSeptTables(m);
    expect(m.memPageAug(0x1000, 0, 0, 100).status).toBe(TDX_SUCCESS);
    expect(m.memRangeBlock(0, 1, 0).status).toBe(TDX_SUCCESS);
    expect(m.tdgMemPageAccept(2, 0x1000, 0)).toEqual({ exit: "ept-violation" });
    // Leaves that go on from the walk still fail with the entry and level where it stopped.
    expect(m.memPageAug(0x2000, 0, 0, 101)).toMatchObject({
      status: TDX_EPT_WALK_FAILED + OPERAND_RCX,
      levelState: 1n | (BigInt(SEPT_NL_BLOCKED) << 8n),
    });
  });

  it("accepts a PENDING page once the walk reaches it, and only once", () => {
    const m = runnableTd();
    expect(m.vpEnter(2, 0).status).toBe(TDX_SUCCESS);
    expect(m.tdgMemPageAccept(2, 0x1000, 0)).toEqual({ status: TDX_SUCCESS });
    expect(m.tdgMemPageAccept(2, 0x1000, 0)).toMatchObject({ status: TDX_PAGE_ALREADY_ACCEPTED });
  });

  // tdg_mem_page_accept.c, check_tdaccept_failure: a 4K ACCEPT whose walk stops at a 2M leaf.
  it("a 4K ACCEPT under a 2M leaf: a TD exit while the leaf is PENDING, PAGE_ALREADY_ACCEPTED with level 1 once MAPPED", () => {
    const m = runnableTd();
    expect(m.vpEnter(2, 0).status).toBe(TDX_SUCCESS);
    // A PENDING 2M leaf, written by hand: the model's AUG is 4K only (2M pages are issue 18's).
    m.sept.setEntry(m.sept.get(11)!, 2 * septIndex(0x200, 1), SEPT_PENDING, 1024, 1);
    expect(m.tdgMemPageAccept(2, 0x201000, 0)).toEqual({ exit: "ept-violation" }); // case 1.2
    expect(m.tdgMemPageAccept(2, 0x200000, 1)).toEqual({ status: TDX_SUCCESS });
    // Case 1.1: the operand is the level the walk reached, not RCX.
    expect(m.tdgMemPageAccept(2, 0x201000, 0)).toEqual({ status: TDX_PAGE_ALREADY_ACCEPTED + 1n });
    // At the level asked for, the operand is that level.
    expect(m.tdgMemPageAccept(2, 0x200000, 1)).toEqual({ status: TDX_PAGE_ALREADY_ACCEPTED + 1n });
  });
});
