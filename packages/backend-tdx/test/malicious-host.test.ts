/**
 * An untrusted VMM against the TDX module model: it calls SEAMCALL leaves directly (or through
 * `backend.rawCall` / a scenario's `raw` op), with operands KVM would never pass, on a TD that a
 * VM set up and whose guest accepted a few pages. Every refusal is checked to the exact 64-bit
 * status (class + operand ID, docs/tdx-module.md §0), and the module state is checked to be unchanged.
 */
import { describe, expect, it } from "vitest";
import {
  FRAMES_PER_BLOCK,
  GUEST_PAGE_OWNED,
  Host,
  OWNER_FREE,
  Vm,
  checkInvariants,
  guestAcceptPage,
  hostOps,
  parseScenarioText,
  runScenario,
  runToEnd,
} from "@tdpemu/core/testing";
import {
  OPERAND_R8,
  OPERAND_RCX,
  OPERAND_SEPT_TREE,
  PT_EPT,
  PT_NDA,
  PT_REG,
  PT_TDR,
  SEPT_BLOCKED,
  SEPT_FREE,
  SEPT_MAPPED,
  SEPT_NL_BLOCKED,
  SEPT_NL_MAPPED,
  SEPT_TDEL,
  TDX_EPT_ENTRY_STATE_INCORRECT,
  TDX_EPT_PAGE_NOT_FREE,
  TDX_EPT_WALK_FAILED,
  TDX_GPA_RANGE_ALREADY_BLOCKED,
  TDX_GPA_RANGE_NOT_BLOCKED,
  TDX_LIFECYCLE_STATE_INCORRECT,
  TDX_OPERAND_BUSY,
  TDX_OPERAND_INVALID,
  TDX_PAGE_METADATA_INCORRECT,
  TDX_PREVIOUS_TLB_EPOCH_BUSY,
  TDX_SUCCESS,
  TDX_TLB_TRACKING_NOT_DONE,
  TdxBackend,
  LC_TEARDOWN,
  levelState,
  statusClass,
  type SeamModule,
  type Td,
  septPageWords,
} from "../src/testing.js";
import { newTdx, tdx } from "./tdx-source.js";

const MiB = 2 ** 20;
const GiB = 2 ** 30;
/** GPAW 48: the shared bit is bit 47 (docs/tdx-module.md §7). */
const SHARED_BIT = 2 ** 47;
/** A FREE entry as RCX reports it: suppress-#VE alone (`set_arch_septe_details_in_vmm_regs`). */
const FREE_ENTRY = 0x8000000000000000n;
/** Pages the guest accepts in every fixture (all under one level-0 S-EPT table). */
const ACCEPTED = [0x0, 0x1000, 0x2000];
/** A GPA under the same S-EPT tables that the guest never touched (its 4K entry is FREE). */
const UNTOUCHED = 0x5000;

interface Fixture {
  host: Host;
  vm: Vm;
  be: TdxBackend;
  m: SeamModule;
  td: Td;
  tdr: number;
  tdvpr: number;
}

/** A runnable TD (the first vCPU entry finalizes it) whose guest accepted the pages of ACCEPTED. */
function makeTd(existingHost?: Host): Fixture {
  const host = existingHost ?? new Host({ memory: 256 * MiB });
  const be = newTdx(host);
  const vm = new Vm(host, { memory: 16 * MiB, gpaw: 48, vcpus: 1, hostPageLevel: 1 }, be);
  for (const gpa of ACCEPTED) expect(runToEnd(guestAcceptPage(vm, vm.vcpus[0]!, gpa))).toBe("ok");
  const tdvpr = [...be.td.vcpus.keys()][0]!;
  return { host, vm, be, m: be.module, td: be.td, tdr: be.tdr, tdvpr };
}

/** A host page the module has never seen (PAMT NDA), taken from the host's own allocator. */
function freshPage(host: Host): number {
  return (
    host.frames.allocBlocks(1, 1, host.newOwnerId(), "pages of the malicious VMM") *
    FRAMES_PER_BLOCK
  );
}

/** The state and page of the S-EPT entry at (gpa, TDX level), or FREE. */
function septAt(f: Fixture, gpa: number, level: number): { state: number; pfn: number } {
  for (const [gfn, lvl, state, pfn] of f.m.septEntries(f.td)) {
    if (lvl === level && gfn === gpa / 4096) return { state, pfn };
  }
  return { state: SEPT_FREE, pfn: -1 };
}

/** The S-EPT page holding the 4K entries of GPA 0 (what the level-1 entry of GPA 0 points to). */
function leafTableOf(f: Fixture): number {
  const e = septAt(f, 0, 1);
  expect(e.state).toBe(SEPT_NL_MAPPED);
  return e.pfn;
}

function privatePfn(f: Fixture, gpa: number): number {
  const pfn = f.m.mappedPfn(f.td, gpa);
  expect(pfn).toBeGreaterThanOrEqual(0);
  return pfn;
}

/** Module state that a refused call must leave alone. */
function snapshot(f: Fixture): string {
  return JSON.stringify({
    sept: [...f.m.septEntries(f.td)],
    children: f.td.childCount,
    epoch: f.td.epoch,
    refcount: [...f.td.refcount],
    owned: [...f.m.pamt.pagesOf(f.tdr)],
    owned2m: (() => {
      const out: number[] = [];
      for (
        let p = f.m.pamt.next2mPageOf(f.tdr, 0);
        p >= 0;
        p = f.m.pamt.next2mPageOf(f.tdr, p + 512)
      )
        out.push(p);
      return out;
    })(),
  });
}

describe("the fixture: a runnable TD the guest has used", () => {
  it("has the accepted pages MAPPED, owned (REG) by the TD, and a vCPU in guest mode", () => {
    const f = makeTd();
    for (const gpa of ACCEPTED) {
      expect(septAt(f, gpa, 0).state).toBe(SEPT_MAPPED);
      const pfn = privatePfn(f, gpa);
      expect(f.m.pamt.type(pfn)).toBe(PT_REG);
      expect(f.m.pamt.owner(pfn)).toBe(f.tdr);
    }
    expect(f.m.pamt.type(f.tdr)).toBe(PT_TDR);
    expect(f.m.pamt.type(leafTableOf(f))).toBe(PT_EPT);
    expect(f.td.vcpus.get(f.tdvpr)!.inGuest).toBe(true);
    expect(checkInvariants(f.vm, { final: false }).violations).toEqual([]);
  });
});

