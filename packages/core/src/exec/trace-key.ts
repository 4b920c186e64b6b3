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
  const indeg = new Int32Array(n);
  const succ: number[][] = Array.from({ length: n }, () => []);
  // Per task, its events in order; per event, its position in its task's list.
  const perTask: number[][] = Array.from({ length: taskCount }, () => []);
  for (let j = 0; j < n; j++) {
    const tj = tasks[j]!;
    const own = perTask[tj]!;
    if (own.length > 0) {
      succ[own[own.length - 1]!]!.push(j);
      indeg[j]!++;
    }
    // For every other task, its latest event before j that conflicts with j: an earlier one
    // precedes j anyway, through its task's order.
    for (let u = 0; u < taskCount; u++) {
      if (u === tj) continue;
      const evs = perTask[u]!;
      for (let k = evs.length - 1; k >= 0; k--) {
        const i = evs[k]!;
        if (fps[i]! >= 0 && fps[j]! >= 0 && store.dependsOn(fps[i]!, fps[j]!)) {
          succ[i]!.push(j);
          indeg[j]!++;
          break;
        }
      }
    }
    own.push(j);
  }
  const next = new Int32Array(taskCount);
  let h1 = 0x811c9dc5 | 0;
  let h2 = 0x9747b28c | 0;
  const mix = (x: number) => {
    h1 = Math.imul(h1 ^ x, 0x01000193);
    h2 = Math.imul(h2 ^ x, 0x5bd1e995);
    h2 ^= h2 >>> 15;
  };
  const ids = store.idsView;
  const kinds = store.kindsView;
  for (let emitted = 0; emitted < n; emitted++) {
    let e = -1;
    for (let t = 0; t < taskCount; t++) {
      const evs = perTask[t]!;
      if (next[t]! < evs.length && indeg[evs[next[t]!]!] === 0) {
        e = evs[next[t]!]!;
        next[t]!++;
        mix(t);
        break;
      }
    }
    if (e < 0) throw new Error("traceKey: the steps' order has a cycle");
    for (const s of succ[e]!) indeg[s]!--;
    const h = fps[e]!;
    if (h < 0) {
      mix(-1);
      continue;
    }
    const a0 = store.startOf(h);
    const a1 = a0 + store.lengthOf(h);
    mix(a1 - a0);
    for (let i = a0; i < a1; i++) {
      const id = ids[i]!;
      mix(id | 0);
      mix(Math.floor(id / 4294967296) | 0);
      mix(kinds[i]!);
    }
  }
  return `${(h1 >>> 0).toString(16)}${(h2 >>> 0).toString(16).padStart(8, "0")}:${n}`;
}
