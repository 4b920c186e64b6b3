/**
 * What backs guest memory on the host: userspace memory for shared pages (anonymous or hugetlb,
 * what `get_user_pages` returns) and a guest_memfd-like file for private pages
 * (`kvm_gmem_get_pfn`).
 *
 * Frames are taken on first use, a host page at a time: 2 MiB (one block) or, with 1 GiB host
 * pages, 512 aligned blocks. With `hostPageLevel` 1 (no huge pages) the frames still come in
 * 2 MiB runs, but the host maps them with 4 KiB pages, so KVM must not map them huge: the host
 * mapping level, not contiguity, is what `host_pfn_mapping_level` reports.
 *
 * Shared state that records itself: given a clock, every access notes its resource for the
 * explorer. Each host page is one resource (its frames, its pages' prepared bits), each page's
 * folio another (the folio lock and the prepared bit); the frame allocator records its own
 * `R_BACKING` when frames are taken or given back (the order of two allocations decides which
 * frames each gets).
 */
import { PAGES_PER_LEVEL, type Level } from "../arch/levels.js";
import type { Clock } from "../exec/clock.js";
import { resourceId } from "../exec/footprint.js";
import { FRAMES_PER_BLOCK, type FrameAllocator } from "./frame-allocator.js";
import { giveUint32Array, takeUint32Array } from "./spare-arrays.js";

export type BackingKind = "shared" | "gmem";

export class GuestBacking {
  /** Base PFN of each host page, -1 while not populated. */
  private readonly chunkBase: Float64Array;
  private readonly chunkPages: number;
  private readonly chunkShift: number;
  /** gmem only: pages already prepared for the guest (`folio_test_uptodate` in `kvm_gmem`). */
  private readonly prepared: Uint32Array<ArrayBuffer> | null;
  /**
   * Resource spaces: host pages (chunks), and pages' folios; guest memory state, which a backend
   * whose check ignores it does not see change (`Clock.backendCheckVersion`).
   */
  private readonly chunkSpace: number;
  private readonly folioSpace: number;

  constructor(
    private readonly frames: FrameAllocator,
    readonly owner: number,
    readonly kind: BackingKind,
    readonly npages: number,
    readonly hostPageLevel: Level,
    private readonly clock: Clock | null = null,
  ) {
    this.chunkSpace = clock ? clock.newResourceSpace(true, true) : 0;
    this.folioSpace = clock ? clock.newResourceSpace(true, true) : 0;
    this.chunkPages = hostPageLevel >= 3 ? PAGES_PER_LEVEL[3]! : FRAMES_PER_BLOCK;
    this.chunkShift = Math.log2(this.chunkPages);
    this.chunkBase = new Float64Array(Math.ceil(npages / this.chunkPages)).fill(-1);
    this.prepared = kind === "gmem" ? takeUint32Array(Math.ceil(npages / 32)) : null;
  }

  /** The PFN behind page `pgoff`, populating its host page on first use. */
  getPfn(pgoff: number): number {
    const c = this.chunkOf(pgoff);
    let base = this.chunkBase[c]!;
    if (base < 0) {
      const blocks = this.chunkPages / FRAMES_PER_BLOCK;
      base =
        this.frames.allocBlocks(blocks, blocks, this.owner, `${this.kind} guest memory`) *
        FRAMES_PER_BLOCK;
      this.chunkBase[c] = base;
      this.clock?.touch(resourceId(this.chunkSpace, c));
    } else this.readChunk(c);
    return base + (pgoff - c * this.chunkPages);
  }

  /** The PFN behind `pgoff` if populated, else -1; never allocates. */
  peekPfn(pgoff: number): number {
    const c = this.chunkOf(pgoff);
    this.clock?.fp?.read(resourceId(this.chunkSpace, c));
    const base = this.chunkBase[c]!;
    return base < 0 ? -1 : base + (pgoff - c * this.chunkPages);
  }

  /**
   * The host page that holds `pgoff`. Host pages are a power of two of frames: a shift, exact
   * below 2^32 pages (a division and a floating-point remainder cost the invariant checks, which
   * look up every leaf's backing after every explorer step, more than the rest of the lookup).
   */
  private chunkOf(pgoff: number): number {
    return pgoff <= 0xffffffff ? pgoff >>> this.chunkShift : Math.floor(pgoff / this.chunkPages);
  }

  /** The end of the host page that holds `pgoff` (all its pages are populated together). */
  hostPageEnd(pgoff: number): number {
    return (Math.floor(pgoff / this.chunkPages) + 1) * this.chunkPages;
  }

  /**
   * The first page in [pgoff, limit) whose host page is populated, or `limit`; never
   * allocates and records nothing (views between steps, over guests of any size).
   */
  peekNextPopulated(pgoff: number, limit: number): number {
    this.clock?.assertBetweenSteps("which host pages back guest memory");
    const bases = this.chunkBase;
    const last = Math.min(Math.ceil(limit / this.chunkPages), bases.length);
    for (let c = Math.floor(pgoff / this.chunkPages); c < last; c++) {
      if (bases[c]! >= 0) return Math.min(Math.max(pgoff, c * this.chunkPages), limit);
    }
    return limit;
  }

