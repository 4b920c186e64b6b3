/**
 * The wait tracker against a plain reference that recomputes every task's enabledness from the
 * whole log of steps: a task that blocked waits on what its blocking step touched; a task that
 * yielded RETRY_WAIT waits on everything it touched since its previous retry began, and is
 * enabled by a step of another task that modified what one of those accesses saw, after it.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  BLOCKED,
  FootprintRecorder,
  FootprintStore,
  RETRY_WAIT,
  WaitTracker,
  modifies,
} from "../src/testing.js";

type Access = { id: number; kind: 1 | 2 | 4 };
type Step = { task: number; accesses: Access[]; outcome: 0 | typeof BLOCKED | typeof RETRY_WAIT };

/** The accesses folded by id, as the recorder keeps them. */
function folded(a: Access[]): Map<number, number> {
  const m = new Map<number, number>();
  for (const x of a) m.set(x.id, (m.get(x.id) ?? 0) | x.kind);
  return m;
}

function referenceEnabled(log: Step[], t: number): boolean {
  let last = -1;
  for (let i = log.length - 1; i >= 0; i--)
    if (log[i]!.task === t) {
      last = i;
      break;
    }
  if (last < 0 || log[last]!.outcome === 0) return true;
  /** Each access of the task's that it waits on, with the step it was made in. */
  const waits: { id: number; kind: number; from: number }[] = [];
  // A step of another task wakes it if it modifies what one of those accesses saw, after it.
  const woken = () => {
    for (let j = 0; j < log.length; j++) {
      if (log[j]!.task === t) continue;
      for (const [id, k] of folded(log[j]!.accesses)) {
        for (const w of waits) if (w.id === id && j > w.from && modifies(k, w.kind)) return true;
      }
    }
    return false;
  };
  if (log[last]!.outcome === BLOCKED) {
    for (const [id, k] of folded(log[last]!.accesses)) waits.push({ id, kind: k, from: last });
    return woken();
  }
  // The attempt: from the task's first step after its previous RETRY_WAIT (or from the start).
  // Each access counts from its own step: a change another task made between two accesses of
  // the attempt to the same resource is stale only for the earlier one (a commutative update
  // followed by a read that saw the other task's update is not stale).
  let start = 0;
  for (let i = last - 1; i >= 0; i--)
    if (log[i]!.task === t && log[i]!.outcome === RETRY_WAIT) {
      start = i + 1;
      break;
    }
  for (let i = start; i <= last; i++) {
    if (log[i]!.task !== t) continue;
    for (const [id, k] of folded(log[i]!.accesses)) waits.push({ id, kind: k, from: i });
  }
  return woken();
}

const access = fc.record({
  id: fc.integer({ min: 0, max: 5 }),
  kind: fc.constantFrom(1 as const, 2 as const, 4 as const),
});
const step = fc.record({
  task: fc.integer({ min: 0, max: 2 }),
  accesses: fc.array(access, { maxLength: 3 }),
  outcome: fc.constantFrom(
    0 as const,
    0 as const,
    BLOCKED as typeof BLOCKED,
    RETRY_WAIT as typeof RETRY_WAIT,
  ),
});

/**
 * Steps of a few accesses among many resources, and some of dozens: a retrying task's wait set
 * grows to hundreds of ids over steps large and small.
 */
const wideAccess = fc.record({
  id: fc.integer({ min: 0, max: 150 }),
  // Mostly updates: whether a task's access was an update only, or also a read, decides
  // whether another task's update wakes it.
  kind: fc.constantFrom(1 as const, 2 as const, 2 as const, 4 as const),
});
const wideStep = fc.record({
  task: fc.integer({ min: 0, max: 2 }),
  accesses: fc.oneof(
    fc.array(wideAccess, { maxLength: 4 }),
    fc.array(wideAccess, { minLength: 40, maxLength: 120 }),
  ),
  outcome: fc.constantFrom(0 as const, 0 as const, 0 as const, RETRY_WAIT as typeof RETRY_WAIT),
});

