/**
 * The page-table page pool: every TDP table page of every VM on a host, in typed arrays.
 *
 * A table page is 512 SPTEs of 8 bytes, stored as 1024 `Uint32` (lo, hi per entry), like the
 * real 4 KiB page. The pool takes host frames a 2 MiB block (512 pages) at a time, but stores
 * them in arrays of 16 pages (64 KiB) made on first use, so a small VM does not pay for a whole
 * block, the pool grows without copying, and no typed array is ever large: a 1 TiB guest's
 * tables (over 2 GiB) fit.
 *
 * A page is named by its *slot*; its host PFN (what a non-leaf SPTE holds) is the chunk's block
 * PFN plus the slot's index in the chunk, and `pfnToSlot` inverts that with one array read.
 * Per-page metadata (the kernel's `struct kvm_mmu_page` in `arch/x86/kvm/mmu/mmu_internal.h`:
 * level, base GFN, role, external SPT)
 * sits in parallel typed arrays indexed by slot.
 */
import { FRAMES_PER_BLOCK, OWNER_PT_POOL, type FrameAllocator } from "./frame-allocator.js";
import { SHADOW_NONPRESENT_HI, SHADOW_NONPRESENT_LO } from "../arch/spte.js";
import type { Clock } from "../exec/clock.js";
import { KVM_ARCH_NR_OBJS_PER_MEMORY_CACHE, type ExecCtx } from "../exec/ctx.js";
import { R_POOL, R_POOL_COUNTS, type FootprintRecorder } from "../exec/footprint.js";
import { giveInt32Array, takeInt32Array } from "./spare-arrays.js";
import { grown } from "./typed-arrays.js";

export const U32_PER_TABLE = 1024;
/** The fewest table pages a fault's top-up wants (`mmu_topup_memory_caches`: a walk of 5 levels). */
export const PT64_ROOT_MAX_LEVEL = 5;
const SLOT_SHIFT = 9;
const SLOT_MASK = 511;
/** Pages per storage array: `mem[slot >>> MEM_SHIFT]` holds `slot`, at `(slot & MEM_MASK) * 1024`. */
export const MEM_SHIFT = 4;
export const MEM_MASK = (1 << MEM_SHIFT) - 1;

/** Role bits of a table page (`union kvm_mmu_page_role`, the parts the TDP MMU uses). */
export const ROLE_MIRROR = 1;
export const ROLE_ROOT = 2;
export const ROLE_INVALID = 4;
/**
 * Not a role of the kernel's: a mirror table whose external page the backend already had
 * (`Backend.adoptExternalSpt`). The page is the backend's until the table is linked: a table
 * freed unlinked does not give it back.
 */
export const ROLE_ADOPTED = 8;

const EMPTY_TABLE = (() => {
  const t = new Uint32Array(U32_PER_TABLE);
  for (let i = 0; i < U32_PER_TABLE; i += 2) {
    t[i] = SHADOW_NONPRESENT_LO;
    t[i + 1] = SHADOW_NONPRESENT_HI;
  }
  return t;
})();

/**
 * Arrays of discarded pools (`release`), zeroed, for the next pool to take instead of making
 * new ones. The explorer builds a VM, and so a pool, for every schedule it runs (hundreds of
 * thousands of them); a new 64 KiB table array per pool, zero-filled by the allocator and later
 * swept by the collector, cost more than the pool's own work. A recycled array is zeroed over
 * everything the pool wrote, so a pool cannot tell it from a new one.
 */
const SPARE_MEM_MAX = 64;
const spareMem: Uint32Array[] = [];

/** Words of a table's occupancy bitmap (`PtPool.occupancy`): 512 bits. */
export const OCCUPANCY_WORDS = 16;

