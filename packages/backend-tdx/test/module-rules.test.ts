/**
 * The module's rules a malicious VMM runs into, one per test, each asserting the exact 64-bit
 * status the TDX module returns and citing the source file it follows: vCPU association and the
 * VP flush barrier, the locks a vCPU in guest mode holds, the order of a leaf's lock and type
 * checks, PAGE.ADD's source page. The rules seen through a whole VM (KVM's side, scenarios,
 * cross-TD pages, epochs and TRACK) are in malicious-host.test.ts.
 */
import { describe, expect, it } from "vitest";
import {
  LC_KEYS_CONFIGURED,
  OPERAND_R8,
  OPERAND_R9,
  OPERAND_RCX,
  OPERAND_RDX,
  PT_NDA,
  PT_TDR,
  SeamModule,
  TDX_FLUSHVP_NOT_DONE,
  TDX_LIFECYCLE_STATE_INCORRECT,
  TDX_OPERAND_BUSY,
  TDX_OPERAND_INVALID,
  TDX_OP_STATE_INCORRECT,
  TDX_PAGE_METADATA_INCORRECT,
  TDX_SUCCESS,
  TDX_TD_KEYS_NOT_CONFIGURED,
  TDX_VCPU_ASSOCIATED,
  TDX_VCPU_NOT_ASSOCIATED,
  TDX_OPERAND_ADDR_RANGE_ERROR,
  PT_REG,
  PT_EPT,
  SEPT_MAPPED,
  SEPT_NL_BLOCKED,
  SEPT_NL_MAPPED,
  SEPT_PENDING,
  TDX_GPA_RANGE_NOT_BLOCKED,
  TDX_PAGE_ALREADY_ACCEPTED,
  TDX_TLB_TRACKING_NOT_DONE,
  TDX_EPT_INVALID_PROMOTE_CONDITIONS,
  TDX_TDCX_NUM_INCORRECT,
  TDX_EPT_ENTRY_NOT_PRESENT,
  TDX_VCPU_STATE_INCORRECT,
  PT_TDCX,
  PT_TDVPR,
  TDX_SYS_NOT_READY,
  TDX_SYS_LP_INIT_NOT_PENDING,
  TDX_SYS_KEY_CONFIG_NOT_PENDING,
  TDX_SYS_INIT_NOT_PENDING,
  TDX_SYS_LP_INIT_DONE,
  TDX_SYS_CONFIG_NOT_PENDING,
  TDX_TDMR_ALREADY_INITIALIZED,
  tdxEnable,
  kernelTdmrInfo,
  PT_RSVD,
  TDX_INVALID_TDMR,
  TDX_NON_ORDERED_TDMR,
  TDX_NON_ORDERED_RESERVED_IN_TDMR,
  TDX_INVALID_RESERVED_IN_TDMR,
  TDX_INVALID_PAMT,
  TDX_PAMT_OVERLAP,
  TDX_PAMT_OUTSIDE_CMRS,
  TDX_TDMR_OUTSIDE_CMRS,
  type RsvdArea,
  type TdmrInfo,
  TDX_METADATA_FIELD_ID_INCORRECT,
  TDX_METADATA_FIELD_NOT_READABLE,
  TDX_METADATA_FIELD_NOT_WRITABLE,
  TDX_TD_VMCS_FIELD_NOT_INITIALIZED,
  TD_TSC_OFFSET,
  VP_GUEST_RIP,
  VP_PIN_BASED_VM_EXEC_CONTROL,
  VP_POSTED_INTR_DESC_ADDR,
  VP_POSTED_INTR_NV,
  levelState,
} from "../src/testing.js";
import {
  addSeptTables,
  finalizedTd,
  initializedTd,
  releaseHkid,
  runnableTd,
  tdcsPages,
  tdcxPages,
} from "./seam-fixtures.js";

describe("the end of a TD's keys", () => {
  // tdh_mng_vpflushdone.c: no TD prologue; the lifecycle must be KEYS_CONFIGURED or HKID_ASSIGNED.
  it("VPFLUSHDONE twice: the second finds the TD BLOCKED, LIFECYCLE_STATE_INCORRECT", () => {
    const m = runnableTd();
    expect(m.vpEnter(2, 0).status).toBe(TDX_SUCCESS);
    expect(m.mngVpflushdone(0).status).toBe(TDX_OPERAND_BUSY + OPERAND_RCX); // the vCPU in guest holds the TDR
    m.tdExit(2);
    expect(m.vpFlush(2, 0).status).toBe(TDX_SUCCESS);
    expect(m.mngVpflushdone(0).status).toBe(TDX_SUCCESS);
    expect(m.mngVpflushdone(0).status).toBe(TDX_LIFECYCLE_STATE_INCORRECT);
  });
});

// tdh_vp_flush.c, tdh_mng_vpflushdone.c and associate_vcpu (helpers.c): a vCPU is associated
// with the LP that ran TDH.VP.INIT or entered it last, until TDH.VP.FLUSH on that LP.
describe("vCPU association", () => {
  it("VPFLUSHDONE with a vCPU still associated: FLUSHVP_NOT_DONE, and the TD stays as it was", () => {
    const m = finalizedTd();
    expect(m.mngVpflushdone(0).status).toBe(TDX_FLUSHVP_NOT_DONE);
    expect(TDX_FLUSHVP_NOT_DONE).toBe(0x8000082400000000n);
    expect(m.tds.get(0)!.lifecycle).toBe(LC_KEYS_CONFIGURED);
    expect(m.vpFlush(2, 0).status).toBe(TDX_SUCCESS);
    expect(m.mngVpflushdone(0).status).toBe(TDX_SUCCESS);
  });

  it("VP.FLUSH on another LP, or a second time: VCPU_NOT_ASSOCIATED", () => {
    const m = finalizedTd();
    expect(m.vpFlush(2, 1).status).toBe(TDX_VCPU_NOT_ASSOCIATED);
    expect(TDX_VCPU_NOT_ASSOCIATED).toBe(0x8000070200000000n);
    expect(m.vpFlush(2, 0).status).toBe(TDX_SUCCESS);
    expect(m.vpFlush(2, 0).status).toBe(TDX_VCPU_NOT_ASSOCIATED);
  });

  it("VP.ENTER on another LP: VCPU_ASSOCIATED until the vCPU is flushed; then it is that LP's", () => {
    const m = finalizedTd();
    expect(m.vpEnter(2, 1).status).toBe(TDX_VCPU_ASSOCIATED);
    expect(TDX_VCPU_ASSOCIATED).toBe(0x8000070100000000n);
    expect(m.vpFlush(2, 0).status).toBe(TDX_SUCCESS);
    expect(m.vpEnter(2, 1).status).toBe(TDX_SUCCESS);
    m.tdExit(2);
    expect(m.vpFlush(2, 0).status).toBe(TDX_VCPU_NOT_ASSOCIATED);
    expect(m.mngVpflushdone(0).status).toBe(TDX_FLUSHVP_NOT_DONE);
    expect(m.vpFlush(2, 1).status).toBe(TDX_SUCCESS);
    expect(m.mngVpflushdone(0).status).toBe(TDX_SUCCESS);
  });

  it("VP.FLUSH of a vCPU in guest mode is busy on its TDVPR; of a TD without its keys, TD_KEYS_NOT_CONFIGURED", () => {
    const m = finalizedTd();
    expect(m.vpEnter(2, 0).status).toBe(TDX_SUCCESS);
    expect(m.vpFlush(2, 0).status).toBe(TDX_OPERAND_BUSY + OPERAND_RCX);
    m.tdExit(2);
    releaseHkid(m);
    expect(m.vpFlush(2, 0).status).toBe(TDX_TD_KEYS_NOT_CONFIGURED);
  });
});

