/**
 * The TDX module model: platform-wide state (PAMT, S-EPT pages, TDs) and the SEAMCALL leaves
 * that change it, each as one atomic step, with the checks in the module's order (docs/tdx-module.md
 * §1): TDR page and lock, fatal, lifecycle, op-state lock, op state, operands, S-EPT tree lock,
 * walk, entry lock, state lookup, then the new page. A failed check returns its status with the
 * operand ID and changes nothing.
 *
 * GPAs are byte addresses; levels are TDX levels (0 = 4K); pages are host PFNs.
 *
 * The module's state and dispatcher are in seam-core.ts, the checks the leaves share in
 * leaf-checks.ts, and the leaves as the ABI groups them in mng-, vp-, mem-, mr-, phymem- and
 * guest-leaves.ts; host reads without a SEAMCALL are in host-reads.ts. This class is the face:
 * one method per call, which hands the leaf's body and numeric operands to the dispatcher.
 *
 * Speed: a fault costs a TDH.MEM.PAGE.AUG and the TDH.VP.ENTER after its exit, so a successful
 * call allocates nothing. Each leaf's body is a function the dispatcher calls with the module
 * and numeric operands (no closure), successes share one frozen result, locks are checked rather
 * than held (see `lock`), the walk leaves its result in fields, sets of states and op states are
 * bit masks, and the event text is made only when the TD's listener asks for it.
 */
import {
  SEAMCALL_NAMES,
  TDG_MEM_PAGE_ACCEPT,
  TDH_MEM_PAGE_ADD,
  TDH_MEM_PAGE_AUG,
  TDH_MEM_PAGE_DEMOTE,
  TDH_MEM_PAGE_PROMOTE,
  TDH_MEM_PAGE_REMOVE,
  TDH_MEM_RANGE_BLOCK,
  TDH_MEM_RANGE_UNBLOCK,
  TDH_MEM_SEPT_ADD,
  TDH_MEM_SEPT_REMOVE,
  TDH_MEM_TRACK,
  TDH_MNG_ADDCX,
  TDH_MNG_CREATE,
  TDH_MNG_INIT,
  TDH_MNG_KEY_CONFIG,
  TDH_MNG_KEY_FREEID,
  TDH_MNG_VPFLUSHDONE,
  TDH_MR_EXTEND,
  TDH_MR_FINALIZE,
  TDH_PHYMEM_CACHE_WB,
  TDH_PHYMEM_PAGE_RDMD,
  TDH_SYS_CONFIG,
  TDH_SYS_INIT,
  TDH_SYS_KEY_CONFIG,
  TDH_SYS_LP_INIT,
  TDH_SYS_TDMR_INIT,
  TDH_MNG_RD,
  TDH_VP_RD,
  TDH_VP_WR,
  TDH_PHYMEM_PAGE_RECLAIM,
  TDH_PHYMEM_PAGE_WBINVD,
  TDH_VP_ADDCX,
  TDH_VP_CREATE,
  TDH_VP_INIT,
  TDH_VP_ENTER,
  TDH_VP_FLUSH,
} from "./leaves.js";
import { guestTranslate, guestWrite, tdgMemPageAcceptLeaf } from "./guest-leaves.js";
import { entryAt, hostRead, mappedPfn, septEntries } from "./host-reads.js";
import {
  memPageAddLeaf,
  memPageAugLeaf,
  memPageDemoteLeaf,
  memPagePromoteLeaf,
  memPageRemoveLeaf,
  memRangeBlockLeaf,
  memRangeUnblockLeaf,
  memSeptAddLeaf,
  memSeptRemoveLeaf,
  memTrackLeaf,
} from "./mem-leaves.js";
import {
  mngAddcxLeaf,
  mngCreateLeaf,
  mngInitLeaf,
  mngKeyConfigLeaf,
  mngKeyFreeidLeaf,
  mngVpflushdoneLeaf,
} from "./mng-leaves.js";
import { mrExtendLeaf, mrFinalizeLeaf } from "./mr-leaves.js";
import {
  phymemCacheWbLeaf,
  phymemPageRdmdLeaf,
  phymemPageReclaimLeaf,
  phymemPageWbinvdLeaf,
} from "./phymem-leaves.js";
import { SeamCore } from "./seam-core.js";
import { NO_TD } from "./pamt.js";
import { mngRdLeaf, vpRdLeaf, vpWrLeaf } from "./md-leaves.js";
import { ACCEPT_EXITED, EPT_VIOLATION, type GuestExit, type SeamResult } from "./seam-result.js";
import {
  LC_BLOCKED,
  LC_HKID_ASSIGNED,
  LC_KEYS_CONFIGURED,
  LC_TEARDOWN,
  OP_INITIALIZED,
  OP_RUNNABLE,
  type Td,
} from "./td.js";
import {
  type TdmrInfo,
  sysConfigLeaf,
  sysInitLeaf,
  sysKeyConfigLeaf,
  sysLpInitLeaf,
  sysTdmrInitLeaf,
} from "./sys-leaves.js";
import {
  tdExit,
  vpAddcxLeaf,
  vpCreateLeaf,
  vpEnterLeaf,
  vpFlushLeaf,
  vpInitLeaf,
} from "./vp-leaves.js";

