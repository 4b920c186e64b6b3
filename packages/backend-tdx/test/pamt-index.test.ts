/**
 * The PAMT's index of assigned granules (`nextPageOf`, which the PAMT invariant walks after every
 * explorer step) against a plain scan of every granule: random assignments and releases, across
 * block boundaries, over several owners (TDRs up to the last PFNs of a 16 TiB host); and
 * `typeIfOwnedBy`, the invariant check's lookup.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { NO_TD, PT_EPT, PT_NDA, PT_REG, PT_TDCX, PT_TDR, Pamt } from "../src/testing.js";

const FRAMES = 3 * 4096 + 100;
const TYPES = [PT_NDA, PT_REG, PT_EPT, PT_TDCX, PT_TDR];
const OWNERS = [7, 8, 4096, 2 ** 31 + 5, 2 ** 32 - 2];

function scan(pamt: Pamt, owner: number, from: number): number {
  for (let p = Math.max(0, from); p < FRAMES; p++)
    if (pamt.type(p) !== PT_NDA && pamt.owner(p) === owner) return p;
  return -1;
}

describe("Pamt.nextPageOf", () => {
  it("finds what a scan of every granule finds", () => {
    const op = fc.record({
      pfn: fc.oneof(
        fc.integer({ min: 0, max: FRAMES - 1 }),
        fc.constantFrom(0, 31, 32, 4095, 4096, 8191, 8192, FRAMES - 1),
      ),
      type: fc.constantFrom(...TYPES),
      owner: fc.constantFrom(...OWNERS),
      // A page freed as the leaves free it (`setNda`: its owner stays), or cleared whole.
      free: fc.boolean(),
    });
    fc.assert(
      fc.property(
        fc.array(op, { maxLength: 60 }),
        fc.array(fc.integer({ min: -5, max: FRAMES + 5 }), { maxLength: 8 }),
        (ops, froms) => {
          const pamt = new Pamt(FRAMES);
          for (const o of ops) {
            if (o.type !== PT_NDA) pamt.set(o.pfn, o.type, o.owner);
            else if (o.free) pamt.setNda(o.pfn);
            else pamt.set(o.pfn, PT_NDA, NO_TD);
          }
          for (const owner of [...OWNERS, NO_TD]) {
            for (const from of [0, ...froms])
              expect(pamt.nextPageOf(owner, from)).toBe(scan(pamt, owner, from));
            const all: number[] = [];
            for (let p = scan(pamt, owner, 0); p >= 0; p = scan(pamt, owner, p + 1)) all.push(p);
            expect([...pamt.pagesOf(owner)]).toEqual(all.map((p) => [p, pamt.type(p)]));
            // The invariant check's one lookup: the type where the owner matches, else -1.
            for (const o of ops)
              for (const pfn of [o.pfn, FRAMES - 1 - o.pfn])
                expect(pamt.typeIfOwnedBy(pfn, owner)).toBe(
                  pamt.owner(pfn) === owner ? pamt.type(pfn) : -1,
                );
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it("an owner at or above 2^31 reads back as it was written; none reads as NO_TD", () => {
    const pamt = new Pamt(FRAMES);
    pamt.set(10, PT_REG, 2 ** 32 - 2);
    pamt.set2m(512, PT_REG, 2 ** 31);
    expect([pamt.owner(10), pamt.owner2m(512), pamt.owner(11)]).toEqual([
      2 ** 32 - 2,
      2 ** 31,
      NO_TD,
    ]);
    expect(pamt.typeIfOwnedBy(10, 2 ** 32 - 2)).toBe(PT_REG);
    expect(pamt.next2mPageOf(2 ** 31, 0)).toBe(512);
    pamt.setNda(10);
    expect([pamt.type(10), pamt.owner(10)]).toEqual([PT_NDA, 2 ** 32 - 2]);
  });
});
