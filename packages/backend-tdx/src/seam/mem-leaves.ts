/**
 * TDH.MEM.*: the S-EPT leaves (SEPT.ADD and SEPT.REMOVE; PAGE.AUG, PAGE.ADD and PAGE.REMOVE;
 * RANGE.BLOCK and RANGE.UNBLOCK) and TDH.MEM.TRACK, which starts a new TLB epoch.
 */
import { PT_EPT, PT_REG } from "./pamt.js";
import {
  NO_TREE_LOCK,
  OPS_INITIALIZED,
  OPS_INIT_OR_RUNNABLE,
  ST_BLOCKABLE,
  ST_BLOCKED,
  ST_DEMOTABLE,
  ST_FREE,
  ST_NON_LEAF,
  ST_REMOVABLE,
  MAX_PA_PFN,
  TREE_EXCLUSIVE,
  TREE_SHARED,
  checkNew2mPage,
  checkNewPage,
  entryDetails,
  entryState,
  failOnEntry,
  lock,
  lockLeafPage,
  lockPage,
  septOperand,
  blockedAndTracked,
  tdPrologue,
  tracked,
} from "./leaf-checks.js";
import type { SeamCore } from "./seam-core.js";
import { type SeamResult, check, ok } from "./seam-result.js";
import {
  SEPT_BLOCKED,
  SEPT_FREE,
  SEPT_MAPPED,
  SEPT_NL_BLOCKED,
  SEPT_NL_MAPPED,
  SEPT_PENDING,
  SEPT_PENDING_BLOCKED,
  entryLocked,
  septPfn,
  septState,
} from "./sept.js";
import {
  OPERAND_R8,
  OPERAND_R9,
  OPERAND_RCX,
  OPERAND_RDX,
  OPERAND_SEPT_TREE,
  OPERAND_TD_EPOCH,
  TDX_EPT_PAGE_NOT_FREE,
  TDX_GPA_RANGE_ALREADY_BLOCKED,
  TDX_OPERAND_BUSY,
  TDX_OPERAND_INVALID,
  TDX_PREVIOUS_TLB_EPOCH_BUSY,
  TDX_SUCCESS,
  TDX_TLB_TRACKING_NOT_DONE,
  TDX_EPT_INVALID_PROMOTE_CONDITIONS,
} from "./status.js";
import { OP_RUNNABLE } from "./td.js";

/** TDH.MEM.SEPT.ADD: the body of `SeamModule.memSeptAdd`. */
export function memSeptAddLeaf(
  m: SeamCore,
  tdr: number,
  gpa: number,
  level: number,
  page: number,
): SeamResult {
  const td = tdPrologue(m, tdr, OPERAND_RDX, OPS_INIT_OR_RUNNABLE);
  const table = septOperand(m, td, gpa, level, 1, td.rootLevel, TREE_SHARED);
  const off = m.walkOff;
  entryState(m, table, off, level, ST_FREE);
  checkNewPage(m, page, OPERAND_R8);
  m.sept.init(page);
  m.pamt.set(page, PT_EPT, tdr);
  td.addChildren(1);
  m.sept.setEntry(table, off, SEPT_NL_MAPPED, page, level);
  return ok();
}

/** TDH.MEM.PAGE.AUG: the body of `SeamModule.memPageAug`. */
export function memPageAugLeaf(
  m: SeamCore,
  tdr: number,
  gpa: number,
  level: number,
  page: number,
): SeamResult {
  const td = tdPrologue(m, tdr, OPERAND_RDX, OPS_INIT_OR_RUNNABLE);
  // 4K or 2M (tdh_mem_page_aug.c): a 2 MiB page is one 2M PAMT entry, 512 pages of the TD.
  const table = septOperand(m, td, gpa, level, 0, 1, TREE_SHARED);
  const off = m.walkOff;
  entryState(m, table, off, level, ST_FREE);
  if (level === 0) checkNewPage(m, page, OPERAND_R8);
  else checkNew2mPage(m, page, OPERAND_R8);
  m.pamt.setLeaf(page, level, PT_REG, tdr);
  td.addChildren(level === 0 ? 1 : 512);
  m.sept.setEntry(table, off, SEPT_PENDING, page, level);
  return ok();
}