/** Runs `steps` through a tracker and checks every task's enabledness after each against the reference. */
function checkAgainstReference(steps: Step[]): void {
  const store = new FootprintStore();
  const rec = new FootprintRecorder();
  const tracker = new WaitTracker(3, store);
  const log: Step[] = [];
  for (const s of steps) {
    // Only an enabled task takes a step, as in any scheduler.
    if (!tracker.enabled(s.task)) continue;
    rec.reset();
    for (const a of s.accesses) {
      if (a.kind === 1) rec.read(a.id);
      else if (a.kind === 2) rec.add(a.id);
      else rec.write(a.id);
    }
    tracker.onStep(s.task, rec.saveTo(store), s.outcome, false);
    log.push(s);
    for (let t = 0; t < 3; t++) expect(tracker.enabled(t)).toBe(referenceEnabled(log, t));
    if (s.outcome === RETRY_WAIT) {
      // The wait set is every access of the attempt, folded by id.
      const got = new Map<number, number>();
      for (const h of tracker.waitSetOf(s.task))
        for (let i = store.startOf(h); i < store.startOf(h) + store.lengthOf(h); i++)
          got.set(store.idsView[i]!, (got.get(store.idsView[i]!) ?? 0) | store.kindsView[i]!);
      const want = folded(attemptAccesses(log, s.task));
      expect([...got].sort((x, y) => x[0] - y[0])).toEqual([...want].sort((x, y) => x[0] - y[0]));
    }
  }
}

/** The accesses of task `t`'s attempt that ends with the last step of `log`. */
function attemptAccesses(log: Step[], t: number): Access[] {
  let start = 0;
  for (let i = log.length - 2; i >= 0; i--)
    if (log[i]!.task === t && log[i]!.outcome === RETRY_WAIT) {
      start = i + 1;
      break;
    }
  return log.slice(start).flatMap((s) => (s.task === t ? s.accesses : []));
}

describe("WaitTracker", () => {
  it("enables exactly the tasks the reference does when wait sets grow large", () => {
    fc.assert(fc.property(fc.array(wideStep, { maxLength: 40 }), checkAgainstReference), {
      numRuns: 150,
    });
  });

  it("enables exactly the tasks the reference does, after every step of any run", () => {
    fc.assert(
      fc.property(fc.array(step, { maxLength: 40 }), (steps) => {
        checkAgainstReference(steps);
      }),
      {
        numRuns: 400,
        // Found by a run of this test when the reference counted an access's kinds from the
        // attempt's first access: the update of task 1 falls between task 0's update (which it
        // commutes with) and task 0's read (which saw it), so task 0 is not stale.
        examples: [
          [
            [
              { task: 0, accesses: [{ id: 3, kind: 2 }], outcome: 0 },
              { task: 1, accesses: [{ id: 3, kind: 2 }], outcome: 0 },
              { task: 0, accesses: [{ id: 3, kind: 1 }], outcome: RETRY_WAIT },
            ],
          ],
        ],
      },
    );
  });
  it("a run restored to the state saved after a prefix goes on exactly as a run that logged the prefix", () => {
    // The explorer's pattern: a run saves the tracker's state after each step; a later run
    // replays the first `cut` steps without telling the tracker, restores the state saved there,
    // and goes on with other steps. It must enable the same tasks, and find the same steps
    // affecting attempts, as a tracker that was told of every step.
    const recorded = (store: FootprintStore, rec: FootprintRecorder, s: { accesses: Access[] }) => {
      rec.reset();
      for (const a of s.accesses) {
        if (a.kind === 1) rec.read(a.id);
        else if (a.kind === 2) rec.add(a.id);
        else rec.write(a.id);
      }
      return rec.saveTo(store);
    };
    fc.assert(
      fc.property(
        fc.array(step, { maxLength: 30 }),
        fc.nat(),
        fc.array(step, { maxLength: 30 }),
        (first, cutAt, then) => {
          const store = new FootprintStore();
          const rec = new FootprintRecorder();
          const saving = new WaitTracker(3, store);
          const told = new WaitTracker(3, store);
          saving.save(0);
          const prefix: { task: number; h: number; outcome: number }[] = [];
          for (const s of first) {
            if (!saving.enabled(s.task)) continue;
            const h = recorded(store, rec, s);
            saving.onStep(s.task, h, s.outcome, false);
            prefix.push({ task: s.task, h, outcome: s.outcome });
            saving.save(prefix.length);
          }
          const cut = cutAt % (prefix.length + 1);
          saving.reset();
          saving.restore(cut);
          for (const x of prefix.slice(0, cut)) told.onStep(x.task, x.h, x.outcome, false);
          const same = () =>
            expect([0, 1, 2].map((t) => saving.enabled(t))).toEqual(
              [0, 1, 2].map((t) => told.enabled(t)),
            );
          same();
          for (const s of then) {
            if (!told.enabled(s.task)) continue;
            const h = recorded(store, rec, s);
            saving.onStep(s.task, h, s.outcome, false);
            told.onStep(s.task, h, s.outcome, false);
            same();
            for (let t = 0; t < 3; t++)
              expect(saving.affectsAttempts(t, h)).toBe(told.affectsAttempts(t, h));
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
