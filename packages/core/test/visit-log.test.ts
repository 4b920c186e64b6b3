/**
 * The invariant walk's log of present entries stays bounded: past its limit it stops taking
 * entries and says so (the backend's checks then walk the tables themselves), and clearing a
 * large log gives its memory back.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { VisitLog } from "../src/check/mirror-view.js";

describe("the visit log", () => {
  it("keeps every entry up to its limit, in order, then reports an overflow", () => {
    const log = new VisitLog(256);
    for (let i = 0; i < 256; i++) log.add(i, 1, true, 1000 + i, -1, i % 2 === 0);
    expect(log.overflowed).toBe(false);
    const mirror: number[] = [];
    log.forEach(true, (gfn, level, kind, pfn) =>
      mirror.push(gfn, level, kind === "leaf" ? 1 : 0, pfn),
    );
    expect(mirror.length).toBe(128 * 4);
    expect(mirror.slice(0, 8)).toEqual([0, 1, 1, 1000, 2, 1, 1, 1002]);
    log.add(256, 1, true, 1256, -1, true);
    expect(log.overflowed).toBe(true);
    expect(log.size).toBe(256);
  });

  it("clear empties it and resets the overflow", () => {
    const log = new VisitLog(1 << 18);
    for (let i = 0; i < 100_000; i++) log.add(i, 1, true, i, -1, false);
    log.clear();
    expect(log.size).toBe(0);
    expect(log.overflowed).toBe(false);
    log.add(7, 2, false, 9, 3, false);
    const seen: unknown[] = [];
    log.forEach(false, (gfn, level, kind, pfn, ext) => seen.push([gfn, level, kind, pfn, ext]));
    expect(seen).toEqual([[7, 2, "table", 9, 3]]);
  });
});

describe("the visit log's lookup", () => {
  /** A walk's preorder: per 1G entry, its 2M entries, per 2M table its 4K leaves, by GFN. */
  const preorder = (spans: [number, number[]][]) => {
    const out: [number, number][] = [];
    for (const [g2m, leaves] of spans) {
      out.push([g2m, 2]);
      for (const off of leaves) out.push([g2m + off, 1]);
    }
    return out;
  };
  const spansArb = fc
    .uniqueArray(fc.integer({ min: 0, max: 63 }), { maxLength: 6 })
    .chain((tables) =>
      fc.tuple(
        ...tables
          .sort((a, b) => a - b)
          .map((t) =>
            fc
              .uniqueArray(fc.integer({ min: 0, max: 511 }), { maxLength: 12 })
              .map((ls) => [t * 512, ls.sort((a, b) => a - b)] as [number, number[]]),
          ),
      ),
    );

  it("finds each mirror entry of a walk's preorder, in any order of lookups, and nothing else", () => {
    fc.assert(
      fc.property(
        spansArb,
        fc.array(fc.tuple(fc.integer({ min: 0, max: 64 * 512 }), fc.integer({ min: 1, max: 2 }))),
        (spans, queries) => {
          const entries = preorder(spans);
          const log = new VisitLog();
          // Direct entries in between are not the mirror's, and are skipped.
          log.add(5, 1, true, 77, -1, false);
          entries.forEach(([gfn, level], i) => log.add(gfn, level, level === 1, 1000 + i, 9, true));
          log.add(3, 1, true, 78, -1, false);
          const asked = [...entries.map(([g, l]) => [g, l] as [number, number]), ...queries];
          for (const [gfn, level] of asked) {
            const want = entries.findIndex(([g, l]) => g === gfn && l === level);
            const at = log.find(gfn, level);
            if (want < 0) expect(at).toBe(-1);
            else
              expect(log.entryAt(at)).toEqual(
                level === 1
                  ? { kind: "leaf", pfn: 1000 + want, externalSpt: -1 }
                  : { kind: "table", pfn: 1000 + want, externalSpt: 9 },
              );
          }
        },
      ),
    );
  });

  it("cannot tell when its mirror entries are not one walk's preorder (two mirror roots)", () => {
    const log = new VisitLog();
    log.add(512, 2, false, 1, 2, true);
    log.add(0, 2, false, 3, 4, true);
    expect(log.find(0, 2)).toBe(-2);
    log.clear();
    log.add(0, 2, false, 3, 4, true);
    expect(log.find(0, 2)).toBeGreaterThanOrEqual(0);
  });
});