/** TDH.MEM.PAGE.ADD: the body of `SeamModule.memPageAdd`. */
export function memPageAddLeaf(
  m: SeamCore,
  tdr: number,
  gpa: number,
  level: number,
  page: number,
  source: number,
): SeamResult {
  const td = tdPrologue(m, tdr, OPERAND_RDX, OPS_INITIALIZED, true);
  const table = septOperand(m, td, gpa, level, 0, 0, NO_TREE_LOCK);
  const off = m.walkOff;
  entryState(m, table, off, level, ST_FREE);
  // The source only passes `shared_hpa_check` (tdh_mem_page_add.c), before the new page: a PA
  // below MAX_PA, outside SEAMRR, with a shared KeyID (the model's PFNs carry no KeyID and no
  // SEAMRR lies in host memory). Any other page will do, another TD's or one outside the TDMRs:
  // the module reads it through a shared mapping.
  check(
    Number.isInteger(source) && source >= 0 && source < MAX_PA_PFN,
    TDX_OPERAND_INVALID,
    OPERAND_R9,
  );
  checkNewPage(m, page, OPERAND_R8);
  m.pamt.set(page, PT_REG, tdr);
  td.addChildren(1);
  m.sept.setEntry(table, off, SEPT_MAPPED, page, level);
  m.plainSet(page, m.addContent);
  td.mrtd = (Math.imul(td.mrtd ^ 0x85ebca6b, 31) + gpa) >>> 0;
  return ok();
}

/** TDH.MEM.RANGE.BLOCK: the body of `SeamModule.memRangeBlock`. */
export function memRangeBlockLeaf(
  m: SeamCore,
  tdr: number,
  gpa: number,
  level: number,
): SeamResult {
  const td = tdPrologue(m, tdr, OPERAND_RDX, OPS_INIT_OR_RUNNABLE);
  const table = septOperand(m, td, gpa, level, 0, td.rootLevel, TREE_EXCLUSIVE);
  const off = m.walkOff;
  const lo = m.sept.entryLo(table, off);
  const hi = m.sept.entryHi(table, off);
  if (entryLocked(lo)) failOnEntry(TDX_OPERAND_BUSY + OPERAND_RCX, lo, hi, level);
  const st0 = septState(lo, hi, level);
  if (st0 === SEPT_BLOCKED || st0 === SEPT_PENDING_BLOCKED || st0 === SEPT_NL_BLOCKED) {
    // tdh_mem_range_block.c: a warning, with the entry details as for its errors.
    return entryDetails(TDX_GPA_RANGE_ALREADY_BLOCKED + OPERAND_RCX, lo, hi, level);
  }
  const st = entryState(m, table, off, level, ST_BLOCKABLE);
  const pfn = septPfn(lo, hi);
  const next =
    st === SEPT_MAPPED
      ? SEPT_BLOCKED
      : st === SEPT_PENDING
        ? SEPT_PENDING_BLOCKED
        : SEPT_NL_BLOCKED;
  m.sept.setEntry(table, off, next, pfn, level);
  // BEPOCH goes to the leaf page's own PAMT entry (2M for a 2 MiB page), or the S-EPT page's.
  m.pamt.setLeafBepoch(pfn, next === SEPT_NL_BLOCKED ? 0 : level, td.epoch);
  return ok();
}

/** TDH.MEM.RANGE.UNBLOCK: the body of `SeamModule.memRangeUnblock`. */
export function memRangeUnblockLeaf(
  m: SeamCore,
  tdr: number,
  gpa: number,
  level: number,
): SeamResult {
  const td = tdPrologue(m, tdr, OPERAND_RDX, OPS_INIT_OR_RUNNABLE);
  const table = septOperand(m, td, gpa, level, 0, td.rootLevel, TREE_EXCLUSIVE);
  const off = m.walkOff;
  const st = entryState(m, table, off, level, ST_BLOCKED);
  const pfn = septPfn(m.sept.entryLo(table, off), m.sept.entryHi(table, off));
  if (td.opState === OP_RUNNABLE)
    check(
      tracked(m, td, pfn, st === SEPT_NL_BLOCKED ? 0 : level),
      TDX_TLB_TRACKING_NOT_DONE,
      OPERAND_SEPT_TREE,
    );
  const next =
    st === SEPT_BLOCKED ? SEPT_MAPPED : st === SEPT_PENDING_BLOCKED ? SEPT_PENDING : SEPT_NL_MAPPED;
  m.sept.setEntry(table, off, next, pfn, level);
  return ok();
}

/** TDH.MEM.TRACK: the body of `SeamModule.memTrack`. */
export function memTrackLeaf(m: SeamCore, tdr: number): SeamResult {
  const td = tdPrologue(m, tdr, OPERAND_RCX, OPS_INIT_OR_RUNNABLE);
  lock(td.epochLock, true, OPERAND_TD_EPOCH);
  check(td.refcountOf((td.epoch - 1) & 1) === 0, TDX_PREVIOUS_TLB_EPOCH_BUSY);
  td.epoch++;
  return ok();
}

