/**
 * The checks the leaves share, in the module's order (docs/tdx-module.md §1): the TD prologue (checks
 * 1-5), the GPA operand (6), the S-EPT tree lock and walk (7-8), the entry lock and state
 * (9-10), the new page (11), and whether a block has been tracked. Each throws a SeamError with
 * the status and operand ID of the first check that fails, and changes nothing.
 */
import { PT_NDA, PT_TDR, PT_TDVPR } from "./pamt.js";
import type { SeamCore } from "./seam-core.js";
import { SeamError, check, failed, type SeamResult } from "./seam-result.js";
import {
  archSepteEntry,
  entryLocked,
  levelState,
  septState,
  septStateBit,
  SEPT_BLOCKED,
  SEPT_FREE,
  SEPT_MAPPED,
  SEPT_NL_BLOCKED,
  SEPT_NL_MAPPED,
  SEPT_PENDING,
  SEPT_PENDING_BLOCKED,
  type SeptPage,
} from "./sept.js";
import {
  OPERAND_RCX,
  OPERAND_OP_STATE,
  OPERAND_SEPT_TREE,
  TDX_EPT_ENTRY_STATE_INCORRECT,
  TDX_OPERAND_ADDR_RANGE_ERROR,
  TDX_OPERAND_BUSY,
  TDX_OPERAND_INVALID,
  TDX_OP_STATE_INCORRECT,
  TDX_PAGE_METADATA_INCORRECT,
  TDX_TD_FATAL,
  TDX_TD_KEYS_NOT_CONFIGURED,
  TDX_TDCS_NOT_ALLOCATED,
  TDX_GPA_RANGE_NOT_BLOCKED,
  TDX_TLB_TRACKING_NOT_DONE,
} from "./status.js";
import type { SharexLock } from "./locks.js";
import { OP_INITIALIZED, OP_RUNNABLE, OP_UNINITIALIZED, type Td } from "./td.js";

/** Op states as a mask (bit n = op state n), so a leaf's allowed set is one number. */
export const OPS_INITIALIZED = 1 << OP_INITIALIZED;
export const OPS_UNINITIALIZED = 1 << OP_UNINITIALIZED;
export const OPS_INIT_OR_RUNNABLE = (1 << OP_INITIALIZED) | (1 << OP_RUNNABLE);
export const OPS_ANY = OPS_UNINITIALIZED | OPS_INIT_OR_RUNNABLE;

export const ST_FREE = septStateBit(SEPT_FREE);
export const ST_MAPPED = septStateBit(SEPT_MAPPED);
export const ST_REMOVABLE =
  septStateBit(SEPT_MAPPED) |
  septStateBit(SEPT_BLOCKED) |
  septStateBit(SEPT_PENDING) |
  septStateBit(SEPT_PENDING_BLOCKED);
export const ST_BLOCKABLE =
  septStateBit(SEPT_MAPPED) | septStateBit(SEPT_PENDING) | septStateBit(SEPT_NL_MAPPED);
export const ST_BLOCKED =
  septStateBit(SEPT_BLOCKED) | septStateBit(SEPT_PENDING_BLOCKED) | septStateBit(SEPT_NL_BLOCKED);
export const ST_NON_LEAF = septStateBit(SEPT_NL_MAPPED) | septStateBit(SEPT_NL_BLOCKED);
/** DEMOTE's leaves: MAPPED, BLOCKED, PENDING, PENDING_BLOCKED. */
export const ST_DEMOTABLE =
  septStateBit(SEPT_MAPPED) |
  septStateBit(SEPT_BLOCKED) |
  septStateBit(SEPT_PENDING) |
  septStateBit(SEPT_PENDING_BLOCKED);

/** How a leaf takes the S-EPT tree lock. */
export const NO_TREE_LOCK = 0;
export const TREE_SHARED = 1;
export const TREE_EXCLUSIVE = 2;

/** 4096 · 512^level - 1 for the levels whose alignment a 32-bit mask can test (it divides 2^32). */
const ALIGN_MASK = [0xfff, 0x1fffff, 0x3fffffff];

/**
 * Takes a lock for the rest of the leaf (the module's locks never spin: a lock it cannot take
 * is OPERAND_BUSY with the operand's ID). A leaf is one atomic step of the model and releases
 * what it took before the step ends, so taking is modelled as checking that the lock could be
 * taken: the same status at the same point, and the lock as it was once the step is over. That
 * is exact because no leaf takes the same lock twice; the one case that could (a page whose
 * PAMT lock is the TDR's, already taken by the prologue) `lockPage` answers as the held lock would.
 */
