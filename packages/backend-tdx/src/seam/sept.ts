/**
 * The Secure EPT: the module's own page tables, in pages the host gave it (TDH.MEM.SEPT.ADD).
 * Entries carry the module's state bits beside the architectural ones (docs/tdx-module.md §2):
 *   0-2 RWX · 3-5 MT · 6 IPAT · 7 PS · 9 D · 11 TDEL (entry lock) · 12-51 HPA
 *   52 TDHP (host priority) · 53 TDEX · 54 TDBW · 55 TDB (blocked) · 56 TDP (pending) · 63 SVE
 * and the public state is their encoding, as TDX module 1.5 writes it (`sept_manager.h`,
 * `sept_state_lookup.h`): D, TDEX, TDBW, TDB, TDP, IPAT and PS. FREE is TDEX|TDBW|TDB (with SVE);
 * every leaf, 4K ones too, has IPAT and PS, and memory type WB; a non-leaf has neither. TDX
 * numbers levels from 0 (4K) up; KVM's mirror level is the TDX level + 1.
 */
import { nextSetBit } from "@tdpemu/backend-sdk";
import { SeamFootprint } from "./seam-footprint.js";

export const SEPT_FREE = 0;
export const SEPT_BLOCKED = 1;
export const SEPT_PENDING = 2;
export const SEPT_PENDING_BLOCKED = 3;
export const SEPT_MAPPED = 4;
export const SEPT_NL_BLOCKED = 0x81;
export const SEPT_NL_MAPPED = 0x84;

export const SEPT_STATE_NAMES: Record<number, string> = {
  0: "FREE",
  1: "BLOCKED",
  2: "PENDING",
  3: "PENDING_BLOCKED",
  4: "MAPPED",
  0x81: "NL_BLOCKED",
  0x84: "NL_MAPPED",
};

// low half
const RWX = 7;
/** Memory type WB (6) in bits 5:3. */
const MT_WB = 6 << 3;
const IPAT = 1 << 6;
const PS = 1 << 7;
/** What every leaf entry carries besides its permissions and HPA. */
const LEAF_BITS = MT_WB | IPAT | PS;
const TDEL = 1 << 11;
// high half (bit - 32)
const HI_PFN_MASK = 0xfffff;
const TDHP = 1 << (52 - 32);
const TDEX = 1 << (53 - 32);
const TDBW = 1 << (54 - 32);
const TDB = 1 << (55 - 32);
const TDP = 1 << (56 - 32);
const SVE = (1 << (63 - 32)) >>> 0;
/** SVE as the int32 the `*32` encoders use (the sign bit). */
const SVE32 = SVE | 0;

export const SEPT_FREE_LO = 0;
/** `SEPTE_INIT_VALUE`: the FREE encoding (TDEX, TDBW, TDB) with suppress-#VE. */
export const SEPT_FREE_HI = (SVE | TDEX | TDBW | TDB) >>> 0;
const FREE_HI32 = SEPT_FREE_HI | 0;

export interface SeptEntry {
  lo: number;
  hi: number;
}

export function septPfn(lo: number, hi: number): number {
  return (lo >>> 12) + (hi & HI_PFN_MASK) * 0x100000;
}

/**
 * The public state of an entry, from its encoding alone (the module's states do not depend on
 * the level: a 4K leaf has PS too). TDEX is set only in FREE among the states the model has
 * (the others with it are live migration's). `_level` is kept for the callers' symmetry with the
 * encoders.
 */
export function septState(lo: number, hi: number, _level: number): number {
  if ((hi & TDEX) !== 0) return SEPT_FREE;
  const blocked = (hi & TDB) !== 0;
  if ((lo & PS) === 0) {
    if (blocked) return SEPT_NL_BLOCKED;
    // NL_MAPPED's encoding is 0; an entry without permissions was never written by the module.
    return (lo & RWX) !== 0 ? SEPT_NL_MAPPED : SEPT_FREE;
  }
  const pending = (hi & TDP) !== 0;
  if (blocked) return pending ? SEPT_PENDING_BLOCKED : SEPT_BLOCKED;
  return pending ? SEPT_PENDING : SEPT_MAPPED;
}

