/**
 * The step counter of a run. Every atomic point (an SPTE read a decision depends on, a cmpxchg,
 * a backend call, a lock operation) advances it by one, whether or not the coroutine yields
 * there, so step numbers in a trace mean the same with and without interleaving.
 *
 * While the explorer runs, `fp` records what each step touches; it is null otherwise.
 */
import type { ExecCtx } from "./ctx.js";
import { ErrorOfKind } from "../error-kind.js";
import {
  R_ATTR,
  R_INVALIDATE,
  R_LOCK_READERS,
  R_LOCK_WAITERS,
  R_LOCK_WRITER,
  R_SLOTS_LOCK,
  R_GMEM_LOCK,
  R_SRCU,
  R_TASK_DONE,
  type FootprintRecorder,
} from "./footprint.js";

/**
 * The fixed resources no invariant check reads: `mmu_lock`'s words, `kvm->slots_lock`,
 * guest_memfd's `filemap_invalidate_lock`,
 * `kvm->srcu`, and `mmu_invalidate_seq` with its range (the checks look at tables, frames,
 * memslots, backing, attributes, roots and the backend's state, never at who holds what or what
 * is being invalidated).
 */
const UNCHECKED_FIXED: readonly number[] = [
  R_LOCK_WRITER,
  R_LOCK_READERS,
  R_LOCK_WAITERS,
  R_SLOTS_LOCK,
  R_GMEM_LOCK,
  R_SRCU,
  R_INVALIDATE,
];

/**
 * A task's step called a reader that records nothing (`peek*`, `audit*`): what it read is shared
 * state no footprint holds, so the explorer would take the step to commute with a write of it.
 * Those readers are for checks, views and the audits, which run between steps.
 */
export class UnrecordedAccess extends ErrorOfKind("UnrecordedAccess") {}