/** TDH.MEM.PAGE.REMOVE: the body of `SeamModule.memPageRemove`. */
export function memPageRemoveLeaf(
  m: SeamCore,
  tdr: number,
  gpa: number,
  level: number,
): SeamResult {
  const td = tdPrologue(m, tdr, OPERAND_RDX, OPS_INIT_OR_RUNNABLE);
  const table = septOperand(m, td, gpa, level, 0, 2, TREE_SHARED);
  const off = m.walkOff;
  const st = entryState(m, table, off, level, ST_REMOVABLE);
  const pfn = septPfn(m.sept.entryLo(table, off), m.sept.entryHi(table, off));
  // The page's PAMT entry (2M for a 2 MiB page) is locked before the blocked/tracked checks;
  // REMOVE has no page operand, so a busy page lock is reported against the GPA (RCX).
  lockLeafPage(m, pfn, level, OPERAND_RCX);
  const blocked = st === SEPT_BLOCKED || st === SEPT_PENDING_BLOCKED;
  blockedAndTracked(m, td, table, off, level, blocked, pfn, level);
  m.sept.setEntry(table, off, SEPT_FREE, 0, level);
  m.pamt.setLeafNda(pfn, level);
  // Not scrubbed: the page still holds ciphertext under the TD's key, never plaintext.
  for (let i = 0; i < 512 ** level; i++) m.plainDelete(pfn + i);
  td.addChildren(-(512 ** level));
  return { status: TDX_SUCCESS, pfn };
}

/**
 * TDH.MEM.PAGE.DEMOTE: the body of `SeamModule.memPageDemote` (tdh_mem_page_demote.c, module
 * 1.5: no PAMT-page operands). A 2 MiB leaf becomes a table of 512 4K leaves in a new S-EPT
 * page, each in the leaf's state unblocked (BLOCKED → MAPPED, PENDING_BLOCKED → PENDING), so the
 * guest keeps every page it had accepted; the parent is NL_MAPPED at once (no UNBLOCK), and the
 * 2M PAMT entry splits into 512 4K entries of the TD with BEPOCH 0.
 */
export function memPageDemoteLeaf(
  m: SeamCore,
  tdr: number,
  gpa: number,
  level: number,
  page: number,
): SeamResult {
  const td = tdPrologue(m, tdr, OPERAND_RDX, OPS_INIT_OR_RUNNABLE);
  // Level 2 (1G → 2M) is a valid operand, as on the module, but the model has no 1G leaves: the
  // entry's state check refuses it before the body below, which is for 2M → 4K.
  const table = septOperand(m, td, gpa, level, 1, 2, TREE_SHARED);
  const off = m.walkOff;
  const st = entryState(m, table, off, level, ST_DEMOTABLE);
  const pfn = septPfn(m.sept.entryLo(table, off), m.sept.entryHi(table, off));
  const blocked = st === SEPT_BLOCKED || st === SEPT_PENDING_BLOCKED;
  blockedAndTracked(m, td, table, off, level, blocked, pfn, level);
  checkNewPage(m, page, OPERAND_R8);
  // pamt_demote: the 2M entry locked exclusively (no page operand of its own: RCX).
  lockLeafPage(m, pfn, level, OPERAND_RCX);
  const child = m.sept.init(page);
  const small = st === SEPT_BLOCKED || st === SEPT_MAPPED ? SEPT_MAPPED : SEPT_PENDING;
  for (let i = 0; i < 512; i++) m.sept.setEntry(child, 2 * i, small, pfn + i, level - 1);
  // tdh_mem_page_demote.c: the new S-EPT page's type and owner only (unlike SEPT.ADD's).
  m.pamt.setTypeOwner(page, PT_EPT, tdr);
  td.addChildren(1);
  m.pamt.setNda2m(pfn);
  for (let i = 0; i < 512; i++) m.pamt.set(pfn + i, PT_REG, tdr);
  m.sept.setEntry(table, off, SEPT_NL_MAPPED, page, level);
  return ok();
}

/**
 * TDH.MEM.PAGE.PROMOTE: the body of `SeamModule.memPagePromote` (tdh_mem_page_promote.c). The
 * table under the level-1 entry becomes one 2 MiB leaf again, if its 512 leaves could be one:
 * all MAPPED or all PENDING, none locked or blocked, over 512 contiguous pages from a 2M-aligned
 * one; else EPT_INVALID_PROMOTE_CONDITIONS|RCX. The leaf takes their state, unblocked; the S-EPT
 * page is free at once (NDA) and its PFN returned; the 4K PAMT entries merge into the 2M one.
 */