export { SEAMCALL_NAMES };
export type { TdSetupRecord } from "./seam-core.js";
export type {
  CallListener,
  GuestExit,
  InjectedFault,
  SeamResult,
  SeamStats,
} from "./seam-result.js";

export class SeamModule extends SeamCore {
  // ------------------------------------------------------------------ TD management

  /** TDH.MNG.CREATE: the TDR page becomes the TD's root, with an HKID. */
  mngCreate(tdr: number, hkid: number): SeamResult {
    return this.call(TDH_MNG_CREATE, tdr, hkid, 0, 0, 0, mngCreateLeaf);
  }

  /** TDH.MNG.KEY.CONFIG: program the HKID's key on the package. */
  mngKeyConfig(tdr: number): SeamResult {
    return this.call(TDH_MNG_KEY_CONFIG, tdr, 0, 0, 0, 0, mngKeyConfigLeaf);
  }

  /** TDH.MNG.ADDCX: a TDCS page; the first one also holds the S-EPT root. */
  mngAddcx(tdr: number, page: number): SeamResult {
    return this.call(TDH_MNG_ADDCX, tdr, page, 0, 0, 0, mngAddcxLeaf);
  }

  /** TDH.MNG.INIT: TD parameters (GPAW, attributes); the S-EPT root is set up. */
  mngInit(tdr: number, params: { gpaw: number; septVeDisable: boolean }): SeamResult {
    return this.call(
      TDH_MNG_INIT,
      tdr,
      params.gpaw,
      params.septVeDisable ? 1 : 0,
      0,
      0,
      mngInitLeaf,
    );
  }

  /** TDH.VP.CREATE + TDH.VP.INIT on logical processor `lp`: a vCPU's TDVPR page, associated with `lp`. */
  vpCreate(tdr: number, tdvpr: number): SeamResult {
    return this.call(TDH_VP_CREATE, tdr, tdvpr, 0, 0, 0, vpCreateLeaf);
  }

  /** TDH.VP.ADDCX: `tdcx` becomes one of the TDCX pages of the vCPU `tdvpr`. */
  vpAddcx(tdvpr: number, tdcx: number): SeamResult {
    return this.call(TDH_VP_ADDCX, this.pamt.callOwner(tdvpr), tdvpr, tdcx, 0, 0, vpAddcxLeaf);
  }

  /** TDH.VP.INIT on logical processor `lp`. */
  vpInit(tdvpr: number, lp: number): SeamResult {
    return this.call(TDH_VP_INIT, this.pamt.callOwner(tdvpr), tdvpr, lp, 0, 0, vpInitLeaf);
  }

  /** TDH.MR.FINALIZE: the measurement is final; the TD becomes RUNNABLE. */
  mrFinalize(tdr: number): SeamResult {
    return this.call(TDH_MR_FINALIZE, tdr, 0, 0, 0, 0, mrFinalizeLeaf);
  }

  /** TDH.MR.EXTEND: measure 256 bytes of a MAPPED page into MRTD. */
  mrExtend(gpa: number, tdr: number): SeamResult {
    return this.call(TDH_MR_EXTEND, tdr, gpa, 0, 0, 0, mrExtendLeaf);
  }