/** Ids of resource spaces are below this (`resourceId`). */
const SPACES_BASE = -1099511627776;

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
  /**
   * A task's step is running (`stepTask`). Readers that record nothing ask `assertBetweenSteps`,
   * so that a step reaching shared state around its recording accessors fails in every run that
   * steps tasks one by one, not only where an audit happens to compare the right states.
   */
  inStep = false;
  /** Bumped by every change of shared state (`touch`, `update`, `bump`): a step that left it alone changed nothing. */
  stateVersion = 0;
  /**
   * Bumped by the changes of state an invariant check may read: every change but those of the
   * resources `isChecked` says no check reads (lock words, `kvm->srcu`, `mmu_invalidate`, a
   * task's completion, vCPU requests, a backend's spaces made unchecked). The explorer skips the
   * check after a step that left it alone: the state the checks read is the one found clean.
   */
  checkVersion = 0;
  /**
   * Bumped like `checkVersion`, except by changes of guest memory state (the memory attributes,
   * a backing's chunks and folios) when `backendIgnoresGuestMemory`: the backend's own check
   * (`Backend.checkInvariants`) reads none of it, so after a step that changed only such state
   * the explorer runs the core's checks alone (the backend's would see what it saw last).
   */
  backendCheckVersion = 0;
  /**
   * No backend on this clock reads guest memory state in its check
   * (`Backend.checkIgnoresGuestMemory`; see `addBackend`).
   */
  backendIgnoresGuestMemory = false;
  private backends = 0;
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
   * Called by every reader that records nothing (`what` names the state it reads): outside a
   * step it is a check's or a view's read; inside one it is a step reading shared state that
   * its footprint will not hold, and the run fails, naming the task and the state.
   */
  assertBetweenSteps(what: string): void {
    if (this.inStep)
      throw new UnrecordedAccess(
        `${this.task}'s step ${this.tick} read ${what} through a reader that records nothing: ` +
          `a step reaches shared state only through the accessors that record it`,
      );
  }

  /**
   * Runs `look`, an observer called from inside a step (the invariant checks after each op, with
   * `check: "op"`), as if between steps: it may use the readers that record nothing, for what
   * it reads decides nothing the step does (a violation it finds ends the run).
   */
  observe<T>(look: () => T): T {
    const was = this.inStep;
    this.inStep = false;
    try {
      return look();
    } finally {
      this.inStep = was;
    }
  }

  /**
   * A new space of per-object resource ids (`resourceId(space, i)`): one per guest backing, per
   * RMP, per S-EPT... Numbered in the order objects are made, so the same run numbers them alike.
   */
  newResourceSpace(
    checked: boolean | ((index: number) => boolean) = true,
    guestMemory = false,
  ): number {
    this.checkedSpaces.push(checked);
    this.guestMemorySpaces.push(guestMemory);
    return this.spaces++;
  }

  /** Per resource space, whether the invariant checks read its resources (`newResourceSpace`). */
  private readonly checkedSpaces: (boolean | ((index: number) => boolean))[] = [];
  /** Per resource space, whether it holds guest memory state (see `backendCheckVersion`). */
  private readonly guestMemorySpaces: boolean[] = [];

  /**
   * Whether an invariant check may read resource `id`. Only what no check reads is left out,
   * and the footprint audit holds the checks to it (a check that reads a resource said to be
   * unread fails the audit): a change the checks could see that does not bump `checkVersion`
   * would let the explorer skip the check of a state it never checked.
   */
  isChecked(id: number): boolean {
    if (id >= 0) return true;
    if (id > R_TASK_DONE) return !UNCHECKED_FIXED.includes(id);
    // A task's completion: the explorer, not a check, knows when every task is done.
    if (id > SPACES_BASE) return false;
    const rest = SPACES_BASE - id;
    const space = Math.floor(rest / 4294967296);
    const c = this.checkedSpaces[space] ?? true;
    return typeof c === "boolean" ? c : c(rest - space * 4294967296);
  }

  /**
   * `checkVersion` and `backendCheckVersion` after a change of `id`. Only the explorer's
   * recorded steps compare them (it takes them afresh after a replay), so while nothing records
   * they simply move: the fault path, which runs unrecorded, pays no lookup for them.
   */
  private checkChange(id: number): void {
    if (this.fp === null || id >= 0) {
      this.checkVersion++;
      this.backendCheckVersion++;
    } else if (this.isChecked(id)) {
      this.checkVersion++;
      if (!this.backendIgnoresGuestMemory || !this.isGuestMemory(id)) this.backendCheckVersion++;
    }
  }

  /** Whether `id` is guest memory state: the attributes, or a space made with `guestMemory`. */
  isGuestMemory(id: number): boolean {
    if (id === R_ATTR) return true;
    if (id > SPACES_BASE) return false;
    return this.guestMemorySpaces[Math.floor((SPACES_BASE - id) / 4294967296)] === true;
  }

  /** A change of shared state whose resource id is not made (nothing records): every version moves. */
  bump(): void {
    this.stateVersion++;
    this.checkVersion++;
    this.backendCheckVersion++;
  }

  /**
   * A VM's backend runs on this clock: guest memory state is left out of `backendCheckVersion`
   * only while every such backend's check ignores it (VMs may share a clock).
   */
  addBackend(checkIgnoresGuestMemory: boolean): void {
    this.backendIgnoresGuestMemory =
      checkIgnoresGuestMemory && (this.backends === 0 || this.backendIgnoresGuestMemory);
    this.backends++;
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
    // Kept small (V8 inlines it): nothing records, so every version moves.
    if (this.fp === null) this.bump();
    else this.updateRecorded(id);
  }

  private updateRecorded(id: number): void {
    this.stateVersion++;
    this.fp?.add(id);
    this.checkChange(id);
  }

  /** A step changes shared resource `id`. */
  touch(id: number): void {
    // Kept small (V8 inlines it): nothing records and no table log, so every version moves.
    if (this.fp === null && this.tables === null) this.bump();
    else this.touchRecorded(id);
  }

  private touchRecorded(id: number): void {
    this.stateVersion++;
    this.fp?.write(id);
    this.checkChange(id);
    if (id >= 0 && this.tables !== null) this.tables.noteSpteWrite(id);
  }
}