describe("TDH.MEM.PAGE.AUG with a page that is not the host's to give", () => {
  it("a page already REG of this TD: PAGE_METADATA_INCORRECT|R8, nothing changes", () => {
    const f = makeTd();
    const reg = privatePfn(f, 0x1000);
    const before = snapshot(f);
    expect(f.m.memPageAug(UNTOUCHED, 0, f.tdr, reg).status).toBe(
      TDX_PAGE_METADATA_INCORRECT + OPERAND_R8,
    );
    expect(f.m.memPageAug(UNTOUCHED, 0, f.tdr, reg).status).toBe(0xc000030000000008n);
    expect(snapshot(f)).toBe(before);
    expect(f.m.pamt.type(reg)).toBe(PT_REG);
    expect(septAt(f, UNTOUCHED, 0).state).toBe(SEPT_FREE);
  });

  it("the TD's own TDR: OPERAND_BUSY|R8 (its lock is the call's own); one of its S-EPT pages: PAGE_METADATA_INCORRECT|R8", () => {
    const f = makeTd();
    const before = snapshot(f);
    // helpers.c, non_shared_hpa_metadata_check_and_lock: the PAMT entry is locked before its
    // type is read, and the TDR's is held (shared) by the AUG's own prologue.
    expect(f.m.memPageAug(UNTOUCHED, 0, f.tdr, f.tdr).status).toBe(TDX_OPERAND_BUSY + OPERAND_R8);
    expect(f.m.memPageAug(UNTOUCHED, 0, f.tdr, leafTableOf(f)).status).toBe(
      TDX_PAGE_METADATA_INCORRECT + OPERAND_R8,
    );
    expect(snapshot(f)).toBe(before);
    expect(f.m.pamt.type(f.tdr)).toBe(PT_TDR);
  });

  it("with a page of its own the same AUG succeeds (the refusal was about the page)", () => {
    const f = makeTd();
    const page = freshPage(f.host);
    expect(f.m.memPageAug(UNTOUCHED, 0, f.tdr, page).status).toBe(TDX_SUCCESS);
    expect(f.m.pamt.type(page)).toBe(PT_REG);
    expect(f.m.pamt.owner(page)).toBe(f.tdr);
  });

  it("AUG over a MAPPED entry: EPT_ENTRY_STATE_INCORRECT|RCX with the entry and level_state (level 0, MAPPED)", () => {
    const f = makeTd();
    const page = freshPage(f.host);
    const mapped = privatePfn(f, 0x1000);
    const before = snapshot(f);
    const r = f.m.memPageAug(0x1000, 0, f.tdr, page);
    expect(r.status).toBe(TDX_EPT_ENTRY_STATE_INCORRECT + OPERAND_RCX);
    expect(r.status).toBe(0xc0000b0d00000001n);
    expect(r.levelState).toBe(levelState(0, SEPT_MAPPED));
    expect(r.levelState).toBe(0x400n);
    // RCX: the architectural entry, which maps the page the guest has there: SVE, HPA, PS,
    // IPAT, MT=WB and RWX (SEPT_ARCH_ENTRY_LEAF_MASK), none of the module's state bits.
    expect(Number((r.entry! >> 12n) & 0xffffffffffn)).toBe(mapped);
    expect(r.entry).toBe((1n << 63n) | (BigInt(mapped) << 12n) | 0xf7n);
    expect(snapshot(f)).toBe(before);
    expect(f.m.pamt.type(page)).toBe(PT_NDA);
  });
});

describe("TDH.MEM.PAGE.REMOVE and the TLB-tracking rule on a RUNNABLE TD (docs/tdx-module.md §3)", () => {
  it("REMOVE without BLOCK: GPA_RANGE_NOT_BLOCKED|RCX (0xC0000B0600000001)", () => {
    const f = makeTd();
    const before = snapshot(f);
    const r = f.m.memPageRemove(0x1000, 0, f.tdr);
    expect(r.status).toBe(TDX_GPA_RANGE_NOT_BLOCKED + OPERAND_RCX);
    expect(r.status).toBe(0xc0000b0600000001n);
    // With the entry and its level and state (tdh_mem_page_remove.c).
    expect(r.entry).toBe((1n << 63n) | (BigInt(privatePfn(f, 0x1000)) << 12n) | 0xf7n);
    expect(r.levelState).toBe(levelState(0, SEPT_MAPPED));
    expect(snapshot(f)).toBe(before);
  });

  it("REMOVE after BLOCK without TRACK: TLB_TRACKING_NOT_DONE|RCX", () => {
    const f = makeTd();
    expect(f.m.memRangeBlock(0x1000, 0, f.tdr).status).toBe(TDX_SUCCESS);
    expect(septAt(f, 0x1000, 0).state).toBe(SEPT_BLOCKED);
    const r = f.m.memPageRemove(0x1000, 0, f.tdr);
    expect(r.status).toBe(TDX_TLB_TRACKING_NOT_DONE + OPERAND_RCX);
    expect(r.status).toBe(0xc0000b0800000001n);
    // The one S-EPT failure of these leaves without entry details.
    expect(r.entry).toBeUndefined();
    expect(septAt(f, 0x1000, 0).state).toBe(SEPT_BLOCKED);
  });

  it("BLOCK + TRACK while a vCPU that entered in the old epoch is in guest mode: still not done; after its exit: SUCCESS", () => {
    const f = makeTd();
    const pfn = privatePfn(f, 0x1000);
    // The vCPU (re-)enters before the BLOCK, in epoch e, and stays in guest mode.
    f.m.tdExit(f.tdvpr);
    expect(f.m.vpEnter(f.tdvpr, 0).status).toBe(TDX_SUCCESS);
    const e = f.td.epoch;
    expect(f.td.vcpus.get(f.tdvpr)!.epoch).toBe(e);
    expect(f.m.memRangeBlock(0x1000, 0, f.tdr).status).toBe(TDX_SUCCESS);
    expect(f.m.pamt.bepoch(pfn)).toBe(e);
    expect(f.m.memTrack(f.tdr).status).toBe(TDX_SUCCESS);
    expect(f.td.epoch).toBe(e + 1);
    expect(f.m.memPageRemove(0x1000, 0, f.tdr).status).toBe(
      TDX_TLB_TRACKING_NOT_DONE + OPERAND_RCX,
    );
    expect(f.m.pamt.type(pfn)).toBe(PT_REG);
    // The vCPU leaves guest mode: nobody can hold a translation from epoch e any more.
    f.m.tdExit(f.tdvpr);
    const r = f.m.memPageRemove(0x1000, 0, f.tdr);
    expect(r.status).toBe(TDX_SUCCESS);
    expect(r.pfn).toBe(pfn);
    expect(septAt(f, 0x1000, 0).state).toBe(SEPT_FREE);
    expect(f.m.pamt.type(pfn)).toBe(PT_NDA);
  });

  it("a vCPU entering after the TRACK (new epoch) does not hold the REMOVE back", () => {
    const f = makeTd();
    f.m.tdExit(f.tdvpr);
    expect(f.m.memRangeBlock(0x1000, 0, f.tdr).status).toBe(TDX_SUCCESS);
    expect(f.m.memTrack(f.tdr).status).toBe(TDX_SUCCESS);
    expect(f.m.vpEnter(f.tdvpr, 0).status).toBe(TDX_SUCCESS);
    expect(f.m.memPageRemove(0x1000, 0, f.tdr).status).toBe(TDX_SUCCESS);
  });

  it("a second TRACK while a vCPU of the previous epoch is still in guest: PREVIOUS_TLB_EPOCH_BUSY", () => {
    const f = makeTd();
    f.m.tdExit(f.tdvpr);
    expect(f.m.vpEnter(f.tdvpr, 0).status).toBe(TDX_SUCCESS);
    const e = f.td.epoch;
    expect(f.m.memTrack(f.tdr).status).toBe(TDX_SUCCESS);
    const r = f.m.memTrack(f.tdr);
    expect(r.status).toBe(TDX_PREVIOUS_TLB_EPOCH_BUSY);
    expect(r.status).toBe(0x8000020100000000n);
    expect(f.td.epoch).toBe(e + 1);
    f.m.tdExit(f.tdvpr);
    expect(f.m.memTrack(f.tdr).status).toBe(TDX_SUCCESS);
    expect(f.td.epoch).toBe(e + 2);
  });
});