// tdh_vp_enter.c: a vCPU in guest mode holds its TD's TDR and its TDVPR locked shared until
// the TD exit, so every leaf that needs either exclusively is busy meanwhile, at the lock,
// before the checks after it.
describe("locks a vCPU in guest mode holds", () => {
  /** TD 0 (finalized, its vCPU TDVPR 2 in guest mode) and TD 10 (initialized, vCPU 12). */
  function twoTds(): SeamModule {
    const m = initializedTd(finalizedTd(), 10, 2, 1);
    expect(m.vpEnter(2, 0).status).toBe(TDX_SUCCESS);
    return m;
  }

  it("SEPT.ADD naming another TD's TDR as its new page: OPERAND_BUSY|R8 while that TD runs, PAGE_METADATA_INCORRECT|R8 after", () => {
    const m = twoTds();
    expect(m.memSeptAdd(0, 3, 10, 0).status).toBe(TDX_OPERAND_BUSY + OPERAND_R8);
    expect(TDX_OPERAND_BUSY + OPERAND_R8).toBe(0x8000020000000008n);
    m.tdExit(2);
    expect(m.memSeptAdd(0, 3, 10, 0).status).toBe(TDX_PAGE_METADATA_INCORRECT + OPERAND_R8);
  });

  it("MR.FINALIZE and PAGE.ADD take the TDR exclusively: busy while a vCPU runs, OP_STATE_INCORRECT after", () => {
    const m = twoTds();
    expect(m.mrFinalize(0).status).toBe(TDX_OPERAND_BUSY + OPERAND_RCX);
    expect(m.memPageAdd(0x1000, 0, 0, 100, 101).status).toBe(TDX_OPERAND_BUSY + OPERAND_RDX);
    m.tdExit(2);
    expect(m.mrFinalize(0).status).toBe(TDX_OP_STATE_INCORRECT);
    expect(m.memPageAdd(0x1000, 0, 0, 100, 101).status).toBe(TDX_OP_STATE_INCORRECT);
  });

  it("RECLAIM of a live TD's TDR and KEY.FREEID: OPERAND_BUSY|RCX while a vCPU runs, LIFECYCLE_STATE_INCORRECT after", () => {
    const m = twoTds();
    expect(m.phymemPageReclaim(0).status).toBe(TDX_OPERAND_BUSY + OPERAND_RCX);
    expect(m.mngKeyFreeid(0).status).toBe(TDX_OPERAND_BUSY + OPERAND_RCX);
    // The other TD's TDR is not held: its vCPU never entered.
    expect(m.phymemPageReclaim(10).status).toBe(TDX_LIFECYCLE_STATE_INCORRECT);
    m.tdExit(2);
    expect(m.phymemPageReclaim(0).status).toBe(TDX_LIFECYCLE_STATE_INCORRECT);
    expect(m.mngKeyFreeid(0).status).toBe(TDX_LIFECYCLE_STATE_INCORRECT);
  });

  it("a running vCPU's TDVPR as a new page: busy; the TD's shared locks (AUG, TRACK) are not", () => {
    const m = twoTds();
    expect(m.memSeptAdd(0, 3, 10, 2).status).toBe(TDX_OPERAND_BUSY + OPERAND_R8);
    expect(m.memSeptAdd(0, 3, 0, 20).status).toBe(TDX_SUCCESS);
    expect(m.memTrack(0).status).toBe(TDX_SUCCESS);
  });
});

// tdh_mem_sept_remove.c locks the removed S-EPT page's PAMT entry exclusively.
it("SEPT.REMOVE of a table whose page's PAMT entry is locked: OPERAND_BUSY|RCX; unlocked, SUCCESS", () => {
  const m = finalizedTd();
  addSeptTables(m);
  expect(m.memRangeBlock(0, 1, 0).status).toBe(TDX_SUCCESS);
  expect(m.memTrack(0).status).toBe(TDX_SUCCESS);
  const held = m.pamt.lock(12);
  expect(held.tryExclusive()).toBe(true);
  expect(m.memSeptRemove(0, 1, 0).status).toBe(TDX_OPERAND_BUSY + OPERAND_RCX);
  held.release();
  // RCX: the removed page (tdh_mem_sept_remove.c).
  expect(m.memSeptRemove(0, 1, 0)).toEqual({ status: TDX_SUCCESS, pfn: 12 });
  expect(m.pamt.type(12)).toBe(PT_NDA);
});

// tdh_mem_page_add.c: the source page passes only shared_hpa_check (below MAX_PA, outside
// SEAMRR, a shared KeyID), after the entry's state and before the new page.
describe("PAGE.ADD's source page", () => {
  /** TD 0 initialized (not finalized), S-EPT tables 10-12 over GPA 0. */
  function withTables(): SeamModule {
    return addSeptTables(initializedTd());
  }

  it("may be any page: the TD's own TDR, a page outside the TDMRs", () => {
    const m = withTables();
    expect(m.memPageAdd(0x1000, 0, 0, 100, 0).status).toBe(TDX_SUCCESS);
    expect(m.memPageAdd(0x2000, 0, 0, 101, 5000).status).toBe(TDX_SUCCESS);
  });

  it("beyond MAX_PA: OPERAND_INVALID|R9, checked before the new page (here busy, the TD's own TDR)", () => {
    const m = withTables();
    expect(m.memPageAdd(0x1000, 0, 0, 0, 2 ** 40).status).toBe(TDX_OPERAND_INVALID + OPERAND_R9);
    expect(TDX_OPERAND_INVALID + OPERAND_R9).toBe(0xc000010000000009n);
    expect(m.memPageAdd(0x1000, 0, 0, 0, 7).status).toBe(TDX_OPERAND_BUSY + OPERAND_R8);
  });
});

// helpers.c: an explicit page operand is range-checked, then its PAMT entry locked, and only
// then its type read; an implicit TDR (a page's owner) is locked shared with the TDR's operand ID.
describe("the order of an operand's checks", () => {
  it("VP.FLUSH naming a running TD's TDR: OPERAND_BUSY|RCX (the lock comes before the type)", () => {
    const m = finalizedTd();
    expect(m.vpEnter(2, 0).status).toBe(TDX_SUCCESS);
    expect(m.vpFlush(0, 0).status).toBe(TDX_OPERAND_BUSY + OPERAND_RCX);
    m.tdExit(2);
    expect(m.vpFlush(0, 0).status).toBe(TDX_PAGE_METADATA_INCORRECT + OPERAND_RCX);
  });

  it("VPFLUSHDONE and KEY.FREEID of a page outside the TDMRs: OPERAND_ADDR_RANGE_ERROR|RCX; of a TDCS page: PAGE_METADATA_INCORRECT|RCX", () => {
    const m = finalizedTd();
    expect(m.mngVpflushdone(4096).status).toBe(TDX_OPERAND_ADDR_RANGE_ERROR + OPERAND_RCX);
    expect(m.mngKeyFreeid(4096).status).toBe(TDX_OPERAND_ADDR_RANGE_ERROR + OPERAND_RCX);
    expect(m.mngVpflushdone(1).status).toBe(TDX_PAGE_METADATA_INCORRECT + OPERAND_RCX);
    expect(m.mngKeyFreeid(1).status).toBe(TDX_PAGE_METADATA_INCORRECT + OPERAND_RCX);
  });

  it("a page operand at or above MAX_PA, or not a page number: OPERAND_INVALID with its operand, before the TDMR check", () => {
    // hpa_check_with_pwr_2_alignment (helpers.c) comes before the PAMT walk, whose miss is
    // OPERAND_ADDR_RANGE_ERROR (a page below MAX_PA outside the TDMRs).
    const m = finalizedTd();
    for (const pfn of [2 ** 40, 2 ** 40 + 5, 1.5, -1]) {
      expect(m.phymemPageReclaim(pfn).status, `RECLAIM ${pfn}`).toBe(
        TDX_OPERAND_INVALID + OPERAND_RCX,
      );
      expect(m.phymemPageWbinvd(pfn, 1, 0).status, `WBINVD ${pfn}`).toBe(
        TDX_OPERAND_INVALID + OPERAND_RCX,
      );
      expect(m.mngVpflushdone(pfn).status, `TDR ${pfn}`).toBe(TDX_OPERAND_INVALID + OPERAND_RCX);
    }
    expect(m.phymemPageReclaim(2 ** 40 - 1).status).toBe(
      TDX_OPERAND_ADDR_RANGE_ERROR + OPERAND_RCX,
    );
    expect(m.phymemPageWbinvd(4096, 1, 0).status).toBe(TDX_OPERAND_ADDR_RANGE_ERROR + OPERAND_RCX);
  });

  it("RECLAIM of the S-EPT root (the TD's first TDCS page) leaves no S-EPT page behind for the frame's next use", () => {
    const m = runnableTd();
    releaseHkid(m);
    for (const p of [100, 12, 11]) expect(m.phymemPageReclaim(p).status).toBe(TDX_SUCCESS);
    // RCX = the type the page had, RDX = the owner's TDR address, R8 = its size.
    const tdr = m.tds.get(0)!.tdr;
    expect(m.phymemPageReclaim(10).regs).toEqual({
      rcx: BigInt(PT_EPT),
      rdx: BigInt(tdr) << 12n,
      r8: 0n,
    });
    const root = m.tds.get(0)!.septRoot;
    expect(m.sept.get(root)).toBeDefined();
    expect(m.phymemPageReclaim(root).status).toBe(TDX_SUCCESS);
    expect(m.sept.get(root)).toBeUndefined();
  });

  it("WBINVD takes the page's 4K PAMT entry shared before its type check: held exclusively, OPERAND_BUSY|RCX", () => {
    const m = runnableTd();
    const page = m.pamt.lock(3900);
    expect(page.tryExclusive()).toBe(true);
    expect(m.phymemPageWbinvd(3900, 1, 0).status).toBe(TDX_OPERAND_BUSY + OPERAND_RCX);
    page.release();
    expect(m.phymemPageWbinvd(3900, 1, 0).status).toBe(TDX_SUCCESS);
  });

  it("RECLAIM of an S-EPT page while its TDR is held exclusively: OPERAND_BUSY|TDR (0x8000020000000080)", () => {
    const m = runnableTd();
    const tdr = m.pamt.lock(0);
    expect(tdr.tryExclusive()).toBe(true);
    // A failure after the type check returns RCX, RDX and R8 as a success would.
    const regs = { rcx: BigInt(PT_EPT), rdx: 0n, r8: 0n };
    expect(m.phymemPageReclaim(12)).toEqual({ status: 0x8000020000000080n, regs });
    tdr.release();
    expect(m.phymemPageReclaim(12)).toEqual({ status: TDX_LIFECYCLE_STATE_INCORRECT, regs });
    // Before it, nothing: the module's RCX, RDX and R8 stay 0.
    expect(m.phymemPageReclaim(3900)).toEqual({
      status: TDX_PAGE_METADATA_INCORRECT + OPERAND_RCX,
    });
  });
});

