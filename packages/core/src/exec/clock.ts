/**
 * The step counter of a run. Every atomic point (an SPTE read a decision depends on, a cmpxchg,
 * a backend call, a lock operation) advances it by one, whether or not the coroutine yields
 * there, so step numbers in a trace mean the same with and without interleaving.
 *
 * While the explorer runs, `fp` records what each step touches; it is null otherwise.
 */
import type { ExecCtx } from "./ctx.js";
import type { FootprintRecorder } from "./footprint.js";

/** Hears of every SPTE store (see `Clock.tables`). */
export interface SpteWriteLog {
  /** The SPTE `slot * 512 + index` was stored to. */
  noteSpteWrite(id: number): void;
}

/** Something that records into the clock's recorder by a field of its own (the page-table pool). */
export interface RecorderSink {
  fp: FootprintRecorder | null;
}

export class Clock {
  /**
   * Atomic points passed, counted the same whether the run interleaves or not (a fault's walk
   * counts its levels either way): what the model's logic reads (RCU, `kvm->srcu`, staleness).
   */
  step = 0;
  /**
   * Scheduler steps taken (`stepTask`): the one step count a user sees, the same as the
   * explorer's and replay's "#N" and the UI's "step N". Events and violations carry it.
   */
  tick = 0;
  /**
   * The task taking the current step (`stepTask` sets it), so that every event says who caused
   * it; "host" before the first step (the VMM building the VM).
   */
  task = "host";
  /**
   * The execution context of the task taking the current step, if its task names one
   * (`Task.ctx`); null between steps. Not shared state: it is always the running task's own.
   */
  ctx: ExecCtx | null = null;
  /** Bumped by changes of the state the invariants read (not lock words): see `touch`. */
  stateVersion = 0;
  fp: FootprintRecorder | null = null;
  /**
   * The run's tasks yield at every atomic point (`Vm.setInterleave`): their steps are small, and
   * the scheduler records their footprints to decide who is enabled (`TaskStepper`).
   */
  interleaved = false;
  private readonly sinks: RecorderSink[] = [];
  private spaces = 0;
  /**
   * Told of every SPTE store (`touch` of an id >= 0: every store goes through `TdpMmu.writeSpte`)
   * while the explorer runs: the page-table pool, which stamps the table written so that the
   * invariant walk rescans only the tables written since its last pass. Null otherwise.
   */
  tables: SpteWriteLog | null = null;

  /**
   * A new space of per-object resource ids (`resourceId(space, i)`): one per guest backing, per
   * RMP, per S-EPT... Numbered in the order objects are made, so the same run numbers them alike.
   */
  newResourceSpace(): number {
    return this.spaces++;
  }

  /** `sink` gets every recorder this clock gets (`setRecorder`), from now on. */
  shareRecorder(sink: RecorderSink): void {
    if (!this.sinks.includes(sink)) this.sinks.push(sink);
    sink.fp = this.fp;
  }

  /** Records what each step touches into `fp` (null: nothing is recorded). */
  setRecorder(fp: FootprintRecorder | null): void {
    this.fp = fp;
    for (const s of this.sinks) s.fp = fp;
  }

  /** A step updates shared resource `id` commutatively (a counter's increment). */
  update(id: number): void {
    this.stateVersion++;
    this.fp?.add(id);
  }

  /** A step changes shared resource `id`. */
  touch(id: number): void {
    this.stateVersion++;
    this.fp?.write(id);
    if (id >= 0 && this.tables !== null) this.tables.noteSpteWrite(id);
  }
}
