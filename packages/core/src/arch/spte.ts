/**
 * The SPTE codec: bit-exact 64-bit EPT SPTEs as the kernel builds them
 * (`arch/x86/kvm/mmu/spte.h`, `arch/x86/kvm/mmu/spte.c`, `arch/x86/include/asm/vmx.h`).
 *
 * The hot path keeps an SPTE as two unsigned 32-bit halves, `lo` (bits 0-31) and `hi` (bits
 * 32-63), because bigint arithmetic measured about 7x slower here. `bigint` appears only at the
 * edges (`spte-format.ts`).
 *
 * Layout, by bit:
 *   0/1/2 R/W/X · 3-5 memtype · 6 IPAT · 7 page size (large) · 8 A · 9 D · 11 MMU-present
 *   12-51 PFN · 52-53 A/D mode · 57 host-writable · 58 MMU-writable · 63 suppress-#VE
 *
 * EPT on a CPU with execute-only support: `shadow_present_mask` holds the suppress-#VE bit, R is
 * `PT_PRESENT_MASK` (bit 0 doubles as EPT readable), X comes from `shadow_x_mask`; so every
 * present SPTE has bit 63 set, like the non-present value.
 *
 * Not modelled: the NX-huge-page mitigation (X dropped from huge leaves, given back on split),
 * which only vulnerable CPUs enable; leaves keep X at every level here.
 */

// ---- low half (bits 0-31)
export const EPT_R = 1 << 0;
export const EPT_W = 1 << 1;
export const EPT_X = 1 << 2;
export const EPT_RWX = EPT_R | EPT_W | EPT_X;
export const EPT_MT_SHIFT = 3; // VMX_EPT_MT_EPTE_SHIFT
export const EPT_MT_MASK = 7 << EPT_MT_SHIFT;
export const EPT_IPAT = 1 << 6;
export const PT_PAGE_SIZE_MASK = 1 << 7;
export const SPTE_ACCESSED = 1 << 8; // VMX_EPT_ACCESS_BIT
export const SPTE_DIRTY = 1 << 9; // VMX_EPT_DIRTY_BIT
export const SPTE_MMU_PRESENT = 1 << 11; // SPTE_MMU_PRESENT_MASK
/** Bits 12-31 of the PFN field (PFN bits 0-19). */
export const LO_PFN_MASK = 0xfffff000;

// ---- high half (bits 32-63), as bit positions within `hi`
/** Bits 32-51 of the SPTE hold PFN bits 20-39. */
export const HI_PFN_MASK = 0x000fffff;
export const HI_AD_MODE_SHIFT = 52 - 32;
export const HI_AD_MODE_MASK = 3 << HI_AD_MODE_SHIFT;
export const HI_HOST_WRITABLE = 1 << (57 - 32); // EPT_SPTE_HOST_WRITABLE
export const HI_MMU_WRITABLE = 1 << (58 - 32); // EPT_SPTE_MMU_WRITABLE
export const HI_SUPPRESS_VE = (1 << (63 - 32)) >>> 0; // VMX_EPT_SUPPRESS_VE_BIT

/** Memory types (IA32_PAT encoding in EPT bits 5:3). */
export const MTRR_TYPE_WB = 6;
/**
 * What `vmx_get_mt_mask` returns for ordinary RAM: WB with "ignore PAT", while
 * KVM_X86_QUIRK_IGNORE_GUEST_PAT is on (the default).
 */
export const RAM_MEMTYPE_BITS = (MTRR_TYPE_WB << EPT_MT_SHIFT) | EPT_IPAT;
/** The same with the quirk disabled (a TD: `tdx_vm_init`): WB, and the guest's PAT applies. */
export const RAM_MEMTYPE_BITS_GUEST_PAT = MTRR_TYPE_WB << EPT_MT_SHIFT;

/** `SHADOW_NONPRESENT_VALUE`: the empty SPTE is bit 63 (suppress #VE), not 0. */
export const SHADOW_NONPRESENT_LO = 0;
export const SHADOW_NONPRESENT_HI = HI_SUPPRESS_VE;
/** `FROZEN_SPTE` = `SHADOW_NONPRESENT_VALUE | 0x5a0`: bits 5, 7, 8, 10 and 63. */
export const FROZEN_SPTE_LO = 0x5a0;
export const FROZEN_SPTE_HI = HI_SUPPRESS_VE;

/** `is_shadow_present_pte`: bit 11, the software MMU-present bit. */
export function isShadowPresent(lo: number): boolean {
  return (lo & SPTE_MMU_PRESENT) !== 0;
}

/** Compared by equality, as `arch/x86/kvm/mmu/spte.h`: `is_frozen_spte()` does. */
export function isFrozen(lo: number, hi: number): boolean {
  return lo === FROZEN_SPTE_LO && hi === FROZEN_SPTE_HI;
}