describe("S-EPT table leaves", () => {
  it("SEPT.ADD at level 1 where the level-2 entry is FREE: EPT_WALK_FAILED|RCX, stopped at level 2", () => {
    const f = makeTd();
    const page = freshPage(f.host);
    const before = snapshot(f);
    // GPA 1 GiB: the level-3 entry (GPA 0..512 GiB) exists, the level-2 entry for 1..2 GiB does not.
    const r = f.m.memSeptAdd(1 * GiB, 1, f.tdr, page);
    expect(r.status).toBe(TDX_EPT_WALK_FAILED + OPERAND_RCX);
    expect(r.status).toBe(0xc0000b0000000001n);
    expect(r.levelState).toBe(levelState(2, SEPT_FREE));
    expect(r.levelState).toBe(0x002n);
    expect(r.entry).toBe(FREE_ENTRY);
    expect(snapshot(f)).toBe(before);
    expect(f.m.pamt.type(page)).toBe(PT_NDA);
  });

  it("SEPT.ADD at level 1 at 512 GiB, where even the level-3 entry is FREE: the walk stops at level 3", () => {
    const f = makeTd();
    const r = f.m.memSeptAdd(512 * GiB, 1, f.tdr, freshPage(f.host));
    expect(r.status).toBe(TDX_EPT_WALK_FAILED + OPERAND_RCX);
    expect(r.levelState).toBe(0x003n);
    expect(r.entry).toBe(FREE_ENTRY);
  });

  it("the walk also stops at a blocked table: NL_BLOCKED in level_state", () => {
    const f = makeTd();
    expect(f.m.memRangeBlock(0, 1, f.tdr).status).toBe(TDX_SUCCESS);
    const r = f.m.memPageAug(UNTOUCHED, 0, f.tdr, freshPage(f.host));
    expect(r.status).toBe(TDX_EPT_WALK_FAILED + OPERAND_RCX);
    expect(r.levelState).toBe(levelState(1, SEPT_NL_BLOCKED));
    expect(r.levelState).toBe(0x8101n);
    // A non-leaf keeps only RWX and PS (SEPT_ARCH_ENTRY_NON_LEAF_MASK), and BLOCK cleared RWX.
    expect(r.entry).toBe(0n);
  });

  it("SEPT.ADD over a table already there: EPT_ENTRY_STATE_INCORRECT|RCX with the non-leaf as RWX alone (no HPA, no SVE)", () => {
    const f = makeTd();
    const r = f.m.memSeptAdd(0, 1, f.tdr, freshPage(f.host));
    expect(r.status).toBe(TDX_EPT_ENTRY_STATE_INCORRECT + OPERAND_RCX);
    expect(r.levelState).toBe(levelState(1, SEPT_NL_MAPPED));
    expect(r.entry).toBe(7n);
  });

  it("SEPT.REMOVE of a table that still has children, after BLOCK+TRACK and every exit: EPT_PAGE_NOT_FREE|RCX", () => {
    const f = makeTd();
    const table = leafTableOf(f);
    expect(f.m.memRangeBlock(0, 1, f.tdr).status).toBe(TDX_SUCCESS);
    expect(f.m.memTrack(f.tdr).status).toBe(TDX_SUCCESS);
    f.m.tdExit(f.tdvpr);
    const children = f.td.childCount;
    const r = f.m.memSeptRemove(0, 1, f.tdr);
    expect(r.status).toBe(TDX_EPT_PAGE_NOT_FREE + OPERAND_RCX);
    expect(r.status).toBe(0xc0000b0e00000001n);
    // The removed table's own entry, blocked, in RCX and RDX (tdh_mem_sept_remove.c).
    expect(r.entry).toBe(0n);
    expect(r.levelState).toBe(levelState(1, SEPT_NL_BLOCKED));
    expect(septAt(f, 0, 1)).toEqual({ state: SEPT_NL_BLOCKED, pfn: table });
    expect(f.m.pamt.type(table)).toBe(PT_EPT);
    expect(f.td.childCount).toBe(children);
  });

  it("SEPT.REMOVE of a table without BLOCK on a RUNNABLE TD: GPA_RANGE_NOT_BLOCKED|RCX", () => {
    const f = makeTd();
    const r = f.m.memSeptRemove(0, 1, f.tdr);
    expect(r.status).toBe(TDX_GPA_RANGE_NOT_BLOCKED + OPERAND_RCX);
    expect(r.entry).toBe(7n);
    expect(r.levelState).toBe(levelState(1, SEPT_NL_MAPPED));
  });
});

