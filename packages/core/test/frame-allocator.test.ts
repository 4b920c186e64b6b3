/**
 * The frame allocator: blocks given back or skipped for alignment serve later requests of any
 * size, a request fails only when no free aligned run exists, and its message says what is free.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { FrameAllocator, HostMemoryExhausted, OWNER_FREE } from "../src/testing.js";

const BLOCK = 2 * 2 ** 20;

describe("FrameAllocator", () => {
  it("a run given back serves the next aligned request of its size (not only single blocks)", () => {
    const fa = new FrameAllocator(1536 * BLOCK);
    expect(fa.allocBlocks(1, 1, 1, "pool")).toBe(0);
    expect(fa.allocBlocks(512, 512, 2, "backing")).toBe(512);
    expect(fa.allocBlocks(512, 512, 3, "backing")).toBe(1024);
    for (let b = 512; b < 1024; b++) fa.freeBlock(b, 2);
    expect(fa.allocBlocks(512, 512, 4, "backing")).toBe(512);
  });

  it("blocks skipped for alignment serve a later run, and are not handed out twice", () => {
    const fa = new FrameAllocator(1024 * BLOCK);
    expect(fa.allocBlocks(1, 1, 1, "pool")).toBe(0);
    expect(fa.allocBlocks(512, 512, 2, "backing")).toBe(512); // 1..511 skipped
    expect(fa.allocBlocks(500, 1, 3, "tables")).toBe(1);
    const singles = new Set<number>();
    for (let i = 0; i < 11; i++) singles.add(fa.allocBlocks(1, 1, 4, "one"));
    expect([...singles].every((b) => b > 500 && b < 512)).toBe(true);
    expect(singles.size).toBe(11);
    expect(() => fa.allocBlocks(1, 1, 4, "one")).toThrow(HostMemoryExhausted);
  });

  it("out of memory says what was asked, what is free, and the largest free aligned run", () => {
    const fa = new FrameAllocator(1024 * BLOCK);
    fa.allocBlocks(1, 1, 1, "pool");
    fa.allocBlocks(512, 512, 2, "guest backing");
    expect(() => fa.allocBlocks(512, 512, 3, "guest backing (gmem)")).toThrow(
      "host out of memory: guest backing (gmem) needs 262144 contiguous frame(s) aligned to 262144; 261632 of the host's 524288 frames are free, " +
        "the largest free run so aligned is 0 frames",
    );
  });

  it("property: runs never overlap, are aligned, and a request fails only when no free aligned run exists", () => {
    const op = fc.oneof(
      fc.record({
        kind: fc.constant("alloc" as const),
        count: fc.integer({ min: 1, max: 8 }),
        align: fc.constantFrom(1, 2, 4, 8),
      }),
      fc.record({ kind: fc.constant("free" as const), pick: fc.nat() }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const total = 32;
        const fa = new FrameAllocator(total * BLOCK);
        const owner = new Array<number>(total).fill(OWNER_FREE);
        let next = 2;
        for (const o of ops) {
          if (o.kind === "free") {
            const used = owner.map((w, b) => (w !== OWNER_FREE ? b : -1)).filter((b) => b >= 0);
            if (used.length === 0) continue;
            const b = used[o.pick % used.length]!;
            fa.freeBlock(b, owner[b]!);
            owner[b] = OWNER_FREE;
            continue;
          }
          const exists = Array.from({ length: total }, (_, s) => s).some(
            (s) =>
              s % o.align === 0 &&
              s + o.count <= total &&
              owner.slice(s, s + o.count).every((w) => w === OWNER_FREE),
          );
          let start: number;
          try {
            start = fa.allocBlocks(o.count, o.align, next, "test");
          } catch (e) {
            expect(HostMemoryExhausted.is(e)).toBe(true);
            expect(exists).toBe(false);
            continue;
          }
          expect(start % o.align).toBe(0);
          for (let b = start; b < start + o.count; b++) {
            expect(owner[b]).toBe(OWNER_FREE);
            owner[b] = next;
          }
          next++;
        }
        for (let b = 0; b < total; b++) expect(fa.blockOwner[b]).toBe(owner[b]);
        expect(fa.usedFrames).toBe(owner.filter((w) => w !== OWNER_FREE).length * 512);
      }),
      { numRuns: 300 },
    );
  });
});
