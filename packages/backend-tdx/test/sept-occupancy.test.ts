/**
 * The S-EPT pages' occupancy bitmap (what the S-EPT invariant walks instead of all 512 entries):
 * after any sequence of entry writes through `setEntry`, bit i of a page is set exactly when
 * entry i is not the FREE encoding, on new pages and on pages taken again after `release`.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  SEPT_BLOCKED,
  SEPT_FREE,
  SEPT_FREE_HI,
  SEPT_FREE_LO,
  SEPT_MAPPED,
  SEPT_NL_BLOCKED,
  SEPT_NL_MAPPED,
  SEPT_OCCUPANCY,
  SEPT_OCCUPANCY_WORDS,
  SEPT_PENDING,
  SEPT_PENDING_BLOCKED,
  SeptPages,
  septPageWords,
  type SeptPage,
} from "../src/testing.js";

const STATES = [
  SEPT_FREE,
  SEPT_BLOCKED,
  SEPT_PENDING,
  SEPT_PENDING_BLOCKED,
  SEPT_MAPPED,
  SEPT_NL_BLOCKED,
  SEPT_NL_MAPPED,
];

function expectBitmapMatches(page: SeptPage): void {
  const t = septPageWords(page);
  for (let w = 0; w < SEPT_OCCUPANCY_WORDS; w++) {
    let want = 0;
    for (let b = 0; b < 32; b++) {
      const i = w * 32 + b;
      if (t[2 * i] !== SEPT_FREE_LO || t[2 * i + 1] !== SEPT_FREE_HI) want |= 1 << b;
    }
    expect(t[SEPT_OCCUPANCY + w]! | 0).toBe(want | 0);
  }
}

describe("S-EPT occupancy bitmap", () => {
  it("marks exactly the entries that are not the FREE encoding", () => {
    const write = fc.record({
      page: fc.integer({ min: 0, max: 2 }),
      index: fc.oneof(fc.integer({ min: 0, max: 511 }), fc.constantFrom(0, 31, 32, 511)),
      state: fc.constantFrom(...STATES),
      pfn: fc.oneof(fc.integer({ min: 0, max: 2 ** 20 }), fc.constant(2 ** 33 + 5)),
      level: fc.integer({ min: 0, max: 3 }),
    });
    fc.assert(
      fc.property(fc.array(write, { maxLength: 80 }), fc.boolean(), (writes, recycle) => {
        if (recycle) {
          // Pages taken again after a release start from a clean bitmap too.
          const old = new SeptPages();
          for (const p of [100, 101, 102]) septPageWords(old.init(p)).fill(0xffffffff);
          old.release();
        }
        const sept = new SeptPages();
        const pages = [100, 101, 102].map((p) => sept.init(p));
        for (const t of pages) expectBitmapMatches(t);
        for (const w of writes) {
          sept.setEntry(pages[w.page]!, 2 * w.index, w.state, w.pfn, w.level);
          expectBitmapMatches(pages[w.page]!);
        }
      }),
      { numRuns: 200 },
    );
  });
});