describe("TDH.PHYMEM.PAGE.RECLAIM of pages of a live TD", () => {
  it("a private page, an S-EPT page: LIFECYCLE_STATE_INCORRECT; the TDR of a running TD: busy; all stay the TD's", () => {
    const f = makeTd();
    const reg = privatePfn(f, 0);
    const table = leafTableOf(f);
    const before = snapshot(f);
    for (const page of [reg, table]) {
      expect(f.m.phymemPageReclaim(page).status).toBe(TDX_LIFECYCLE_STATE_INCORRECT);
      expect(f.m.phymemPageReclaim(page).status).toBe(0xc000060700000000n);
    }
    // The TDR is locked first, and the TD's vCPU, in guest mode, holds it (tdh_vp_enter.c).
    expect(f.be.td.vcpus.values().next().value!.inGuest).toBe(true);
    expect(f.m.phymemPageReclaim(f.tdr).status).toBe(TDX_OPERAND_BUSY + OPERAND_RCX);
    expect(snapshot(f)).toBe(before);
    expect(f.m.pamt.type(reg)).toBe(PT_REG);
    expect(f.m.pamt.type(table)).toBe(PT_EPT);
    expect(checkInvariants(f.vm, { final: false }).violations).toEqual([]);
  });
});

describe("a second TD on the same host (one module per host)", () => {
  it("shares the module, and cannot AUG the first TD's private page: PAGE_METADATA_INCORRECT|R8", () => {
    const a = makeTd();
    const b = makeTd(a.host);
    expect(b.m).toBe(a.m);
    expect(b.tdr).not.toBe(a.tdr);
    expect(b.be.hkid).not.toBe(a.be.hkid);
    const victim = privatePfn(a, 0x1000);
    const beforeA = snapshot(a);
    const beforeB = snapshot(b);
    expect(b.m.memPageAug(UNTOUCHED, 0, b.tdr, victim).status).toBe(
      TDX_PAGE_METADATA_INCORRECT + OPERAND_R8,
    );
    expect(snapshot(a)).toBe(beforeA);
    expect(snapshot(b)).toBe(beforeB);
    expect(a.m.pamt.owner(victim)).toBe(a.tdr);
  });

  it("cannot SEPT.ADD with the first TD's S-EPT page: PAGE_METADATA_INCORRECT|R8 (its TDR, held by its running vCPU: busy)", () => {
    const a = makeTd();
    const b = makeTd(a.host);
    const table = leafTableOf(a);
    const beforeA = snapshot(a);
    // B's walk to level 2 at 1 GiB succeeds (B's level-3 entry exists), so only the page is wrong.
    expect(b.m.memSeptAdd(1 * GiB, 2, b.tdr, table).status).toBe(
      TDX_PAGE_METADATA_INCORRECT + OPERAND_R8,
    );
    // A's TDR is held by A's vCPU in guest mode: the lock fails before the type is read.
    expect(b.m.memSeptAdd(1 * GiB, 2, b.tdr, a.tdr).status).toBe(TDX_OPERAND_BUSY + OPERAND_R8);
    expect(b.m.memSeptAdd(1 * GiB, 2, b.tdr, a.td.septRoot).status).toBe(
      TDX_PAGE_METADATA_INCORRECT + OPERAND_R8,
    );
    expect(snapshot(a)).toBe(beforeA);
    expect(a.m.pamt.owner(table)).toBe(a.tdr);
    // With a page of its own the same SEPT.ADD works.
    expect(b.m.memSeptAdd(1 * GiB, 2, b.tdr, freshPage(b.host)).status).toBe(TDX_SUCCESS);
  });

  it("B's RECLAIM, REMOVE or BLOCK cannot reach A's pages either", () => {
    const a = makeTd();
    const b = makeTd(a.host);
    const victim = privatePfn(a, 0);
    const beforeA = snapshot(a);
    expect(b.m.phymemPageReclaim(victim).status).toBe(TDX_LIFECYCLE_STATE_INCORRECT);
    // B's operations work on B's own S-EPT: A's mapping at the same GPA is untouched.
    expect(b.m.memRangeBlock(0, 0, b.tdr).status).toBe(TDX_SUCCESS);
    expect(septAt(b, 0, 0).state).toBe(SEPT_BLOCKED);
    expect(snapshot(a)).toBe(beforeA);
  });
});

describe("operands a careful VMM never passes", () => {
  it("a private GPA operand with the shared bit set: OPERAND_INVALID|RCX, for every GPA leaf", () => {
    const f = makeTd();
    const before = snapshot(f);
    const bad = 0x1000 + SHARED_BIT;
    const invalid = TDX_OPERAND_INVALID + OPERAND_RCX;
    expect(invalid).toBe(0xc000010000000001n);
    expect(f.m.memPageAug(UNTOUCHED + SHARED_BIT, 0, f.tdr, freshPage(f.host)).status).toBe(
      invalid,
    );
    expect(f.m.memSeptAdd(1 * GiB + SHARED_BIT, 2, f.tdr, freshPage(f.host)).status).toBe(invalid);
    expect(f.m.memRangeBlock(bad, 0, f.tdr).status).toBe(invalid);
    expect(f.m.memPageRemove(bad, 0, f.tdr).status).toBe(invalid);
    expect(f.m.memSeptRemove(SHARED_BIT, 1, f.tdr).status).toBe(invalid);
    expect(snapshot(f)).toBe(before);
  });

  it("a GPA beyond GPAW (bit 48 with GPAW 48) and a misaligned GPA: OPERAND_INVALID|RCX", () => {
    const f = makeTd();
    expect(f.m.memPageAug(2 ** 48 + UNTOUCHED, 0, f.tdr, freshPage(f.host)).status).toBe(
      TDX_OPERAND_INVALID + OPERAND_RCX,
    );
    expect(f.m.memPageAug(UNTOUCHED + 0x10, 0, f.tdr, freshPage(f.host)).status).toBe(
      TDX_OPERAND_INVALID + OPERAND_RCX,
    );
  });

  it("the S-EPT tree lock held by a concurrent caller: AUG returns OPERAND_BUSY|SEPT_TREE (0x8000020000000092)", () => {
    const f = makeTd();
    const page = freshPage(f.host);
    expect(f.td.treeLock.tryExclusive()).toBe(true); // e.g. a BLOCK in flight on another CPU
    const before = snapshot(f);
    const r = f.m.memPageAug(UNTOUCHED, 0, f.tdr, page);
    expect(r.status).toBe(TDX_OPERAND_BUSY + OPERAND_SEPT_TREE);
    expect(r.status).toBe(0x8000020000000092n);
    expect(f.m.memSeptAdd(1 * GiB, 2, f.tdr, freshPage(f.host)).status).toBe(0x8000020000000092n);
    expect(snapshot(f)).toBe(before);
    expect(f.m.pamt.type(page)).toBe(PT_NDA);
    // The failed calls took nothing: the concurrent holder still has the lock, alone.
    expect(f.td.treeLock.exclusive).toBe(true);
    expect(f.td.treeLock.readers).toBe(0);
    f.td.treeLock.release();
    expect(f.m.memPageAug(UNTOUCHED, 0, f.tdr, page).status).toBe(TDX_SUCCESS);
    expect(f.td.treeLock.held).toBe(false);
  });

  it("a shared holder of the tree lock lets AUG in but keeps BLOCK (exclusive) out", () => {
    const f = makeTd();
    expect(f.td.treeLock.tryShared()).toBe(true);
    expect(f.m.memRangeBlock(0x1000, 0, f.tdr).status).toBe(0x8000020000000092n);
    expect(f.m.memPageAug(UNTOUCHED, 0, f.tdr, freshPage(f.host)).status).toBe(TDX_SUCCESS);
    f.td.treeLock.release();
    expect(f.td.treeLock.held).toBe(false);
  });
});