/** The metadata arrays of one block's worth of slots (a pool's first `growMeta`). */
interface Meta {
  spLevel: Uint8Array<ArrayBuffer>;
  spRole: Uint8Array<ArrayBuffer>;
  spLive: Uint8Array<ArrayBuffer>;
  spGfn: Float64Array<ArrayBuffer>;
  spOwner: Int32Array<ArrayBuffer>;
  spExternal: Int32Array<ArrayBuffer>;
  freeSlots: Int32Array<ArrayBuffer>;
}
const SPARE_META_MAX = 8;
const spareMeta: Meta[] = [];
/** Empty arrays for a pool with no slots yet or released (shared: nothing is ever stored in them). */
const NO_U8: Uint8Array<ArrayBuffer> = new Uint8Array(0);
const NO_I32: Int32Array<ArrayBuffer> = new Int32Array(0);
const NO_U32: Uint32Array<ArrayBuffer> = new Uint32Array(0);
const NO_F64: Float64Array<ArrayBuffer> = new Float64Array(0);

/** Occupancy bitmaps of one block's worth of slots, likewise (see `PtPool.occupancy`). */
const spareOccupancy: Uint32Array<ArrayBuffer>[] = [];

export class PtPool {
  /** Table memory, one `Uint32Array` of 16 pages per entry, made when its first page is used. */
  readonly mem: Uint32Array[] = [];
  private chunkBlock: number[] = [];
  /** Host block → chunk index, -1 if the block is not a pool chunk. */
  private blockChunk: Int32Array<ArrayBuffer>;
  private freeSlots = NO_I32;
  private nFree = 0;
  private live = 0;
  /** One past the highest slot ever allocated: table memory and metadata below it were written. */
  private touched = 0;

  /** `kvm_mmu_page` fields, by slot. */
  spLevel = NO_U8;
  spRole = NO_U8;
  spGfn = NO_F64;
  /** Owner (VM id) of the page. */
  spOwner = NO_I32;
  /** Handle of the backend's external page for a mirror SP (`external_spt`), -1 if none. */
  spExternal = NO_I32;
  /** 1 while the page is allocated (for the invariant checks). */
  spLive = NO_U8;
  /**
   * While `tracksWrites`: by slot, `OCCUPANCY_WORDS` words whose bit `i & 31` of word `i >>> 5`
   * is set while entry i is not the empty SPTE, kept by `noteSpteWrite` and `alloc`, so that the
   * invariant walk (after every explorer step) visits a table's few used entries instead of all
   * 512. The kernel has nothing like it; it is the emulator's index.
   */
  occupancy = NO_U32;
  /**
   * `occupancy` describes every live table: set by `trackWrites` for a host whose VMs all run on
   * one clock and store only through the MMU (the explorer's), off otherwise. SPTE stores reach
   * `noteSpteWrite` through the clock; the hardware walk's A/D updates do not, and need not (they
   * never make an entry empty or non-empty).
   */
  tracksWrites = false;
  /** What the current step touches, while the explorer runs (SPTE reads record here too). */
  fp: FootprintRecorder | null = null;
  /** Bumped by every allocation and free (the explorer re-checks invariants only after a change). */
  generation = 0;
  /**
   * Bumped by every store to an entry above level 1 (`TdpMmu.writeSpte`): walkers that cache the
   * path to a last-level table (`WalkOut`, `TdpIter`) trust it only while this is unchanged.
   */
  upperWrites = 0;

  constructor(private readonly frames: FrameAllocator) {
    this.blockChunk = takeInt32Array(frames.totalBlocks, -1);
  }

  get liveTables(): number {
    return this.live;
  }

  /**
   * The SPTE at entry `idx` of table `slot`, as a walker outside `TdpIter` reads it (the
   * hardware walk, fast page fault's compare, make_huge_spte's search): returns its low half and
   * leaves its high half in `readHi` (no object per read). The read is recorded.
   */
  readSpte(slot: number, idx: number): number {
    this.fp?.read(slot * 512 + idx);
    const mem = this.mem[slot >>> MEM_SHIFT]!;
    const off = (slot & MEM_MASK) * U32_PER_TABLE + 2 * idx;
    this.readHi = mem[off + 1]!;
    return mem[off]!;
  }

  /** The high half of the SPTE `readSpte` read last. */
  readHi = 0;

  /**
   * The CPU's page walker sets Accessed (and Dirty) in a leaf: `bits` ORed into the low half of
   * entry `idx` of table `slot`, recorded as a write. Returns the new low half. Not an MMU store
   * (no `writeSpte`): it never makes an entry present or not, as the occupancy index assumes.
   */
  setHardwareBits(slot: number, idx: number, bits: number): number {
    this.fp?.write(slot * 512 + idx);
    const mem = this.mem[slot >>> MEM_SHIFT]!;
    const off = (slot & MEM_MASK) * U32_PER_TABLE + 2 * idx;
    const lo = (mem[off]! | bits) >>> 0;
    mem[off] = lo;
    return lo;
  }

