/**
 * What the host sees of the module's state without a SEAMCALL (no locks, no counting): a
 * physical page's plaintext, an S-EPT entry as the host debugger reads it, and every present
 * entry of a TD's S-EPT. `hostRead` and `mappedPfn` serve an untrusted host's raw calls, which
 * are steps of a run, and record what they read; `entryAt` and `septEntries` serve checks and
 * views between steps and record nothing.
 */
import { PT_NDA } from "./pamt.js";
import type { SeamCore } from "./seam-core.js";
import {
  SEPT_FREE,
  SEPT_NL_BLOCKED,
  SEPT_NL_MAPPED,
  septIndex,
  septPfn,
  septState,
  type SeptPage,
} from "./sept.js";
import type { Td } from "./td.js";

/** The host reads a physical page: private memory (a page a TD owns) gives no plaintext. */
export function hostRead(m: SeamCore, pfn: number): string | null {
  // A frame of a 2 MiB page is the TD's by the 2M entry over it (its 4K entry stays NDA).
  if (m.pamt.type2m(pfn) !== PT_NDA || m.pamt.type(pfn) !== PT_NDA) return null;
  return m.plainGet(pfn) ?? "";
}

/**
 * The S-EPT entry for `gfn` at TDX `level`, read as the host debugger would (no locks, no
 * counting): its state and page, or FREE when the walk stops above the level.
 */
export function entryAt(
  m: SeamCore,
  td: Td,
  gfn: number,
  level: number,
): { state: number; pfn: number } {
  const remembered = level === 0 ? m.rememberedLeafTable(td, gfn) : undefined;
  let table = remembered ?? m.sept.get(td.septRoot);
  for (let lvl = remembered ? 0 : td.rootLevel; lvl >= level && table; lvl--) {
    const off = 2 * septIndex(gfn, lvl);
    const lo = m.sept.peekLo(table, off);
    const hi = m.sept.peekHi(table, off);
    const st = septState(lo, hi, lvl);
    if (lvl === level) return { state: st, pfn: septPfn(lo, hi) };
    if (st !== SEPT_NL_MAPPED) return { state: SEPT_FREE, pfn: 0 };
    table = m.sept.get(septPfn(lo, hi));
    if (lvl === 1 && table) m.rememberLeafTable(td, gfn, table);
  }
  return { state: SEPT_FREE, pfn: 0 };
}

/**
 * The page that maps `gpa` in any leaf state, or -1 (for an untrusted host's raw call that
 * names it): a walk through present and blocked tables, its reads recorded like a leaf's; under
 * a 2 MiB leaf, the frame of it that holds `gpa`.
 */
export function mappedPfn(m: SeamCore, td: Td, gpa: number): number {
  const gfn = Math.floor(gpa / 4096);
  let table = m.sept.get(td.septRoot);
  for (let lvl = td.rootLevel; lvl >= 0 && table !== undefined; lvl--) {
    const off = 2 * septIndex(gfn, lvl);
    const lo = m.sept.entryLo(table, off);
    const hi = m.sept.entryHi(table, off);
    const st = septState(lo, hi, lvl);
    if (lvl === 0) return st !== SEPT_FREE ? septPfn(lo, hi) : -1;
    if (st !== SEPT_NL_MAPPED && st !== SEPT_NL_BLOCKED)
      return st !== SEPT_FREE ? septPfn(lo, hi) + (gfn % 512 ** lvl) : -1;
    table = m.sept.get(septPfn(lo, hi));
  }
  return -1;
}

/**
 * Every present entry of a TD's S-EPT below the root: [gfn, TDX level, state, PFN], depth
 * first (an entry, then the table under it, then the next entry). One generator with its own
 * stack: a recursive one passed each of a 64 GiB TD's 16 million entries up through every level.
 */
export function* septEntries(
  m: SeamCore,
  td: Td,
): Generator<[gfn: number, level: number, state: number, pfn: number]> {
  const root = m.sept.get(td.septRoot);
  // After teardown the S-EPT pages may be reclaimed: a page that is no S-EPT page any more
  // has no entries to report, though an entry above it may still name it.
  if (root === undefined) return;
  const tables: SeptPage[] = [root];
  const levels = [td.rootLevel];
  const bases = [0];
  const next = [0];
  while (tables.length > 0) {
    const top = tables.length - 1;
    const i = next[top]!;
    if (i === 512) {
      tables.pop();
      levels.pop();
      bases.pop();
      next.pop();
      continue;
    }
    next[top] = i + 1;
    const t = tables[top]!;
    const level = levels[top]!;
    const lo = m.sept.peekLo(t, 2 * i);
    const hi = m.sept.peekHi(t, 2 * i);
    const st = septState(lo, hi, level);
    if (st === SEPT_FREE) continue;
    const gfn = bases[top]! + i * 512 ** level;
    yield [gfn, level, st, septPfn(lo, hi)];
    const child =
      st === SEPT_NL_MAPPED || st === SEPT_NL_BLOCKED ? m.sept.get(septPfn(lo, hi)) : undefined;
    if (child !== undefined) {
      tables.push(child);
      levels.push(level - 1);
      bases.push(gfn);
      next.push(0);
    }
  }
}
