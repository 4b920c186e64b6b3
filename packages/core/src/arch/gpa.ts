/**
 * GPA and GFN helpers, and the TDX shared bit.
 *
 * TDX aliases every GPA: with GPAW 48 the guest marks a page shared by setting GPA bit 47, with
 * GPAW 52 bit 51 (and the TD uses 5-level S-EPT). KVM keeps the bit as
 * `kvm->arch.gfn_direct_bits`; faults with it set go to the direct root, the rest to the mirror
 * root, and `fault->gfn` never includes it.
 */
import { PAGE_SHIFT, PAGE_SIZE, type Level } from "./levels.js";

export function gpaToGfn(gpa: number): number {
  // A literal divisor: V8 reads an imported constant through a cell at run time, so it could
  // not turn the division into a shift or a multiply, and divided with idiv (tens of cycles)
  // on every fault. The same holds for any division or remainder by an imported constant.
  return Math.floor(gpa / 4096);
}

export function gfnToGpa(gfn: number): number {
  return gfn * PAGE_SIZE;
}

/** Guest physical address width → the root level of the TDP tables (4-level or 5-level). */
export function rootLevelForGpaw(gpaw: number): Level {
  return gpaw > 48 ? 5 : 4;
}

/** The shared bit as a GPA bit number: 47 for GPAW 48, 51 for GPAW 52. */
export function sharedBitForGpaw(gpaw: number): number {
  return gpaw - 1;
}

/** The shared bit as a GFN mask (`gfn_direct_bits`): 2^(bit-12). */
export function sharedGfnBit(gpaw: number): number {
  return 2 ** (sharedBitForGpaw(gpaw) - PAGE_SHIFT);
}

/** True if `gfn` has the bit `bitMask` (a power of two, up to 2^52) set. */
export function gfnHasBit(gfn: number, bitMask: number): boolean {
  if (gfn < bitMask) return false;
  return Math.floor(gfn / bitMask) % 2 === 1;
}

/**
 * `gfn & ~kvm_gfn_direct_bits(kvm)`: the GFN without the shared bit `bits` (0 on a VM without
 * one). The kernel's GFNs (`fault->gfn`, `iter->gfn`, `sp->gfn`) never include it; a direct
 * root holds shared GFNs at their aliased index, and the hardware walks the full GPA.
 */
export function gfnWithoutDirectBits(gfn: number, bits: number): number {
  return bits !== 0 && gfnHasBit(gfn, bits) ? gfn - bits : gfn;
}

/** One past the largest GFN a root of `rootLevel` maps (`tdp_mmu_max_gfn_exclusive`). */
export function maxGfnExclusive(rootLevel: Level): number {
  return 2 ** (9 * rootLevel);
}

export function hex(n: number | bigint): string {
  return "0x" + n.toString(16);
}