/** TDH.PHYMEM.PAGE.RDMD's output registers: type, owner, size, BEPOCH. */
function rdmdRegs(rcx: bigint, rdx: bigint, r8: bigint, r9: bigint): Record<string, bigint> {
  return { rcx, rdx, r8, r9 };
}

// 2 MiB private pages (tdh_mem_page_aug.c, tdg_mem_page_accept.c, tdh_mem_range_block.c,
// tdh_mem_page_remove.c, tdh_phymem_page_reclaim.c; pamt_manager.c): one 2M PAMT entry per
// 2 MiB page, the 512 4K entries under it left NDA, the TD's child count 512 more.
describe("2 MiB private pages", () => {
  const GPA_2M = 0x200000;
  /** A finalized TD with the tables down to the 2M level over GPA 0-1 GiB (the level-1 entries FREE). */
  function upTo2m(): SeamModule {
    return addSeptTables(finalizedTd(), 2);
  }

  it("AUG at level 1: PENDING at 2M, one 2M PAMT entry REG of the TD, 512 more children", () => {
    const m = upTo2m();
    const before = m.tds.get(0)!.childCount;
    expect(m.memPageAug(GPA_2M, 1, 0, 1024).status).toBe(TDX_SUCCESS);
    expect(m.entryAt(m.tds.get(0)!, GPA_2M / 4096, 1)).toMatchObject({
      state: SEPT_PENDING,
      pfn: 1024,
    });
    expect([
      m.pamt.type2m(1024),
      m.pamt.owner2m(1024),
      m.pamt.type(1024),
      m.pamt.type(1535),
    ]).toEqual([PT_REG, 0, PT_NDA, PT_NDA]);
    expect(m.tds.get(0)!.childCount).toBe(before + 512);
  });

  it("AUG at 2M with a page not 2M-aligned: OPERAND_INVALID|R8; outside the TDMRs: OPERAND_ADDR_RANGE_ERROR|R8", () => {
    const m = upTo2m();
    expect(m.memPageAug(GPA_2M, 1, 0, 1025).status).toBe(0xc000010000000008n);
    expect(m.memPageAug(GPA_2M, 1, 0, 4096).status).toBe(0xc000010100000008n);
  });

  it("AUG at 2M over a range holding an S-EPT page of the TD's: PAGE_METADATA_INCORRECT|R8; at a GPA not 2M-aligned: OPERAND_INVALID|RCX", () => {
    const m = upTo2m();
    // A 4K table under the 2M entry at 4 MiB, in frame 1029 (inside 1024-1535).
    expect(m.memSeptAdd(0x400000, 1, 0, 1029).status).toBe(TDX_SUCCESS);
    expect(m.memPageAug(GPA_2M, 1, 0, 1024).status).toBe(TDX_PAGE_METADATA_INCORRECT + OPERAND_R8);
    expect(m.memPageAug(GPA_2M + 0x1000, 1, 0, 1024).status).toBe(
      TDX_OPERAND_INVALID + OPERAND_RCX,
    );
  });

  it("AUG at 2M over the range of the call's own TDR: OPERAND_BUSY|R8 (the prologue's PAMT walk holds that 2M entry shared)", () => {
    const m = upTo2m();
    // pamt_walk to the TDR leaves its 1G and 2M entries held shared until the call ends, and
    // check_and_lock_free_range_hpa cannot promote the 2M one to exclusive: busy, not a type.
    expect(m.memPageAug(GPA_2M, 1, 0, 0).status).toBe(TDX_OPERAND_BUSY + OPERAND_R8);
    expect(m.pamt.type(0)).toBe(PT_TDR);
  });

  it("a page inside a 2 MiB page named as a new 4K page: PAGE_METADATA_INCORRECT|R8 (the PAMT walk ends at the 2M entry)", () => {
    const m = upTo2m();
    expect(m.memPageAug(GPA_2M, 1, 0, 1024).status).toBe(TDX_SUCCESS);
    expect(m.memSeptAdd(0x40000000, 2, 0, 1030).status).toBe(
      TDX_PAGE_METADATA_INCORRECT + OPERAND_R8,
    );
  });

  it("the guest ACCEPTs it at 2M; a 4K ACCEPT inside is PAGE_ALREADY_ACCEPTED with level 1", () => {
    const m = upTo2m();
    expect(m.memPageAug(GPA_2M, 1, 0, 1024).status).toBe(TDX_SUCCESS);
    expect(m.vpEnter(2, 0).status).toBe(TDX_SUCCESS);
    expect(m.tdgMemPageAccept(2, GPA_2M, 1)).toEqual({ status: TDX_SUCCESS });
    expect(m.guestTranslate(2, GPA_2M + 0x5000)).toBe("ok");
    expect(m.tdgMemPageAccept(2, GPA_2M + 0x5000, 0)).toEqual({
      status: TDX_PAGE_ALREADY_ACCEPTED + 1n,
    });
  });

  it("BLOCK at 2M puts BEPOCH on the 2M entry: REMOVE before TRACK is TLB_TRACKING_NOT_DONE|RCX; after, SUCCESS and 512 fewer children", () => {
    const m = upTo2m();
    expect(m.memPageAug(GPA_2M, 1, 0, 1024).status).toBe(TDX_SUCCESS);
    const before = m.tds.get(0)!.childCount;
    expect(m.memRangeBlock(GPA_2M, 1, 0).status).toBe(TDX_SUCCESS);
    expect(m.memPageRemove(GPA_2M, 1, 0).status).toBe(TDX_TLB_TRACKING_NOT_DONE + OPERAND_RCX);
    expect(m.memTrack(0).status).toBe(TDX_SUCCESS);
    const held = m.pamt.lock2m(1024);
    expect(held.tryExclusive()).toBe(true);
    expect(m.memPageRemove(GPA_2M, 1, 0).status).toBe(TDX_OPERAND_BUSY + OPERAND_RCX);
    held.release();
    expect(m.memPageRemove(GPA_2M, 1, 0).status).toBe(TDX_SUCCESS);
    expect(m.pamt.type2m(1024)).toBe(PT_NDA);
    expect(m.tds.get(0)!.childCount).toBe(before - 512);
  });

  /** `upTo2m` with a 2 MiB page AUGed at GPA_2M over pages 1024-1535 (accepted if `accept`) and its vCPU out of guest mode. */
  /** The 2 MiB leaf blocked, tracked and demoted into S-EPT page `page`. */
  function demote(m: SeamModule, page = 20): void {
    expect(m.memRangeBlock(GPA_2M, 1, 0).status).toBe(TDX_SUCCESS);
    expect(m.memTrack(0).status).toBe(TDX_SUCCESS);
    expect(m.memPageDemote(GPA_2M, 1, 0, page).status).toBe(TDX_SUCCESS);
  }

  function with2mPage(accept: boolean): SeamModule {
    const m = upTo2m();
    expect(m.memPageAug(GPA_2M, 1, 0, 1024).status).toBe(TDX_SUCCESS);
    expect(m.vpEnter(2, 0).status).toBe(TDX_SUCCESS);
    if (accept) expect(m.tdgMemPageAccept(2, GPA_2M, 1)).toEqual({ status: TDX_SUCCESS });
    m.tdExit(2);
    return m;
  }

  it("DEMOTE on a running TD: GPA_RANGE_NOT_BLOCKED|RCX unblocked, TLB_TRACKING_NOT_DONE|RCX untracked; a page inside the 2 MiB page as the new table: PAGE_METADATA_INCORRECT|R8", () => {
    const m = with2mPage(true);
    expect(m.memPageDemote(GPA_2M, 1, 0, 20).status).toBe(TDX_GPA_RANGE_NOT_BLOCKED + OPERAND_RCX);
    expect(m.memRangeBlock(GPA_2M, 1, 0).status).toBe(TDX_SUCCESS);
    expect(m.memPageDemote(GPA_2M, 1, 0, 20).status).toBe(TDX_TLB_TRACKING_NOT_DONE + OPERAND_RCX);
    expect(m.memTrack(0).status).toBe(TDX_SUCCESS);
    expect(m.memPageDemote(GPA_2M, 1, 0, 1030).status).toBe(
      TDX_PAGE_METADATA_INCORRECT + OPERAND_R8,
    );
    expect(m.memPageDemote(GPA_2M, 0, 0, 20).status).toBe(TDX_OPERAND_INVALID + OPERAND_RCX);
  });

  it("DEMOTE of an accepted 2 MiB page: 512 MAPPED 4K leaves in the new table, the parent NL_MAPPED unblocked, the PAMT split, the guest without a #VE", () => {
    const m = with2mPage(true);
    const td = m.tds.get(0)!;
    const before = td.childCount;
    demote(m);
    expect(m.entryAt(td, GPA_2M / 4096, 1)).toMatchObject({ state: SEPT_NL_MAPPED, pfn: 20 });
    for (const i of [0, 5, 511])
      expect(m.entryAt(td, GPA_2M / 4096 + i, 0)).toMatchObject({
        state: SEPT_MAPPED,
        pfn: 1024 + i,
      });
    expect([m.pamt.type2m(1024), m.pamt.type(1024), m.pamt.owner(1535), m.pamt.type(20)]).toEqual([
      PT_NDA,
      PT_REG,
      0,
      PT_EPT,
    ]);
    expect(td.childCount).toBe(before + 1);
    expect(m.vpEnter(2, 0).status).toBe(TDX_SUCCESS);
    expect(m.guestTranslate(2, GPA_2M + 0x5000)).toBe("ok");
    // One 4K page of it can now go on its own: BLOCK, TRACK, REMOVE at 4K.
    m.tdExit(2);
    expect(m.memRangeBlock(GPA_2M + 0x5000, 0, 0).status).toBe(TDX_SUCCESS);
    expect(m.memTrack(0).status).toBe(TDX_SUCCESS);
    expect(m.memPageRemove(GPA_2M + 0x5000, 0, 0).status).toBe(TDX_SUCCESS);
    expect(td.childCount).toBe(before);
  });

  it("DEMOTE of a 2 MiB page the guest never accepted: 512 PENDING leaves (a #VE on access)", () => {
    const m = with2mPage(false);
    demote(m);
    expect(m.entryAt(m.tds.get(0)!, GPA_2M / 4096 + 7, 0)).toMatchObject({
      state: SEPT_PENDING,
      pfn: 1031,
    });
    expect(m.vpEnter(2, 0).status).toBe(TDX_SUCCESS);
    expect(m.guestTranslate(2, GPA_2M + 0x7000)).toBe("ve");
  });

  /** `with2mPage` demoted into S-EPT page 20, then its table blocked and tracked, ready to PROMOTE. */
  function demotedAndBlocked(accept: boolean): SeamModule {
    const m = with2mPage(accept);
    demote(m);
    expect(m.memRangeBlock(GPA_2M, 1, 0).status).toBe(TDX_SUCCESS);
    expect(m.memTrack(0).status).toBe(TDX_SUCCESS);
    return m;
  }

  it("PROMOTE of 512 MAPPED contiguous leaves: one MAPPED 2 MiB leaf again, the S-EPT page free and returned, the PAMT merged", () => {
    const m = demotedAndBlocked(true);
    const td = m.tds.get(0)!;
    const before = td.childCount;
    expect(m.memPagePromote(GPA_2M, 1, 0)).toEqual({ status: TDX_SUCCESS, pfn: 20 });
    expect(m.entryAt(td, GPA_2M / 4096, 1)).toMatchObject({ state: SEPT_MAPPED, pfn: 1024 });
    expect([m.pamt.type2m(1024), m.pamt.type(1024), m.pamt.type(20)]).toEqual([
      PT_REG,
      PT_NDA,
      PT_NDA,
    ]);
    expect(td.childCount).toBe(before - 1);
    expect(m.vpEnter(2, 0).status).toBe(TDX_SUCCESS);
    expect(m.guestTranslate(2, GPA_2M + 0x5000)).toBe("ok");
  });

  it("PROMOTE refusals: unblocked GPA_RANGE_NOT_BLOCKED|RCX; untracked TLB_TRACKING_NOT_DONE|RCX; a leaf removed or of another state EPT_INVALID_PROMOTE_CONDITIONS|RCX", () => {
    const m = with2mPage(true);
    demote(m);
    expect(m.memPagePromote(GPA_2M, 1, 0).status).toBe(TDX_GPA_RANGE_NOT_BLOCKED + OPERAND_RCX);
    expect(m.memRangeBlock(GPA_2M, 1, 0).status).toBe(TDX_SUCCESS);
    expect(m.memPagePromote(GPA_2M, 1, 0).status).toBe(TDX_TLB_TRACKING_NOT_DONE + OPERAND_RCX);
    // One leaf blocked (the page's own BLOCK) breaks the sameness.
    expect(m.memTrack(0).status).toBe(TDX_SUCCESS);
    expect(m.memRangeUnblock(GPA_2M, 1, 0).status).toBe(TDX_SUCCESS);
    expect(m.memRangeBlock(GPA_2M + 0x3000, 0, 0).status).toBe(TDX_SUCCESS);
    expect(m.memRangeBlock(GPA_2M, 1, 0).status).toBe(TDX_SUCCESS);
    expect(m.memTrack(0).status).toBe(TDX_SUCCESS);
    const r = m.memPagePromote(GPA_2M, 1, 0);
    expect(r.status).toBe(TDX_EPT_INVALID_PROMOTE_CONDITIONS + OPERAND_RCX);
    expect(TDX_EPT_INVALID_PROMOTE_CONDITIONS + OPERAND_RCX).toBe(0xc0000b0900000001n);
    // Reported on the parent entry (blocked table: no RWX, no HPA), not the leaf that failed.
    expect([r.entry, r.levelState]).toEqual([0n, levelState(1, SEPT_NL_BLOCKED)]);
  });

  it("PROMOTE of 512 PENDING leaves gives a PENDING 2 MiB leaf; mixed PENDING and MAPPED is refused", () => {
    const pending = demotedAndBlocked(false);
    expect(pending.memPagePromote(GPA_2M, 1, 0).status).toBe(TDX_SUCCESS);
    expect(pending.entryAt(pending.tds.get(0)!, GPA_2M / 4096, 1)).toMatchObject({
      state: SEPT_PENDING,
      pfn: 1024,
    });
    const mixed = with2mPage(false);
    demote(mixed);
    expect(mixed.vpEnter(2, 0).status).toBe(TDX_SUCCESS);
    expect(mixed.tdgMemPageAccept(2, GPA_2M + 0x1000, 0)).toEqual({ status: TDX_SUCCESS });
    mixed.tdExit(2);
    expect(mixed.memRangeBlock(GPA_2M, 1, 0).status).toBe(TDX_SUCCESS);
    expect(mixed.memTrack(0).status).toBe(TDX_SUCCESS);
    expect(mixed.memPagePromote(GPA_2M, 1, 0).status).toBe(
      TDX_EPT_INVALID_PROMOTE_CONDITIONS + OPERAND_RCX,
    );
  });

  it("the guest's write lands in the frame of the 2 MiB page that holds its GPA, and the host reads none of its frames", () => {
    const m = with2mPage(true);
    expect(m.vpEnter(2, 0).status).toBe(TDX_SUCCESS);
    expect(m.guestWrite(2, GPA_2M + 0x5000, "secret")).toBe(true);
    expect(m.plainGet(1029)).toBe("secret");
    expect(m.plainGet(1024)).toBe("");
    for (const pfn of [1024, 1029, 1535]) expect(m.hostRead(pfn)).toBeNull();
    expect(m.mappedPfn(m.tds.get(0)!, GPA_2M + 0x5000)).toBe(1029);
  });

  it("WBINVD of a frame of a live 2 MiB page: PAGE_METADATA_INCORRECT|RCX; with its 2M entry held: OPERAND_BUSY|RCX", () => {
    const m = with2mPage(true);
    expect(m.phymemPageWbinvd(1029, 1, 0).status).toBe(TDX_PAGE_METADATA_INCORRECT + OPERAND_RCX);
    const held = m.pamt.lock2m(1024);
    expect(held.tryExclusive()).toBe(true);
    expect(m.phymemPageWbinvd(1029, 1, 0).status).toBe(TDX_OPERAND_BUSY + OPERAND_RCX);
  });

  it("a new 4K page whose 2M entry is held exclusively: OPERAND_BUSY|R8; AUG at 2M over a range with a page assigned in its middle: PAGE_METADATA_INCORRECT|R8", () => {
    const m = upTo2m();
    const held = m.pamt.lock2m(2048);
    expect(held.tryExclusive()).toBe(true);
    expect(m.memSeptAdd(0x40000000, 2, 0, 2050).status).toBe(TDX_OPERAND_BUSY + OPERAND_R8);
    held.release();
    expect(m.memSeptAdd(0x40000000, 2, 0, 2050).status).toBe(TDX_SUCCESS);
    expect(m.memPageAug(GPA_2M, 1, 0, 2048).status).toBe(TDX_PAGE_METADATA_INCORRECT + OPERAND_R8);
  });

  it("a RECLAIM of a 2 MiB page is the TD's call: counted and injectable for its TD", () => {
    const m = with2mPage(true);
    releaseHkid(m);
    const calls: number[] = [];
    m.listen(0, { seamcallDone: (leaf) => void calls.push(leaf) });
    expect(m.phymemPageReclaim(1024).status).toBe(TDX_SUCCESS);
    expect(calls).toHaveLength(1);
  });

  it("RECLAIM after teardown names the 2 MiB page by its first PFN: another PFN in it is OPERAND_INVALID|RCX", () => {
    const m = upTo2m();
    expect(m.memPageAug(GPA_2M, 1, 0, 1024).status).toBe(TDX_SUCCESS);
    releaseHkid(m);
    expect(m.phymemPageReclaim(1025).status).toBe(TDX_OPERAND_INVALID + OPERAND_RCX);
    const before = m.tds.get(0)!.childCount;
    expect(m.phymemPageReclaim(1024).status).toBe(TDX_SUCCESS);
    expect(m.pamt.type2m(1024)).toBe(PT_NDA);
    expect(m.tds.get(0)!.childCount).toBe(before - 512);
  });

  it("DEMOTE's new S-EPT page keeps the BEPOCH its frame had (tdh_mem_page_demote.c writes its type and owner only)", () => {
    const m = with2mPage(true);
    expect(m.memSeptAdd(0, 1, 0, 12).status).toBe(TDX_SUCCESS);
    expect(m.memPageAug(0x1000, 0, 0, 100).status).toBe(TDX_SUCCESS);
    const blockedAt = m.tds.get(0)!.epoch;
    expect(blockedAt).not.toBe(0);
    expect(m.memRangeBlock(0x1000, 0, 0).status).toBe(TDX_SUCCESS);
    expect(m.memTrack(0).status).toBe(TDX_SUCCESS);
    expect(m.memPageRemove(0x1000, 0, 0).status).toBe(TDX_SUCCESS);
    demote(m, 100);
    expect(m.phymemPageRdmd(100).regs).toEqual(rdmdRegs(BigInt(PT_EPT), 0n, 0n, BigInt(blockedAt)));
  });

  it("the 2M PAMT entry keeps its BEPOCH through DEMOTE and PROMOTE (pamt_promote copies type and owner only)", () => {
    const m = with2mPage(true);
    const blockedAt = m.tds.get(0)!.epoch;
    expect(blockedAt).not.toBe(0);
    demote(m);
    // DEMOTE's 512 4K entries start at BEPOCH 0; the 2M entry is NDA, its BEPOCH left as it was.
    expect(m.phymemPageRdmd(1024 + 3).regs).toEqual(rdmdRegs(BigInt(PT_REG), 0n, 0n, 0n));
    expect(m.memRangeBlock(GPA_2M, 1, 0).status).toBe(TDX_SUCCESS);
    expect(m.memTrack(0).status).toBe(TDX_SUCCESS);
    expect(m.memPagePromote(GPA_2M, 1, 0).status).toBe(TDX_SUCCESS);
    expect(m.tds.get(0)!.epoch).toBeGreaterThan(blockedAt);
    expect(m.phymemPageRdmd(1024).regs).toEqual(
      rdmdRegs(BigInt(PT_REG), 0n, 1n, BigInt(blockedAt)),
    );
  });
});

