/**
 * The explorer's footprint store: footprints added from the recorder read back as the recorder
 * saw them (by `dependsOn`, and `dependsOnIn` against another store holding the same steps,
 * against a plain definition over the recorded accesses), across the
 * recorder's switch to a hashed index and the store's growth, and `truncate` forgets exactly the
 * footprints from a handle on.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { FootprintRecorder, FootprintStore, resourceId, taskDoneId } from "../src/testing.js";

type Access = { id: number; kind: "read" | "write" | "add" };
const KIND = { read: 1, add: 2, write: 4 } as const;

/** The accesses of one step folded by id, as the recorder keeps them. */
function folded(step: Access[]): Map<number, number> {
  const m = new Map<number, number>();
  for (const a of step) m.set(a.id, (m.get(a.id) ?? 0) | KIND[a.kind]);
  return m;
}

/** A step of `theirs` changes what a step of `mine` saw: a write to anything it touched, or an add to what it read or wrote. */
function changes(theirs: Access[], mine: Access[]): boolean {
  const ft = folded(theirs);
  const fm = folded(mine);
  for (const [id, kt] of ft) {
    const km = fm.get(id);
    if (km === undefined) continue;
    if (kt & KIND.write) return true;
    if (kt & KIND.add && km & (KIND.read | KIND.write)) return true;
  }
  return false;
}

/** Two steps do not commute: either changes what the other saw. */
function depends(a: Access[], b: Access[]): boolean {
  return changes(a, b) || changes(b, a);
}

describe("FootprintStore", () => {
  it("answers dependsOn and modifiesSome as the accesses define them, and truncate forgets from a handle on", () => {
    const access = fc.record({
      id: fc.oneof(
        fc.integer({ min: -13, max: -1 }),
        fc.integer({ min: 0, max: 40 }),
        fc.integer({ min: 0, max: 2 ** 30 }),
        fc.nat(7).map(taskDoneId),
        // Per-object spaces, near one another (the masks summarise ids by a hash of both halves).
        fc
          .tuple(fc.nat(6), fc.oneof(fc.nat(40), fc.nat(2 ** 32 - 1)))
          .map(([space, i]) => resourceId(space, i)),
      ),
      kind: fc.constantFrom("read" as const, "write" as const, "add" as const),
    });
    // Small steps, large ones, and some far larger than the small ones (which `meets` leaps
    // through by bisection).
    const step = fc.oneof(
      fc.array(access, { maxLength: 6 }),
      fc.array(access, { minLength: 30, maxLength: 80 }),
      fc.array(access, { minLength: 120, maxLength: 300 }),
    );
    fc.assert(
      fc.property(
        fc.array(step, { minLength: 1, maxLength: 12 }),
        fc.nat(),
        fc.array(step, { maxLength: 4 }),
        (steps, cut, more) => {
          const rec = new FootprintRecorder();
          const store = new FootprintStore();
          const add = (s: Access[]) => {
            rec.reset();
            for (const a of s) rec[a.kind](a.id);
            return rec.saveTo(store);
          };
          const held = steps.map(add);
          expect(held).toEqual(steps.map((_, i) => i));
          const check = (list: Access[][]) => {
            // The same steps in another store, at other handles and offsets (`dependsOnIn`).
            const other = new FootprintStore();
            rec.reset();
            rec.read(3);
            rec.saveTo(other);
            for (const s of list) {
              rec.reset();
              for (const a of s) rec[a.kind](a.id);
              rec.saveTo(other);
            }
            for (let i = 0; i < list.length; i++) {
              for (let j = 0; j < list.length; j++) {
                expect(store.dependsOn(i, j)).toBe(depends(list[i]!, list[j]!));
                expect(store.modifiesSome(i, j)).toBe(changes(list[i]!, list[j]!));
                expect(store.dependsOnIn(i, other, j + 1)).toBe(depends(list[i]!, list[j]!));
              }
            }
          };
          check(steps);
          const keep = cut % (steps.length + 1);
          store.truncate(keep);
          expect(store.count).toBe(keep);
          const now = [...steps.slice(0, keep), ...more];
          for (const s of more) add(s);
          check(now);
        },
      ),
      { numRuns: 200 },
    );
  });

  it("keeps each footprint ascending with no id twice, whatever order and repeats it is added in", () => {
    const access = fc.record({
      id: fc.oneof(
        fc.integer({ min: -20, max: 20 }),
        fc.nat(6).map((i) => resourceId(1, i)),
      ),
      kind: fc.constantFrom("read" as const, "write" as const, "add" as const),
    });
    // Wide enough to give footprints of a hundred ids, as a 2 MiB split's are.
    const wideAccess = fc.record({
      id: fc.integer({ min: -400, max: 400 }),
      kind: fc.constantFrom("read" as const, "write" as const, "add" as const),
    });
    const step = fc.oneof(
      fc.array(access, { maxLength: 10 }),
      fc.array(access, { minLength: 17, maxLength: 60 }),
      fc.array(wideAccess, { minLength: 70, maxLength: 160 }),
      // A large footprint of reads alone modifies nothing, copied or not.
      fc
        .uniqueArray(fc.integer({ min: -400, max: 400 }), { minLength: 64, maxLength: 160 })
        .map((ids) => ids.map((id) => ({ id, kind: "read" as const }))),
    );
    fc.assert(
      fc.property(fc.array(step, { minLength: 1, maxLength: 8 }), (steps) => {
        const store = new FootprintStore();
        const copy = new FootprintStore();
        for (const s of steps) {
          // Straight into the store, unsorted and with repeats, as no recorder would give them.
          const h = store.add(
            Float64Array.from(s.map((a) => a.id)),
            Uint8Array.from(s.map((a) => KIND[a.kind])),
            s.length,
          );
          const ids = Array.from(
            store.idsView.subarray(store.startOf(h), store.startOf(h) + store.lengthOf(h)),
          );
          const kinds = Array.from(
            store.kindsView.subarray(store.startOf(h), store.startOf(h) + store.lengthOf(h)),
          );
          const want = [...folded(s)].sort((x, y) => x[0] - y[0]);
          expect(ids.map((id, i) => [id, kinds[i]])).toEqual(want);
          const c = copy.addFrom(store, h);
          expect(
            Array.from(copy.idsView.subarray(copy.startOf(c), copy.startOf(c) + copy.lengthOf(c))),
          ).toEqual(ids);
          expect(
            Array.from(
              copy.kindsView.subarray(copy.startOf(c), copy.startOf(c) + copy.lengthOf(c)),
            ),
          ).toEqual(kinds);
          expect(copy.modifiesAny(c)).toBe(store.modifiesAny(h));
        }
        for (let i = 0; i < steps.length; i++)
          for (let j = 0; j < steps.length; j++) {
            expect(store.dependsOn(i, j)).toBe(depends(steps[i]!, steps[j]!));
            expect(copy.dependsOn(i, j)).toBe(depends(steps[i]!, steps[j]!));
          }
      }),
      { numRuns: 200 },
    );
  });
});
