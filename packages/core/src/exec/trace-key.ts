/**
 * The Mazurkiewicz trace of a complete schedule, as a key: two schedules have the same key iff
 * they order every pair of conflicting steps of different tasks the same way (and so reach the
 * same state by the same steps).
 *
 * The steps are events; event i precedes event j (i < j) when they belong to one task or their
 * footprints conflict (`FootprintStore.dependsOn`). The key lists the events in the one order
 * the partial order allows that always emits the lowest-numbered task whose next event has all
 * its predecessors emitted, each event written as its task and a digest of its footprint, and
 * is hashed to 64 bits (a collision among the ~10^5 traces of a scenario is ~10^-9 likely).
 */
import type { FootprintStore } from "./footprint.js";

/**
 * Each event's direct predecessors of other tasks: for every other task, its latest event before
 * it whose footprint conflicts with the event's (an earlier one precedes it anyway, through its
 * task's order). Events `tasks[i]`, `fps[i]` for `i < n`, of `taskCount` tasks.
 */
export function conflictPredecessors(
  store: FootprintStore,
  tasks: ArrayLike<number>,
  fps: ArrayLike<number>,
  n: number,
  taskCount: number,
): number[][] {
  const preds: number[][] = Array.from({ length: n }, () => []);
  const perTask: number[][] = Array.from({ length: taskCount }, () => []);
  for (let j = 0; j < n; j++) {
    const tj = tasks[j]!;
    for (let u = 0; u < taskCount; u++) {
      if (u === tj) continue;
      const evs = perTask[u]!;
      for (let k = evs.length - 1; k >= 0; k--) {
        const i = evs[k]!;
        if (fps[i]! >= 0 && fps[j]! >= 0 && store.dependsOn(fps[i]!, fps[j]!)) {
          preds[j]!.push(i);
          break;
        }
      }
    }
    perTask[tj]!.push(j);
  }
  return preds;
}

/** Two 32-bit FNV-style lanes, hashed together: 64 bits for the keys of traces and states. */
export class Hash64 {
  h1 = 0x811c9dc5 | 0;
  h2 = 0x9747b28c | 0;

  mix(x: number): void {
    this.h1 = Math.imul(this.h1 ^ x, 0x01000193);
    this.h2 = Math.imul(this.h2 ^ x, 0x5bd1e995);
    this.h2 ^= this.h2 >>> 15;
  }

  /** A footprint's accesses (or -1 for none recorded): their number, then each id and kind. */
  mixFootprint(store: FootprintStore, h: number): void {
    if (h < 0) {
      this.mix(-1);
      return;
    }
    const ids = store.idsView;
    const kinds = store.kindsView;
    const a0 = store.startOf(h);
    const a1 = a0 + store.lengthOf(h);
    this.mix(a1 - a0);
    for (let i = a0; i < a1; i++) {
      const id = ids[i]!;
      this.mix(id | 0);
      this.mix(Math.floor(id / 4294967296) | 0);
      this.mix(kinds[i]!);
    }
  }

  text(): string {
    return `${(this.h1 >>> 0).toString(16)}${(this.h2 >>> 0).toString(16).padStart(8, "0")}`;
  }
}

/**
 * The key of the schedule whose event `i` is a step of task `tasks[i]` with footprint handle
 * `fps[i]`, for `i < n`; `taskCount` tasks in all.
 */
export function traceKey(
  store: FootprintStore,
  tasks: ArrayLike<number>,
  fps: ArrayLike<number>,
  n: number,
  taskCount: number,
): string {
  const preds = conflictPredecessors(store, tasks, fps, n, taskCount);
  const indeg = new Int32Array(n);
  const succ: number[][] = Array.from({ length: n }, () => []);
  // Per task, its events in order.
  const perTask: number[][] = Array.from({ length: taskCount }, () => []);
  for (let j = 0; j < n; j++) {
    const own = perTask[tasks[j]!]!;
    if (own.length > 0) {
      succ[own[own.length - 1]!]!.push(j);
      indeg[j]!++;
    }
    for (const i of preds[j]!) {
      succ[i]!.push(j);
      indeg[j]!++;
    }
    own.push(j);
  }
  const next = new Int32Array(taskCount);
  const hash = new Hash64();
  for (let emitted = 0; emitted < n; emitted++) {
    let e = -1;
    for (let t = 0; t < taskCount; t++) {
      const evs = perTask[t]!;
      if (next[t]! < evs.length && indeg[evs[next[t]!]!] === 0) {
        e = evs[next[t]!]!;
        next[t]!++;
        hash.mix(t);
        break;
      }
    }
    if (e < 0) throw new Error("traceKey: the steps' order has a cycle");
    for (const s of succ[e]!) indeg[s]!--;
    hash.mixFootprint(store, fps[e]!);
  }
  return `${hash.text()}:${n}`;
}