export function lock(l: SharexLock, exclusive: boolean, busyOperand: bigint): void {
  if (!l.tryTakeAndRelease(exclusive)) failed(TDX_OPERAND_BUSY, busyOperand);
}

/** The PAMT entry lock of `pfn` (a page or a TDR), as `lock` does for the other locks. */
export function lockPage(m: SeamCore, pfn: number, exclusive: boolean, busyOperand: bigint): void {
  // The prologue holds the TDR's lock (shared or exclusive), so a page that is the TDR itself
  // could not be locked again (the module's locks are not recursive).
  if (
    pfn === m.lockedTdr ||
    !m.pamt.tryLockAndRelease(pfn, exclusive) ||
    (exclusive && heldByGuest(m, pfn, m.pamt.type(pfn)))
  ) {
    failed(TDX_OPERAND_BUSY, busyOperand);
  }
}

/**
 * A vCPU in guest mode holds its TD's TDR and its own TDVPR locked shared, from TDH.VP.ENTER to
 * the TD exit (`tdh_vp_enter.c`): no exclusive lock of either can be taken meanwhile. The model
 * keeps the hold as the state it follows from, the TD's counts of vCPUs in guest mode and the
 * vCPU's mode, so that a shared lock of the TDR (every TD leaf's prologue) stays independent of
 * entries and exits, as on the module.
 */
function heldByGuest(m: SeamCore, pfn: number, type: number): boolean {
  if (type === PT_TDR) {
    const td = m.tds.get(pfn);
    return td !== undefined && td.refcountOf(0) + td.refcountOf(1) > 0;
  }
  if (type === PT_TDVPR) return m.tds.get(m.pamt.owner(pfn))?.vcpus.get(pfn)?.inGuest ?? false;
  return false;
}

/** PFNs below MAX_PA (52 bits of physical address). */
export const MAX_PA_PFN = 2 ** (52 - 12);

/**
 * An operand's physical address, before its PAMT entry is looked at (`hpa_check` and its
 * callers in helpers.c): below MAX_PA (else OPERAND_INVALID), then inside a TDMR (else
 * OPERAND_ADDR_RANGE_ERROR, from the PAMT walk).
 */
export function checkHpa(m: SeamCore, pfn: number, operand: bigint): void {
  check(Number.isInteger(pfn) && pfn >= 0 && pfn < MAX_PA_PFN, TDX_OPERAND_INVALID, operand);
  check(m.pamt.inTdmr(pfn), TDX_OPERAND_ADDR_RANGE_ERROR, operand);
}

/** A TD's TDCS pages before its leaves run (TDX module 1.5, `tdcs_page_index_t`). */
export const MIN_NUM_TDCS_PAGES = 6;

/**
 * A page an operand names explicitly (`check_and_lock_explicit_4k_private_hpa`,
 * `check_lock_and_map_explicit_tdr` in helpers.c): a PA below MAX_PA, inside a TDMR, its PAMT
 * entry locked, and only then its type checked (a locked page is busy whatever it is).
 */
export function lockExplicitPage(
  m: SeamCore,
  pfn: number,
  exclusive: boolean,
  operand: bigint,
  type: number,
): void {
  checkHpa(m, pfn, operand);
  lockPage(m, pfn, exclusive, operand);
  check(m.pamt.type(pfn) === type, TDX_PAGE_METADATA_INCORRECT, operand);
}

/**
 * Checks 1-5 of every TD leaf: the TDR, fatal, keys, the TDCS (`check_td_in_correct_build_state`:
 * TDCS_NOT_ALLOCATED before TDH.MNG.ADDCX gave it its pages; ADDCX itself passes
 * `tdcsNeeded` false), the op-state lock and the op state (`opStates`: a mask of OP_*).
 */
