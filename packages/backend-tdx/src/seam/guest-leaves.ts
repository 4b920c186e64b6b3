/**
 * The guest side: TDG.MEM.PAGE.ACCEPT (a TDCALL), and what the CPU does with a private guest
 * access (the translation through the S-EPT, and a write into a private page).
 */
import { checkGpa } from "./leaf-checks.js";
import type { SeamCore } from "./seam-core.js";
import {
  ACCEPT_EXITED,
  EPT_VIOLATION,
  type GuestExit,
  PENDING_EPT_VIOLATION,
  type SeamResult,
  check,
  fail,
  ok,
} from "./seam-result.js";
import {
  SEPT_MAPPED,
  SEPT_NL_BLOCKED,
  SEPT_NL_MAPPED,
  SEPT_PENDING,
  entryLocked,
  septIndex,
  septPfn,
  septState,
} from "./sept.js";
import {
  OPERAND_RCX,
  TDX_OPERAND_BUSY,
  TDX_PAGE_ALREADY_ACCEPTED,
  TDX_PAGE_SIZE_MISMATCH,
} from "./status.js";
import type { Td } from "./td.js";

/** TDG.MEM.PAGE.ACCEPT: the body of `SeamModule.tdgMemPageAccept`. */
export function tdgMemPageAcceptLeaf(
  m: SeamCore,
  _tdr: number,
  tdvpr: number,
  gpa: number,
  level: number,
): SeamResult {
  const td = m.tdOfVcpu(tdvpr);
  const gfn = checkGpa(td, gpa, level, 0, 1);
  if (!m.tryWalk(td, gfn, level)) {
    // The walk stopped above the level asked for (tdg_mem_page_accept.c, check_tdaccept_failure,
    // case 1): a guest-accessible leaf there (MAPPED) is the page already accepted, at a bigger
    // size, and the status carries the level the walk reached; anything else (a PENDING or
    // BLOCKED leaf, a missing or blocked table: cases 1.2 and 2) is an EPT violation TD exit.
    if (m.walkStopState === SEPT_MAPPED)
      return fail(TDX_PAGE_ALREADY_ACCEPTED, BigInt(m.walkStopLevel));
    return ACCEPT_EXITED;
  }
  const table = m.walkTable;
  const off = m.walkOff;
  const lo = m.sept.entryLo(table, off);
  const hi = m.sept.entryHi(table, off);
  check(!entryLocked(lo), TDX_OPERAND_BUSY, OPERAND_RCX);
  const st = septState(lo, hi, level);
  // At the level asked for, the module's operand is that level (`api_error_with_operand_id(...,
  // ept_level)`): 0 for 4K, 1 for 2M, where a 2M ACCEPT finds a table (case 3).
  if (st === SEPT_MAPPED) return fail(TDX_PAGE_ALREADY_ACCEPTED, BigInt(level));
  if (st === SEPT_NL_MAPPED || st === SEPT_NL_BLOCKED)
    return fail(TDX_PAGE_SIZE_MISMATCH, BigInt(level));
  if (st !== SEPT_PENDING) return ACCEPT_EXITED;
  const pfn = septPfn(lo, hi);
  m.sept.setEntry(table, off, SEPT_MAPPED, pfn, level);
  // ACCEPT zeroes the page: all 512 of a 2 MiB one.
  for (let i = 0; i < (level === 0 ? 1 : 512); i++) m.plainSet(pfn + i, "");
  return ok();
}

/**
 * What the CPU does with a private guest access (the S-EPT is what hardware walks for the
 * private half of the GPA space): "ok" on a MAPPED leaf; "ve" on a PENDING one (#VE, unless
 * SEPT_VE_DISABLE makes it a PENDING EPT violation exit); "exit" otherwise.
 */
export function guestTranslate(m: SeamCore, tdvpr: number, gpa: number): "ok" | "ve" | GuestExit {
  m.vcpuAt(tdvpr);
  const td = m.cachedVcpuTd!;
  const gfn = Math.floor(gpa / 4096);
  const remembered = m.rememberedLeafTable(td, gfn);
  let table = remembered ?? m.sept.get(td.septRoot)!;
  for (let lvl = remembered ? 0 : td.rootLevel; lvl >= 0; lvl--) {
    const off = 2 * septIndex(gfn, lvl);
    const lo = m.sept.entryLo(table, off);
    const hi = m.sept.entryHi(table, off);
    const st = septState(lo, hi, lvl);
    if (st === SEPT_NL_MAPPED) {
      table = m.sept.get(septPfn(lo, hi))!;
      if (lvl === 1) m.rememberLeafTable(td, gfn, table);
      continue;
    }
    if (st === SEPT_MAPPED) return "ok";
    if (st === SEPT_PENDING) return td.septVeDisable ? PENDING_EPT_VIOLATION : "ve";
    return EPT_VIOLATION;
  }
  return EPT_VIOLATION;
}

/** The guest writes `data` into its private page at `gpa` (the memory-content model). */
export function guestWrite(m: SeamCore, tdvpr: number, gpa: number, data: string): boolean {
  const pfn = translatePfn(m, m.tds.get(m.pamt.owner(tdvpr))!, gpa);
  if (pfn < 0) return false;
  m.plainSet(pfn, data);
  return true;
}

export function translatePfn(m: SeamCore, td: Td, gpa: number): number {
  const gfn = Math.floor(gpa / 4096);
  let table = m.sept.get(td.septRoot)!;
  for (let lvl = td.rootLevel; lvl >= 0; lvl--) {
    const off = 2 * septIndex(gfn, lvl);
    const st = septState(m.sept.entryLo(table, off), m.sept.entryHi(table, off), lvl);
    if (st === SEPT_NL_MAPPED)
      table = m.sept.get(septPfn(m.sept.entryLo(table, off), m.sept.entryHi(table, off)))!;
    // Under a leaf above 4K, the frame of it that holds `gpa`.
    else
      return st === SEPT_MAPPED
        ? septPfn(m.sept.entryLo(table, off), m.sept.entryHi(table, off)) + (gfn % 512 ** lvl)
        : -1;
  }
  return -1;
}