describe("locks held by a concurrent caller across the call (docs/tdx-module.md §1 checks 9-10, §5)", () => {
  /** Sets or clears the S-EPT entry lock (TDEL, bit 11) of the 4K entry of `gpa`, as another CPU holding it would. */
  function entryLock(f: Fixture, gpa: number, held: boolean): void {
    const t = septPageWords(f.m.sept.get(leafTableOf(f))!);
    const off = 2 * ((gpa / 4096) % 512);
    t[off] = held ? t[off]! | SEPT_TDEL : t[off]! & ~SEPT_TDEL;
  }

  it("BLOCK of a MAPPED entry whose entry lock is held: OPERAND_BUSY|RCX, nothing blocked", () => {
    const f = makeTd();
    entryLock(f, 0x1000, true);
    expect(f.m.memRangeBlock(0x1000, 0, f.tdr).status).toBe(TDX_OPERAND_BUSY + OPERAND_RCX);
    entryLock(f, 0x1000, false);
    expect(septAt(f, 0x1000, 0).state).toBe(SEPT_MAPPED);
    expect(f.m.memRangeBlock(0x1000, 0, f.tdr).status).toBe(TDX_SUCCESS);
  });

  it("BLOCK of an entry already blocked (lock free): the warning GPA_RANGE_ALREADY_BLOCKED|RCX", () => {
    const f = makeTd();
    expect(f.m.memRangeBlock(0x1000, 0, f.tdr).status).toBe(TDX_SUCCESS);
    const again = f.m.memRangeBlock(0x1000, 0, f.tdr);
    expect(again.status).toBe(TDX_GPA_RANGE_ALREADY_BLOCKED + OPERAND_RCX);
    // With the entry in RCX and its level and state in RDX (tdh_mem_range_block.c).
    expect(again.levelState).toBe(levelState(0, SEPT_BLOCKED));
    expect(again.entry).toBeDefined();
    expect(again.entry).not.toBe(FREE_ENTRY);
  });

  // src bug: mem-leaves.ts memRangeBlockLeaf tests "already blocked" before the entry lock (check 9
  // before 10 in docs/tdx-module.md §1; the module's tdh_mem_range_block.c takes the entry lock
  // first).
  it("BLOCK of an already-blocked entry whose entry lock is held: OPERAND_BUSY|RCX, not ALREADY_BLOCKED", () => {
    const f = makeTd();
    expect(f.m.memRangeBlock(0x1000, 0, f.tdr).status).toBe(TDX_SUCCESS);
    entryLock(f, 0x1000, true);
    expect(f.m.memRangeBlock(0x1000, 0, f.tdr).status).toBe(0x8000020000000001n);
  });

  it("REMOVE of a blocked, tracked page whose PAMT entry is locked by a concurrent caller: BUSY, nothing removed", () => {
    const f = makeTd();
    const pfn = privatePfn(f, 0x1000);
    expect(f.m.memRangeBlock(0x1000, 0, f.tdr).status).toBe(TDX_SUCCESS);
    expect(f.m.memTrack(f.tdr).status).toBe(TDX_SUCCESS);
    f.m.tdExit(f.tdvpr);
    const lock = f.m.pamt.lock(pfn);
    expect(lock.tryExclusive()).toBe(true);
    expect(statusClass(f.m.memPageRemove(0x1000, 0, f.tdr).status)).toBe(TDX_OPERAND_BUSY);
    expect(f.m.pamt.type(pfn)).toBe(PT_REG);
    expect(septAt(f, 0x1000, 0).state).toBe(SEPT_BLOCKED);
    lock.release();
    expect(f.m.memPageRemove(0x1000, 0, f.tdr).status).toBe(TDX_SUCCESS);
  });

  // src bug: mem-leaves.ts memPageRemoveLeaf reports the busy PAMT lock of the removed page as
  // BUSY|R8, an operand REMOVE does not have (RCX = GPA, RDX = TDR; docs/tdx-module.md §1 table). The
  // module (tdh_mem_page_remove.c) returns api_error_with_operand_id(BUSY, OPERAND_ID_RCX).
  it("REMOVE with the removed page's PAMT lock held: exactly OPERAND_BUSY|RCX (0x8000020000000001)", () => {
    const f = makeTd();
    const pfn = privatePfn(f, 0x1000);
    expect(f.m.memRangeBlock(0x1000, 0, f.tdr).status).toBe(TDX_SUCCESS);
    expect(f.m.memTrack(f.tdr).status).toBe(TDX_SUCCESS);
    f.m.tdExit(f.tdvpr);
    expect(f.m.pamt.lock(pfn).tryExclusive()).toBe(true);
    expect(f.m.memPageRemove(0x1000, 0, f.tdr).status).toBe(0x8000020000000001n);
  });
});

describe("private memory stays private", () => {
  it("the host reads no plaintext of a private page, during its life or after KVM converts it to shared", () => {
    const f = makeTd();
    const gpa = 0x2000;
    const pfn = privatePfn(f, gpa);
    expect(f.m.guestWrite(f.tdvpr, gpa, "guest secret")).toBe(true);
    expect(f.m.hostRead(pfn)).toBeNull();
    // KVM converts the page to shared: BLOCK, TRACK + kick, REMOVE, WBINVD.
    const calls = { ...f.be.stats().calls };
    expect(
      runToEnd(hostOps.convertMemory(f.vm, f.vm.hostCtx, gpa / 4096, gpa / 4096 + 1, false)),
    ).toBe(1);
    const after = f.be.stats().calls;
    for (const c of [
      "TDH.MEM.RANGE.BLOCK",
      "TDH.MEM.TRACK",
      "TDH.MEM.PAGE.REMOVE",
      "TDH.PHYMEM.PAGE.WBINVD",
    ]) {
      expect(after[c]! - (calls[c] ?? 0)).toBe(1);
    }
    expect(f.be.stats().errors).toEqual({});
    expect(septAt(f, gpa, 0).state).toBe(SEPT_FREE);
    expect(f.m.pamt.type(pfn)).toBe(PT_NDA);
    const seen = f.m.hostRead(pfn);
    expect(seen).not.toBeNull();
    expect(seen).not.toContain("guest secret");
    expect(checkInvariants(f.vm, { final: false }).violations).toEqual([]);
  });

  it("a REMOVE by the host itself (BLOCK, TRACK, exit, REMOVE) does not hand it the plaintext either", () => {
    const f = makeTd();
    const pfn = privatePfn(f, 0x1000);
    expect(f.m.guestWrite(f.tdvpr, 0x1000, "another secret")).toBe(true);
    expect(f.m.memRangeBlock(0x1000, 0, f.tdr).status).toBe(TDX_SUCCESS);
    expect(f.m.memTrack(f.tdr).status).toBe(TDX_SUCCESS);
    f.m.tdExit(f.tdvpr);
    expect(f.m.memPageRemove(0x1000, 0, f.tdr).status).toBe(TDX_SUCCESS);
    expect(f.m.hostRead(pfn)).not.toContain("another secret");
  });
});

