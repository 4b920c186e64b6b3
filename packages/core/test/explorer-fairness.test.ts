/**
 * A livelock counts only on a fair schedule: two tasks that keep waking each other while a third
 * stays runnable and never runs are a starved schedule, dropped as unfair; the same ping-pong
 * once the third has run is a livelock, reported. Sleep sets meet the starved schedule first
 * and drop it; Optimal-DPOR's own choices are fair, so it never meets one here.
 */
import { describe, expect, it } from "vitest";
import {
  Clock,
  GuestLivelock,
  RETRY_WAIT,
  explore,
  resourceId,
  type ExploreSystem,
  type Op,
  type Task,
} from "../src/testing.js";

/** Writes its own resource and reads the other's, then waits to retry: each step wakes the other. */
function* pingPong(clock: Clock, me: number, other: number, limit: number): Op {
  for (let i = 0; ; i++) {
    clock.fp?.read(resourceId(0, other));
    clock.touch(resourceId(0, me));
    if (i >= limit) throw new GuestLivelock(`task ${me} retried ${limit} times`);
    yield RETRY_WAIT;
  }
}

function* once(clock: Clock): Op {
  clock.touch(resourceId(0, 9));
}

function pingPongSystem(): ExploreSystem {
  const clock = new Clock();
  clock.interleaved = true;
  const tasks: Task[] = [
    { name: "a", op: pingPong(clock, 0, 1, 300), done: false },
    { name: "b", op: pingPong(clock, 1, 0, 300), done: false },
    { name: "c", op: once(clock), done: false },
  ];
  return {
    tasks,
    clock,
    setRecorder: () => {},
    check: () => [],
    classify: (e) =>
      e instanceof GuestLivelock
        ? { check: "livelock", message: e.message, step: clock.step }
        : null,
  };
}

describe("fairness", () => {
  it("sleep sets: drop the schedule that starves a runnable task, and report the livelock of a fair one", () => {
    const r = explore(pingPongSystem, { algorithm: "sleep" });
    expect(r.unfair).toBeGreaterThan(0);
    expect(r.violation?.violations[0]?.check).toBe("livelock");
    // The reported schedule let c run.
    expect(r.violation!.choices).toContain(2);
  });

  it("optimal DPOR: its own choices run a task kept waiting, so the first livelock it meets is a fair one", () => {
    const r = explore(pingPongSystem, { algorithm: "optimal" });
    expect(r.unfair).toBe(0);
    expect(r.violation?.violations[0]?.check).toBe("livelock");
    expect(r.violation!.choices).toContain(2);
  });
});
