/**
 * TDH.PHYMEM.*: taking a page back from a TD being torn down, flushing a page's cache lines, and
 * writing back a package's caches for the HKIDs being freed.
 */
import { NO_TD, PT_EPT, PT_NDA, PT_REG, PT_RSVD, PT_TDR } from "./pamt.js";
import { checkHpa, lockPage } from "./leaf-checks.js";
import type { SeamCore } from "./seam-core.js";
import { type SeamResult, SeamError, check, ok } from "./seam-result.js";
import {
  OPERAND_RCX,
  OPERAND_TDR,
  TDX_LIFECYCLE_STATE_INCORRECT,
  TDX_OPERAND_BUSY,
  TDX_SUCCESS,
  TDX_OPERAND_INVALID,
  TDX_NO_HKID_READY_TO_WBCACHE,
  TDX_PAGE_METADATA_INCORRECT,
  TDX_TD_ASSOCIATED_PAGES_EXIST,
} from "./status.js";
import { LC_BLOCKED, LC_TEARDOWN } from "./td.js";

/** TDH.PHYMEM.PAGE.RECLAIM: the body of `SeamModule.phymemPageReclaim`. */
export function phymemPageReclaimLeaf(m: SeamCore, _tdr: number, pfn: number): SeamResult {
  checkHpa(m, pfn, OPERAND_RCX);
  // tdh_phymem_page_reclaim.c: the PAMT walk locks the page's entry exclusively before its type
  // is read (a live TD's TDR, held by a vCPU in guest mode, is busy); it ends at the 2M entry of
  // a 2 MiB page, which must then be named by its first PFN. A page that is not the TDR then
  // takes its owner's TDR lock shared.
  check(
    m.pamt.tryLock2mAndRelease(pfn, m.pamt.type2m(pfn) !== PT_NDA),
    TDX_OPERAND_BUSY,
    OPERAND_RCX,
  );
  const level = m.pamt.type2m(pfn) !== PT_NDA ? 1 : 0;
  if (level === 0) lockPage(m, pfn, true, OPERAND_RCX);
  const type = level === 0 ? m.pamt.type(pfn) : m.pamt.type2m(pfn);
  const owner = level === 0 ? m.pamt.owner(pfn) : m.pamt.owner2m(pfn);
  check(type !== PT_NDA && type !== PT_RSVD, TDX_PAGE_METADATA_INCORRECT, OPERAND_RCX);
  // RCX = the type the page had, RDX = its owner's TDR address (0 for a TDR, which has none),
  // R8 = its size: set once the type passed its check, so every later failure returns them too.
  // The module also zeroes R9-R11 at entry; KVM reads none of them, and the model leaves them out.
  const regs = {
    rcx: BigInt(type),
    rdx: owner === NO_TD ? 0n : BigInt(owner) << 12n,
    r8: BigInt(level),
  };
  const must = (cond: boolean, status: bigint): void => {
    if (!cond) throw new SeamError({ status, regs });
  };
  must(level === 0 || pfn % 512 === 0, TDX_OPERAND_INVALID + OPERAND_RCX);
  // lock_and_map_implicit_tdr: the owner's TDR shared (RECLAIM has no prologue holding it).
  if (type !== PT_TDR) must(m.pamt.tryLockAndRelease(owner, false), TDX_OPERAND_BUSY + OPERAND_TDR);
  const td = m.tds.get(type === PT_TDR ? pfn : owner)!;
  must(td.lifecycle === LC_TEARDOWN, TDX_LIFECYCLE_STATE_INCORRECT);
  if (type === PT_TDR) {
    must(td.childCount === 0, TDX_TD_ASSOCIATED_PAGES_EXIST);
    m.removeTd(pfn);
  } else {
    td.addChildren(level === 0 ? -1 : -512);
  }
  // A page that leaves the TD stops being S-EPT memory: an S-EPT page, and the root too, which
  // is a TDCS page (its first, as TDH.MNG.INIT makes it). Left in the store, its entries would be
  // overwritten unrecorded when the frame next becomes an S-EPT page (`Sept.init`).
  if (m.sept.get(pfn) !== undefined) m.sept.drop(pfn);
  for (let i = 0; i < (level === 0 ? 1 : 512); i++) m.plainDelete(pfn + i);
  m.pamt.setLeafNda(pfn, level);
  return { status: TDX_SUCCESS, regs };
}

