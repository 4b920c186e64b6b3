/** `nextSetBit`, which the occupancy and PAMT indexes are walked with, against a bit-by-bit reading. */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { nextSetBit } from "../src/testing.js";

describe("nextSetBit", () => {
  it("visits the set bits of a word range in ascending order, from any start", () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 0xffffffff }), { minLength: 1, maxLength: 6 }),
        fc.nat(3),
        fc.nat(200),
        (ws, base, from) => {
          const words = new Uint32Array(base + ws.length);
          words.set(ws, base);
          const all: number[] = [];
          for (let i = 0; i < ws.length * 32; i++) if ((ws[i >>> 5]! >>> (i & 31)) & 1) all.push(i);
          expect(nextSetBit(words, base, ws.length, from)).toBe(all.find((i) => i >= from) ?? -1);
          const seen: number[] = [];
          for (
            let i = nextSetBit(words, base, ws.length, 0);
            i >= 0;
            i = nextSetBit(words, base, ws.length, i + 1)
          )
            seen.push(i);
          expect(seen).toEqual(all);
        },
      ),
      { numRuns: 300 },
    );
  });
});
