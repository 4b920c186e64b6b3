/**
 * Host physical memory as frames (PFNs), handed out in blocks of 512 frames (2 MiB).
 *
 * Why blocks: guest backing and page-table pages are both carved from 2 MiB blocks, so ownership
 * costs one 32-bit word per 512 frames instead of per frame (memory per mapped page is a feature
 * here), and a 2 MiB-aligned block is what a host huge page is, which huge mappings need.
 * Frames inside a block belong to the block's owner; the owner decides what each frame holds.
 *
 * PFNs stay below 2^32 (host memory up to 16 TiB), so `pfn >>> 9` is the block of a frame.
 */
import { R_BACKING, type FootprintRecorder } from "../exec/footprint.js";
import { HostMemoryExhausted } from "./errors.js";
import { giveInt32Array, takeInt32Array } from "./spare-arrays.js";

export const FRAMES_PER_BLOCK = 512;
export const BLOCK_SHIFT = 9;
export const MAX_HOST_MEMORY = 16 * 2 ** 40;

/** Owner id 0 means free; page-table pages belong to the host's pool. */
export const OWNER_FREE = 0;
export const OWNER_PT_POOL = 1;

export class FrameAllocator {
  readonly totalBlocks: number;
  /** Owner of each block (0 = free). */
  readonly blockOwner: Int32Array<ArrayBuffer>;
  /** Blocks below this index have been handed out at least once; above it all are free. */
  private bump = 0;
  /**
   * Blocks below `bump` that were given back or skipped for alignment, reused one at a time
   * before the bump pointer moves. An entry may be stale (a run found by `findFreeRun` took the
   * block since): popping skips those.
   */
  private freeBlocks: number[] = [];
  private usedBlocks = 0;
  /**
   * What the current step touches, while the explorer runs (each VM's clock shares its recorder
   * here). Every allocation and free records a write of `R_BACKING` itself: which frames a task
   * gets depends on who allocated before it, whoever the caller is (guest memory, table pages,
   * control pages, a raw call's page), so no caller has to remember to record it.
   */
  fp: FootprintRecorder | null = null;
  /**
   * Bumped by every allocation and free. The allocator records into the clock's recorder but is
   * not on a clock: the invariant checks read which frames are whose, so the explorer adds this
   * to the check version (`Host.generation`), as it adds the table pool's.
   */
  generation = 0;

  constructor(memoryBytes: number) {
    if (
      !Number.isFinite(memoryBytes) ||
      memoryBytes < 2 * 2 ** 20 ||
      memoryBytes > MAX_HOST_MEMORY
    ) {
      throw new RangeError(`host memory must be between 2MiB and 16TiB, got ${memoryBytes} bytes`);
    }
    this.totalBlocks = Math.floor(memoryBytes / (FRAMES_PER_BLOCK * 4096));
    this.blockOwner = takeInt32Array(this.totalBlocks, OWNER_FREE);
  }

  /** The host is discarded: its owner array goes to the next host of the same size. */
  release(): void {
    giveInt32Array(this.blockOwner);
  }

  get totalFrames(): number {
    return this.totalBlocks * FRAMES_PER_BLOCK;
  }

  get usedFrames(): number {
    return this.usedBlocks * FRAMES_PER_BLOCK;
  }

  /**
   * The bump pointer and the list of blocks given back, in the order they are reused: with the
   * owners (`blockOwner`, compared apart), which blocks the next allocation takes. For the
   * footprint audit.
   */
  auditState(): string {
    return `${this.usedBlocks}/${this.bump}/${this.freeBlocks.join(",")}`;
  }

  /**
   * `count` contiguous blocks aligned to `align` blocks (1 for 2 MiB, 512 for a 1 GiB page),
   * owned by `owner`. Returns the first block. Throws `HostMemoryExhausted` when none are left;
   * nothing is changed then.
   */
  allocBlocks(count: number, align: number, owner: number, what: string): number {
    // Recorded before anything can throw: running out depends on the other tasks' allocations.
    this.fp?.write(R_BACKING);
    if (count === 1 && align === 1) {
      while (this.freeBlocks.length > 0) {
        const b = this.freeBlocks.pop()!;
        if (this.blockOwner[b] !== OWNER_FREE) continue; // taken by a run since
        this.blockOwner[b] = owner;
        this.usedBlocks++;
        this.generation++;
        return b;
      }
    }
    let start = Math.ceil(this.bump / align) * align;
    if (start + count <= this.totalBlocks) {
      // Blocks skipped for alignment are not lost: they go to the free list.
      for (let b = this.bump; b < start; b++) this.freeBlocks.push(b);
      this.bump = start + count;
    } else {
      // No aligned room past the bump pointer: a run of blocks given back or skipped before,
      // which may reach past the pointer into blocks never handed out.
      start = this.findFreeRun(count, align);
      if (start < 0) throw this.exhausted(what, count, align);
      if (start + count > this.bump) this.bump = start + count;
    }
    this.blockOwner.fill(owner, start, start + count);
    this.usedBlocks += count;
    this.generation++;
    return start;
  }

  /** The first `align`-aligned run of `count` free blocks, or -1. */
  private findFreeRun(count: number, align: number): number {
    const owner = this.blockOwner;
    for (let start = 0; start + count <= this.totalBlocks; start += align) {
      let b = start;
      while (b < start + count && owner[b] === OWNER_FREE) b++;
      if (b === start + count) return start;
    }
    return -1;
  }

  /** What is free, and the largest free aligned run, for the message. */
  private exhausted(what: string, count: number, align: number): HostMemoryExhausted {
    const owner = this.blockOwner;
    let largest = 0;
    for (let start = 0; start < this.totalBlocks; start += align) {
      let b = start;
      while (b < this.totalBlocks && owner[b] === OWNER_FREE) b++;
      largest = Math.max(largest, b - start);
    }
    return new HostMemoryExhausted(
      what,
      count * FRAMES_PER_BLOCK,
      align * FRAMES_PER_BLOCK,
      this.totalFrames,
      (this.totalBlocks - this.usedBlocks) * FRAMES_PER_BLOCK,
      largest * FRAMES_PER_BLOCK,
    );
  }

  freeBlock(block: number, owner: number): void {
    this.fp?.write(R_BACKING);
    if (this.blockOwner[block] !== owner) {
      throw new Error(
        `freeing block ${block} owned by ${this.blockOwner[block]} as owner ${owner}`,
      );
    }
    this.blockOwner[block] = OWNER_FREE;
    this.freeBlocks.push(block);
    this.usedBlocks--;
    this.generation++;
  }

  ownerOfPfn(pfn: number): number {
    const b = pfn >>> BLOCK_SHIFT;
    return b < this.totalBlocks ? this.blockOwner[b]! : OWNER_FREE;
  }
}