export function isLargePte(lo: number): boolean {
  return (lo & PT_PAGE_SIZE_MASK) !== 0;
}

/** `is_last_spte`: a leaf at level 1, or with the page-size bit above it. */
export function isLastSpte(lo: number, level: number): boolean {
  return level === 1 || (lo & PT_PAGE_SIZE_MASK) !== 0;
}

export function isWritable(lo: number): boolean {
  return (lo & EPT_W) !== 0;
}

/** PFN of a present SPTE (leaf: the mapped frame; non-leaf: the child table's frame). */
export function spteToPfn(lo: number, hi: number): number {
  const top = hi & HI_PFN_MASK;
  // Below 4 GiB of host memory the PFN fits in the low half: integer math only.
  return top === 0 ? lo >>> 12 : (lo >>> 12) + top * 0x100000;
}

export function pfnLo(pfn: number): number {
  if (pfn <= 0xffffffff) return ((pfn & 0xfffff) << 12) >>> 0;
  return ((pfn % 0x100000) << 12) >>> 0;
}

export function pfnHi(pfn: number): number {
  if (pfn <= 0xffffffff) return pfn >>> 20;
  return Math.floor(pfn / 0x100000) & HI_PFN_MASK;
}

/**
 * `make_nonleaf_spte`: child table address, RWX, A (A/D enabled), MMU-present and the present
 * mask. Low half only depends on the PFN; the high half is the PFN's top bits and bit 63.
 */
export const NONLEAF_FLAGS_LO = EPT_RWX | SPTE_ACCESSED | SPTE_MMU_PRESENT;

export function makeNonleafLo(childPfn: number): number {
  return (pfnLo(childPfn) | NONLEAF_FLAGS_LO) >>> 0;
}

export function makeNonleafHi(childPfn: number): number {
  return (pfnHi(childPfn) | HI_SUPPRESS_VE) >>> 0;
}

/**
 * `make_spte` for guest RAM with A/D bits enabled and `pte_access = ACC_ALL`: MMU-present,
 * R, X, A (not on prefetch), the memtype `memtype` (`vmx_get_mt_mask`: WB|IPAT unless the VM
 * honours the guest's PAT), host-writable; if writable also W, MMU-writable
 * and D ("writable mappings get W, MMU-writable and D at once"); the page-size bit above 4K.
 * KVM maps a read fault writable too when the host mapping is writable (it marks the page dirty
 * in the slot's bitmap at once); only dirty logging write-protects it afterwards.
 */
export function makeLeafLo(
  pfn: number,
  level: number,
  writable: boolean,
  prefetch: boolean,
  memtype = RAM_MEMTYPE_BITS,
): number {
  let lo = pfnLo(pfn) | SPTE_MMU_PRESENT | EPT_R | EPT_X | memtype;
  if (!prefetch) lo |= SPTE_ACCESSED;
  if (writable) lo |= EPT_W | SPTE_DIRTY;
  if (level > 1) lo |= PT_PAGE_SIZE_MASK;
  return lo >>> 0;
}

/** High half of `makeLeafLo`'s SPTE: a host-writable mapping is MMU-writable too (`make_spte`). */
export function makeLeafHi(pfn: number, hostWritable: boolean): number {
  let hi = pfnHi(pfn) | HI_SUPPRESS_VE;
  if (hostWritable) hi |= HI_HOST_WRITABLE | HI_MMU_WRITABLE;
  return hi >>> 0;
}

/**
 * `make_small_spte` (split): a child of a huge leaf, one level down, mapping `childPfn` (the huge
 * PFN advanced by the child's index times the pages of the child level); a 4K child loses the
 * page-size bit.
 */
export function makeSmallSpteLo(hugeLo: number, childPfn: number, childLevel: number): number {
  let lo = (hugeLo & ~LO_PFN_MASK) | pfnLo(childPfn);
  if (childLevel === 1) lo &= ~PT_PAGE_SIZE_MASK;
  return lo >>> 0;
}

export function makeSmallSpteHi(hugeHi: number, childPfn: number): number {
  return ((hugeHi & ~HI_PFN_MASK) | pfnHi(childPfn)) >>> 0;
}

/**
 * `make_huge_spte` (huge page recovery): the small leaf with the page-size bit set and its PFN
 * aligned down to the huge page (`& (KVM_HPAGE_MASK(level) | ~PAGE_MASK)`).
 */
export function makeHugeSpte(
  smallLo: number,
  smallHi: number,
  pagesPerHuge: number,
): { lo: number; hi: number } {
  const pfn = spteToPfn(smallLo, smallHi);
  const base = pfn - (pfn % pagesPerHuge);
  return {
    lo: ((smallLo & ~LO_PFN_MASK) | pfnLo(base) | PT_PAGE_SIZE_MASK) >>> 0,
    hi: ((smallHi & ~HI_PFN_MASK) | pfnHi(base)) >>> 0,
  };
}