describe("raw calls through the backend and through a scenario", () => {
  it("backend.rawCall reports the status by name and as the exact value", () => {
    const f = makeTd();
    const r = f.be.rawCall(f.vm, "TDH.MEM.PAGE.REMOVE", { gpa: 0x1000, level: 0 });
    expect(r).toEqual({
      status: "GPA_RANGE_NOT_BLOCKED",
      detail: "0xC0000B0600000001 (GPA_RANGE_NOT_BLOCKED|RCX)",
    });
    const aug = f.be.rawCall(f.vm, "TDH.MEM.PAGE.AUG", {
      gpa: UNTOUCHED,
      level: 0,
      page: privatePfn(f, 0),
    });
    expect(aug.detail).toBe("0xC000030000000008 (PAGE_METADATA_INCORRECT|R8)");
    const busy = (() => {
      f.td.treeLock.tryExclusive();
      try {
        return f.be.rawCall(f.vm, "TDH.MEM.PAGE.AUG", { gpa: UNTOUCHED, level: 0, page: "fresh" });
      } finally {
        f.td.treeLock.release();
      }
    })();
    expect(busy.detail).toBe("0x8000020000000092 (OPERAND_BUSY|SEPT_TREE)");
  });

  it("on a running host the bring-up leaves are refused, each with its status; RDMD names what it read", () => {
    const f = makeTd();
    expect(f.be.rawCall(f.vm, "TDH.SYS.INIT", {}).detail).toBe(
      "0xC000050000000000 (SYS_INIT_NOT_PENDING)",
    );
    expect(f.be.rawCall(f.vm, "TDH.SYS.LP.INIT", { vcpu: 0 }).detail).toBe(
      "0xC000050B00000000 (SYS_LP_INIT_NOT_PENDING)",
    );
    expect(f.be.rawCall(f.vm, "TDH.SYS.KEY.CONFIG", { vcpu: 0 }).detail).toBe(
      "0xC000050700000000 (SYS_KEY_CONFIG_NOT_PENDING)",
    );
    expect(f.be.rawCall(f.vm, "TDH.SYS.TDMR.INIT", { page: 0 }).detail).toBe(
      "0x00000A0300000000 (TDMR_ALREADY_INITIALIZED)",
    );
    // A TDR's own PAMT entry: type TDR (4), no owner (tdh_mng_create.c writes owner 0).
    expect(f.be.tdr).not.toBe(0);
    expect(f.be.rawCall(f.vm, "TDH.PHYMEM.PAGE.RDMD", { page: f.be.tdr }).detail).toBe(
      "0x0000000000000000 (SUCCESS) RCX=0x4 RDX=0x0 R8=0x0 R9=0x0",
    );
  });

  it("the host's PAMT lies in host memory, reserved in the TDMR: a raw AUG or RECLAIM of a PAMT page is PAGE_METADATA_INCORRECT", () => {
    const f = makeTd();
    // A 256 MiB host: one 1 GiB TDMR, whose PAMT (1024 + 2 + 1 frames) the host kernel took
    // from its memory; the TDMR's reserved areas are the PAMT and the part past host memory.
    const [pamt, hole] = f.m.sys.tdmrs[0]!.rsvd;
    expect(pamt!.frames).toBe(1027);
    expect(hole).toEqual({
      base: f.host.frames.totalFrames,
      frames: 262144 - f.host.frames.totalFrames,
    });
    expect(f.host.frames.ownerOfPfn(pamt!.base)).not.toBe(OWNER_FREE);
    expect(f.be.rawCall(f.vm, "TDH.PHYMEM.PAGE.RDMD", { page: pamt!.base }).detail).toBe(
      "0x0000000000000000 (SUCCESS) RCX=0x1 RDX=0x0 R8=0x0 R9=0x0",
    );
    expect(
      f.be.rawCall(f.vm, "TDH.MEM.PAGE.AUG", { gpa: UNTOUCHED, level: 0, page: pamt!.base + 5 })
        .detail,
    ).toBe("0xC000030000000008 (PAGE_METADATA_INCORRECT|R8)");
    expect(f.be.rawCall(f.vm, "TDH.PHYMEM.PAGE.RECLAIM", { page: pamt!.base }).detail).toBe(
      "0xC000030000000001 (PAGE_METADATA_INCORRECT|RCX)",
    );
    // The rest of its last 2 MiB block is the host's, not the PAMT's: NDA to the module.
    expect(f.be.rawCall(f.vm, "TDH.PHYMEM.PAGE.RDMD", { page: pamt!.base + 1027 }).detail).toMatch(
      /RCX=0x0 /,
    );
  });

  it("metadata through raw calls: a field by name or id; the guest RIP is refused; an unknown name is bad input", () => {
    const f = makeTd();
    expect(f.be.rawCall(f.vm, "TDH.MNG.RD", { field: "TSC_OFFSET" }).detail).toBe(
      "0x0000000000000000 (SUCCESS) R8=0x0",
    );
    expect(f.be.rawCall(f.vm, "TDH.VP.RD", { vcpu: 0, field: "POSTED_INTR_NV" }).detail).toBe(
      "0x0000000000000000 (SUCCESS) R8=0xf2",
    );
    expect(f.be.rawCall(f.vm, "TDH.VP.RD", { vcpu: 0, field: "GUEST_RIP" }).detail).toBe(
      "0xC0000C0200000000 (METADATA_FIELD_NOT_READABLE)",
    );
    expect(
      f.be.rawCall(f.vm, "TDH.VP.WR", { vcpu: 0, field: "PEND_NMI", value: "1", mask: "0x1" })
        .status,
    ).toBe("SUCCESS");
    expect(f.be.rawCall(f.vm, "TDH.MNG.RD", { field: "0x1100000000000fff" }).detail).toBe(
      "0xC0000C0000000000 (METADATA_FIELD_ID_INCORRECT)",
    );
    expect(() => f.be.rawCall(f.vm, "TDH.MNG.RD", { field: "TSC" })).toThrow(
      /unknown metadata field 'TSC'/,
    );
  });

  const scenario = (hostLines: string) => `
name: malicious-remove
vm: { memory: 8MiB, gpaw: 48, vcpus: 1 }
backend: tdx
schedule: { mode: round-robin, interleave: false }
vcpus:
  - - { op: accept, gpa: 0x0, count: 2 }
host:
${hostLines}
`;

  it("a raw REMOVE in a host program: the op's result names the status; nothing else changes", () => {
    const scn = parseScenarioText(
      scenario("  - { op: raw, call: TDH.MEM.PAGE.REMOVE, gpa: 0x1000, level: 0 }"),
      "malicious.yaml",
    );
    const { report } = runScenario(scn, { backend: tdx });
    const raw = report.ops.find((o) => o.who === "host" && o.op === "raw");
    expect(raw?.result).toEqual({
      status: "GPA_RANGE_NOT_BLOCKED",
      detail: "0xC0000B0600000001 (GPA_RANGE_NOT_BLOCKED|RCX)",
    });
    expect(report.ops.find((o) => o.who === "vcpu0")?.result).toEqual({ ok: 2, exceptions: 0 });
    expect(report.backendStats.errors).toEqual({ GPA_RANGE_NOT_BLOCKED: 1 });
    expect(report.invariants.violations).toEqual([]);
  });

  it("raw BLOCK, TRACK, REMOVE with the vCPU still in guest: TLB_TRACKING_NOT_DONE, and the checks see the tampering", () => {
    const scn = parseScenarioText(
      scenario(
        [
          "  - { op: raw, call: TDH.MEM.RANGE.BLOCK, gpa: 0x1000, level: 0 }",
          "  - { op: raw, call: TDH.MEM.TRACK }",
          "  - { op: raw, call: TDH.MEM.PAGE.REMOVE, gpa: 0x1000, level: 0 }",
          "  - { op: raw, call: TDH.MEM.TRACK }",
        ].join("\n"),
      ),
      "malicious.yaml",
    );
    const { report } = runScenario(scn, { backend: tdx });
    const raws = report.ops.filter((o) => o.op === "raw").map((o) => o.result.detail);
    expect(raws).toEqual([
      "0x0000000000000000 (SUCCESS)",
      "0x0000000000000000 (SUCCESS)",
      "0xC0000B0800000001 (TLB_TRACKING_NOT_DONE|RCX)",
      "0x8000020100000000 (PREVIOUS_TLB_EPOCH_BUSY)",
    ]);
    // KVM's mirror still maps the page the S-EPT now has BLOCKED: the TDX checks report it.
    expect(report.invariants.violations.map((v) => v.check)).toContain("mirror-equals-sept");
  });
});

