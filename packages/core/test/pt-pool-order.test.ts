/**
 * The page-table pool hands out slots in one fixed order, whatever the mix of allocations,
 * frees and tasks' cache top-ups: the slots freed last first, then the newest chunk's unused slots
 * from the lowest, then older freed slots; a top-up moves the slots next in that order into its
 * task's cache, which hands them out in the same order, so a lone task gets the tables it would
 * get without a cache. Slot numbers become PFNs in traces and schedule files, so the
 * order is part of what makes a run reproducible; the reference here is a plain stack (a new
 * chunk's 512 slots pushed, lowest on top), written apart from the pool's own.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  Clock,
  ExecCtx,
  FRAMES_PER_BLOCK,
  FrameAllocator,
  KVM_ARCH_NR_OBJS_PER_MEMORY_CACHE,
  PtPool,
} from "../src/testing.js";

/** `cache`: which of two tasks' caches the operation uses, -1 for none. */
type Op =
  | { kind: "alloc"; cache: number }
  | { kind: "free"; pick: number }
  | { kind: "topup"; cache: number; min: number };

class ReferencePool {
  private stack: number[] = [];
  private chunks = 0;
  /** Each cache as a queue: the slot it hands out next first. */
  readonly caches: number[][] = [[], []];
  private grow(): void {
    const base = this.chunks++ * FRAMES_PER_BLOCK;
    for (let i = FRAMES_PER_BLOCK - 1; i >= 0; i--) this.stack.push(base + i);
  }
  topUp(cache: number, min: number): void {
    const c = this.caches[cache]!;
    if (c.length >= min) return;
    const want = KVM_ARCH_NR_OBJS_PER_MEMORY_CACHE - c.length;
    while (this.stack.length < want) this.grow();
    for (let i = 0; i < want; i++) c.push(this.stack.pop()!);
  }
  alloc(cache: number): number {
    const c = this.caches[cache];
    if (c !== undefined && c.length > 0) return c.shift()!;
    if (this.stack.length === 0) this.grow();
    return this.stack.pop()!;
  }
  free(slot: number): void {
    this.stack.push(slot);
  }
}

const cacheIndex = fc.integer({ min: -1, max: 1 });
const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: cacheIndex.map<Op>((cache) => ({ kind: "alloc", cache })) },
  { weight: 3, arbitrary: fc.nat(10_000).map<Op>((pick) => ({ kind: "free", pick })) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.integer({ min: 0, max: 1 }), fc.integer({ min: 1, max: 45 }))
      .map<Op>(([cache, min]) => ({ kind: "topup", cache, min })),
  },
);

describe("page-table pool", () => {
  it("hands out slots in the reference stack's order under any allocations, frees and top-ups", () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 1500 }), (ops) => {
        const pool = new PtPool(new FrameAllocator(64 * 2 ** 20));
        const ref = new ReferencePool();
        const caches = [new ExecCtx("a", true), new ExecCtx("b", true)];
        const live: number[] = [];
        for (const o of ops) {
          if (o.kind === "alloc") {
            const slot = pool.alloc(0, 1, 0, 0, caches[o.cache] ?? null);
            expect(slot).toBe(ref.alloc(o.cache));
            live.push(slot);
          } else if (o.kind === "free") {
            if (live.length === 0) continue;
            const [slot] = live.splice(o.pick % live.length, 1);
            pool.free(slot!);
            ref.free(slot!);
          } else {
            pool.topUp(caches[o.cache]!, o.min);
            ref.topUp(o.cache, o.min);
          }
        }
        expect(pool.liveTables).toBe(live.length);
        expect(caches.map((c) => c.mmuPageCache)).toEqual(ref.caches.map((c) => c.length));
      }),
      { numRuns: 200 },
    );
  });

  it("grows by whole chunks: a top-up with slots left in the newest chunk keeps them for later", () => {
    const pool = new PtPool(new FrameAllocator(64 * 2 ** 20));
    const first = pool.alloc(0, 1, 0, 0);
    const freed = pool.alloc(0, 1, 0, 0);
    pool.free(freed);
    // Another task's cache takes 480 of the 511 free slots (the freed one, on top, first): a
    // top-up of 40 must grow.
    const other = new ExecCtx("other", true);
    for (let i = 0; i < 12; i++) {
      other.mmuPageCache = 0;
      pool.topUp(other, 1);
    }
    expect(pool.freeCount).toBe(31);
    expect(pool.capacity).toBe(FRAMES_PER_BLOCK);
    const mine = new ExecCtx("mine", true);
    pool.topUp(mine, 5);
    expect(mine.mmuPageCache).toBe(KVM_ARCH_NR_OBJS_PER_MEMORY_CACHE);
    expect(pool.capacity).toBe(2 * FRAMES_PER_BLOCK);
    // A cache that holds enough takes nothing more.
    pool.topUp(mine, 5);
    expect([pool.capacity, pool.freeCount]).toEqual([2 * FRAMES_PER_BLOCK, 512 + 31 - 40]);
    // The new chunk's slots come first, lowest on top (the cache's 40, then the free list's);
    // then the first chunk's 31 slots the other cache left.
    expect(pool.alloc(0, 1, 0, 0, mine)).toBe(FRAMES_PER_BLOCK);
    const rest: number[] = [];
    for (let i = 1; i < FRAMES_PER_BLOCK; i++) rest.push(pool.alloc(0, 1, 0, 0, mine));
    expect(rest[rest.length - 1]).toBe(2 * FRAMES_PER_BLOCK - 1);
    expect(mine.mmuPageCache).toBe(0);
    expect(pool.alloc(0, 1, 0, 0, mine)).toBe(first + 1 + 480);
    expect(pool.alloc(0, 1, 0, 0, mine)).toBe(first + 2 + 480);
    expect(other.mmuPageSlots[other.mmuPageCache - 1]).toBe(freed + 440);
    expect(pool.capacity).toBe(2 * FRAMES_PER_BLOCK);
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
      // Growth with the first chunk's unused slots still on the stack, then reuse.
      const cache = new ExecCtx("t", true);
      for (let i = 0; i < FRAMES_PER_BLOCK / KVM_ARCH_NR_OBJS_PER_MEMORY_CACHE; i++) {
        cache.mmuPageCache = 0;
        pool.topUp(cache, 1);
      }
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
