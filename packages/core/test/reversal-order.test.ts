/**
 * How a reversed race is put into an order that can run when tasks wait on each other
 * (`ReversalOrder`): a step whose task only the race's first step woke is left out, a step
 * woken by another step of the reversal goes after it, the race is dropped when its last step
 * cannot come first, and a step that cannot run for no reason the run shows stops the search.
 */
import { describe, expect, it } from "vitest";
import {
  BLOCKED,
  FootprintRecorder,
  FootprintStore,
  RaceFinder,
  ReversalOrder,
  WaitTracker,
  resourceId,
} from "../src/testing.js";

type Access = ["r" | "w" | "a", number];
interface Step {
  task: number;
  does: Access[];
  blocks?: boolean;
}

const F = resourceId(0, 0);
const Y = resourceId(0, 1);
const Z = resourceId(0, 2);

/**
 * Runs `steps` through a wait tracker (saving its state at every depth, as the explorer does),
 * analyses the run's races, and orders the reversal of the race of steps `i` and `j`. Returns
 * the ordered reversal as [task, index in the run, index in the sequence of its waker], or false.
 */
function reorder(
  T: number,
  steps: Step[],
  i: number,
  j: number,
  wakerOverride?: [number, number],
): [number, number, number][] | false {
  const store = new FootprintStore();
  const rec = new FootprintRecorder();
  const tracker = new WaitTracker(T, store);
  tracker.reset();
  tracker.save(0);
  const n = steps.length;
  const tasks = new Int32Array(n);
  const fps = new Int32Array(n);
  const outcome = new Int32Array(n);
  const finished = new Int32Array(n);
  const waker = new Int32Array(n).fill(-1);
  steps.forEach((s, d) => {
    rec.reset();
    for (const [k, id] of s.does) {
      if (k === "r") rec.read(id);
      else if (k === "w") rec.write(id);
      else rec.add(id);
    }
    tasks[d] = s.task;
    fps[d] = rec.saveTo(store);
    outcome[d] = s.blocks ? BLOCKED : 0;
    waker[d] = tracker.wakerOf(s.task);
    tracker.onStep(s.task, fps[d], outcome[d], false);
    tracker.save(d + 1);
  });
  if (wakerOverride) waker[wakerOverride[0]] = wakerOverride[1];
  const rf = new RaceFinder(T);
  const races: [number, number][] = [];
  rf.analyze(store, tasks, fps, n, (a, b) => races.push([a, b]));
  expect(races).toContainEqual([i, j]);
  rf.reversal(tasks, fps, n, i, j);
  const sim = new WaitTracker(T, store);
  sim.copyFrom(tracker, i);
  const ok = new ReversalOrder().order(sim, store, rf, { tasks, outcome, finished, waker }, i);
  if (!ok) return false;
  const v = rf.reversalSeq;
  return Array.from({ length: v.len }, (_, k) => [v.tasks[k]!, rf.vSteps[k]!, v.wakers[k]!]);
}

/**
 * t1 waits on F; t0 writes F (waking t1) and Y; t1 goes on reading Z (a step whose task only
 * t0's step woke); then `last`, which races with t0's write of Y.
 */
function wokenByF(last: Step): Step[] {
  return [
    { task: 1, does: [["r", F]], blocks: true },
    {
      task: 0,
      does: [
        ["w", F],
        ["w", Y],
      ],
    },
    { task: 1, does: [["r", Z]] },
    last,
  ];
}

describe("ReversalOrder", () => {
  it("leaves out a step whose task only the race's first step woke", () => {
    // t1 waits on F; t0 writes F (waking t1) and Y; t1 goes on reading Z; t2 reads Y. Reversing
    // t0's step and t2's read: t1's step cannot come before t0's, though it conflicts with
    // neither, so the sequence is t2's read alone.
    const run = wokenByF({ task: 2, does: [["r", Y]] });
    expect(reorder(3, run, 1, 3)).toEqual([[2, 3, -1]]);
  });

  it("puts a step after another step of the sequence that wakes its task, and names it the waker", () => {
    // As above, but t0 and t2 both add to F (commutative: no conflict), so t2's add, which comes
    // after t1's step in the run, wakes t1 in the reversed order: t1's step follows it.
    const run: Step[] = [
      { task: 1, does: [["r", F]], blocks: true },
      {
        task: 0,
        does: [
          ["a", F],
          ["w", Y],
        ],
      },
      { task: 1, does: [["r", Z]] },
      { task: 2, does: [["a", F]] },
      { task: 3, does: [["r", Y]] },
    ];
    expect(reorder(4, run, 1, 4)).toEqual([
      [2, 3, -1],
      [1, 2, 0],
      [3, 4, -1],
    ]);
  });

  it("drops the race when its last step's task can only run after the first", () => {
    // t0's write of F wakes t1, whose next step reads F: the race cannot be reversed.
    const run: Step[] = [
      { task: 1, does: [["r", F]], blocks: true },
      { task: 0, does: [["w", F]] },
      { task: 1, does: [["r", F]] },
    ];
    expect(reorder(2, run, 1, 2)).toBe(false);
  });

  it("drops the race when its last step must follow a step left out", () => {
    // t1's read of Z (woken by t0's step) is left out; t1's next step, reading Y, must follow it.
    const run = wokenByF({ task: 1, does: [["r", Y]] });
    expect(reorder(2, run, 1, 3)).toBe(false);
  });

  it("stops the search when a step cannot run and the run shows nothing it waited for", () => {
    // The run claims t1's step was woken before the race (step 0, its own wait): the footprints
    // then missed what enabled it, and pruning on them could lose traces.
    const run = wokenByF({ task: 2, does: [["r", Y]] });
    expect(() => reorder(3, run, 1, 3, [2, 0])).toThrow(/footprints miss what enabled it/);
  });
});
