/**
 * A backend's control pages: host pages KVM hands to the technology's firmware or hardware for
 * a VM (TDX: the TDR, TDCS, TDVPR and S-EPT pages it gives the TDX module), as 4 KiB host
 * frames carved out of 2 MiB blocks the VM owns, taken on demand and given back when the
 * firmware has released them. A page it could not release is never given back (leaked on
 * purpose, as KVM's `tdx_reclaim_control_page()` in arch/x86/kvm/vmx/tdx.c does with a page
 * whose reclaim failed).
 *
 * Pages given back are taken again first, the last given back first; then the newest block's
 * pages in ascending order. The newest block's untaken pages are a range (`next` to its end),
 * not 512 entries pushed per block: a TD is built for every schedule the explorer runs.
 *
 * Which page a caller gets depends on the order of the calls: the pages are one resource of the
 * explorer's (`id`), which every call writes, and a new block comes from the host's frame
 * allocator, which guest memory takes its frames from too (it records R_BACKING itself).
 */
import type { Clock } from "../exec/clock.js";
import { FRAMES_PER_BLOCK, type FrameAllocator } from "../mem/frame-allocator.js";

export class ControlPages {
  /** Pages given back, to be taken again (last in, first out). */
  private free: number[] = [];
  private readonly blocks: number[] = [];
  /** The newest block's next untaken page and its end (equal when all are taken). */
  private next = 0;
  private end = 0;
  /** Pages the module could not give back: never given to the host again. */
  private readonly leaked = new Set<number>();

  constructor(
    private readonly frames: FrameAllocator,
    private readonly owner: number,
    private readonly clock: Clock | null = null,
    private readonly id = 0,
    /** What the blocks are for, as the frame allocator reports it when the host runs out. */
    private readonly label = "control pages",
  ) {}

  alloc(): number {
    this.clock?.touch(this.id);
    if (this.free.length > 0) return this.free.pop()!;
    if (this.next === this.end) {
      const block = this.frames.allocBlocks(1, 1, this.owner, this.label);
      this.blocks.push(block);
      this.next = block * FRAMES_PER_BLOCK;
      this.end = this.next + FRAMES_PER_BLOCK;
    }
    return this.next++;
  }

  release(pfn: number): void {
    this.clock?.touch(this.id);
    this.free.push(pfn);
  }

  /** `pfn` stays with the module (its RECLAIM failed): leaked on purpose. */
  markLeaked(pfn: number): void {
    this.clock?.touch(this.id);
    this.leaked.add(pfn);
  }

  /** Every page given back: return the blocks whose pages all came back to the host. */
  releaseBlocks(): void {
    const leaked = this.leaked;
    this.clock?.touch(this.id);
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
    if (this.next < this.end && !this.blocks.includes(Math.floor(this.next / FRAMES_PER_BLOCK)))
      this.next = this.end;
  }

  /** The allocator's state as a string, recording nothing (the footprint audit). */
  auditState(): string {
    return `${this.free.join(",")}/${this.blocks.join(",")}/${this.next}/${this.end}/${[...this.leaked].join(",")}`;
  }
}