  /**
   * TDH.VP.FLUSH on logical processor `lp`: the vCPU's cached state is written back (it must be
   * out of guest mode and associated with `lp`), and it is associated with no LP any more.
   */
  vpFlush(tdvpr: number, lp: number): SeamResult {
    return this.call(TDH_VP_FLUSH, this.pamt.callOwner(tdvpr), tdvpr, lp, 0, 0, vpFlushLeaf);
  }

  /** TDH.MNG.VPFLUSHDONE: every vCPU flushed; no VP.ENTER any more (lifecycle BLOCKED). */
  mngVpflushdone(tdr: number): SeamResult {
    return this.call(TDH_MNG_VPFLUSHDONE, tdr, 0, 0, 0, 0, mngVpflushdoneLeaf);
  }

  /** TDH.MNG.KEY.FREEID: the HKID goes back; the TD's pages can now be reclaimed. */
  mngKeyFreeid(tdr: number): SeamResult {
    return this.call(TDH_MNG_KEY_FREEID, tdr, 0, 0, 0, 0, mngKeyFreeidLeaf);
  }

  // ------------------------------------------------------------------ vCPU entry and exit

  /**
   * TDH.VP.ENTER: takes the epoch lock shared and counts the vCPU in the current epoch's parity
   * (a TRACK waits for the previous parity to drain). Only a RUNNABLE TD with keys runs.
   */
  vpEnter(tdvpr: number, lp: number): SeamResult {
    return this.call(TDH_VP_ENTER, this.vcpuOwner(tdvpr), tdvpr, lp, 0, 0, vpEnterLeaf);
  }

  /** A TD exit (EPT violation, IPI, ...): the vCPU leaves the count of its epoch's parity. */
  tdExit(tdvpr: number): void {
    tdExit(this, tdvpr);
  }

  // ------------------------------------------------------------------ S-EPT

  /** TDH.MEM.SEPT.ADD: a FREE entry at `level` (1..root-1) becomes NL_MAPPED over `page`. */
  memSeptAdd(gpa: number, level: number, tdr: number, page: number): SeamResult {
    return this.call(TDH_MEM_SEPT_ADD, tdr, gpa, level, page, 0, memSeptAddLeaf);
  }

  /** TDH.MEM.PAGE.AUG: a FREE leaf becomes PENDING over `page`, owned by the TD (4K here). */
  memPageAug(gpa: number, level: number, tdr: number, page: number): SeamResult {
    return this.call(TDH_MEM_PAGE_AUG, tdr, gpa, level, page, 0, memPageAugLeaf);
  }

  /**
   * TDH.MEM.PAGE.ADD (before finalize): a FREE 4K leaf becomes MAPPED over `page`, which gets the
   * content of `source` (a shared page) under the TD's key, and MRTD is extended.
   */
  memPageAdd(
    gpa: number,
    level: number,
    tdr: number,
    page: number,
    source: number,
    content = "",
  ): SeamResult {
    this.addContent = content;
    return this.call(TDH_MEM_PAGE_ADD, tdr, gpa, level, page, source, memPageAddLeaf);
  }

  /** TDH.MEM.RANGE.BLOCK: clear RWX of an entry; the page's BEPOCH records the current epoch. */
  memRangeBlock(gpa: number, level: number, tdr: number): SeamResult {
    return this.call(TDH_MEM_RANGE_BLOCK, tdr, gpa, level, 0, 0, memRangeBlockLeaf);
  }

  /** TDH.MEM.RANGE.UNBLOCK: reverse a BLOCK, once the block has been tracked. */
  memRangeUnblock(gpa: number, level: number, tdr: number): SeamResult {
    return this.call(TDH_MEM_RANGE_UNBLOCK, tdr, gpa, level, 0, 0, memRangeUnblockLeaf);
  }

  /**
   * TDH.MEM.TRACK: start a new TLB epoch. Refused while vCPUs that entered in the previous epoch
   * are still in guest mode.
   */
  memTrack(tdr: number): SeamResult {
    return this.call(TDH_MEM_TRACK, tdr, 0, 0, 0, 0, memTrackLeaf);
  }

  /**
   * TDH.MEM.PAGE.REMOVE: a leaf goes back to FREE and its page to NDA, not scrubbed. While the TD
   * runs, the leaf must have been blocked and the block tracked.
   */
  memPageRemove(gpa: number, level: number, tdr: number): SeamResult {
    return this.call(TDH_MEM_PAGE_REMOVE, tdr, gpa, level, 0, 0, memPageRemoveLeaf);
  }