// check_td_in_correct_build_state (helpers.c): after fatal and keys, a TD leaf needs the TDCS
// pages TDH.MNG.ADDCX gives it.
describe("a TD without its TDCS pages", () => {
  it("MNG.INIT and VP.CREATE with fewer than six TDCS pages: TDCS_NOT_ALLOCATED (0xC000060600000000); ADDCX itself goes on", () => {
    const m = new SeamModule(4096);
    expect(m.mngCreate(0, 1).status).toBe(TDX_SUCCESS);
    expect(m.mngKeyConfig(0).status).toBe(TDX_SUCCESS);
    const [first, ...rest] = tdcsPages(0);
    expect(m.mngInit(0, { gpaw: 48, septVeDisable: false }).status).toBe(0xc000060600000000n);
    expect(m.mngAddcx(0, first!).status).toBe(TDX_SUCCESS);
    for (const page of rest.slice(0, 4)) expect(m.mngAddcx(0, page).status).toBe(TDX_SUCCESS);
    // Five of MIN_NUM_TDCS_PAGES (6): still refused.
    expect(m.mngInit(0, { gpaw: 48, septVeDisable: false }).status).toBe(0xc000060600000000n);
    expect(m.vpCreate(0, 2).status).toBe(0xc000060600000000n);
    expect(m.mngAddcx(0, rest[4]!).status).toBe(TDX_SUCCESS);
    expect(m.mngInit(0, { gpaw: 48, septVeDisable: false }).status).toBe(TDX_SUCCESS);
  });
});

