/**
 * Pages KVM gives the TDX module for a TD (TDR, TDCS, TDVPR, S-EPT pages): 4 KiB host frames
 * carved out of 2 MiB blocks the VM owns, taken on demand and given back when the module has
 * released them. A page the module could not release is never given back (leaked on purpose).
 */
import { FRAMES_PER_BLOCK, type FrameAllocator } from "@tdpemu/core";

export class ControlPages {
  private free: number[] = [];
  private readonly blocks: number[] = [];

  constructor(
    private readonly frames: FrameAllocator,
    private readonly owner: number,
  ) {}

  alloc(): number {
    if (this.free.length === 0) {
      const block = this.frames.allocBlocks(1, 1, this.owner, "TDX control pages");
      this.blocks.push(block);
      for (let i = FRAMES_PER_BLOCK - 1; i >= 0; i--) this.free.push(block * FRAMES_PER_BLOCK + i);
    }
    return this.free.pop()!;
  }

  release(pfn: number): void {
    this.free.push(pfn);
  }

  /** Every page given back: return the blocks whose pages all came back to the host. */
  releaseBlocks(leaked: ReadonlySet<number>): void {
    const freeSet = new Set(this.free);
    for (const b of this.blocks.splice(0)) {
      let whole = true;
      for (let i = 0; i < FRAMES_PER_BLOCK; i++) {
        const pfn = b * FRAMES_PER_BLOCK + i;
        if (!freeSet.has(pfn) || leaked.has(pfn)) whole = false;
      }
      if (whole) this.frames.freeBlock(b, this.owner);
      else this.blocks.push(b);
    }
    this.free = this.free.filter((pfn) => this.blocks.includes(Math.floor(pfn / FRAMES_PER_BLOCK)));
  }
}