  /**
   * The state behind this backing's resources, for the footprint audit: host pages (resource
   * `resourceId(chunkSpace, c)`) and folios (`resourceId(folioSpace, pgoff)`). Do not write.
   */
  auditView(): {
    chunkSpace: number;
    folioSpace: number;
    chunks: Float64Array;
    prepared: Uint32Array | null;
    preparing: readonly number[];
  } {
    return {
      chunkSpace: this.chunkSpace,
      folioSpace: this.folioSpace,
      chunks: this.chunkBase,
      prepared: this.prepared,
      preparing: this.preparing,
    };
  }

  /** A read of page `pgoff`'s folio state (its host page's too: a release clears it). */
  private readFolio(pgoff: number): void {
    const fp = this.clock?.fp;
    if (!fp) return;
    fp.read(resourceId(this.chunkSpace, Math.floor(pgoff / this.chunkPages)));
    fp.read(resourceId(this.folioSpace, pgoff));
  }

  private writeFolio(pgoff: number): void {
    this.clock?.touch(resourceId(this.folioSpace, pgoff));
  }

  /**
   * Pages whose folio a fault holds locked while the backend prepares them
   * (`kvm_gmem_get_pfn` → `kvm_gmem_prepare_folio` under the folio lock): another fault of the
   * same page waits until the prepare is done. A handful at a time, one per fault in flight.
   */
  private readonly preparing: number[] = [];

  /** Another fault is preparing `pgoff`: a fault on it waits for the folio lock. */
  isPreparing(pgoff: number): boolean {
    this.readFolio(pgoff);
    return this.preparing.length > 0 && this.preparing.includes(pgoff);
  }

  /** The folio of `pgoff` is locked for its prepare (`beginPrepare`), then unlocked (`endPrepare`). */
  beginPrepare(pgoff: number): void {
    this.writeFolio(pgoff);
    this.preparing.push(pgoff);
  }

  /** The folio is unlocked: a fault waiting for it goes on. */
  endPrepare(pgoff: number): void {
    this.writeFolio(pgoff);
    // The last one into its place, not `splice`: that builds an array of what it removed, and
    // every private fault on SEV ends a prepare (the list is a set; its order means nothing).
    const i = this.preparing.indexOf(pgoff);
    if (i < 0) return;
    const last = this.preparing.pop()!;
    if (i < this.preparing.length) this.preparing[i] = last;
  }

  /** Whether `pgoff` is prepared (`folio_test_uptodate`). */
  isPrepared(pgoff: number): boolean {
    const p = this.prepared;
    if (!p) return false;
    this.readFolio(pgoff);
    return (p[pgoff >>> 5]! & (1 << (pgoff & 31))) !== 0;
  }

  /** Marks `pgoff` prepared; true if it was not before (the first use, which calls `gmemPrepare`). */
  testAndSetPrepared(pgoff: number): boolean {
    const p = this.prepared;
    if (!p) return false;
    this.readFolio(pgoff);
    const w = pgoff >>> 5;
    const bit = 1 << (pgoff & 31);
    if (p[w]! & bit) return false;
    this.writeFolio(pgoff);
    p[w] = p[w]! | bit;
    return true;
  }

  /**
   * A hole punched at `pgoff` (`fallocate(PUNCH_HOLE)` on the guest_memfd after a conversion to
   * shared): the page is no longer prepared. Returns whether it was. The frame stays with the
   * backing here; a page prepared again is a fresh page to the guest either way.
   */
  discard(pgoff: number): boolean {
    const p = this.prepared;
    if (!p) return false;
    this.readFolio(pgoff);
    const w = pgoff >>> 5;
    const bit = 1 << (pgoff & 31);
    if ((p[w]! & bit) === 0) return false;
    this.writeFolio(pgoff);
    p[w] = p[w]! & ~bit;
    return true;
  }

  /** Whether host page `c` is populated was read (a fault populating it would change that). */
  private readChunk(c: number): void {
    this.clock?.fp?.read(resourceId(this.chunkSpace, c));
  }

  /** Populated host pages: [first PFN, frames]. Every host page is read, populated or not. */
  *populated(): Generator<[pfn: number, npages: number]> {
    for (let c = 0; c < this.chunkBase.length; c++) {
      this.readChunk(c);
      const base = this.chunkBase[c]!;
      if (base >= 0) yield [base, this.chunkPages];
    }
  }

  /** Gives every populated host page back to the host (memslot deletion, VM teardown). */
  release(): void {
    const blocks = this.chunkPages / FRAMES_PER_BLOCK;
    for (let c = 0; c < this.chunkBase.length; c++) {
      const base = this.chunkBase[c]!;
      // One still unpopulated was read: a fault populating it first would have it freed here.
      if (base < 0) {
        this.readChunk(c);
        continue;
      }
      this.clock?.touch(resourceId(this.chunkSpace, c));
      const b0 = base / FRAMES_PER_BLOCK;
      for (let b = 0; b < blocks; b++) this.frames.freeBlock(b0 + b, this.owner);
      this.chunkBase[c] = -1;
    }
    const p = this.prepared;
    if (p && this.clock !== null) {
      for (let w = 0; w < p.length; w++) {
        for (let bits = p[w]!; bits !== 0; bits &= bits - 1)
          this.clock.touch(resourceId(this.folioSpace, w * 32 + (31 - Math.clz32(bits & -bits))));
      }
    }
    p?.fill(0);
  }

  /** The host is discarded: the bitmap of prepared pages goes to the next backing of the same size. */
  discardStorage(): void {
    if (this.prepared) giveUint32Array(this.prepared);
  }
}
