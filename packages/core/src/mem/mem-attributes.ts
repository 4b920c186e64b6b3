/**
 * Per-GFN memory attributes, as `KVM_SET_MEMORY_ATTRIBUTES` sets them: private or shared.
 *
 * The kernel keeps them in an xarray (`kvm->mem_attr_array`, stored by `virt/kvm/kvm_main.c`:
 * `kvm_vm_set_mem_attributes()`); a bitmap (one bit per GFN of guest memory) is
 * the emulator's choice because it costs 1/32768 of the memory it describes and answers both
 * "is this GFN private" and "is this huge page uniform" (`KVM_LPAGE_MIXED_FLAG`) by word.
 * GFNs past the end are shared. The bitmap is made when a GFN first becomes private, so a VM
 * without private memory does not pay for it.
 *
 * The attributes are shared state (one resource, R_ATTR): `isPrivate`, `isUniform` and `set`
 * record their access into the clock's recorder themselves, so no caller can forget it. Checks
 * that look between steps use `peekPrivate` and `peekRunEnd`, which record nothing and so fail
 * when a step calls them (`Clock.assertBetweenSteps`).
 */
import type { Clock } from "../exec/clock.js";
import { R_ATTR } from "../exec/footprint.js";
import { giveUint32Array, takeUint32Array } from "./spare-arrays.js";

const NONE: Uint32Array<ArrayBuffer> = new Uint32Array(0);

export class MemAttributes {
  private bits: Uint32Array<ArrayBuffer> = NONE;

  constructor(
    readonly npages: number,
    /** Where accesses are recorded; none for attributes no explorer sees (tests, tools). */
    private readonly clock: Clock | null = null,
  ) {}

  /** The bitmap as it stands, for the footprint audit (`check/footprint-audit.ts`): do not write. */
  auditWords(): Uint32Array {
    return this.bits;
  }

  /** Whether `gfn` is private (`kvm_mem_is_private`): a read of the attributes. */
  isPrivate(gfn: number): boolean {
    this.clock?.fp?.read(R_ATTR);
    return this.bit(gfn);
  }

  /** `isPrivate` without recording: for checks and views between steps. */
  peekPrivate(gfn: number): boolean {
    this.clock?.assertBetweenSteps("the memory attributes");
    return this.bit(gfn);
  }

  private bit(gfn: number): boolean {
    if (gfn >= this.npages || this.bits === NONE) return false;
    return (this.bits[gfn >>> 5]! & (1 << (gfn & 31))) !== 0;
  }

  /** Sets [start, end) private or shared; returns how many GFNs changed. */
  set(start: number, end: number, priv: boolean): number {
    this.clock?.touch(R_ATTR);
    if (this.bits === NONE) {
      if (!priv) return 0;
      this.bits = takeUint32Array(Math.ceil(this.npages / 32));
    }
    let changed = 0;
    const e = Math.min(end, this.npages);
    const bits = this.bits;
    // Word by word: the bits of [start, e) in each word are set or cleared at once, and the
    // ones that flipped are counted.
    for (let g = start; g < e;) {
      const w = g >>> 5;
      const lo = g & 31;
      const hi = Math.min(32, lo + (e - g));
      const mask = hi - lo === 32 ? 0xffffffff : (((1 << (hi - lo)) - 1) << lo) >>> 0;
      const old = bits[w]!;
      const next = priv ? (old | mask) >>> 0 : (old & ~mask) >>> 0;
      changed += popcount32((old ^ next) >>> 0);
      bits[w] = next;
      g += hi - lo;
    }
    return changed;
  }

  /** The host is discarded: the bitmap goes to the next VM of the same size. */
  discardStorage(): void {
    if (this.bits !== NONE) giveUint32Array(this.bits);
    this.bits = NONE;
  }

  /**
   * The first GFN in [start, limit) whose attribute differs from `start`'s, or `limit`: the end
   * of a run, found by word where the run is long. Records nothing (views between steps).
   */
  peekRunEnd(start: number, limit: number): number {
    this.clock?.assertBetweenSteps("the memory attributes");
    const end = Math.min(limit, this.npages);
    if (start >= end) return limit;
    const first = this.bit(start);
    if (this.bits === NONE) return limit;
    const want = first ? 0xffffffff : 0;
    let g = start + 1;
    while (g < end && (g & 31) !== 0) {
      if (this.bit(g) !== first) return g;
      g++;
    }
    while (g + 32 <= end && this.bits[g >>> 5]! >>> 0 === want) g += 32;
    for (; g < end; g++) if (this.bit(g) !== first) return g;
    // Past the end everything is shared.
    return first && end < limit ? end : limit;
  }

  /** True if [start, start+count) is all private or all shared (no mixed huge page). */
  isUniform(start: number, count: number): boolean {
    this.clock?.fp?.read(R_ATTR);
    return this.uniform(start, count);
  }

  private uniform(start: number, count: number): boolean {
    if (start + count > this.npages) {
      // Past the end everything is shared.
      if (start >= this.npages) return true;
      return this.uniform(start, this.npages - start) && !this.bit(start);
    }
    if (this.bits === NONE) return true;
    const first = this.bit(start);
    const want = first ? 0xffffffff : 0;
    let g = start;
    const end = start + count;
    while (g < end && (g & 31) !== 0) {
      if (this.bit(g) !== first) return false;
      g++;
    }
    for (; g + 32 <= end; g += 32) if (this.bits[g >>> 5]! >>> 0 !== want) return false;
    for (; g < end; g++) if (this.bit(g) !== first) return false;
    return true;
  }
}

/** Set bits in a 32-bit word. */
function popcount32(x: number): number {
  x = x - ((x >>> 1) & 0x55555555);
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  return (((x + (x >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}
