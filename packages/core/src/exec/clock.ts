/**
 * The step counter of a run. Every atomic point (an SPTE read a decision depends on, a cmpxchg,
 * a backend call, a lock operation) advances it by one, whether or not the coroutine yields
 * there, so step numbers in a trace mean the same with and without interleaving.
 *
 * While the explorer runs, `fp` records what each step touches; it is null otherwise.
 */
import type { FootprintRecorder } from "./footprint.js";

/** Hears of every SPTE store (see `Clock.tables`). */
export interface SpteWriteLog {
  /** The SPTE `slot * 512 + index` was stored to. */
  noteSpteWrite(id: number): void;
}

export class Clock {
  step = 0;
  /**
   * Bumped by every change of shared state a waiting coroutine may be waiting for (an SPTE, a
   * lock, an invalidation, a root, the backend, a task finishing). A coroutine that blocked at
   * version v can make progress only once the version has moved on.
   */
  version = 0;
  /** Bumped by changes of the state the invariants read (not lock words): see `touch`. */
  stateVersion = 0;
  fp: FootprintRecorder | null = null;
  /**
   * Told of every SPTE store (`touch` of an id >= 0: every store goes through `TdpMmu.writeSpte`)
   * while the explorer runs: the page-table pool, which stamps the table written so that the
   * invariant walk rescans only the tables written since its last pass. Null otherwise.
   */
  tables: SpteWriteLog | null = null;

  /** A step changes shared resource `id`. */
  touch(id: number): void {
    this.version++;
    this.stateVersion++;
    this.fp?.write(id);
    if (id >= 0 && this.tables !== null) this.tables.noteSpteWrite(id);
  }
}
