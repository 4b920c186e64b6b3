/**
 * Memory attributes against a plain array of booleans: `set` flips exactly the GFNs in range
 * and counts them, `isPrivate` and `isUniform` answer as the array does.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { MemAttributes } from "../src/testing.js";

describe("memory attributes", () => {
  it("set, isPrivate and isUniform agree with a boolean array after random ranges", () => {
    const npages = 300;
    const range = fc.tuple(
      fc.integer({ min: 0, max: npages + 40 }),
      fc.integer({ min: 0, max: 200 }),
      fc.boolean(),
    );
    fc.assert(
      fc.property(
        fc.array(range, { minLength: 1, maxLength: 30 }),
        fc.array(
          fc.tuple(fc.integer({ min: 0, max: npages + 20 }), fc.integer({ min: 1, max: 100 })),
          { maxLength: 10 },
        ),
        (sets, probes) => {
          const a = new MemAttributes(npages);
          const model = new Array<boolean>(npages).fill(false);
          for (const [start, len, priv] of sets) {
            let want = 0;
            for (let g = start; g < Math.min(start + len, npages); g++) {
              if (model[g] !== priv) want++;
              model[g] = priv;
            }
            expect(a.set(start, start + len, priv)).toBe(want);
          }
          for (let g = 0; g < npages + 10; g++)
            expect(a.isPrivate(g)).toBe(g < npages && model[g]!);
          for (const [start, count] of probes) {
            const vals = Array.from(
              { length: count },
              (_, i) => start + i < npages && model[start + i]!,
            );
            expect(a.isUniform(start, count)).toBe(vals.every((v) => v === vals[0]));
          }
        },
      ),
      { numRuns: 300, seed: 3 },
    );
  });
});
