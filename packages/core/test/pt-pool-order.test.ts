/**
 * The page-table pool hands out slots in one fixed order, whatever the mix of allocations,
 * frees and top-ups: the slots freed last first, then the newest chunk's unused slots from the
 * lowest, then older freed slots. Slot numbers become PFNs in traces and schedule files, so the
 * order is part of what makes a run reproducible; the reference here is a plain stack (a new
 * chunk's 512 slots pushed, lowest on top), written apart from the pool's own.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Clock, FRAMES_PER_BLOCK, FrameAllocator, PtPool } from "../src/testing.js";

type Op = { kind: "alloc" } | { kind: "free"; pick: number } | { kind: "reserve"; n: number };

class ReferencePool {
  private stack: number[] = [];
  private chunks = 0;
  private grow(): void {
    const base = this.chunks++ * FRAMES_PER_BLOCK;
    for (let i = FRAMES_PER_BLOCK - 1; i >= 0; i--) this.stack.push(base + i);
  }
  reserve(n: number): void {
    while (this.stack.length < n) this.grow();
  }
  alloc(): number {
    if (this.stack.length === 0) this.grow();
    return this.stack.pop()!;
  }
  free(slot: number): void {
    this.stack.push(slot);
  }
}

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.constant<Op>({ kind: "alloc" }) },
  { weight: 3, arbitrary: fc.nat(10_000).map<Op>((pick) => ({ kind: "free", pick })) },
  {
    weight: 1,
    arbitrary: fc
      .integer({ min: 1, max: 2 * FRAMES_PER_BLOCK })
      .map<Op>((n) => ({ kind: "reserve", n })),
  },
);

describe("page-table pool", () => {
  it("hands out slots in the reference stack's order under any allocations, frees and top-ups", () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 1500 }), (ops) => {
        const pool = new PtPool(new FrameAllocator(64 * 2 ** 20));
        const ref = new ReferencePool();
        const live: number[] = [];
        for (const o of ops) {
          if (o.kind === "alloc") {
            const slot = pool.alloc(0, 1, 0, 0);
            expect(slot).toBe(ref.alloc());
            live.push(slot);
          } else if (o.kind === "free") {
            if (live.length === 0) continue;
            const [slot] = live.splice(o.pick % live.length, 1);
            pool.free(slot!);
            ref.free(slot!);
          } else {
            pool.reserve(o.n);
            ref.reserve(o.n);
          }
        }
        expect(pool.liveTables).toBe(live.length);
      }),
      { numRuns: 200 },
    );
  });

  it("tops up whole chunks: a reserve with slots left in the newest chunk keeps them for later", () => {
    const pool = new PtPool(new FrameAllocator(64 * 2 ** 20));
    const first = pool.alloc(0, 1, 0, 0);
    const freed = pool.alloc(0, 1, 0, 0);
    pool.free(freed);
    pool.reserve(FRAMES_PER_BLOCK + 5);
    expect(pool.capacity).toBe(2 * FRAMES_PER_BLOCK);
    // The new chunk's slots come first, lowest on top; then the slot freed before the top-up,
    // then the first chunk's unused slots.
    expect(pool.alloc(0, 1, 0, 0)).toBe(FRAMES_PER_BLOCK);
    const rest: number[] = [];
    for (let i = 1; i < FRAMES_PER_BLOCK; i++) rest.push(pool.alloc(0, 1, 0, 0));
    expect(rest[rest.length - 1]).toBe(2 * FRAMES_PER_BLOCK - 1);
    expect(pool.alloc(0, 1, 0, 0)).toBe(freed);
    expect(pool.alloc(0, 1, 0, 0)).toBe(first + 2);
  });
});

describe("page-table pool storage", () => {
  it("gives every allocated table empty SPTEs: fresh slots, reused slots, and a released pool's arrays", () => {
    const frames = new FrameAllocator(64 * 2 ** 20);
    const isEmpty = (pool: PtPool, slot: number) => {
      const m = pool.tableMem(slot);
      const off = pool.tableOff(slot);
      for (let i = 0; i < 512; i++)
        if (m[off + 2 * i] !== 0 || m[off + 2 * i + 1] !== 0x80000000) return false;
      return true;
    };
    const scribble = (pool: PtPool, slot: number) => {
      const m = pool.tableMem(slot);
      m.fill(0xdeadbeef, pool.tableOff(slot), pool.tableOff(slot) + 1024);
    };
    for (let round = 0; round < 3; round++) {
      const pool = new PtPool(frames);
      const slots = Array.from({ length: 40 }, () => pool.alloc(0, 1, 0, 0));
      for (const s of slots) {
        expect(isEmpty(pool, s)).toBe(true);
        scribble(pool, s);
      }
      for (const s of slots.slice(0, 20)) pool.free(s);
      // A top-up that puts the first chunk's unused slots back on the stack, then reuse.
      pool.reserve(FRAMES_PER_BLOCK + 30);
      for (let i = 0; i < FRAMES_PER_BLOCK + 30; i++) {
        const s = pool.alloc(0, 1, 0, 0);
        expect(isEmpty(pool, s)).toBe(true);
        scribble(pool, s);
      }
      pool.release();
    }
  });
});

describe("page-table pool storage while it tracks writes", () => {
  it("a released pool's arrays come back empty, tables written before and while tracking alike", () => {
    const frames = new FrameAllocator(64 * 2 ** 20);
    const clock = new Clock();
    for (let round = 0; round < 3; round++) {
      const pool = new PtPool(frames);
      // Tables written before tracking starts: one freed then (it stays free), one live.
      const early = pool.alloc(0, 1, 0, 0);
      const live = pool.alloc(0, 1, 0, 0);
      const slots = Array.from({ length: 20 }, () => pool.alloc(0, 1, 0, 0));
      pool.tableMem(early).fill(0x1234, pool.tableOff(early), pool.tableOff(early) + 1024);
      pool.free(early);
      pool.tableMem(live)[pool.tableOff(live) + 10] = 0x5007;
      pool.trackWrites(clock);
      // Stores while tracking reach the pool's log, as `TdpMmu.writeSpte`'s do through the clock.
      for (const s of slots) {
        for (const i of [0, 7, 300, 511]) {
          pool.tableMem(s)[pool.tableOff(s) + 2 * i] = 0xabc007;
          pool.noteSpteWrite(s * 512 + i);
        }
      }
      pool.release();
      const next = new PtPool(frames);
      for (let i = 0; i < 40; i++) {
        const s = next.alloc(0, 1, 0, 0);
        const m = next.tableMem(s);
        const off = next.tableOff(s);
        for (let e = 0; e < 512; e++) {
          expect(m[off + 2 * e]).toBe(0);
          expect(m[off + 2 * e + 1]).toBe(0x80000000);
        }
      }
      next.release();
    }
  });
});