// tdh_vp_addcx.c, tdh_vp_init.c, tdh_vp_enter.c (map_tdvps, check_and_associate_vcpu): a vCPU is
// its TDVPR and five TDCX pages (MIN_TDVPS_PAGES 6), READY only once VP.INIT ran.
describe("a vCPU's TDVPS pages and VP.INIT", () => {
  /** TD 0 initialized, with TDVPR 2 created but no TDCX page added. */
  function bareVcpu(): SeamModule {
    const m = new SeamModule(4096);
    m.mngCreate(0, 1);
    m.mngKeyConfig(0);
    for (const page of tdcsPages(0)) m.mngAddcx(0, page);
    m.mngInit(0, { gpaw: 48, septVeDisable: false });
    expect(m.vpCreate(0, 2).status).toBe(TDX_SUCCESS);
    return m;
  }

  it("VP.INIT before the five TDCX pages: TDCX_NUM_INCORRECT (0xC000061000000000), no operand", () => {
    const m = bareVcpu();
    for (const page of tdcxPages(2).slice(0, 4))
      expect(m.vpAddcx(2, page).status).toBe(TDX_SUCCESS);
    expect(m.vpInit(2, 0).status).toBe(TDX_TDCX_NUM_INCORRECT);
    expect(TDX_TDCX_NUM_INCORRECT).toBe(0xc000061000000000n);
    expect(m.vpAddcx(2, tdcxPages(2)[4]!).status).toBe(TDX_SUCCESS);
    expect(m.vpInit(2, 0).status).toBe(TDX_SUCCESS);
    expect(m.pamt.type(tdcxPages(2)[0]!)).toBe(PT_TDCX);
  });

  it("VP.ADDCX after VP.INIT, and VP.INIT twice: VCPU_STATE_INCORRECT (0xC000070000000000)", () => {
    const m = initializedTd();
    expect(m.vpAddcx(2, 3500).status).toBe(TDX_VCPU_STATE_INCORRECT);
    expect(TDX_VCPU_STATE_INCORRECT).toBe(0xc000070000000000n);
    expect(m.vpInit(2, 0).status).toBe(TDX_VCPU_STATE_INCORRECT);
    expect(m.pamt.type(3500)).toBe(PT_NDA);
  });

  it("VP.FLUSH of a vCPU short of TDCX pages: TDCX_NUM_INCORRECT before the association (tdh_vp_flush.c, map_tdvps)", () => {
    const m = bareVcpu();
    for (const page of tdcxPages(2).slice(0, 4))
      expect(m.vpAddcx(2, page).status).toBe(TDX_SUCCESS);
    expect(m.vpFlush(2, 0).status).toBe(TDX_TDCX_NUM_INCORRECT);
    expect(m.vpAddcx(2, tdcxPages(2)[4]!).status).toBe(TDX_SUCCESS);
    // Whole, never VP.INITed: associated with no LP.
    expect(m.vpFlush(2, 0).status).toBe(TDX_VCPU_NOT_ASSOCIATED);
  });

  it("VP.ADDCX past MAX_TDVPS_PAGES (15): TDCX_NUM_INCORRECT", () => {
    const m = bareVcpu();
    for (let i = 0; i < 14; i++) expect(m.vpAddcx(2, 3500 + i).status).toBe(TDX_SUCCESS);
    expect(m.vpAddcx(2, 3600).status).toBe(TDX_TDCX_NUM_INCORRECT);
  });

  it("VP.ADDCX: the TDVPR (RDX) is checked first, then the page (RCX): another TD's page or a non-TDVPR", () => {
    const m = bareVcpu();
    expect(m.vpAddcx(3, 3500).status).toBe(TDX_PAGE_METADATA_INCORRECT + OPERAND_RDX); // TDCS page 3, not a TDVPR
    expect(m.vpAddcx(2, 1).status).toBe(TDX_PAGE_METADATA_INCORRECT + OPERAND_RCX); // the TD's own TDCS page
    expect(m.vpAddcx(2, 0).status).toBe(TDX_OPERAND_BUSY + OPERAND_RCX); // its TDR, locked by the call
    expect(m.vpAddcx(2, 2).status).toBe(TDX_OPERAND_BUSY + OPERAND_RCX); // its TDVPR, held exclusively
  });

  it("VP.ENTER of a vCPU never VP.INITed: VCPU_STATE_INCORRECT; VP.ADDCX or VP.INIT on a finalized TD: OP_STATE_INCORRECT", () => {
    const m = bareVcpu();
    for (const page of tdcxPages(2)) expect(m.vpAddcx(2, page).status).toBe(TDX_SUCCESS);
    expect(m.mrFinalize(0).status).toBe(TDX_SUCCESS);
    expect(m.vpEnter(2, 0).status).toBe(TDX_VCPU_STATE_INCORRECT);
    expect(m.vpInit(2, 0).status).toBe(TDX_OP_STATE_INCORRECT);
    expect(m.vpAddcx(2, 3500).status).toBe(TDX_OP_STATE_INCORRECT);
  });
});

