/**
 * The invariant walk's log of present entries stays bounded: past its limit it stops taking
 * entries and says so (the backend's checks then walk the tables themselves), and clearing a
 * large log gives its memory back.
 */
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
