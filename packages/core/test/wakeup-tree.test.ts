/**
 * Inserting a sequence into a wakeup tree (`WakeupTrees.insert`) with its footprints in another
 * store (the explorer's, as `addReversals` does) does exactly what inserting a copy of it, its
 * footprints in the trees' own store, does: the same answer and the same tree, node for node.
 * The trees' nodes carry footprints of their own (`setFootprint`), which `weakInitial` compares
 * with the sequence's steps, so a comparison made in the wrong store shows.
 *
 * Dropping a step the search may not take (`WakeupTrees.dropFirstChild`) keeps every sequence
 * that was below it, for some of them were merged there without holding its step.
 *
 * `weakInitial`, the test every insertion and every sleeper's veto rests on, has a case for each
 * way it refuses a step (a waker before it, a footprint not known, a conflict seen from either
 * side): removing any one of its conditions fails a test here.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { FootprintRecorder, FootprintStore, resourceId } from "../src/testing.js";
import { WakeupTrees, weakInitial, type StepSequence } from "../src/exec/wakeup-tree.js";

type Access = { id: number; kind: "read" | "write" | "add" };

const access = fc.record({
  id: fc.oneof(
    fc.nat(5),
    fc.nat(3).map((i) => resourceId(0, i)),
  ),
  kind: fc.constantFrom("read" as const, "write" as const, "add" as const),
});
const step = fc.record({
  task: fc.nat(2),
  accesses: fc.array(access, { maxLength: 3 }),
});

function save(store: FootprintStore, rec: FootprintRecorder, accesses: Access[]): number {
  rec.reset();
  for (const a of accesses) rec[a.kind](a.id);
  return rec.saveTo(store);
}

/** The tree below `n`: per child its task, its footprint's accesses and its own subtree. */
function shape(w: WakeupTrees, n: number, fpOf: (node: number) => number): unknown[] {
  const out: unknown[] = [];
  for (let c = w.firstChild(n); c >= 0; c = nextSibling(w, c)) {
    const h = fpOf(c);
    const accesses: string[] = [];
    if (h >= 0)
      for (let i = w.store.startOf(h); i < w.store.startOf(h) + w.store.lengthOf(h); i++)
        accesses.push(`${w.store.idsView[i]}:${w.store.kindsView[i]}`);
    out.push([w.taskOf(c), accesses, shape(w, c, fpOf)]);
  }
  return out;
}

/** The trees keep their links private: the next sibling, read through them for the test. */
function nextSibling(w: WakeupTrees, c: number): number {
  return (w as unknown as { next: Int32Array }).next[c]!;
}

function footprintOf(w: WakeupTrees): (node: number) => number {
  return (node) => (w as unknown as { fp: Int32Array }).fp[node]!;
}