// tdh_vp_flush.c and tdh_mng_vpflushdone.c through a host program, and KVM's answer in
// tdx_mmu_release_hkid: a vCPU someone else flushed (VCPU_NOT_ASSOCIATED) is no error to KVM;
// any other VP.FLUSH failure is a KVM_BUG_ON.
describe("vCPU association: raw VP.FLUSH and VPFLUSHDONE, and KVM's teardown after them", () => {
  const scenario = (host: string[], inject: string[] = []) => `
name: association
vm: { memory: 8MiB, gpaw: 48, vcpus: 2 }
backend: tdx
schedule: { mode: round-robin, interleave: false }
${inject.length > 0 ? `inject:\n${inject.map((l) => `  - ${l}`).join("\n")}` : ""}
# Two vCPUs that never run: associated with their CPUs by VP.INIT, never in guest mode.
vcpus: [[], []]
host:
${host.map((l) => `  - ${l}`).join("\n")}
`;
  const raws = (r: ReturnType<typeof runScenario>) =>
    r.report.ops.filter((o) => o.op === "raw").map((o) => o.result.detail);

  it("VPFLUSHDONE before the vCPUs are flushed: FLUSHVP_NOT_DONE; after flushing both, SUCCESS", () => {
    const r = runScenario(
      parseScenarioText(
        scenario([
          "{ op: raw, call: TDH.MNG.VPFLUSHDONE }",
          "{ op: raw, call: TDH.VP.FLUSH, vcpu: 0 }",
          "{ op: raw, call: TDH.MNG.VPFLUSHDONE }",
          "{ op: raw, call: TDH.VP.FLUSH, vcpu: 1 }",
          "{ op: raw, call: TDH.VP.FLUSH, vcpu: 1 }",
          "{ op: raw, call: TDH.MNG.VPFLUSHDONE }",
        ]),
        "association.yaml",
      ),
      { backend: tdx },
    );
    expect(raws(r)).toEqual([
      "0x8000082400000000 (FLUSHVP_NOT_DONE)",
      "0x0000000000000000 (SUCCESS)",
      "0x8000082400000000 (FLUSHVP_NOT_DONE)",
      "0x0000000000000000 (SUCCESS)",
      "0x8000070200000000 (VCPU_NOT_ASSOCIATED)",
      "0x0000000000000000 (SUCCESS)",
    ]);
  });

  it("a vCPU flushed behind KVM's back: the teardown's VP.FLUSH gets VCPU_NOT_ASSOCIATED, and the HKID is freed", () => {
    const r = runScenario(
      parseScenarioText(
        scenario(["{ op: raw, call: TDH.VP.FLUSH, vcpu: 1 }", "{ op: teardown }"]),
        "association.yaml",
      ),
      { backend: tdx },
    );
    expect(r.report.invariants.violations).toEqual([]);
    expect(r.report.backendStats.errors).toEqual({ VCPU_NOT_ASSOCIATED: 1 });
    expect(r.report.backendStats.calls["TDH.MNG.KEY.FREEID"]).toBe(1);
    expect((r.vm.backend as TdxBackend).td.lifecycle).toBe(LC_TEARDOWN);
  });

  it("a VP.FLUSH that fails otherwise in the teardown: KVM_BUG_ON", () => {
    const r = runScenario(
      parseScenarioText(
        scenario(["{ op: teardown }"], ["{ call: TDH.VP.FLUSH, nth: 1, status: OPERAND_BUSY }"]),
        "association.yaml",
      ),
      { backend: tdx },
    );
    expect(r.report.invariants.violations.map((v) => v.message)).toEqual([
      expect.stringMatching(/KVM_BUG.*TDH\.VP\.FLUSH.*OPERAND_BUSY/),
    ]);
  });

  it("a vCPU index the VM does not have is bad input at its line", () => {
    expect(() =>
      parseScenarioText(scenario(["{ op: raw, call: TDH.VP.FLUSH, vcpu: 2 }"]), "association.yaml"),
    ).toThrow(
      /association\.yaml:\d+: host\[0\]\.vcpu: vCPU 2 does not exist: the VM has 2 \(0 to 1\)/,
    );
  });
});