// tdh_mr_extend.c: the TDR held exclusively (the S-EPT tree with it), a 256-byte aligned
// private GPA, a walk to the first leaf, which must be MAPPED.
describe("TDH.MR.EXTEND", () => {
  it("a GPA with no leaf: EPT_ENTRY_NOT_PRESENT|RCX (0xC0000B0300000000 + RCX), with the entry the walk stopped at", () => {
    const m = initializedTd();
    const r = m.mrExtend(0x1000, 0);
    expect(r.status).toBe(TDX_EPT_ENTRY_NOT_PRESENT + OPERAND_RCX);
    expect(TDX_EPT_ENTRY_NOT_PRESENT).toBe(0xc0000b0300000000n);
    expect(r.entry).toBeDefined();
  });

  it("a leaf that is not MAPPED (PENDING): EPT_ENTRY_NOT_PRESENT with no operand; a MAPPED one is measured", () => {
    const m = initializedTd();
    addSeptTables(m);
    expect(m.memPageAug(0x1000, 0, 0, 100).status).toBe(TDX_SUCCESS);
    expect(m.mrExtend(0x1000, 0).status).toBe(TDX_EPT_ENTRY_NOT_PRESENT);
    expect(m.memPageAdd(0x2000, 0, 0, 101, 3000).status).toBe(TDX_SUCCESS);
    const before = m.tds.get(0)!.mrtd;
    expect(m.mrExtend(0x2100, 0).status).toBe(TDX_SUCCESS);
    expect(m.tds.get(0)!.mrtd).not.toBe(before);
  });

  it("a shared GPA, or one not 256-byte aligned: OPERAND_INVALID|RCX", () => {
    const m = initializedTd();
    expect(m.mrExtend(2 ** 47, 0).status).toBe(TDX_OPERAND_INVALID + OPERAND_RCX);
    expect(m.mrExtend(0x1010, 0).status).toBe(TDX_OPERAND_INVALID + OPERAND_RCX);
  });
});

// tdh_phymem_page_rdmd.c: any page of a TDMR, no type check; the PAMT leaf's type, owner, size, BEPOCH.
describe("TDH.PHYMEM.PAGE.RDMD", () => {
  it("reads a REG page's type, owner (a physical address), size and BEPOCH; a free page's zeros", () => {
    const m = runnableTd();
    const reg = m.phymemPageRdmd(100);
    expect(reg.status).toBe(TDX_SUCCESS);
    expect(reg.regs).toEqual({ rcx: BigInt(PT_REG), rdx: 0n << 12n, r8: 0n, r9: 0n });
    expect(m.memRangeBlock(0x1000, 0, 0).status).toBe(TDX_SUCCESS);
    expect(m.phymemPageRdmd(100).regs!.r9).toBe(BigInt(m.tds.get(0)!.epoch));
    expect(m.phymemPageRdmd(2).regs).toEqual({ rcx: BigInt(PT_TDVPR), rdx: 0n, r8: 0n, r9: 0n });
    expect(m.phymemPageRdmd(3900).regs).toEqual({ rcx: BigInt(PT_NDA), rdx: 0n, r8: 0n, r9: 0n });
  });

  it("a page that left its TD is NDA with its owner kept (leaves write only `pt = PT_NDA`); a TDR has no owner", () => {
    // A TDR away from PFN 0, so that an owner reads as something other than 0.
    const m = initializedTd(new SeamModule(4096), 16, 2, 0);
    expect(m.mrFinalize(16).status).toBe(TDX_SUCCESS);
    for (const [level, page] of [
      [3, 30],
      [2, 31],
      [1, 32],
    ])
      expect(m.memSeptAdd(0, level!, 16, page!).status).toBe(TDX_SUCCESS);
    expect(m.memPageAug(0x1000, 0, 16, 100).status).toBe(TDX_SUCCESS);
    expect(m.memRangeBlock(0x1000, 0, 16).status).toBe(TDX_SUCCESS);
    expect(m.memTrack(16).status).toBe(TDX_SUCCESS);
    expect(m.memPageRemove(0x1000, 0, 16).status).toBe(TDX_SUCCESS);
    const owner = { rdx: 16n << 12n, r8: 0n, r9: 0n };
    expect(m.phymemPageRdmd(100).regs).toEqual({ rcx: BigInt(PT_NDA), ...owner });
    // tdh_mng_create.c: the TDR's PAMT owner is 0.
    expect(m.phymemPageRdmd(16).regs).toEqual({ rcx: BigInt(PT_TDR), rdx: 0n, r8: 0n, r9: 0n });
    // SEPT.REMOVE of the emptied table; RECLAIM of a TDCS page once the HKID is released.
    expect(m.memRangeBlock(0, 1, 16).status).toBe(TDX_SUCCESS);
    expect(m.memTrack(16).status).toBe(TDX_SUCCESS);
    expect(m.memSeptRemove(0, 1, 16).status).toBe(TDX_SUCCESS);
    expect(m.phymemPageRdmd(32).regs).toEqual({ rcx: BigInt(PT_NDA), ...owner });
    releaseHkid(m, 16);
    const tdcs = tdcsPages(16)[1]!;
    expect(m.phymemPageReclaim(tdcs).regs).toEqual({
      rcx: BigInt(PT_TDCX),
      rdx: 16n << 12n,
      r8: 0n,
    });
    expect(m.phymemPageRdmd(tdcs).regs).toEqual({ rcx: BigInt(PT_NDA), ...owner });
  });

  it("a 2 MiB page answers for its 2M PAMT entry (size 1); outside the TDMR: OPERAND_ADDR_RANGE_ERROR|RCX", () => {
    const m = initializedTd(new SeamModule(4096), 16, 2, 0);
    expect(m.mrFinalize(16).status).toBe(TDX_SUCCESS);
    for (const [level, page] of [
      [3, 30],
      [2, 31],
    ])
      expect(m.memSeptAdd(0, level!, 16, page!).status).toBe(TDX_SUCCESS);
    expect(m.memPageAug(0x200000, 1, 16, 1024).status).toBe(TDX_SUCCESS);
    expect(m.phymemPageRdmd(1024 + 7).regs).toEqual(rdmdRegs(BigInt(PT_REG), 16n << 12n, 1n, 0n));
    expect(m.phymemPageRdmd(4096).status).toBe(TDX_OPERAND_ADDR_RANGE_ERROR + OPERAND_RCX);
  });
});

