/**
 * ControlPages hands out pages in the order it always has: given-back pages first (last given
 * back first), then the newest block's pages in ascending order; `releaseBlocks` returns exactly
 * the blocks whose pages all came back. Checked against the original list-of-free-pages model.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { FRAMES_PER_BLOCK, FrameAllocator } from "../src/testing.js";
import { ControlPages } from "../src/backend/control-pages.js";

/** The original implementation: every page of a new block pushed on the free list. */
class ListModel {
  free: number[] = [];
  blocks: number[] = [];
  constructor(
    private readonly frames: FrameAllocator,
    private readonly owner: number,
  ) {}
  alloc(): number {
    if (this.free.length === 0) {
      const block = this.frames.allocBlocks(1, 1, this.owner, "model");
      this.blocks.push(block);
      for (let i = FRAMES_PER_BLOCK - 1; i >= 0; i--) this.free.push(block * FRAMES_PER_BLOCK + i);
    }
    return this.free.pop()!;
  }
  release(pfn: number): void {
    this.free.push(pfn);
  }
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

type Op =
  | { kind: "alloc"; n: number }
  | { kind: "release"; pick: number }
  | { kind: "releaseBlocks"; leak: number };

describe("ControlPages", () => {
  it("takes and returns pages and blocks as the list-of-free-pages model does", () => {
    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.record({
        kind: fc.constant("alloc" as const),
        n: fc.oneof(fc.integer({ min: 1, max: 4 }), fc.constant(FRAMES_PER_BLOCK)),
      }),
      fc.record({ kind: fc.constant("release" as const), pick: fc.nat() }),
      fc.record({
        kind: fc.constant("releaseBlocks" as const),
        leak: fc.integer({ min: -1, max: 6 }),
      }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 40 }), (ops) => {
        const fa = new FrameAllocator(64 * 2 ** 20);
        const fb = new FrameAllocator(64 * 2 ** 20);
        const pages = new ControlPages(fa, 5);
        const model = new ListModel(fb, 5);
        const held: number[] = [];
        const leaked = new Set<number>();
        for (const o of ops) {
          if (o.kind === "alloc") {
            for (let i = 0; i < o.n; i++) {
              const p = pages.alloc();
              expect(p).toBe(model.alloc());
              held.push(p);
            }
          } else if (o.kind === "release") {
            if (held.length === 0) continue;
            const [p] = held.splice(o.pick % held.length, 1);
            pages.release(p!);
            model.release(p!);
          } else {
            // A page leaked stays leaked: the allocator keeps the set, the model is given it.
            if (o.leak >= 0 && held.length > 0) {
              const p = held[o.leak % held.length]!;
              pages.markLeaked(p);
              leaked.add(p);
            }
            pages.releaseBlocks();
            model.releaseBlocks(leaked);
            expect(fa.usedFrames).toBe(fb.usedFrames);
          }
        }
        expect([...fa.blockOwner]).toEqual([...fb.blockOwner]);
      }),
      { numRuns: 300 },
    );
  });
});