  /** TDH.MEM.PAGE.PROMOTE: the table under (gpa, level) merged into one leaf at `level`; the freed S-EPT page in `pfn`. */
  memPagePromote(gpa: number, level: number, tdr: number): SeamResult {
    return this.call(TDH_MEM_PAGE_PROMOTE, tdr, gpa, level, 0, 0, memPagePromoteLeaf);
  }

  /** TDH.MEM.PAGE.DEMOTE: the leaf at (gpa, level) split into a table of leaves one level down, in S-EPT page `page`. */
  memPageDemote(gpa: number, level: number, tdr: number, page: number): SeamResult {
    return this.call(TDH_MEM_PAGE_DEMOTE, tdr, gpa, level, page, 0, memPageDemoteLeaf);
  }

  /** TDH.MEM.SEPT.REMOVE: an empty S-EPT page goes back (NL entry → FREE, page → NDA). */
  memSeptRemove(gpa: number, level: number, tdr: number): SeamResult {
    return this.call(TDH_MEM_SEPT_REMOVE, tdr, gpa, level, 0, 0, memSeptRemoveLeaf);
  }

  // ------------------------------------------------------------------ physical pages

  /**
   * TDH.PHYMEM.PAGE.RECLAIM: take a page back from a TD that is being torn down (HKID freed). A
   * TDR only once all its other pages are back.
   */
  phymemPageReclaim(pfn: number, onBehalfOf = this.pamt.callOwner(pfn)): SeamResult {
    return this.call(TDH_PHYMEM_PAGE_RECLAIM, onBehalfOf, pfn, 0, 0, 0, phymemPageReclaimLeaf);
  }

  // ------------------------------------------------------------------ metadata

  /** TDH.MNG.RD of field `id` of TD `tdr`: `regs.r8` the value. */
  mngRd(tdr: number, id: bigint): SeamResult {
    this.mdOperands.id = id;
    return this.call(TDH_MNG_RD, tdr, Number(id & 0xffffffffn), Number(id >> 32n), 0, 0, mngRdLeaf);
  }

  /** TDH.VP.RD of field `id` of vCPU `tdvpr`, on logical processor `lp`: `regs.r8` the value. */
  vpRd(tdvpr: number, lp: number, id: bigint): SeamResult {
    this.mdOperands.id = id;
    return this.call(
      TDH_VP_RD,
      this.pamt.callOwner(tdvpr),
      tdvpr,
      lp,
      Number(id & 0xffffffffn),
      Number(id >> 32n),
      vpRdLeaf,
    );
  }

  /** TDH.VP.WR of `value` under `mask` into field `id` of vCPU `tdvpr`, on `lp`: `regs.r8` the old value. */
  vpWr(tdvpr: number, lp: number, id: bigint, value: bigint, mask: bigint): SeamResult {
    this.mdOperands.id = id;
    this.mdOperands.value = value;
    this.mdOperands.mask = mask;
    return this.call(
      TDH_VP_WR,
      this.pamt.callOwner(tdvpr),
      tdvpr,
      lp,
      Number(id & 0xffffffffn),
      Number(id >> 32n),
      vpWrLeaf,
    );
  }

  // ------------------------------------------------------------------ the platform's bring-up

  /** TDH.SYS.INIT. */
  sysInit(): SeamResult {
    return this.call(TDH_SYS_INIT, NO_TD, 0, 0, 0, 0, sysInitLeaf);
  }

  /** TDH.SYS.LP.INIT on logical processor `lp`. */
  sysLpInit(lp: number): SeamResult {
    return this.call(TDH_SYS_LP_INIT, NO_TD, lp, 0, 0, 0, sysLpInitLeaf);
  }

  /** TDH.SYS.CONFIG: the TDMR_INFO array `tdmrs` (RCX), `count` of its entries (RDX), the global KeyID (R8). */
  sysConfig(tdmrs: readonly TdmrInfo[], hkid: number, count = tdmrs.length): SeamResult {
    this.tdmrInfo = tdmrs;
    return this.call(TDH_SYS_CONFIG, NO_TD, count, hkid, 0, 0, sysConfigLeaf);
  }