// tdh_sys_init.c, tdh_sys_lp_init.c, tdh_sys_config.c, tdh_sys_key_config.c, tdh_sys_tdmr_init.c
// and tdx_vmm_dispatcher.c: the platform's bring-up and the SYS_READY gate.
describe("the platform's bring-up (TDH.SYS.*)", () => {
  const GiB = 262144;
  /** Where the host put the PAMT of a 4096-frame platform (its 1 GiB TDMR needs 1024 + 2 + 1 frames), clear of the fixtures' pages. */
  const PAMT_BASE = 1024;

  it("before SYS_READY every other leaf is SYS_NOT_READY (0xC000050500000000), TDMR.INIT too", () => {
    const m = new SeamModule(4096, { cold: true, lps: 2 });
    expect(m.mngCreate(0, 1).status).toBe(TDX_SYS_NOT_READY);
    expect(TDX_SYS_NOT_READY).toBe(0xc000050500000000n);
    expect(m.sysTdmrInit(0).status).toBe(TDX_SYS_NOT_READY);
    expect(m.phymemPageRdmd(0).status).toBe(TDX_SYS_NOT_READY);
  });

  it("each step only in its state: LP.INIT before SYS.INIT, SYS.INIT twice, LP.INIT twice, CONFIG before every LP, KEY.CONFIG before CONFIG", () => {
    const m = new SeamModule(4096, { cold: true, lps: 2 });
    expect(m.sysLpInit(0).status).toBe(TDX_SYS_LP_INIT_NOT_PENDING);
    expect(TDX_SYS_LP_INIT_NOT_PENDING).toBe(0xc000050b00000000n);
    expect(m.sysKeyConfig(0).status).toBe(TDX_SYS_KEY_CONFIG_NOT_PENDING);
    expect(m.sysInit().status).toBe(TDX_SUCCESS);
    expect(m.sysInit().status).toBe(TDX_SYS_INIT_NOT_PENDING);
    expect(m.sysLpInit(0).status).toBe(TDX_SUCCESS);
    expect(m.sysLpInit(0).status).toBe(TDX_SYS_LP_INIT_DONE);
    const tdmrs = kernelTdmrInfo(4096, PAMT_BASE);
    expect(m.sysConfig(tdmrs, 1).status).toBe(TDX_SYS_CONFIG_NOT_PENDING); // LP 1 not initialized yet
    expect(m.sysLpInit(1).status).toBe(TDX_SUCCESS);
    expect(m.sysConfig(tdmrs, 1, 0).status).toBe(TDX_OPERAND_INVALID + OPERAND_RDX);
    expect(m.sysConfig(tdmrs, 0x10000).status).toBe(TDX_OPERAND_INVALID + OPERAND_R8);
    expect(m.sysConfig(tdmrs, 1).status).toBe(TDX_SUCCESS);
    expect(m.sysLpInit(1).status).toBe(TDX_SYS_LP_INIT_NOT_PENDING); // after SYS.CONFIG
    expect(m.sysKeyConfig(0).status).toBe(TDX_SUCCESS);
    // One package: the platform is SYS_READY, and a second KEY.CONFIG finds nothing pending.
    expect(m.sysKeyConfig(1).status).toBe(TDX_SYS_KEY_CONFIG_NOT_PENDING);
  });

  it("TDMR.INIT initializes 4 MiB a call; RDX stays at the 1 GiB boundary until the TDMR is done; pages past it are outside the TDMRs", () => {
    const m = new SeamModule(4096, { cold: true, lps: 1 });
    for (const r of [
      m.sysInit(),
      m.sysLpInit(0),
      m.sysConfig(kernelTdmrInfo(4096, PAMT_BASE), 1),
      m.sysKeyConfig(0),
    ])
      expect(r.status).toBe(TDX_SUCCESS);
    expect(m.sysTdmrInit(1).status).toBe(TDX_OPERAND_INVALID + OPERAND_RCX);
    expect(m.sysTdmrInit(GiB).status).toBe(TDX_OPERAND_INVALID + OPERAND_RCX); // no TDMR there
    const first = m.sysTdmrInit(0);
    expect(first.status).toBe(TDX_SUCCESS);
    expect(first.regs!.rdx).toBe(0n);
    // Until the whole 1 GiB block is initialized its pages are not usable.
    expect(m.mngCreate(0, 2).status).toBe(TDX_OPERAND_ADDR_RANGE_ERROR + OPERAND_RCX);
    let calls = 1;
    let last = first;
    while (last.regs!.rdx === 0n) {
      last = m.sysTdmrInit(0);
      calls++;
    }
    expect(calls).toBe(GiB / 1024);
    expect(last.regs!.rdx).toBe(BigInt(GiB) << 12n);
    expect(m.sysTdmrInit(0).status).toBe(TDX_TDMR_ALREADY_INITIALIZED);
    expect(m.mngCreate(0, 2).status).toBe(TDX_SUCCESS);
  });

  it("a host's module is brought up through the leaves: SYS.INIT, 64 LP.INIT, CONFIG, KEY.CONFIG, and a TDMR.INIT per 4 MiB", () => {
    const m = new SeamModule(4096, { cold: true });
    tdxEnable(m, 1, PAMT_BASE);
    expect(m.stats.calls).toEqual({
      "TDH.SYS.INIT": 1,
      "TDH.SYS.LP.INIT": 64,
      "TDH.SYS.CONFIG": 1,
      "TDH.SYS.KEY.CONFIG": 1,
      "TDH.SYS.TDMR.INIT": GiB / 1024,
    });
    expect(m.mngCreate(0, 2).status).toBe(TDX_SUCCESS);
  });
});

// tdh_sys_config.c (check_and_set_tdmrs and its helpers), pamt_manager.c (pamt_4kb_init),
// tdh_mem_page_aug.c and tdh_phymem_page_reclaim.c: the TDMR_INFO checks and the reserved frames.
describe("TDMRs, their PAMTs and reserved areas", () => {
  const GiB = 262144;
  const PAMT_BASE = 1024;
  const configuring = () => {
    const m = new SeamModule(4096, { cold: true, lps: 1 });
    for (const r of [m.sysInit(), m.sysLpInit(0)]) expect(r.status).toBe(TDX_SUCCESS);
    return m;
  };
  const good = kernelTdmrInfo(4096, PAMT_BASE)[0]!;
  const config = (...tdmrs: TdmrInfo[]) => configuring().sysConfig(tdmrs, 1).status;

  it("the kernel's TDMR_INFO: one 1 GiB TDMR, its PAMT 4K, 2M, 1G in one run, reserved: the PAMT and the part past memory", () => {
    expect(good).toEqual({
      base: 0,
      frames: GiB,
      pamt4k: { base: 1024, frames: 1024 },
      pamt2m: { base: 2048, frames: 2 },
      pamt1g: { base: 2050, frames: 1 },
      rsvd: [
        { offset: 1024, frames: 1027 },
        { offset: 4096, frames: GiB - 4096 },
      ],
    });
    expect(config(good)).toBe(TDX_SUCCESS);
  });

  it("each defect its own code, with the TDMR's index, the PAMT level or reserved area, and the other TDMR", () => {
    expect(config({ ...good, frames: GiB + 512 })).toBe(TDX_INVALID_TDMR);
    expect(config(good, good)).toBe(TDX_NON_ORDERED_TDMR + 1n); // the second overlaps the first
    const [pamt, hole] = good.rsvd as [RsvdArea, RsvdArea];
    expect(config({ ...good, rsvd: [hole, pamt] })).toBe(TDX_NON_ORDERED_RESERVED_IN_TDMR + 0x100n);
    expect(config({ ...good, rsvd: [{ offset: 0, frames: 0 }, pamt, hole] })).toBe(
      TDX_NON_ORDERED_RESERVED_IN_TDMR,
    );
    expect(config({ ...good, rsvd: [pamt, { ...hole, frames: hole.frames + 1 }] })).toBe(
      TDX_INVALID_RESERVED_IN_TDMR + 0x100n,
    );
    expect(config({ ...good, pamt2m: { base: 2048, frames: 0 } })).toBe(TDX_INVALID_PAMT + 0x100n); // too small for 512 entries
    expect(config({ ...good, pamt1g: { base: 2049, frames: 1 } })).toBe(TDX_PAMT_OVERLAP + 0x100n); // the 2M area overlaps the 1G one
    expect(config({ ...good, rsvd: [hole] })).toBe(TDX_PAMT_OVERLAP); // the 4K area lies in the TDMR's usable part
    const outside = {
      ...good,
      pamt4k: { base: 8192, frames: 1024 },
      pamt2m: { base: 9216, frames: 2 },
      pamt1g: { base: 9218, frames: 1 },
      rsvd: [hole],
    };
    expect(config(outside)).toBe(TDX_PAMT_OUTSIDE_CMRS + 0x200n); // the 1G area is checked first
    expect(TDX_PAMT_OUTSIDE_CMRS + 0x200n).toBe(0xc0000a1100000200n);
    expect(config({ ...good, rsvd: [pamt] })).toBe(TDX_TDMR_OUTSIDE_CMRS); // usable frames past the end of memory
  });

  it("after TDMR.INIT the PAMT's own frames are PT_RSVD: RDMD reads type 1; AUG of one is PAGE_METADATA_INCORRECT|R8, RECLAIM PAGE_METADATA_INCORRECT|RCX", () => {
    const m = new SeamModule(4096, { cold: true });
    tdxEnable(m, 1, PAMT_BASE);
    expect(m.phymemPageRdmd(PAMT_BASE).regs!.rcx).toBe(BigInt(PT_RSVD));
    expect(m.phymemPageRdmd(PAMT_BASE + 1026).regs!.rcx).toBe(BigInt(PT_RSVD));
    expect(m.phymemPageRdmd(PAMT_BASE - 1).regs!.rcx).toBe(BigInt(PT_NDA));
    expect(m.phymemPageRdmd(PAMT_BASE + 1027).regs!.rcx).toBe(BigInt(PT_NDA));
    initializedTd(m);
    addSeptTables(m);
    expect(m.memPageAug(0x1000, 0, 0, PAMT_BASE + 7).status).toBe(
      TDX_PAGE_METADATA_INCORRECT + OPERAND_R8,
    );
    expect(m.phymemPageReclaim(PAMT_BASE + 7).status).toBe(
      TDX_PAGE_METADATA_INCORRECT + OPERAND_RCX,
    );
    expect(m.memPageAug(0x1000, 0, 0, PAMT_BASE + 1027).status).toBe(TDX_SUCCESS);
  });
});

