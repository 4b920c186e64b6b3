/**
 * The race finder keeps the order and the races of the steps a run shares with the run analysed
 * before it (`RaceFinder.analyze`'s `same`): a depth-first search's run replays the prefix of
 * the node it branches from. What it reports must be what a fresh analysis of the run reports:
 * the same races, in the same order, and the same happens-before between every two steps.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { FootprintRecorder, FootprintStore, RaceFinder, resourceId } from "../src/testing.js";

const T = 3;
const CELLS = 4;

/** A step: its task and what it does to which cells (0 read, 1 write, 2 add). */
type Step = { task: number; does: [number, number][] };

const stepArb: fc.Arbitrary<Step> = fc.record({
  task: fc.integer({ min: 0, max: T - 1 }),
  does: fc.array(fc.tuple(fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: CELLS - 1 })), {
    minLength: 1,
    maxLength: 3,
  }),
});

/** Adds the steps' footprints to `store`: their tasks and handles. */
function record(store: FootprintStore, steps: Step[]): { tasks: Int32Array; fps: Int32Array } {
  const rec = new FootprintRecorder();
  const tasks = new Int32Array(steps.length);
  const fps = new Int32Array(steps.length);
  steps.forEach((s, d) => {
    rec.reset();
    for (const [kind, c] of s.does) {
      const id = resourceId(0, c);
      if (kind === 0) rec.read(id);
      else if (kind === 1) rec.write(id);
      else rec.add(id);
    }
    tasks[d] = s.task;
    fps[d] = rec.saveTo(store);
  });
  return { tasks, fps };
}

/** What `rf` reports of the run: its races in order, and happens-before of every pair. */
function report(
  rf: RaceFinder,
  store: FootprintStore,
  run: { tasks: Int32Array; fps: Int32Array },
  same: number,
): { races: [number, number][]; hb: boolean[] } {
  const n = run.tasks.length;
  const races: [number, number][] = [];
  rf.analyze(store, run.tasks, run.fps, n, (i, j) => races.push([i, j]), same);
  const hb: boolean[] = [];
  for (let i = 0; i < n; i++)
    for (let k = i + 1; k < n; k++) hb.push(rf.happensBefore(run.tasks, i, k));
  return { races, hb };
}

describe("RaceFinder", () => {
  it("reports the races and the order of a run that shares a prefix with the last one as a fresh analysis does", () => {
    fc.assert(
      fc.property(
        fc.array(stepArb, { maxLength: 24 }),
        fc.array(fc.tuple(fc.nat(), fc.array(stepArb, { maxLength: 24 })), {
          minLength: 1,
          maxLength: 4,
        }),
        (first, branches) => {
          const store = new FootprintStore();
          const kept = new RaceFinder(T);
          let prev = first;
          let run = record(store, prev);
          report(kept, store, run, 0);
          for (const [at, tail] of branches) {
            // The next run: the last one's first `same` steps (the same handles), then others.
            const same = prev.length === 0 ? 0 : at % (prev.length + 1);
            const steps = [...prev.slice(0, same), ...tail];
            const fresh = record(store, tail);
            run = {
              tasks: Int32Array.from([...run.tasks.subarray(0, same), ...fresh.tasks]),
              fps: Int32Array.from([...run.fps.subarray(0, same), ...fresh.fps]),
            };
            expect(report(kept, store, run, same)).toEqual(
              report(new RaceFinder(T), store, run, 0),
            );
            prev = steps;
          }
        },
      ),
      { numRuns: 500, seed: 20261206 },
    );
  });
});
