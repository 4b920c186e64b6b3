/**
 * A schedule's steps as the explorer saw them: for each choice, the task that took the step,
 * what it touched (its footprint, recorded as in `explore`) and the events it emitted. The race
 * diagram (`replay --diagram`) keeps only the steps on the chain of conflicts that leads to the
 * violation.
 */
import type { TdpEvent } from "../events/events.js";
import {
  FootprintRecorder,
  FootprintStore,
  KIND_ADD,
  KIND_READ,
  KIND_WRITE,
} from "../exec/footprint.js";
import { deadlock, stepTask } from "../exec/scheduler.js";
import { NO_CHANGE, WaitTracker } from "../exec/wait-tracker.js";
import type { ExploreViolation } from "../exec/explorer.js";
import { RunInputError, buildRun, classifyRunError } from "./runner.js";
import type { ExploreScenarioOptions } from "./explore-scenario.js";
import type { Scenario } from "./schema.js";

export interface ScheduleStep {
  /** The task's index and name. */
  task: number;
  name: string;
  /** The step's footprint: a handle in `ScheduleSteps.store`. */
  fp: number;
  events: TdpEvent[];
}

export interface ScheduleSteps {
  /** The name of every task of the run, by index, whether or not it took a step. */
  tasks: string[];
  steps: ScheduleStep[];
  store: FootprintStore;
  /** The violation the schedule ends in (in its last step, or at its end), if any. */
  violation: ExploreViolation | null;
}

/**
 * Runs `choices` on a fresh build of `scn` with every step recorded. Stops at the first step
 * that fails; a choice of a task that cannot run there is bad input (the schedule is not this
 * scenario's). A schedule that leaves every unfinished task waiting ends in a deadlock.
 */
export function scheduleSteps(
  scn: Scenario,
  opts: Pick<ExploreScenarioOptions, "hostMemory" | "mmu" | "inject"> & {
    backend: ExploreScenarioOptions["backend"];
  },
  choices: readonly number[],
): ScheduleSteps {
  let current: TdpEvent[] = [];
  const backend = opts.backend;
  const built = buildRun(scn, {
    backend: typeof backend === "function" ? backend() : backend,
    hostMemory: opts.hostMemory,
    mmu: opts.mmu,
    inject: opts.inject,
    interleave: true,
    onEvent: (e) => current.push(e),
  });
  const rec = new FootprintRecorder();
  const store = new FootprintStore();
  built.clock.setRecorder(rec);
  built.host.pool.fp = rec;
  const steps: ScheduleStep[] = [];
  let violation: ExploreViolation | null = null;
  // Which tasks may go next, as in the explorer: a waiting task is not one of them.
  const tracker = new WaitTracker(built.tasks.length, store);
  built.tasks.forEach((t, i) => t.done && tracker.onStep(i, NO_CHANGE, 0, true));
  for (const c of choices) {
    const task = built.tasks[c];
    if (task === undefined || !tracker.enabled(c)) {
      const why =
        task === undefined ? "does not exist" : task.done ? "has finished" : "waits there";
      throw new RunInputError(
        `replay: choice ${steps.length + 1} names task ${c}, which ${why}: the schedule is not this scenario's`,
      );
    }
    current = [];
    rec.reset();
    let outcome = 0;
    try {
      outcome = stepTask(built.tasks, c, built.clock);
    } catch (e) {
      const v = classifyRunError(e, scn, built);
      if (v === null) throw e;
      violation = v[0]!;
    }
    const fp = rec.saveTo(store);
    steps.push({ task: c, name: task.name, fp, events: current });
    if (violation !== null) break;
    tracker.onStep(c, fp, outcome, task.done);
  }
  built.clock.setRecorder(null);
  built.host.pool.fp = null;
  if (
    violation === null &&
    !built.tasks.every((t) => t.done) &&
    tracker.enabledTasks([]).length === 0
  ) {
    // Every unfinished task waits for a change no one will make (the explorer's deadlock).
    const stuck = deadlock(built.tasks, tracker).message;
    violation = {
      check: stuck.startsWith("livelock") ? "livelock" : "deadlock",
      message: stuck,
      step: built.clock.tick,
    };
  }
  if (violation === null)
    violation = built.check(built.tasks.every((t) => t.done)).violations[0] ?? null;
  return { tasks: built.tasks.map((t) => t.name), steps, store, violation };
}

/**
 * The steps that lead to step `last`: it; since its task's current op began, every step of
 * another task it conflicts with, and each step of its own task that read what another task
 * wrote in its latest step before (it saw that task midway), with that step; and for every
 * step on the chain, the latest earlier step of each other task that conflicts with it.
 * Ascending.
 */
export function conflictChain(s: ScheduleSteps, last: number): number[] {
  const on = new Set<number>([last]);
  const work = [last];
  const add = (k: number) => {
    if (on.has(k)) return;
    on.add(k);
    work.push(k);
  };
  const store = s.store;
  const ids = store.idsView;
  const kinds = store.kindsView;
  const me = s.steps[last]!.task;
  let opStart = last;
  while (
    opStart > 0 &&
    !s.steps[opStart]!.events.some((e) => e.type === "op" && e.phase === "start")
  ) {
    do opStart--;
    while (opStart > 0 && s.steps[opStart]!.task !== me);
  }
  for (let k = opStart; k < last; k++) {
    // Every step of another task since the op began that the failing step conflicts with.
    if (s.steps[k]!.task !== me) {
      if (store.dependsOn(s.steps[k]!.fp, s.steps[last]!.fp)) add(k);
      continue;
    }
    const fp = s.steps[k]!.fp;
    for (let a = store.startOf(fp), e = a + store.lengthOf(fp); a < e; a++) {
      if ((kinds[a]! & KIND_READ) === 0) continue;
      const w = latestWriter(s, ids[a]!, k, me);
      if (w >= 0 && latestOf(s, s.steps[w]!.task, k) === w) {
        add(k);
        add(w);
      }
    }
  }
  while (work.length > 0) {
    const j = work.pop()!;
    const seen = new Set<number>([s.steps[j]!.task]);
    for (let k = j - 1; k >= 0; k--) {
      const t = s.steps[k]!.task;
      if (seen.has(t) || !store.dependsOn(s.steps[k]!.fp, s.steps[j]!.fp)) continue;
      seen.add(t);
      add(k);
    }
  }
  return [...on].sort((a, b) => a - b);
}

/** The latest step of `task` before step `before`; -1 if none. */
function latestOf(s: ScheduleSteps, task: number, before: number): number {
  for (let k = before - 1; k >= 0; k--) if (s.steps[k]!.task === task) return k;
  return -1;
}

/** The latest step before `before` of a task other than `task` that wrote or updated `id`; -1 if none. */
function latestWriter(s: ScheduleSteps, id: number, before: number, task: number): number {
  const store = s.store;
  const ids = store.idsView;
  const kinds = store.kindsView;
  for (let k = before - 1; k >= 0; k--) {
    if (s.steps[k]!.task === task) continue;
    const fp = s.steps[k]!.fp;
    for (let a = store.startOf(fp), e = a + store.lengthOf(fp); a < e; a++) {
      if (ids[a] === id && (kinds[a]! & (KIND_WRITE | KIND_ADD)) !== 0) return k;
    }
  }
  return -1;
}