export function memPagePromoteLeaf(
  m: SeamCore,
  tdr: number,
  gpa: number,
  level: number,
): SeamResult {
  const td = tdPrologue(m, tdr, OPERAND_RDX, OPS_INIT_OR_RUNNABLE);
  // Level 2 would merge 2 MiB leaves into a 1G one, which the model does not have: its 2 MiB
  // children fail the 4K contiguity check below (EPT_INVALID_PROMOTE_CONDITIONS).
  const table = septOperand(m, td, gpa, level, 1, 2, TREE_SHARED);
  const off = m.walkOff;
  const st = entryState(m, table, off, level, ST_NON_LEAF);
  const page = septPfn(m.sept.entryLo(table, off), m.sept.entryHi(table, off));
  lockPage(m, page, true, OPERAND_RCX);
  blockedAndTracked(m, td, table, off, level, st === SEPT_NL_BLOCKED, page);
  const child = m.sept.get(page)!;
  const lo0 = m.sept.entryLo(child, 0);
  const first = septPfn(lo0, m.sept.entryHi(child, 0));
  const state = septState(lo0, m.sept.entryHi(child, 0), level - 1);
  for (let i = 0; i < 512; i++) {
    const lo = m.sept.entryLo(child, 2 * i);
    const hi = m.sept.entryHi(child, 2 * i);
    // `is_sept_page_valid_for_merge`'s failures are reported on the parent entry.
    let fail = entryLocked(lo) ? TDX_OPERAND_BUSY : 0n;
    if (
      fail === 0n &&
      !(
        first % 512 === 0 &&
        (state === SEPT_MAPPED || state === SEPT_PENDING) &&
        septState(lo, hi, level - 1) === state &&
        septPfn(lo, hi) === first + i
      )
    )
      fail = TDX_EPT_INVALID_PROMOTE_CONDITIONS;
    if (fail !== 0n) {
      const plo = m.sept.entryLo(table, off);
      failOnEntry(fail + OPERAND_RCX, plo, m.sept.entryHi(table, off), level);
    }
  }
  // pamt_promote: the 2M entry locked exclusively, then the 512 4K entries merged into it.
  lockLeafPage(m, first, level, OPERAND_RCX);
  for (let i = 0; i < 512; i++) m.pamt.setNda(first + i);
  m.pamt.promote2m(first, PT_REG, tdr);
  m.sept.setEntry(table, off, state, first, level);
  m.sept.drop(page);
  m.pamt.setNda(page);
  td.addChildren(-1);
  return { status: TDX_SUCCESS, pfn: page };
}

/** TDH.MEM.SEPT.REMOVE: the body of `SeamModule.memSeptRemove`. */
export function memSeptRemoveLeaf(
  m: SeamCore,
  tdr: number,
  gpa: number,
  level: number,
): SeamResult {
  const td = tdPrologue(m, tdr, OPERAND_RDX, OPS_INIT_OR_RUNNABLE);
  const table = septOperand(m, td, gpa, level, 1, td.rootLevel, TREE_EXCLUSIVE);
  const off = m.walkOff;
  const st = entryState(m, table, off, level, ST_NON_LEAF);
  const page = septPfn(m.sept.entryLo(table, off), m.sept.entryHi(table, off));
  // tdh_mem_sept_remove.c locks the removed page's PAMT entry exclusively before the tracking
  // and emptiness checks (busy: RCX).
  lockPage(m, page, true, OPERAND_RCX);
  blockedAndTracked(m, td, table, off, level, st === SEPT_NL_BLOCKED, page);
  const child = m.sept.get(page)!;
  for (let i = 0; i < 512; i++) {
    if (
      septState(m.sept.entryLo(child, 2 * i), m.sept.entryHi(child, 2 * i), level - 1) !== SEPT_FREE
    ) {
      const lo = m.sept.entryLo(table, off);
      failOnEntry(TDX_EPT_PAGE_NOT_FREE + OPERAND_RCX, lo, m.sept.entryHi(table, off), level);
    }
  }
  m.sept.setEntry(table, off, SEPT_FREE, 0, level);
  m.sept.drop(page);
  m.pamt.setNda(page);
  td.addChildren(-1);
  // tdh_mem_sept_remove.c: RCX is the removed page's HPA.
  return { status: TDX_SUCCESS, pfn: page };
}