// tdh_mng_rd_wr.c, tdh_vp_rd_wr.c (md_check_as_single_element_id, the read and write masks).
describe("metadata: TDH.MNG.RD, TDH.VP.RD, TDH.VP.WR", () => {
  it("MNG.RD of the TSC offset reads R8; an unknown field, or one with reserved bits, is METADATA_FIELD_ID_INCORRECT; before MNG.INIT, OP_STATE_INCORRECT", () => {
    const m = initializedTd();
    const r = m.mngRd(0, TD_TSC_OFFSET);
    expect(r.status).toBe(TDX_SUCCESS);
    expect(r.regs).toEqual({ r8: 0n });
    expect(TD_TSC_OFFSET).toBe(0x110000000000000an);
    // The module's own id of the field (its context and size filled in) names the same field.
    expect(m.mngRd(0, 0x111000030000000an).status).toBe(TDX_SUCCESS);
    expect(m.mngRd(0, TD_TSC_OFFSET + 0x100n).status).toBe(TDX_METADATA_FIELD_ID_INCORRECT);
    expect(TDX_METADATA_FIELD_ID_INCORRECT).toBe(0xc0000c0000000000n);
    expect(m.mngRd(0, TD_TSC_OFFSET | (1n << 24n)).status).toBe(TDX_METADATA_FIELD_ID_INCORRECT);
    expect(m.mngRd(2, TD_TSC_OFFSET).status).toBe(TDX_PAGE_METADATA_INCORRECT + OPERAND_RCX); // a TDVPR, not a TDR
    const fresh = new SeamModule(4096);
    fresh.mngCreate(0, 1);
    fresh.mngKeyConfig(0);
    for (const page of tdcsPages(0)) fresh.mngAddcx(0, page);
    expect(fresh.mngRd(0, TD_TSC_OFFSET).status).toBe(TDX_OP_STATE_INCORRECT);
  });

  it("a field id is looked up by class and field code: size, INC_SIZE, WRITE_MASK_VALID, context and bit 63 are ignored, any other bit flipped is refused", () => {
    const m = initializedTd();
    // metadata_generic.c: md_check_as_single_element_id and the lookup by class and field code.
    // Bit 0 turns TSC_OFFSET (0xa) into TSC_MULTIPLIER (0xb), a field too.
    const readable = new Set([0, 32, 33, 50, 51, 52, 53, 54, 63]);
    for (let bit = 0; bit < 64; bit++) {
      const status = m.mngRd(0, TD_TSC_OFFSET ^ (1n << BigInt(bit))).status;
      expect([bit, status]).toEqual([
        bit,
        readable.has(bit) ? TDX_SUCCESS : TDX_METADATA_FIELD_ID_INCORRECT,
      ]);
    }
    for (const id of [TD_TSC_OFFSET + (1n << 64n), -TD_TSC_OFFSET])
      expect(m.mngRd(0, id).status).toBe(TDX_METADATA_FIELD_ID_INCORRECT);
  });

  it("VP.RD/WR of the guest RIP of a production TD: METADATA_FIELD_NOT_READABLE, METADATA_FIELD_NOT_WRITABLE", () => {
    const m = initializedTd();
    expect(m.vpRd(2, 0, VP_GUEST_RIP).status).toBe(TDX_METADATA_FIELD_NOT_READABLE);
    expect(TDX_METADATA_FIELD_NOT_READABLE).toBe(0xc0000c0200000000n);
    expect(m.vpWr(2, 0, VP_GUEST_RIP, 0x1000n, 0xffffffffffffffffn).status).toBe(
      TDX_METADATA_FIELD_NOT_WRITABLE,
    );
    expect(TDX_METADATA_FIELD_NOT_WRITABLE).toBe(0xc0000c0100000000n);
  });

  it("VP.WR: posted interrupts on before the vector and descriptor: TD_VMCS_FIELD_NOT_INITIALIZED with the field; the host writes bit 7 of the pin-based controls only", () => {
    const m = initializedTd();
    expect(m.vpWr(2, 0, VP_PIN_BASED_VM_EXEC_CONTROL, 0x80n, 0x80n).status).toBe(
      TDX_TD_VMCS_FIELD_NOT_INITIALIZED + 0x2n,
    );
    expect(m.vpWr(2, 0, VP_POSTED_INTR_NV, 0xf2n, 0xffffn).status).toBe(TDX_SUCCESS);
    expect(m.vpWr(2, 0, VP_PIN_BASED_VM_EXEC_CONTROL, 0x80n, 0x80n).status).toBe(
      TDX_TD_VMCS_FIELD_NOT_INITIALIZED + 0x2016n,
    );
    expect(m.vpWr(2, 0, VP_POSTED_INTR_DESC_ADDR, 0x5000n, 0xffffffffffffffffn).status).toBe(
      TDX_SUCCESS,
    );
    expect(m.vpWr(2, 0, VP_PIN_BASED_VM_EXEC_CONTROL, 0x1n, 0x1n).status).toBe(
      TDX_METADATA_FIELD_NOT_WRITABLE,
    );
    const w = m.vpWr(2, 0, VP_PIN_BASED_VM_EXEC_CONTROL, 0xffn, 0xffn);
    expect(w).toMatchObject({ status: TDX_SUCCESS, regs: { r8: 0n } });
    expect(m.vpRd(2, 0, VP_PIN_BASED_VM_EXEC_CONTROL).regs).toEqual({ r8: 0x80n });
  });

  it("VP.RD of a vCPU not VP.INITed: VCPU_STATE_INCORRECT; from another LP than the one it is associated with: VCPU_ASSOCIATED", () => {
    const m = initializedTd();
    expect(m.vpRd(2, 1, VP_POSTED_INTR_NV).status).toBe(TDX_VCPU_ASSOCIATED);
    expect(m.vpCreate(0, 9).status).toBe(TDX_SUCCESS);
    for (const page of tdcxPages(9)) expect(m.vpAddcx(9, page).status).toBe(TDX_SUCCESS);
    expect(m.vpRd(9, 1, VP_POSTED_INTR_NV).status).toBe(TDX_VCPU_STATE_INCORRECT);
  });
});