// tdx_mmu_release_hkid keeps its own view of the HKID (`is_hkid_assigned`): what a malicious
// host did behind its back meets KVM's checks, not a shortcut.
describe("KVM's HKID release after the host's own calls, and its failures", () => {
  const scenario = (host: string[], inject: string[] = []) => `
name: release
vm: { memory: 8MiB, gpaw: 48, vcpus: 1 }
backend: tdx
schedule: { mode: round-robin, interleave: false }
${inject.length > 0 ? `inject:\n${inject.map((l) => `  - ${l}`).join("\n")}` : ""}
vcpus: [[]]
host:
${host.map((l) => `  - ${l}`).join("\n")}
`;
  const run = (host: string[], inject?: string[]) =>
    runScenario(parseScenarioText(scenario(host, inject), "release.yaml"), { backend: tdx });

  it("the host flushed the vCPU and ran VPFLUSHDONE itself: KVM's VP.FLUSH meets TD_KEYS_NOT_CONFIGURED, a KVM_BUG_ON", () => {
    const r = run([
      "{ op: raw, call: TDH.VP.FLUSH, vcpu: 0 }",
      "{ op: raw, call: TDH.MNG.VPFLUSHDONE }",
      "{ op: teardown }",
    ]);
    expect(r.report.invariants.violations.map((v) => v.message)).toEqual([
      expect.stringMatching(/TDH\.VP\.FLUSH failed: 0x8000081000000000 \(TD_KEYS_NOT_CONFIGURED\)/),
    ]);
  });

  it("VPFLUSHDONE answers FLUSHVP_NOT_DONE: KVM gives up, no KEY.FREEID, and the control pages are leaked and counted", () => {
    const r = run(
      ["{ op: teardown }"],
      ["{ call: TDH.VP.FLUSH, nth: 1, status: VCPU_NOT_ASSOCIATED }"],
    );
    expect(r.report.invariants.violations).toEqual([]);
    expect(r.report.backendStats.calls["TDH.MNG.KEY.FREEID"]).toBeUndefined();
    expect(r.report.backendStats.errors).toMatchObject({ FLUSHVP_NOT_DONE: 1 });
    // The TDR, the six TDCS pages, the TDVPR and its five TDCX pages stay the module's.
    expect(r.report.stats.leakedPages).toBe(1 + 6 + 1 + 5);
  });

  it("KEY.FREEID fails: a KVM_BUG_ON, and the HKID is leaked", () => {
    const r = run(
      ["{ op: teardown }"],
      ["{ call: TDH.MNG.KEY.FREEID, nth: 1, status: WBCACHE_NOT_COMPLETE }"],
    );
    expect(r.report.invariants.violations.map((v) => v.message)).toEqual([
      expect.stringMatching(/TDH\.MNG\.KEY\.FREEID failed: 0x8000081700000000/),
    ]);
    expect(r.report.stats.leakedPages).toBeGreaterThan(0);
  });

  it("a raw VP.FLUSH without its vCPU is bad input", () => {
    expect(() => run(["{ op: raw, call: TDH.VP.FLUSH }"])).toThrow(
      /raw TDH\.VP\.FLUSH: TDH\.VP\.FLUSH names a vCPU: give vcpu: N/,
    );
  });
});

describe("a 2 MiB page AUGed behind KVM's back", () => {
  it("is the TD's by its 2M PAMT entry; the checks see the mapping KVM does not have, and nothing wrong in the PAMT", () => {
    const f = makeTd();
    const page = freshPage(f.host);
    const r = f.be.rawCall(f.vm, "TDH.MEM.PAGE.AUG", { gpa: 0x200000, level: 1, page });
    expect(r).toEqual({ status: "SUCCESS", detail: "0x0000000000000000 (SUCCESS)" });
    expect(f.m.pamt.type2m(page)).toBe(PT_REG);
    const checks = checkInvariants(f.vm, { final: false }).violations;
    expect(checks.map((v) => v.check)).toEqual(["mirror-equals-sept"]);
    expect(checks[0]!.message).toMatch(/S-EPT PENDING at gfn 0x200 TDX level 1/);
    expect(f.be.guestPage(f.vm, 0x205, page + 5)).toBe(GUEST_PAGE_OWNED);
  });
});

// KVM decides by its own `kvm_tdx->state`, set by its own KVM_TDX_FINALIZE_VM, never by the
// module's OP_STATE, which a raw TDH.MR.FINALIZE moves behind its back.
describe("KVM's own TD state after the host's raw TDH.MR.FINALIZE", () => {
  const scenario = (host: string[]) => `
name: raw-finalize
vm: { memory: 8MiB, gpaw: 48, vcpus: 1 }
backend: tdx
schedule: { mode: round-robin, interleave: false }
vcpus: [[]]
host:
${host.map((l) => `  - ${l}`).join("\n")}
`;
  const run = (host: string[]) =>
    runScenario(parseScenarioText(scenario(host), "raw-finalize.yaml"), { backend: tdx });

  it("a populate still premaps (KVM thinks the TD is being built): PAGE.ADD fails, -EIO, the premap stays counted", () => {
    const r = run(["{ op: raw, call: TDH.MR.FINALIZE }", "{ op: populate, gpa: 0x0, size: 4KiB }"]);
    const result = r.report.ops[1]!.result as { status: number; detail: string };
    expect(result.status).toBe(-5);
    expect(result.detail).toMatch(/TDH\.MEM\.PAGE\.ADD of gfn 0x0 failed: .*OP_STATE_INCORRECT/);
    expect((r.vm.backend as TdxBackend).nrPremapped).toBe(1);
  });

  it("KVM's own finalize then runs its TDH.MR.FINALIZE, which fails: a KVM_BUG_ON", () => {
    const r = run(["{ op: raw, call: TDH.MR.FINALIZE }", "{ op: finalize }"]);
    expect(r.report.invariants.violations.map((v) => v.message)).toEqual([
      expect.stringMatching(/TDH\.MR\.FINALIZE failed: .*OP_STATE_INCORRECT/),
    ]);
  });
});
