/**
 * `exploreEveryState`: a reduced search checks the invariants in the states its schedules pass
 * through; another order of a trace's independent steps passes through others. With every state
 * of every trace checked, a check that fails only in such a state is found, and the schedule it
 * reports reaches it.
 */
import { describe, expect, it } from "vitest";
import {
  BLOCKED,
  Clock,
  RETRY_WAIT,
  TaskStepper,
  explore,
  exploreEveryState,
  resourceId,
  type ExploreSystem,
  type Op,
} from "../src/testing.js";

/** Two tasks t0 and t1 on `clock`, and the check of the state they leave. */
function twoTasks(
  clock: Clock,
  t0: Op,
  t1: Op,
  check: () => ReturnType<ExploreSystem["check"]> = () => [],
): ExploreSystem {
  return {
    tasks: [
      { name: "t0", op: t0, done: false },
      { name: "t1", op: t1, done: false },
    ],
    clock,
    setRecorder: () => {},
    classify: () => null,
    check,
    stateVersion: () => clock.checkVersion,
  };
}

/**
 * t0 takes `private` steps of its own, raises a flag, then writes X; t1 waits for the flag, then
 * writes Y. Once the flag is up, t0's write of X and t1's write of Y are independent: one trace,
 * and only the order with Y first passes through the state the check refuses (Y without X).
 */
function flagThenWrites(privateSteps: number): () => ExploreSystem {
  return () => {
    const clock = new Clock();
    clock.interleaved = true;
    const mem = { x: 0, y: 0, flag: 0 };
    const [X, Y, FLAG, OWN] = [0, 1, 2, 3].map((i) => resourceId(0, i));
    function* t0(): Op {
      for (let k = 0; k < privateSteps; k++) {
        clock.fp?.read(OWN!);
        yield;
      }
      clock.touch(FLAG!);
      mem.flag = 1;
      yield;
      clock.touch(X!);
      mem.x = 1;
    }
    function* t1(): Op {
      for (;;) {
        clock.fp?.read(FLAG!);
        if (mem.flag === 1) break;
        yield BLOCKED;
      }
      yield;
      clock.touch(Y!);
      mem.y = 1;
    }
    return twoTasks(clock, t0(), t1(), () =>
      mem.y === 1 && mem.x === 0
        ? [{ check: "y-implies-x", message: "Y is set and X is not", step: clock.tick }]
        : [],
    );
  };
}

/** Two tasks of `n` steps each, every step writing a resource of its own: one trace. */
function independent(n: number): () => ExploreSystem {
  return () => {
    const clock = new Clock();
    clock.interleaved = true;
    const task = (t: number): Op =>
      (function* () {
        for (let k = 0; k < n; k++) {
          clock.touch(resourceId(0, t * 100 + k));
          if (k < n - 1) yield;
        }
      })();
    return twoTasks(clock, task(0), task(1));
  };
}

/**
 * t0 retries until t1's flag is up: its attempt reads the flag and waits to retry; the next
 * attempt's first step reads only a cell of its own. The check refuses that step before the
 * flag, a state no schedule reaches (t0 cannot retry before t1 wakes it), though the step
 * conflicts with nothing of t1's.
 */
function retryBeforeWake(): () => ExploreSystem {
  return () => {
    const clock = new Clock();
    clock.interleaved = true;
    const [CELL, FLAG] = [0, 1].map((i) => resourceId(0, i));
    const st = { flag: 0, retried: 0 };
    function* t0(): Op {
      clock.fp?.read(FLAG!);
      while (st.flag !== 1) {
        yield RETRY_WAIT;
        clock.fp?.read(CELL!);
        st.retried = 1;
        yield;
        clock.fp?.read(FLAG!);
      }
    }
    function* t1(): Op {
      clock.touch(FLAG!);
      st.flag = 1;
    }
    // Checked after every step: `retried` moves no version.
    const sys = twoTasks(clock, t0(), t1(), () =>
      st.retried === 1 && st.flag === 0
        ? [{ check: "retry-before-wake", message: "t0 retried first", step: clock.tick }]
        : [],
    );
    return { ...sys, stateVersion: undefined };
  };
}

describe("exploreEveryState", () => {
  it("checks no state a wait keeps every schedule from: the waker comes before the woken step", () => {
    // Without reduction no schedule reaches it; the states every-state adds must be reachable.
    expect(explore(retryBeforeWake(), { reduction: false }).violation).toBeNull();
    const r = exploreEveryState(retryBeforeWake(), { algorithm: "optimal" });
    expect(r.violation).toBeNull();
    expect(r.exhausted).toBe(true);
  });

  it("finds a violation only another order of one trace's independent steps passes through", () => {
    const make = flagThenWrites(14);
    // The reduced search alone runs one order per trace, the one with X first.
    const plain = explore(make, { algorithm: "optimal", countTraces: true });
    expect(plain.exhausted).toBe(true);
    expect(plain.violation).toBeNull();
    const every = exploreEveryState(make, { algorithm: "optimal" });
    expect(every.violation?.violations[0]?.check).toBe("y-implies-x");
    // The schedule it reports reaches the state: t0's own steps and its flag, then t1's two.
    const choices = every.violation!.choices;
    expect(choices.join("")).toBe(`${"0".repeat(15)}11`);
    const sys = make();
    const stepper = new TaskStepper(sys.tasks, sys.clock);
    for (const c of choices) stepper.step(c);
    expect(sys.check(false).map((v) => v.check)).toEqual(["y-implies-x"]);
    // With sleep sets too, and with the search split.
    for (const algorithm of ["sleep", "optimal"] as const)
      expect(
        exploreEveryState(make, { algorithm, split: { depth: 3, owns: () => true } }).violation
          ?.violations[0]?.check,
      ).toBe("y-implies-x");
  });

  it("checks each state once: two tasks of n independent steps have (n + 1)^2 states, 2n + 1 on the run", () => {
    for (const n of [1, 2, 4]) {
      const r = exploreEveryState(independent(n), { algorithm: "optimal", countTraces: true });
      expect(r.traces).toBe(1);
      expect(r.violation).toBeNull();
      expect(r.otherStates).toBe((n + 1) ** 2 - (2 * n + 1));
      // Checked only at the end of each schedule, the run's own states are others too.
      const end = exploreEveryState(independent(n), {
        algorithm: "optimal",
        checkEveryStep: false,
      });
      expect(end.otherStates).toBe((n + 1) ** 2 - 1);
    }
  });

  it("a search without a violation anywhere says so, with the states it checked besides", () => {
    // The flag's reader records what it reads, and the check holds in every order.
    const r = exploreEveryState(independent(3), { algorithm: "sleep" });
    expect(r.exhausted).toBe(true);
    expect(r.violation).toBeNull();
    expect(r.otherStates).toBeGreaterThan(0);
  });
});