  /** One past the highest slot ever allocated: every slot from here on has never been live. */
  get slotsUsed(): number {
    return this.touched;
  }

  get capacity(): number {
    return this.chunkBlock.length * FRAMES_PER_BLOCK;
  }

  /** Bytes of table storage made so far. */
  get bytes(): number {
    let n = 0;
    for (const m of this.mem) if (m) n += m.byteLength;
    return n;
  }

  /**
   * `kvm_mmu_topup_memory_cache(&vcpu->arch.mmu_shadow_page_cache, min)` for the task of `cache`
   * (virt/kvm/kvm_main.c): nothing if its cache holds `min` pages; else the cache is filled to
   * its capacity from the free list, which grows from the host's frames if it must. The fault
   * path tops up before it takes `mmu_lock`, so running out of memory is reported before anything
   * is half-done. May throw `HostMemoryExhausted` (the cache is then as it was).
   *
   * Only a refill touches the free list: a fault that finds its cache full enough reads nothing
   * another task can change, as on the kernel, where each vCPU has its own cache. The slots leave
   * the free list in the order `alloc` would have handed them out, so a lone vCPU gets the same
   * tables as without a cache.
   */
  topUp(cache: ExecCtx, min: number): void {
    if (cache.mmuPageCache >= min) return;
    const want = KVM_ARCH_NR_OBJS_PER_MEMORY_CACHE - cache.mmuPageCache;
    this.fp?.write(R_POOL);
    while (this.nFree < want) this.grow();
    const slots = cache.mmuPageSlots;
    // The cache hands out from its end: the free list's top goes last.
    slots.copyWithin(want, 0, cache.mmuPageCache);
    for (let i = want - 1; i >= 0; i--) slots[i] = this.freeSlots[--this.nFree]!;
    cache.mmuPageCache = KVM_ARCH_NR_OBJS_PER_MEMORY_CACHE;
  }

  /**
   * `kvm_mmu_free_memory_cache` of `cache`'s table pages (at vCPU destruction): back on the free
   * list, the cache's top first.
   */
  freeCache(cache: ExecCtx): void {
    if (cache.mmuPageCache === 0) return;
    this.fp?.write(R_POOL);
    while (cache.mmuPageCache > 0)
      this.freeSlots[this.nFree++] = cache.mmuPageSlots[--cache.mmuPageCache]!;
  }

  /**
   * A zeroed (all `SHADOW_NONPRESENT_VALUE`) table page: from the page cache of `cache`'s task if
   * it holds one (`topUp`), else from the free list. Taken from a cache, the page touches only
   * the pool's counts, which every allocation and free updates commutatively. May throw
   * `HostMemoryExhausted` (from the free list).
   */
  alloc(
    owner: number,
    level: number,
    gfn: number,
    role: number,
    cache: ExecCtx | null = null,
  ): number {
    let slot: number;
    if (cache !== null && cache.mmuPageCache > 0) {
      slot = cache.mmuPageSlots[--cache.mmuPageCache]!;
    } else {
      if (this.nFree === 0) this.grow();
      this.fp?.write(R_POOL);
      slot = this.freeSlots[--this.nFree]!;
    }
    this.fp?.add(R_POOL_COUNTS);
    this.generation++;
    if (slot >= this.touched) this.touched = slot + 1;
    let m = this.mem[slot >>> MEM_SHIFT];
    if (m === undefined) {
      m = spareMem.pop() ?? new Uint32Array((MEM_MASK + 1) * U32_PER_TABLE);
      this.mem[slot >>> MEM_SHIFT] = m;
    }
    m.set(EMPTY_TABLE, (slot & MEM_MASK) * U32_PER_TABLE);
    this.spLevel[slot] = level;
    this.spRole[slot] = role;
    this.spGfn[slot] = gfn;
    this.spOwner[slot] = owner;
    this.spExternal[slot] = -1;
    this.spLive[slot] = 1;
    if (this.tracksWrites)
      this.occupancy.fill(0, slot * OCCUPANCY_WORDS, (slot + 1) * OCCUPANCY_WORDS);
    this.live++;
    return slot;
  }

