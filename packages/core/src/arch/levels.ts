/**
 * Paging levels and index math of the x86 TDP page tables (`arch/x86/kvm/mmu/tdp_iter.h`,
 * `arch/x86/kvm/mmu.h`).
 *
 * GFNs are plain JS numbers: a 52-bit GPA gives a 40-bit GFN, well inside the 53 bits a double
 * holds exactly. Bitwise operators truncate to 32 bits, so index math above bit 31 uses
 * division; the fast path stays exact for every GFN a 5-level table can hold.
 */

export const PG_LEVEL_4K = 1;
export const PG_LEVEL_2M = 2;
export const PG_LEVEL_1G = 3;
export const PG_LEVEL_512G = 4;
export const PG_LEVEL_256T = 5;
export type Level = 1 | 2 | 3 | 4 | 5;

/** Largest level that may hold a leaf (1 GiB), as `KVM_MAX_HUGEPAGE_LEVEL`. */
export const KVM_MAX_HUGEPAGE_LEVEL = PG_LEVEL_1G;

export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 4096;
export const SPTE_ENT_PER_PAGE = 512;
export const SPTE_LEVEL_BITS = 9;

/** GFNs spanned by one entry at each level, indexed by level (index 0 unused). */
export const PAGES_PER_LEVEL: readonly number[] = [
  0,
  1,
  512,
  512 ** 2,
  512 ** 3,
  512 ** 4,
  512 ** 5,
];

/** `KVM_PAGES_PER_HPAGE(level)`: GFNs mapped by one leaf at `level`. */
export function pagesPerHpage(level: number): number {
  return PAGES_PER_LEVEL[level]!;
}

/** `SPTE_INDEX(gfn << PAGE_SHIFT, level)`: the entry of `gfn` in its table at `level`. */
export function sptIndex(gfn: number, level: number): number {
  // Shifts are exact while the GFN fits in 32 bits and the shift is below 32 (levels 1-4).
  if (gfn <= 0xffffffff && level <= 4) return (gfn >>> (9 * level - 9)) & 511;
  return Math.floor(gfn / PAGES_PER_LEVEL[level]!) % 512;
}

/** `gfn % KVM_PAGES_PER_HPAGE(level)`: the offset of `gfn` inside the span of one entry at `level`. */
export function gfnOffsetInLevel(gfn: number, level: number): number {
  if (gfn <= 0xffffffff && level <= 4) return gfn & ((1 << (9 * level - 9)) - 1);
  return gfn % PAGES_PER_LEVEL[level]!;
}

/** `gfn_round_for_level`: `gfn` aligned down to the span of one entry at `level`. */
export function gfnRoundForLevel(gfn: number, level: number): number {
  return gfn - gfnOffsetInLevel(gfn, level);
}