/**
 * TDH.PHYMEM.PAGE.RDMD (`tdh_phymem_page_rdmd.c`): a page's PAMT metadata, for any page in a
 * TDMR whatever its type. The PAMT walk takes the 2M entry's lock shared and ends there for a
 * 2 MiB page, else takes the 4K entry's shared (busy: RCX). RCX = type, RDX = the owner's
 * physical address (its PAMT owner field, a TDR PFN, shifted by 12; 0 for none), R8 = the
 * leaf's size (0 for 4K, 1 for 2M), R9 = BEPOCH for a REG or EPT page, else 0.
 */
export function phymemPageRdmdLeaf(m: SeamCore, _tdr: number, pfn: number): SeamResult {
  checkHpa(m, pfn, OPERAND_RCX);
  check(m.pamt.tryLock2mAndRelease(pfn, false), TDX_OPERAND_BUSY, OPERAND_RCX);
  const big = m.pamt.type2m(pfn) !== PT_NDA;
  if (!big) check(m.pamt.tryLockAndRelease(pfn, false), TDX_OPERAND_BUSY, OPERAND_RCX);
  const type = big ? m.pamt.type2m(pfn) : m.pamt.type(pfn);
  const owner = big ? m.pamt.owner2m(pfn) : m.pamt.owner(pfn);
  const level = big ? 1 : 0;
  const bepoch = type === PT_REG || type === PT_EPT ? m.pamt.leafBepoch(pfn, level) : 0;
  return {
    status: TDX_SUCCESS,
    regs: {
      rcx: BigInt(type),
      rdx: owner === NO_TD ? 0n : BigInt(owner) << 12n,
      r8: BigInt(level),
      r9: BigInt(bepoch),
    },
  };
}

/** TDH.PHYMEM.PAGE.WBINVD: the body of `SeamModule.phymemPageWbinvd`. */
export function phymemPageWbinvdLeaf(m: SeamCore, _tdr: number, pfn: number): SeamResult {
  checkHpa(m, pfn, OPERAND_RCX);
  // check_and_lock_explicit_4k_private_hpa: a frame of a 2 MiB page ends the walk at its 2M entry;
  // else the walk takes the 4K entry's lock shared, before the type check.
  const big = m.pamt.walk2m(pfn);
  check(big >= 0, TDX_OPERAND_BUSY, OPERAND_RCX);
  if (big === PT_NDA) check(m.pamt.tryLockAndRelease(pfn, false), TDX_OPERAND_BUSY, OPERAND_RCX);
  check(big === PT_NDA && m.pamt.type(pfn) === PT_NDA, TDX_PAGE_METADATA_INCORRECT, OPERAND_RCX);
  return ok();
}

/**
 * TDH.PHYMEM.CACHE.WB on this package: the caches are written back for every HKID whose TD has
 * passed VPFLUSHDONE, which clears their pending write-back. With none waiting the call does
 * nothing and says so (a warning status, not an error). The real leaf is interruptible and
 * resumed through RCX; one call here stands for the whole write-back.
 */
export function phymemCacheWbLeaf(m: SeamCore, _tdr: number): SeamResult {
  let any = false;
  for (const td of m.tds.values()) {
    if (td.lifecycle === LC_BLOCKED && td.wbcachePending) {
      td.wbcachePending = false;
      any = true;
    }
  }
  return any ? ok() : { status: TDX_NO_HKID_READY_TO_WBCACHE };
}