  /** Slots on the free list (not in a task's cache): for the footprint audit. */
  get freeCount(): number {
    return this.nFree;
  }

  /**
   * The free list in the order `alloc` hands it out, and the host blocks the pool took (`grow`):
   * which table a task gets depends on both. For the footprint audit, between steps.
   */
  auditFreeList(): string {
    return `${this.freeSlots.subarray(0, this.nFree).join(",")}|${this.chunkBlock.join(",")}`;
  }

  /** A page allocated before it was known where it goes (a split's) gets its level, GFN and role. */
  initSlot(slot: number, level: number, gfn: number, role: number): void {
    this.fp?.write(R_POOL);
    this.spLevel[slot] = level;
    this.spGfn[slot] = gfn;
    this.spRole[slot] = role;
  }

  free(slot: number): void {
    if (this.spLive[slot] !== 1) throw new Error(`double free of table page slot ${slot}`);
    // Back on the free list (the kernel frees a table page to the page allocator, not to a
    // vCPU's cache).
    this.fp?.write(R_POOL);
    this.fp?.add(R_POOL_COUNTS);
    this.generation++;
    this.spLive[slot] = 0;
    this.freeSlots[this.nFree++] = slot;
    this.live--;
  }

  /**
   * From now on `occupancy` follows every SPTE store made through `clock`: for a host whose every
   * VM runs on `clock` and stores only through the MMU (the explorer's). The live tables' bits
   * are taken from what they hold now.
   */
  trackWrites(clock: Clock): void {
    clock.tables = this;
    this.tracksWrites = true;
    if (this.occupancy.length < this.spLevel.length * OCCUPANCY_WORDS)
      this.growOccupancy(this.spLevel.length);
    for (let slot = 0; slot < this.touched; slot++) {
      if (this.spLive[slot] !== 1) continue;
      for (let i = 0; i < 512; i++) this.noteSpteWrite(slot * 512 + i);
    }
  }

  /** The SPTE `slot * 512 + index` was just stored to: its occupancy bit follows what it holds. */
  noteSpteWrite(id: number): void {
    const slot = Math.floor(id / 512);
    const i = id - slot * 512;
    const m = this.mem[slot >>> MEM_SHIFT]!;
    const off = (slot & MEM_MASK) * U32_PER_TABLE + 2 * i;
    const w = slot * OCCUPANCY_WORDS + (i >>> 5);
    if (m[off] === SHADOW_NONPRESENT_LO && m[off + 1] === SHADOW_NONPRESENT_HI)
      this.occupancy[w] = this.occupancy[w]! & ~(1 << (i & 31));
    else this.occupancy[w] = this.occupancy[w]! | (1 << (i & 31));
  }

  private growOccupancy(slots: number): void {
    if (this.occupancy.length === 0 && slots === FRAMES_PER_BLOCK) {
      const spare = spareOccupancy.pop();
      if (spare !== undefined) {
        this.occupancy = spare;
        return;
      }
    }
    this.occupancy = grown(this.occupancy, new Uint32Array(slots * OCCUPANCY_WORDS));
  }

  /** The array holding `slot`, and the `Uint32` offset of its entry 0 in it. */
  tableMem(slot: number): Uint32Array {
    return this.mem[slot >>> MEM_SHIFT]!;
  }

  tableOff(slot: number): number {
    return (slot & MEM_MASK) * U32_PER_TABLE;
  }

  slotToPfn(slot: number): number {
    return this.chunkBlock[slot >>> SLOT_SHIFT]! * FRAMES_PER_BLOCK + (slot & SLOT_MASK);
  }

  /** Inverse of `slotToPfn`; -1 if `pfn` is not a pool page. */
  pfnToSlot(pfn: number): number {
    const chunk = this.blockChunk[pfn >>> SLOT_SHIFT];
    if (chunk === undefined || chunk < 0) return -1;
    return chunk * FRAMES_PER_BLOCK + (pfn & SLOT_MASK);
  }

  isLive(slot: number): boolean {
    return this.spLive[slot] === 1;
  }