export function tdPrologue(
  m: SeamCore,
  tdr: number,
  tdrOperand: bigint,
  opStates: number,
  tdrExclusive = false,
  tdcsNeeded = true,
): Td {
  // check_lock_and_map_explicit_tdr: the TDR's PAMT entry is locked before its type is read.
  checkHpa(m, tdr, tdrOperand);
  lockPage(m, tdr, tdrExclusive, tdrOperand);
  const td = m.tdOfTdr(tdr);
  check(td !== undefined, TDX_PAGE_METADATA_INCORRECT, tdrOperand);
  m.lockedTdr = tdr;
  const alive = td!.aliveStatus(
    TDX_TD_FATAL,
    TDX_TD_KEYS_NOT_CONFIGURED,
    tdcsNeeded ? MIN_NUM_TDCS_PAGES : 0,
    TDX_TDCS_NOT_ALLOCATED,
  );
  if (alive !== 0n) failed(alive);
  lock(td!.opStateLock, false, OPERAND_OP_STATE);
  check(((opStates >> td!.opState) & 1) !== 0, TDX_OP_STATE_INCORRECT);
  return td!;
}

/** Check 6: the level is one the leaf takes, the GPA private, inside GPAW, and aligned to the level. */
export function checkGpa(
  td: Td,
  gpa: number,
  level: number,
  minLevel: number,
  maxLevel: number,
): number {
  // A GPA below 2^GPAW is private iff it is below the shared bit, 2^(GPAW-1).
  let valid =
    Number.isInteger(level) &&
    level >= minLevel &&
    level <= maxLevel &&
    Number.isSafeInteger(gpa) &&
    gpa >= 0 &&
    gpa < td.sharedBitGpa;
  // 4K, 2M and 1G alignments divide 2^32, so the low 32 bits decide them for any safe integer.
  if (valid)
    valid = level <= 2 ? (gpa & ALIGN_MASK[level]!) === 0 : gpa % (4096 * 512 ** level) === 0;
  check(valid, TDX_OPERAND_INVALID, OPERAND_RCX);
  return gpa / 4096;
}

/**
 * Checks 6-8 of a leaf on one S-EPT entry: the GPA at `level` (in [minLevel, maxLevel]), the
 * S-EPT tree lock (`tree`: TREE_SHARED, TREE_EXCLUSIVE or NO_TREE_LOCK), the walk. Returns the
 * table the entry is in; its offset is `walkOff`.
 */
export function septOperand(
  m: SeamCore,
  td: Td,
  gpa: number,
  level: number,
  minLevel: number,
  maxLevel: number,
  tree: number,
): SeptPage {
  const gfn = checkGpa(td, gpa, level, minLevel, maxLevel);
  if (tree !== NO_TREE_LOCK) lock(td.treeLock, tree === TREE_EXCLUSIVE, OPERAND_SEPT_TREE);
  m.walk(td, gfn, level);
  return m.walkTable;
}

/** Checks 9-10: the entry lock, then the state the leaf needs (`allowed`: a mask of `septStateBit`s). */
export function entryState(
  m: SeamCore,
  table: SeptPage,
  off: number,
  level: number,
  allowed: number,
): number {
  const lo = m.sept.entryLo(table, off);
  const hi = m.sept.entryHi(table, off);
  if (entryLocked(lo)) failOnEntry(TDX_OPERAND_BUSY + OPERAND_RCX, lo, hi, level);
  const st = septState(lo, hi, level);
  if ((septStateBit(st) & allowed) === 0)
    failOnEntry(TDX_EPT_ENTRY_STATE_INCORRECT + OPERAND_RCX, lo, hi, level);
  return st;
}

/**
 * `status` for a leaf that failed on the S-EPT entry (lo, hi) at TDX `level`, with the entry in
 * RCX and its level and state in RDX, as `set_arch_septe_details_in_vmm_regs` leaves them: after
 * a walk that stopped, a busy entry lock, a state the leaf does not take, a removal not blocked,
 * a table not empty or not promotable. (TLB_TRACKING_NOT_DONE comes without them.)
 */
export function entryDetails(status: bigint, lo: number, hi: number, level: number): SeamResult {
  return {
    status,
    entry: archSepteEntry(lo, hi),
    levelState: levelState(level, septState(lo, hi, level)),
  };
}

/** Fails the leaf with `entryDetails`; apart so that the checks every leaf inlines stay small. */
export function failOnEntry(status: bigint, lo: number, hi: number, level: number): never {
  throw new SeamError(entryDetails(status, lo, hi, level));
}

/**
 * Check 11: a page the host hands over must be convertible memory, unlocked and free (NDA), in
 * that order: `non_shared_hpa_metadata_check_and_lock` (helpers.c) walks the PAMT taking the
 * entry's lock before it reads the page type, so a locked page is OPERAND_BUSY whatever its
 * type (the TD's own TDR, locked by the call's prologue, among them).
 */