  /** TDH.SYS.KEY.CONFIG on `lp`'s package. */
  sysKeyConfig(lp: number): SeamResult {
    return this.call(TDH_SYS_KEY_CONFIG, NO_TD, lp, 0, 0, 0, sysKeyConfigLeaf);
  }

  /** TDH.SYS.TDMR.INIT of the TDMR at frame `baseFrame`: RDX (`regs.rdx`) is how far it has come. */
  sysTdmrInit(baseFrame: number): SeamResult {
    return this.call(TDH_SYS_TDMR_INIT, NO_TD, baseFrame, 0, 0, 0, sysTdmrInitLeaf);
  }

  /** TDH.PHYMEM.PAGE.RDMD: the page's PAMT metadata (`regs`: RCX type, RDX owner, R8 size, R9 BEPOCH). */
  phymemPageRdmd(pfn: number, onBehalfOf = this.pamt.callOwner(pfn)): SeamResult {
    return this.call(TDH_PHYMEM_PAGE_RDMD, onBehalfOf, pfn, 0, 0, 0, phymemPageRdmdLeaf);
  }

  /** TDH.PHYMEM.PAGE.WBINVD: write back and invalidate the page's cache lines for a key (1.5: page must be NDA). */
  phymemPageWbinvd(pfn: number, hkid: number, onBehalfOf = this.pamt.callOwner(pfn)): SeamResult {
    return this.call(TDH_PHYMEM_PAGE_WBINVD, onBehalfOf, pfn, hkid, 0, 0, phymemPageWbinvdLeaf);
  }

  /** TDH.PHYMEM.CACHE.WB on this package, made while freeing the HKID of the TD `onBehalfOf`. */
  phymemCacheWb(onBehalfOf: number): SeamResult {
    return this.call(TDH_PHYMEM_CACHE_WB, onBehalfOf, 0, 0, 0, 0, phymemCacheWbLeaf);
  }

  // ------------------------------------------------------------------ the guest side

  /**
   * TDG.MEM.PAGE.ACCEPT (guest TDCALL): a PENDING leaf at exactly `level` is zeroed with the TD's
   * key and becomes MAPPED. A missing, blocked or non-pending entry exits to the VMM (EPT
   * violation) so it can AUG the page; the guest then retries.
   */
  tdgMemPageAccept(tdvpr: number, gpa: number, level: number): SeamResult | GuestExit {
    const r = this.call(
      TDG_MEM_PAGE_ACCEPT,
      this.pamt.callOwner(tdvpr),
      tdvpr,
      gpa,
      level,
      0,
      tdgMemPageAcceptLeaf,
    );
    return r === ACCEPT_EXITED ? EPT_VIOLATION : r;
  }

  /** What the CPU does with a private guest access (see `guestTranslate` in guest-leaves.ts). */
  guestTranslate(tdvpr: number, gpa: number): "ok" | "ve" | GuestExit {
    return guestTranslate(this, tdvpr, gpa);
  }

  /** The guest writes `data` into its private page at `gpa` (the memory-content model). */
  guestWrite(tdvpr: number, gpa: number, data: string): boolean {
    return guestWrite(this, tdvpr, gpa, data);
  }

  /** The host reads a physical page: private memory (a page a TD owns) gives no plaintext. */
  hostRead(pfn: number): string | null {
    return hostRead(this, pfn);
  }

  /** The S-EPT entry for `gfn` at TDX `level`, as the host debugger reads it (see host-reads.ts). */
  entryAt(td: Td, gfn: number, level: number): { state: number; pfn: number } {
    return entryAt(this, td, gfn, level);
  }

  /** The page of the 4K leaf at `gpa` in any leaf state, or -1 (for a host that wants it). */
  mappedPfn(td: Td, gpa: number): number {
    return mappedPfn(this, td, gpa);
  }

  /** Every present entry of a TD's S-EPT below the root, depth first (see host-reads.ts). */
  septEntries(td: Td): Generator<[gfn: number, level: number, state: number, pfn: number]> {
    return septEntries(this, td);
  }
}

export {
  LC_HKID_ASSIGNED,
  LC_KEYS_CONFIGURED,
  LC_BLOCKED,
  LC_TEARDOWN,
  OP_INITIALIZED,
  OP_RUNNABLE,
};