  /**
   * One more block of host frames for tables: from the host's frame allocator, which guest
   * memory and control pages take their frames from too, so the order of a growth and another
   * task's allocation decides which frames each gets (the allocator records R_BACKING).
   */
  private grow(): void {
    this.fp?.write(R_POOL);
    const block = this.frames.allocBlocks(1, 1, OWNER_PT_POOL, "page-table pool");
    const chunk = this.chunkBlock.length;
    this.chunkBlock.push(block);
    this.blockChunk[block] = chunk;
    const needed = (chunk + 1) * FRAMES_PER_BLOCK;
    if (needed > this.spLevel.length) this.growMeta(Math.max(needed, this.spLevel.length * 2));
    // Hand out the new chunk's slots in ascending order.
    for (let i = FRAMES_PER_BLOCK - 1; i >= 0; i--)
      this.freeSlots[this.nFree++] = chunk * FRAMES_PER_BLOCK + i;
  }

  /**
   * Gives the pool's arrays, zeroed, to the pools made after it (see `spareMem`). For a host
   * that is being discarded (the explorer's, after each schedule): the pool must not be used
   * again.
   */
  release(): void {
    for (let c = 0; c < this.mem.length; c++) {
      const m = this.mem[c];
      if (m === undefined) continue;
      const written = Math.min(MEM_MASK + 1, Math.max(0, this.touched - (c << MEM_SHIFT)));
      m.fill(0, 0, written * U32_PER_TABLE);
      if (spareMem.length < SPARE_MEM_MAX) spareMem.push(m);
    }
    this.mem.length = 0;
    this.tracksWrites = false;
    giveInt32Array(this.blockChunk);
    this.blockChunk = NO_I32;
    if (this.spLevel.length === FRAMES_PER_BLOCK && spareMeta.length < SPARE_META_MAX) {
      const meta: Meta = {
        spLevel: this.spLevel,
        spRole: this.spRole,
        spLive: this.spLive,
        spGfn: this.spGfn,
        spOwner: this.spOwner,
        spExternal: this.spExternal,
        freeSlots: this.freeSlots,
      };
      // Zeroed over the slots ever allocated, the only ones written; `freeSlots` is written
      // by `grow` before it is read.
      const used = this.touched;
      for (const a of [
        meta.spLevel,
        meta.spRole,
        meta.spLive,
        meta.spGfn,
        meta.spOwner,
        meta.spExternal,
      ])
        a.fill(0, 0, used);
      spareMeta.push(meta);
    }
    this.spLevel = this.spRole = this.spLive = NO_U8;
    this.spGfn = NO_F64;
    // Not cleared: `alloc` clears a slot's bits before the slot is used.
    if (
      this.occupancy.length === FRAMES_PER_BLOCK * OCCUPANCY_WORDS &&
      spareOccupancy.length < SPARE_META_MAX
    )
      spareOccupancy.push(this.occupancy);
    this.occupancy = NO_U32;
    this.spOwner = this.spExternal = this.freeSlots = NO_I32;
    this.nFree = 0;
  }

  /** Metadata arrays grow by doubling, so a pool of n pages costs O(n) copies in total. */
  private growMeta(cap: number): void {
    if (this.tracksWrites) this.growOccupancy(cap);
    if (this.spLevel.length === 0 && cap === FRAMES_PER_BLOCK) {
      const meta = spareMeta.pop();
      if (meta !== undefined) {
        ({
          spLevel: this.spLevel,
          spRole: this.spRole,
          spLive: this.spLive,
          spGfn: this.spGfn,
        } = meta);
        ({ spOwner: this.spOwner, spExternal: this.spExternal, freeSlots: this.freeSlots } = meta);
        return;
      }
    }
    this.spLevel = grown(this.spLevel, new Uint8Array(cap));
    this.spRole = grown(this.spRole, new Uint8Array(cap));
    this.spLive = grown(this.spLive, new Uint8Array(cap));
    this.spGfn = grown(this.spGfn, new Float64Array(cap));
    this.spOwner = grown(this.spOwner, new Int32Array(cap));
    this.spExternal = grown(this.spExternal, new Int32Array(cap));
    this.freeSlots = grown(this.freeSlots, new Int32Array(cap));
  }
}