/**
 * The low half of the entry for `state` over `pfn` at TDX `level` (locks clear): HPA bits 12-31,
 * MT=WB, IPAT and PS for every leaf, RWX for the present states. With `septEntryHi`, what the module writes
 * when a leaf changes state; two numbers rather than an object, so a SEAMCALL allocates nothing.
 */
export function septEntryLo(state: number, pfn: number, _level: number): number {
  return entryLo32(state, pfn) >>> 0;
}

/** The high half: HPA bits 32-51, suppress-#VE, and the TDB / TDP bits of the blocked and pending states. */
export function septEntryHi(state: number, pfn: number): number {
  return entryHi32(state, pfn) >>> 0;
}

/*
 * The halves as int32 for `setEntry` (a Uint32Array store takes them mod 2^32 all the same): a
 * uint32 at or above 2^31 is not a small integer to V8, and is allocated as a heap number each
 * time a function returns it or takes it. The high half always is one (suppress-#VE is bit 31),
 * the low half whenever bit 19 of the PFN is set.
 */
function entryLo32(state: number, pfn: number): number {
  if (state === SEPT_FREE) return SEPT_FREE_LO;
  // PFNs below 2^32 (hosts up to 16 TiB) take integer math; the rest the exact double math.
  const pfnLo = pfn >>> 0 === pfn ? (pfn & 0xfffff) << 12 : (pfn % 0x100000) << 12;
  const leafBits = (state & 0x80) === 0 ? LEAF_BITS : 0;
  const rwx = state === SEPT_NL_MAPPED || state === SEPT_MAPPED ? RWX : 0;
  return pfnLo | leafBits | rwx;
}

function entryHi32(state: number, pfn: number): number {
  if (state === SEPT_FREE) return FREE_HI32;
  const pfnHi = pfn >>> 0 === pfn ? pfn >>> 20 : Math.floor(pfn / 0x100000) & HI_PFN_MASK;
  let bits = 0;
  switch (state) {
    case SEPT_NL_BLOCKED:
      bits = TDB;
      break;
    case SEPT_PENDING:
      bits = TDP;
      break;
    case SEPT_BLOCKED:
      bits = TDB;
      break;
    case SEPT_PENDING_BLOCKED:
      bits = TDB | TDP;
      break;
  }
  return pfnHi | SVE32 | bits;
}

/** The entry for `state` over `pfn` at TDX `level` (locks clear), as an object (for tests and tools). */
export function makeSeptEntry(state: number, pfn: number, level: number): SeptEntry {
  return { lo: septEntryLo(state, pfn, level), hi: septEntryHi(state, pfn) };
}