describe("WakeupTrees.insert", () => {
  it("with the sequence in another store, does what it does with a copy in its own", () => {
    fc.assert(
      fc.property(
        fc.array(step, { maxLength: 4 }),
        fc.array(fc.array(step, { minLength: 1, maxLength: 5 }), { minLength: 1, maxLength: 6 }),
        (explored, sequences) => {
          const rec = new FootprintRecorder();
          const build = () => {
            const w = new WakeupTrees();
            const root = w.root();
            // Steps the search took below the root: nodes whose footprints are known.
            for (const s of explored) {
              if (w.hasChild(root, s.task)) continue;
              const n = w.addChild(root, s.task);
              w.setFootprint(n, save(w.store, rec, s.accesses));
            }
            return { w, root };
          };
          const apart = build();
          const copied = build();
          const theirs = new FootprintStore();
          // Something at handle 0 of the other store, so that its handles differ from the trees'.
          save(theirs, rec, [{ id: 99, kind: "write" }]);
          for (const steps of sequences) {
            const seq: StepSequence = {
              tasks: Int32Array.from(steps.map((s) => s.task)),
              fps: Int32Array.from(steps.map((s) => save(theirs, rec, s.accesses))),
              wakers: new Int32Array(steps.length).fill(-1),
              len: steps.length,
            };
            const copy: StepSequence = {
              ...seq,
              fps: Int32Array.from(seq.fps, (h) => copied.w.store.addFrom(theirs, h)),
            };
            expect(apart.w.insert(apart.root, seq, theirs)).toBe(
              copied.w.insert(copied.root, copy),
            );
            expect(shape(apart.w, apart.root, footprintOf(apart.w))).toEqual(
              shape(copied.w, copied.root, footprintOf(copied.w)),
            );
          }
        },
      ),
      { numRuns: 500 },
    );
  });

  it("does not take a node as the sequence's first step when the node's own step conflicts with one before it", () => {
    // Below the root the search ran task 0's step, which wrote R. The sequence is task 1 reading
    // R, then task 0 writing S: task 0's step there is not the node's (it would come after a
    // read of R that the node's write changes), so the sequence is a new branch.
    const rec = new FootprintRecorder();
    const R = resourceId(0, 1);
    const S = resourceId(0, 2);
    for (const twoStores of [false, true]) {
      const w = new WakeupTrees();
      const root = w.root();
      const node = w.addChild(root, 0);
      w.setFootprint(node, save(w.store, rec, [{ id: R, kind: "write" }]));
      const theirs = twoStores ? new FootprintStore() : w.store;
      if (twoStores) save(theirs, rec, [{ id: R, kind: "write" }]);
      const seq: StepSequence = {
        tasks: Int32Array.from([1, 0]),
        fps: Int32Array.from([
          save(theirs, rec, [{ id: R, kind: "read" }]),
          save(theirs, rec, [{ id: S, kind: "write" }]),
        ]),
        wakers: Int32Array.from([-1, -1]),
        len: 2,
      };
      expect(w.insert(root, seq, theirs)).toBe(true);
      expect(shape(w, root, footprintOf(w)).map((c) => (c as unknown[])[0])).toEqual([0, 1]);
    }
  });
});

/** Every root-to-leaf sequence of tasks below `n`. */
function leafPaths(w: WakeupTrees, n: number): number[][] {
  const out: number[][] = [];
  for (let c = w.firstChild(n); c >= 0; c = nextSibling(w, c)) {
    const below = leafPaths(w, c);
    if (below.length === 0) out.push([w.taskOf(c)]);
    else for (const p of below) out.push([w.taskOf(c), ...p]);
  }
  return out;
}

/** A sequence of `tasks` whose footprints are not known. */
function unknown(tasks: number[]): StepSequence {
  const len = tasks.length;
  return {
    tasks: Int32Array.from(tasks),
    fps: new Int32Array(len).fill(-1),
    wakers: new Int32Array(len).fill(-1),
    len,
  };
}

describe("WakeupTrees.dropFirstChild", () => {
  it("keeps each sequence below the dropped step, without it, and leaves the other branches as they were", () => {
    const sequence = fc.array(fc.nat(3), { minLength: 1, maxLength: 4 });
    fc.assert(
      fc.property(fc.array(sequence, { minLength: 1, maxLength: 6 }), (sequences) => {
        const w = new WakeupTrees();
        const root = w.root();
        for (const s of sequences) w.insert(root, unknown(s));
        const dropped = w.firstChild(root);
        const below = leafPaths(w, dropped);
        const others = leafPaths(w, root).filter((p) => p[0] !== w.taskOf(dropped));
        const firsts = (ps: number[][]) => [...new Set(ps.map((p) => p[0]))];
        w.dropFirstChild(root);
        const after = leafPaths(w, root);
        // The branches after the dropped one stay, first and in their order.
        expect(firsts(after).slice(0, firsts(others).length)).toEqual(firsts(others));
        for (const p of others) expect(after).toContainEqual(p);
        // What was below it is held: each such sequence, offered again, is covered.
        for (const p of below) expect(w.insert(root, unknown(p))).toBe(false);
        // And nothing else.
        for (const p of after) expect([...others, ...below]).toContainEqual(p);
      }),
      { numRuns: 500 },
    );
  });

  it("puts back a sequence merged below a step of another task, which the step's branch does not run", () => {
    // Task 0 wrote R; a sequence of task 1 then task 2, both writing S, commutes with it and is
    // merged below it. Dropping task 0's step (asleep where the search stands) keeps 1, 2.
    const rec = new FootprintRecorder();
    const R = resourceId(0, 1);
    const S = resourceId(0, 2);
    const w = new WakeupTrees();
    const root = w.root();
    const node = w.addChild(root, 0);
    w.setFootprint(node, save(w.store, rec, [{ id: R, kind: "write" }]));
    // The branch of task 0 goes on with task 3 (a choice of the search's own).
    w.addChild(node, 3);
    const seq: StepSequence = {
      tasks: Int32Array.from([1, 2]),
      fps: Int32Array.from([
        save(w.store, rec, [{ id: S, kind: "write" }]),
        save(w.store, rec, [{ id: S, kind: "write" }]),
      ]),
      wakers: Int32Array.from([-1, -1]),
      len: 2,
    };
    expect(w.insert(root, seq)).toBe(true);
    expect(leafPaths(w, root)).toEqual([
      [0, 3],
      [0, 1, 2],
    ]);
    w.dropFirstChild(root);
    expect(leafPaths(w, root)).toEqual([[3], [1, 2]]);
    // The new nodes know no footprint: moved in front of task 0's step they may branch otherwise.
    const fpOf = footprintOf(w);
    expect(fpOf(w.firstChild(root))).toBe(-1);
    // A leaf goes with nothing put back.
    w.dropFirstChild(root);
    expect(leafPaths(w, root)).toEqual([[1, 2]]);
  });
});

