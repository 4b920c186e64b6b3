/**
 * Pages KVM gives the TDX module for a TD (TDR, TDCS, TDVPR, S-EPT pages): 4 KiB host frames
 * carved out of 2 MiB blocks the VM owns, taken on demand and given back when the module has
 * released them. A page the module could not release is never given back (leaked on purpose).
 *
 * Pages given back are taken again first, the last given back first; then the newest block's
 * pages in ascending order. The newest block's untaken pages are a range (`next` to its end),
 * not 512 entries pushed per block: a TD is built for every schedule the explorer runs.
 */
import { FRAMES_PER_BLOCK, type FrameAllocator } from "@tdpemu/core";

export class ControlPages {
  /** Pages given back, to be taken again (last in, first out). */
  private free: number[] = [];
  private readonly blocks: number[] = [];
  /** The newest block's next untaken page and its end (equal when all are taken). */
  private next = 0;
  private end = 0;

  constructor(
    private readonly frames: FrameAllocator,
    private readonly owner: number,
  ) {}

  alloc(): number {
    if (this.free.length > 0) return this.free.pop()!;
    if (this.next === this.end) {
      const block = this.frames.allocBlocks(1, 1, this.owner, "TDX control pages");
      this.blocks.push(block);
      this.next = block * FRAMES_PER_BLOCK;
      this.end = this.next + FRAMES_PER_BLOCK;
    }
    return this.next++;
  }

  release(pfn: number): void {
    this.free.push(pfn);
  }

  /** Every page given back: return the blocks whose pages all came back to the host. */
  releaseBlocks(leaked: ReadonlySet<number>): void {
    const freeSet = new Set(this.free);
    const untaken = (pfn: number) => pfn >= this.next && pfn < this.end;
    for (const b of this.blocks.splice(0)) {
      let whole = true;
      for (let i = 0; i < FRAMES_PER_BLOCK; i++) {
        const pfn = b * FRAMES_PER_BLOCK + i;
        if ((!freeSet.has(pfn) && !untaken(pfn)) || leaked.has(pfn)) whole = false;
      }
      if (whole) this.frames.freeBlock(b, this.owner);
      else this.blocks.push(b);
    }
    this.free = this.free.filter((pfn) => this.blocks.includes(Math.floor(pfn / FRAMES_PER_BLOCK)));
    if (this.next < this.end && !this.blocks.includes(Math.floor(this.next / FRAMES_PER_BLOCK))) this.next = this.end;
  }
}