/** A state as one bit (FREE..MAPPED bits 0-4, NL_BLOCKED 9, NL_MAPPED 12), so that the set of states a leaf accepts is one number. */
export function septStateBit(state: number): number {
  return 1 << ((state & 7) | ((state & 0x80) >>> 4));
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

/** What RCX keeps of a leaf's low half: RWX, MT, IPAT, PS and HPA bits 12-31. */
const ARCH_LEAF_LO = (0xfffff000 | (7 << 3) | IPAT | PS | RWX) >>> 0;

/**
 * The entry as RCX reports it (`set_arch_septe_details_in_vmm_regs`, sept_manager.c): a FREE
 * entry is suppress-#VE alone, a leaf keeps RWX, MT, IPAT, PS, HPA and SVE
 * (`SEPT_ARCH_ENTRY_LEAF_MASK`), a non-leaf only RWX and PS (`SEPT_ARCH_ENTRY_NON_LEAF_MASK`: no
 * HPA, no SVE). The module's own bits (TDEL, TDHP, TDEX, TDBW, TDB, TDP) never leave it.
 */
export function archSepteEntry(lo: number, hi: number): bigint {
  if (septState(lo, hi, 0) === SEPT_FREE) return BigInt(SVE) << 32n;
  if ((lo & PS) === 0) return BigInt(lo & RWX);
  return (BigInt((hi & (HI_PFN_MASK | SVE)) >>> 0) << 32n) | BigInt((lo & ARCH_LEAF_LO) >>> 0);
}

/**
 * Where a page's occupancy bitmap starts: after the 512 entries (1024 uint32), 16 words with bit
 * `i & 31` of word `i >>> 5` set while entry i is not the FREE encoding. The module finds entries
 * by walking; the bitmap is the emulator's, kept by `setEntry` (the only writer of entries), so
 * that the S-EPT invariant, run after every explorer step, visits the few used entries of a page
 * instead of all 512. It lives in the page's own array: no lookup besides the page's.
 */
export const SEPT_OCCUPANCY = 1024;
export const SEPT_OCCUPANCY_WORDS = 16;
/** The last word: the page's own PFN (0xffffffff above 2^32), so an entry's accessor can name its resource. */
const SEPT_PAGE_PFN = SEPT_OCCUPANCY + SEPT_OCCUPANCY_WORDS;
const PAGE_U32 = SEPT_PAGE_PFN + 1;

/** A page of FREE entries (and an empty bitmap), copied into a page the module takes (`SeptPages.init`). */
const FREE_TABLE = (() => {
  const t = new Uint32Array(PAGE_U32);
  for (let i = 0; i < 1024; i += 2) {
    t[i] = SEPT_FREE_LO;
    t[i + 1] = SEPT_FREE_HI;
  }
  return t;
})();

/**
 * Pages and lookup blocks of discarded modules (`release`) for the next to take: the explorer
 * makes a TDX module per schedule, and a new 4 KiB array per S-EPT page (zero-filled, then swept
 * by the collector) was a good part of building a TD. A page taken again is overwritten whole.
 */
const SPARE_PAGES_MAX = 64;
const sparePages: Uint32Array[] = [];
const SPARE_LOOKUP_MAX = 8;
const spareLookup: (Uint32Array | undefined)[][] = [];

declare const septPageBrand: unique symbol;
/**
 * An S-EPT page as the leaves hold it: opaque (at run time the page's `Uint32Array`), so that
 * code outside this file reads its entries only through `entryLo`/`entryHi`, which record the
 * read, and writes them only through `setEntry`, which records the write.
 */
export interface SeptPage {
  readonly [septPageBrand]: true;
}

/**
 * The words of `page`, recording nothing: for this package's tests, which corrupt a page to show
 * a check firing or look at its layout. Not exported from the package; no leaf uses it.
 */
export function septPageWords(page: SeptPage): Uint32Array {
  return page as unknown as Uint32Array;
}

/**
 * S-EPT pages by their host PFN: 512 entries as 1024 uint32, like the mirror's tables, then the
 * occupancy bitmap (`SEPT_OCCUPANCY`). Looked up
 * on every level of every walk, so by two array loads (2 MiB block of PFNs, then the page in it)
 * rather than a Map; the pages the module takes are TDMR pages, whose PFNs are far below 2^32,
 * and anything else (never an S-EPT page in practice) goes to a Map so that any PFN stays exact.
 */
export class SeptPages {
  /** Where entry accesses are recorded (see `entryLo`). */
  constructor(private readonly fp: SeamFootprint = new SeamFootprint()) {}

  /**
   * Bumped whenever a page comes or goes or an entry above 4K is written through `setEntry`:
   * the walk down to a 4K table depends on nothing else, so a walk remembered at one version
   * holds while it lasts. Only the module writes S-EPT entries (the pages are its memory).
   */
  version = 0;
  private readonly blocks: ((Uint32Array | undefined)[] | undefined)[] = [];
  private readonly others = new Map<number, Uint32Array>();
  private size = 0;
  /** The PFNs of the pages in `blocks` (for `release`). */
  private readonly held: number[] = [];

  /** A page handed to the module: every entry FREE (suppress-#VE set). */
  init(pfn: number): SeptPage {
    const t = sparePages.pop() ?? new Uint32Array(PAGE_U32);
    t.set(FREE_TABLE);
    t[SEPT_PAGE_PFN] = pfn >>> 0 === pfn ? pfn : 0xffffffff;
    // No entry is recorded as written: the page is reached only through the entry that links
    // it (TDH.MEM.SEPT.ADD writes that), and an entry of a page nobody can reach is no one's.
    this.put(pfn, t);
    this.version++;
    return t as unknown as SeptPage;
  }

  get(pfn: number): SeptPage | undefined {
    return this.raw(pfn) as SeptPage | undefined;
  }

  private raw(pfn: number): Uint32Array | undefined {
    if (pfn >>> 0 !== pfn) return this.others.get(pfn);
    return this.blocks[pfn >>> 9]?.[pfn & 511];
  }

  drop(pfn: number): void {
    const t = this.raw(pfn);
    if (t !== undefined) this.writeUsed(t);
    this.put(pfn, undefined);
    this.version++;
  }

  /**
   * The low half of the entry at `off` of `table` (a page `get` returned), as a leaf reads it:
   * recorded as a read of that entry. Leaves read entries only through this and `entryHi`.
   */
  entryLo(table: SeptPage, off: number): number {
    const t = table as unknown as Uint32Array;
    if (this.fp.fp !== null) this.recordRead(t, off);
    return t[off]!;
  }

  /** The high half of the entry at `off` of `table`, recorded as `entryLo`. */
  entryHi(table: SeptPage, off: number): number {
    const t = table as unknown as Uint32Array;
    if (this.fp.fp !== null) this.recordRead(t, off);
    return t[off + 1]!;
  }

  /** The read of the entry at `off` of `table`, apart so that `entryLo`/`entryHi` stay small (inlined). */
  private recordRead(table: Uint32Array, off: number): void {
    this.fp.fp!.read(this.fp.septId(table[SEPT_PAGE_PFN]!, off >>> 1));
  }

  /**
   * The halves of the entry at `off` of `table` and the next used entry from `i` on (by the
   * occupancy bitmap; -1 if none), recording nothing: for the invariant checks, the views and
   * the host debugger's reads, which run between steps (inside a step they fail:
   * `SeamFootprint.assertBetweenSteps`). A leaf reads through `entryLo`.
   */
  peekLo(table: SeptPage, off: number): number {
    this.fp.assertBetweenSteps("an S-EPT entry");
    return (table as unknown as Uint32Array)[off]!;
  }

  peekHi(table: SeptPage, off: number): number {
    this.fp.assertBetweenSteps("an S-EPT entry");
    return (table as unknown as Uint32Array)[off + 1]!;
  }

  peekNextUsed(table: SeptPage, i: number): number {
    this.fp.assertBetweenSteps("an S-EPT page's occupancy");
    return nextSetBit(table as unknown as Uint32Array, SEPT_OCCUPANCY, SEPT_OCCUPANCY_WORDS, i);
  }

  /** A page stops being an S-EPT page (RECLAIM at teardown may drop one with entries left): its used entries are written. */
  private writeUsed(t: Uint32Array): void {
    const page = t[SEPT_PAGE_PFN]!;
    for (let i = 0; i < 512; i++)
      if (t[2 * i] !== SEPT_FREE_LO || t[2 * i + 1] !== SEPT_FREE_HI)
        this.fp.write(this.fp.septId(page, i));
  }

  /** The resource of the entry at `off` of `table` (for the audit). */
  entryId(table: SeptPage, off: number): number {
    return this.fp.septId((table as unknown as Uint32Array)[SEPT_PAGE_PFN]!, off >>> 1);
  }

  /** Writes the entry for `state` over `pfn` at `off` of `table`, at TDX `level`, and its occupancy bit. */
  setEntry(page: SeptPage, off: number, state: number, pfn: number, level: number): void {
    const table = page as unknown as Uint32Array;
    this.fp.writeSept(table[SEPT_PAGE_PFN]!, off >>> 1);
    const lo = entryLo32(state, pfn);
    const hi = entryHi32(state, pfn);
    table[off] = lo;
    table[off + 1] = hi;
    const i = off >>> 1;
    const w = SEPT_OCCUPANCY + (i >>> 5);
    if (lo === SEPT_FREE_LO && hi === FREE_HI32) table[w] = table[w]! & ~(1 << (i & 31));
    else table[w] = table[w]! | (1 << (i & 31));
    if (level > 0) this.version++;
  }

  get count(): number {
    return this.size;
  }

  /**
   * Every entry that is not FREE, under its resource id, recording nothing (the footprint audit):
   * a page's birth and death (all FREE, or dropped) then show no change, as they need none.
   */
  auditEntries(out: Map<number, string | number>): void {
    const pages = [...this.held.map((pfn) => this.raw(pfn)!), ...this.others.values()];
    for (const t of pages) {
      for (let i = 0; i < 512; i++) {
        if (t[2 * i] === SEPT_FREE_LO && t[2 * i + 1] === SEPT_FREE_HI) continue;
        out.set(this.fp.septId(t[SEPT_PAGE_PFN]!, i), `${t[2 * i]}/${t[2 * i + 1]}`);
      }
    }
  }

  /**
   * Gives the pages and lookup blocks to the modules made after this one (see `sparePages`):
   * for the module of a host that is being discarded. No page is found afterwards.
   */
  release(): void {
    // The pages held, found through their PFNs: a module holds a handful of pages, and a
    // lookup block has 512 places.
    for (const pfn of this.held) {
      const blk = this.blocks[pfn >>> 9]!;
      if (sparePages.length < SPARE_PAGES_MAX) sparePages.push(blk[pfn & 511]!);
      blk[pfn & 511] = undefined;
    }
    this.held.length = 0;
    for (const blk of this.blocks)
      if (blk !== undefined && spareLookup.length < SPARE_LOOKUP_MAX) spareLookup.push(blk);
    this.blocks.length = 0;
    this.others.clear();
    this.size = 0;
    this.version++;
  }

  private put(pfn: number, t: Uint32Array | undefined): void {
    const had = this.get(pfn) !== undefined;
    if (pfn >>> 0 !== pfn) {
      if (t) this.others.set(pfn, t);
      else this.others.delete(pfn);
    } else {
      let blk = this.blocks[pfn >>> 9];
      if (!blk) {
        if (!t) return;
        blk = spareLookup.pop() ?? new Array<Uint32Array | undefined>(512).fill(undefined);
        // Grown densely, so the array keeps fast elements (a far index into an empty array
        // would turn it into a dictionary).
        while (this.blocks.length < pfn >>> 9) this.blocks.push(undefined);
        this.blocks[pfn >>> 9] = blk;
      }
      blk[pfn & 511] = t;
      if (t && !had) this.held.push(pfn);
      else if (!t && had) {
        const k = this.held.indexOf(pfn);
        this.held[k] = this.held[this.held.length - 1]!;
        this.held.pop();
      }
    }
    this.size += (t ? 1 : 0) - (had ? 1 : 0);
  }
}

/** Index of `gfn`'s entry at TDX `level` (0 = 4K). */
export function septIndex(gfn: number, level: number): number {
  // GFNs below 2^32 (GPAs below 16 TiB) by shift and mask; above, exact double math. Level 4
  // (5-level S-EPT) would shift by 36: every GFN below 2^32 is in entry 0 there.
  if (gfn >>> 0 === gfn) return level < 4 ? (gfn >>> (9 * level)) & 511 : 0;
  return Math.floor(gfn / 512 ** level) % 512;
}