describe("weakInitial", () => {
  const rec = new FootprintRecorder();
  const R = resourceId(0, 1);
  const S = resourceId(0, 2);
  const T = resourceId(0, 3);
  const store = new FootprintStore();
  const writes = (id: number) => save(store, rec, [{ id, kind: "write" }]);
  const reads = (id: number) => save(store, rec, [{ id, kind: "read" }]);
  /** Task 0 writes R, then task 1 reads T: independent, unless step 1 waited for step 0. */
  const seq = (wakers: number[], fps = [writes(R), reads(T)]): StepSequence => ({
    tasks: Int32Array.from([0, 1]),
    fps: Int32Array.from(fps),
    wakers: Int32Array.from(wakers),
    len: 2,
  });
  const none = new Uint8Array(2);

  it("takes a step that commutes with the steps before it, unless one of them woke its task", () => {
    expect(weakInitial(store, 1, reads(T), seq([-1, -1]), none)).toBe(1);
    // Step 0 woke task 1: its step cannot come first, though their footprints do not conflict.
    expect(weakInitial(store, 1, reads(T), seq([-1, 0]), none)).toBe(-1);
    // Once the waker is taken out (it runs first), the step is next.
    expect(weakInitial(store, 1, reads(T), seq([-1, 0]), Uint8Array.from([1, 0]))).toBe(1);
  });

  it("does not take a step whose footprint, or a footprint before it, is not known", () => {
    // A step before it with no footprint (a reversal's last step) may conflict with anything.
    expect(weakInitial(store, 1, reads(T), seq([-1, -1], [-1, reads(T)]), none)).toBe(-1);
    // The step's footprint known on one side suffices: either shows it commutes.
    expect(weakInitial(store, 1, -1, seq([-1, -1]), none)).toBe(1);
    expect(weakInitial(store, 1, reads(T), seq([-1, -1], [writes(R), -1]), none)).toBe(1);
    // Known on neither side, nothing shows it.
    expect(weakInitial(store, 1, -1, seq([-1, -1], [writes(R), -1]), none)).toBe(-1);
    // Either footprint that conflicts is enough to refuse it.
    expect(weakInitial(store, 1, reads(R), seq([-1, -1]), none)).toBe(-1);
    expect(weakInitial(store, 1, reads(T), seq([-1, -1], [writes(R), reads(R)]), none)).toBe(-1);
  });

  it("takes a step of a task the sequence does not hold only if it is known to commute with all of it", () => {
    expect(weakInitial(store, 2, writes(S), seq([-1, -1]), none)).toBe(2);
    expect(weakInitial(store, 2, writes(T), seq([-1, -1]), none)).toBe(-1);
    expect(weakInitial(store, 2, -1, seq([-1, -1]), none)).toBe(-1);
    expect(weakInitial(store, 2, writes(S), seq([-1, -1], [writes(R), -1]), none)).toBe(-1);
    // A step taken out of the sequence no longer counts.
    expect(weakInitial(store, 2, writes(T), seq([-1, -1]), Uint8Array.from([0, 1]))).toBe(2);
  });
});