export function checkNewPage(m: SeamCore, pfn: number, operand: bigint): void {
  checkHpa(m, pfn, operand);
  // The PAMT walk passes the 2M entry (locked shared); a 2 MiB page there ends the walk above
  // the 4K entry the operand needs. Each entry is read once: this is on every AUG's path.
  const big = m.pamt.walk2m(pfn);
  check(big >= 0, TDX_OPERAND_BUSY, operand);
  check(big === PT_NDA, TDX_PAGE_METADATA_INCORRECT, operand);
  const type = m.pamt.type(pfn);
  if (pfn === m.lockedTdr || !m.pamt.tryLockAndRelease(pfn, true) || heldByGuest(m, pfn, type)) {
    failed(TDX_OPERAND_BUSY, operand);
  }
  check(type === PT_NDA, TDX_PAGE_METADATA_INCORRECT, operand);
}

/**
 * Check 11 for a 2 MiB page (TDH.MEM.PAGE.AUG at level 1, `check_and_lock_free_range_hpa`):
 * 2M-aligned below MAX_PA, inside a TDMR, its 2M PAMT entry locked exclusively, NDA, and every
 * 4K entry under it NDA too.
 */
export function checkNew2mPage(m: SeamCore, pfn: number, operand: bigint): void {
  check(
    Number.isInteger(pfn) && pfn >= 0 && pfn < MAX_PA_PFN && pfn % 512 === 0,
    TDX_OPERAND_INVALID,
    operand,
  );
  check(m.pamt.inTdmr(pfn) && m.pamt.inTdmr(pfn + 511), TDX_OPERAND_ADDR_RANGE_ERROR, operand);
  // The prologue's PAMT walk to the TDR holds the 2M entry above it shared until the call ends
  // (`pamt_walk`), so promoting that entry to exclusive for a 2 MiB page around the TDR fails:
  // OPERAND_BUSY before any type is read.
  const holdsTdr = m.lockedTdr >= pfn && m.lockedTdr < pfn + 512;
  check(!holdsTdr && m.pamt.tryLock2mAndRelease(pfn, true), TDX_OPERAND_BUSY, operand);
  check(m.pamt.type2m(pfn) === PT_NDA, TDX_PAGE_METADATA_INCORRECT, operand);
  for (let i = 0; i < 512; i++)
    check(m.pamt.type(pfn + i) === PT_NDA, TDX_PAGE_METADATA_INCORRECT, operand);
}

/** The lock of the PAMT entry of the leaf page `pfn` at TDX `level` (4K or 2M), exclusively. */
export function lockLeafPage(m: SeamCore, pfn: number, level: number, busyOperand: bigint): void {
  if (level === 0) lockPage(m, pfn, true, busyOperand);
  else check(m.pamt.tryLock2mAndRelease(pfn, true), TDX_OPERAND_BUSY, busyOperand);
}

/**
 * On a RUNNABLE TD (the op state where TLB tracking is required), what leaves that take a page
 * or table from the guest need: the entry blocked (GPA_RANGE_NOT_BLOCKED|RCX), then its BEPOCH
 * tracked (TLB_TRACKING_NOT_DONE|RCX). REMOVE, SEPT.REMOVE, DEMOTE and PROMOTE.
 */
export function blockedAndTracked(
  m: SeamCore,
  td: Td,
  table: SeptPage,
  off: number,
  level: number,
  blocked: boolean,
  pfnOfEntry: number,
  pamtLevel = 0,
): void {
  if (td.opState !== OP_RUNNABLE) return;
  if (!blocked) {
    const lo = m.sept.entryLo(table, off);
    failOnEntry(TDX_GPA_RANGE_NOT_BLOCKED + OPERAND_RCX, lo, m.sept.entryHi(table, off), level);
  }
  check(tracked(m, td, pfnOfEntry, pamtLevel), TDX_TLB_TRACKING_NOT_DONE, OPERAND_RCX);
}

/** "Tracked": blocked in an epoch no vCPU can still be running with (docs/tdx-module.md §3). */
export function tracked(m: SeamCore, td: Td, pfnOfEntry: number, pamtLevel = 0): boolean {
  const b = m.pamt.leafBepoch(pfnOfEntry, pamtLevel);
  return b < td.epoch - 1 || (b === td.epoch - 1 && td.refcountOf(b & 1) === 0);
}
