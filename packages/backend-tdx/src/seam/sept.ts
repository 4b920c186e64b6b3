/**
 * The Secure EPT: the module's own page tables, in pages the host gave it (TDH.MEM.SEPT.ADD).
 * Entries carry the module's state bits beside the architectural ones (reference §2):
 *   0-2 RWX · 7 PS (leaf above 4K) · 11 TDEL (entry lock) · 12-51 HPA
 *   52 TDHP (host priority) · 55 TDB (blocked) · 56 TDP (pending) · 63 suppress-#VE
 * and the public state follows from them. TDX numbers levels from 0 (4K) up; KVM's mirror level
 * is the TDX level + 1.
 */
export const SEPT_FREE = 0;
export const SEPT_BLOCKED = 1;
export const SEPT_PENDING = 2;
export const SEPT_PENDING_BLOCKED = 3;
export const SEPT_MAPPED = 4;
export const SEPT_NL_BLOCKED = 0x81;
export const SEPT_NL_MAPPED = 0x84;

export const SEPT_STATE_NAMES: Record<number, string> = {
  0: "FREE", 1: "BLOCKED", 2: "PENDING", 3: "PENDING_BLOCKED", 4: "MAPPED", 0x81: "NL_BLOCKED", 0x84: "NL_MAPPED",
};

// low half
const RWX = 7;
const PS = 1 << 7;
const TDEL = 1 << 11;
// high half (bit - 32)
const HI_PFN_MASK = 0xfffff;
const TDHP = 1 << (52 - 32);
const TDB = 1 << (55 - 32);
const TDP = 1 << (56 - 32);
const SVE = (1 << (63 - 32)) >>> 0;

export const SEPT_FREE_LO = 0;
export const SEPT_FREE_HI = SVE;

export interface SeptEntry {
  lo: number;
  hi: number;
}

export function septPfn(lo: number, hi: number): number {
  return (lo >>> 12) + (hi & HI_PFN_MASK) * 0x100000;
}

function pfnBits(pfn: number): SeptEntry {
  return { lo: ((pfn % 0x100000) << 12) >>> 0, hi: Math.floor(pfn / 0x100000) & HI_PFN_MASK };
}

/** The public state of the entry at TDX `level`. */
export function septState(lo: number, hi: number, level: number): number {
  const leaf = level === 0 || (lo & PS) !== 0;
  const blocked = (hi & TDB) !== 0;
  const pending = (hi & TDP) !== 0;
  if (!leaf) {
    if ((lo & RWX) !== 0) return SEPT_NL_MAPPED;
    return blocked ? SEPT_NL_BLOCKED : SEPT_FREE;
  }
  if (blocked) return pending ? SEPT_PENDING_BLOCKED : SEPT_BLOCKED;
  if (pending) return SEPT_PENDING;
  if ((lo & RWX) !== 0) return SEPT_MAPPED;
  return SEPT_FREE;
}

/** The entry for `state` over `pfn` at TDX `level` (locks clear). */
export function makeSeptEntry(state: number, pfn: number, level: number): SeptEntry {
  if (state === SEPT_FREE) return { lo: SEPT_FREE_LO, hi: SEPT_FREE_HI };
  const e = pfnBits(pfn);
  const leafPs = level > 0 && (state & 0x80) === 0 ? PS : 0;
  let lo = e.lo | leafPs;
  let hi = e.hi | SVE;
  switch (state) {
    case SEPT_NL_MAPPED: lo |= RWX; break;
    case SEPT_NL_BLOCKED: hi |= TDB; break;
    case SEPT_MAPPED: lo |= RWX; break;
    case SEPT_PENDING: hi |= TDP; break;
    case SEPT_BLOCKED: hi |= TDB; break;
    case SEPT_PENDING_BLOCKED: hi |= TDB | TDP; break;
  }
  return { lo: lo >>> 0, hi: hi >>> 0 };
}

export function entryLocked(lo: number): boolean {
  return (lo & TDEL) !== 0;
}

export function hostPriority(hi: number): boolean {
  return (hi & TDHP) !== 0;
}

export const SEPT_TDEL = TDEL;
export const SEPT_TDHP = TDHP;

/** `level_state` as the module returns it in RDX: level in bits 2:0, state in bits 15:8. */
export function levelState(level: number, state: number): bigint {
  return BigInt(level) | (BigInt(state) << 8n);
}

export function entryBigInt(lo: number, hi: number): bigint {
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

/** S-EPT pages by their host PFN: 512 entries as 1024 uint32, like the mirror's tables. */
export class SeptPages {
  private readonly pages = new Map<number, Uint32Array>();

  /** A page handed to the module: every entry FREE (suppress-#VE set). */
  init(pfn: number): Uint32Array {
    const t = new Uint32Array(1024);
    for (let i = 1; i < 1024; i += 2) t[i] = SEPT_FREE_HI;
    this.pages.set(pfn, t);
    return t;
  }

  get(pfn: number): Uint32Array | undefined {
    return this.pages.get(pfn);
  }

  drop(pfn: number): void {
    this.pages.delete(pfn);
  }

  get count(): number {
    return this.pages.size;
  }
}

/** Index of `gfn`'s entry at TDX `level` (0 = 4K). */
export function septIndex(gfn: number, level: number): number {
  return Math.floor(gfn / 512 ** level) % 512;
}
