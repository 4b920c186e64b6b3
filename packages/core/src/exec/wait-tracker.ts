/**
 * Which tasks can take a step, decided from footprints alone.
 *
 * A task that yields `BLOCKED` (a lock it cannot take, a folio being prepared, vCPUs still
 * running) or `RETRY_WAIT` (a fault that returned RET_PF_RETRY) would, if run again with nothing
 * changed, read the same values and end the same way: running it is a wasted step, and in the
 * explorer a false branch. So it is disabled until *another task modifies a resource it waits
 * on*, and only such a step enables it:
 *
 * - `BLOCKED`: the resources the blocking step touched (the lock words, the folio's backing, the
 *   task-completion ids). The retry re-reads them first.
 * - `RETRY_WAIT`: every resource the task touched since its previous retry began (the whole
 *   attempt: the fault's reads of the memslot, the invalidation sequence, the SPTEs it walked,
 *   the lock words). If another task modified one of them *after* the task had touched it, the
 *   attempt is already stale and the task is enabled at once (a lost cmpxchg, an invalidation
 *   that ended after the fault sampled the sequence). So is an attempt in which the task's own
 *   call advanced an injected fault's counter (R_INJECTED): its next call may end otherwise.
 *
 * This is what makes the explorer's reduction sound: a step that enables a waiting task conflicts
 * (by footprint) with a step of that task, so the sleep sets order them; a step that changes
 * nothing the task read leaves it disabled whatever order the two are in. The old rule, "any
 * change of a global version wakes every waiter", made independent steps change what was
 * enabled, cut branches whose traces were never run, and let two retrying vCPUs wake each other
 * forever while the vCPU they waited for never ran.
 *
 * The tracker reads footprints from a `FootprintStore` by handle and keeps a log of the steps
 * (task, footprint) of the current run; a run is replayed from its start, so `reset` empties it.
 * A wait set is footprints already in the store: a blocked task's is its blocking step's, a
 * retrying task's those of its own steps in its attempt, found in the log. The explorer replays a
 * prefix for every schedule: instead of telling the tracker every step of it again (and so
 * beginning every retry and testing every wake again), it restores the state `save` kept after
 * the prefix's last step.
 * A step with no footprint (a run without interleaving records none, its steps being whole ops)
 * is `UNKNOWN_CHANGE` if it changed shared state (it wakes every waiting task) or `NO_CHANGE`; a
 * task that blocks in such a step waits for any change by another.
 */
import { BLOCKED, RETRY_WAIT } from "./ctx.js";
import { R_INJECTED, type FootprintStore } from "./footprint.js";
import { grown } from "../mem/typed-arrays.js";

export const WAIT_NONE = 0;
/** Footprint handles for steps recorded without a footprint. */
export const UNKNOWN_CHANGE = -1;
export const NO_CHANGE = -2;

export class WaitTracker {
  private logTask = new Int32Array(256);
  private logFp = new Int32Array(256);
  private n = 0;
  /** Per task: WAIT_NONE, BLOCKED or RETRY_WAIT. */
  readonly waitKind: Uint8Array;
  /** Per task: a modification of what it waits on has happened since it began to wait. */
  private readonly woken: Uint8Array;
  private readonly done: Uint8Array;
  /** Per task: it waits with no footprint known, so any other task's step may wake it. */
  private readonly waitAny: Uint8Array;
  /** Per task: the log index where its current retry attempt began. */
  private readonly attemptStart: Int32Array;
  /**
   * Per waiting task, what it waits on: for BLOCKED the footprint of its blocking step (a handle
   * in the store, -1 if none); for RETRY_WAIT the log index of the step that ended its attempt,
   * whose own steps' footprints (`attemptStart` to there) are the wait set.
   */
  private readonly waitOn: Int32Array;
  /** Per woken task: the log index of the step that woke it (changed what it waits on, or made its attempt stale). */
  private readonly wokenAt: Int32Array;
  private nWaiting = 0;
  /**
   * `save`d states, `stride` numbers each: the log length, `nWaiting`, then per task its wait
   * kind, woken, done, wait-any, attempt start, wait set and waker.
   */
  private saved = new Int32Array(0);
  private readonly stride: number;

  constructor(
    readonly tasks: number,
    private store: FootprintStore,
  ) {
    this.waitKind = new Uint8Array(tasks);
    this.woken = new Uint8Array(tasks);
    this.done = new Uint8Array(tasks);
    this.waitAny = new Uint8Array(tasks);
    this.attemptStart = new Int32Array(tasks);
    this.waitOn = new Int32Array(tasks).fill(-1);
    this.wokenAt = new Int32Array(tasks).fill(-1);
    this.stride = 2 + 7 * tasks;
  }

  /**
   * Keeps the state after the steps logged so far as state `slot` (the explorer's: the depth).
   * A later run that logs the same steps first may `restore` it instead of logging them.
   */
  save(slot: number): void {
    const S = this.stride;
    const T = this.tasks;
    if ((slot + 1) * S > this.saved.length)
      this.saved = grown(
        this.saved,
        new Int32Array(Math.max(2 * this.saved.length, (slot + 1) * S)),
      );
    const a = this.saved;
    let o = slot * S;
    a[o++] = this.n;
    a[o++] = this.nWaiting;
    for (let t = 0; t < T; t++) {
      a[o] = this.waitKind[t]!;
      a[o + T] = this.woken[t]!;
      a[o + 2 * T] = this.done[t]!;
      a[o + 3 * T] = this.waitAny[t]!;
      a[o + 4 * T] = this.attemptStart[t]!;
      a[o + 5 * T] = this.waitOn[t]!;
      a[o + 6 * T] = this.wokenAt[t]!;
      o++;
    }
  }

  /**
   * Back to state `slot` as `save` kept it. The log up to it must hold the same steps as when it
   * was saved (the explorer's runs share their prefix with the run that saved it), and the wait
   * sets it names must still be in the store.
   */
  restore(slot: number): void {
    this.restoreFrom(this.saved, slot);
  }

  /**
   * Becomes a copy of `other` in state `slot` (as `other.restore(slot)` would leave it), with
   * the log up to it: the explorer tries reordered runs on such a copy without disturbing the
   * tracker of the run in progress.
   */
  copyFrom(other: WaitTracker, slot: number): void {
    this.store = other.store;
    const n = other.saved[slot * other.stride]!;
    if (this.logTask.length < n) {
      this.logTask = new Int32Array(other.logTask.length);
      this.logFp = new Int32Array(other.logTask.length);
    }
    for (let i = 0; i < n; i++) {
      this.logTask[i] = other.logTask[i]!;
      this.logFp[i] = other.logFp[i]!;
    }
    this.restoreFrom(other.saved, slot);
  }

  /**
   * If task `t` waited and has been woken, the log index of the step that woke it; else -1. Its
   * next step cannot come before that one, although their footprints may not conflict (a
   * retried fault re-reads what changed only in a later step): the explorer's `ReversalOrder`
   * asks, when it reorders a run.
   */
  wakerOf(t: number): number {
    return this.waitKind[t] !== WAIT_NONE && this.woken[t] === 1 ? this.wokenAt[t]! : -1;
  }

  /**
   * What task `t` waits on, as footprint handles in the store: a blocked task's blocking step,
   * the own steps of a retrying task's attempt (none if it does not wait).
   */
  waitSetOf(t: number): number[] {
    if (this.waitKind[t] === BLOCKED) return this.waitOn[t]! < 0 ? [] : [this.waitOn[t]!];
    const out: number[] = [];
    if (this.waitKind[t] === RETRY_WAIT)
      for (let s = this.attemptStart[t]!; s <= this.waitOn[t]!; s++)
        if (this.logTask[s] === t && this.logFp[s]! >= 0) out.push(this.logFp[s]!);
    return out;
  }

  /** How many steps are logged. */
  get logLength(): number {
    return this.n;
  }

  private restoreFrom(a: Int32Array, slot: number): void {
    const T = this.tasks;
    let o = slot * this.stride;
    this.n = a[o++]!;
    this.nWaiting = a[o++]!;
    for (let t = 0; t < T; t++) {
      this.waitKind[t] = a[o]!;
      this.woken[t] = a[o + T]!;
      this.done[t] = a[o + 2 * T]!;
      this.waitAny[t] = a[o + 3 * T]!;
      this.attemptStart[t] = a[o + 4 * T]!;
      this.waitOn[t] = a[o + 5 * T]!;
      this.wokenAt[t] = a[o + 6 * T]!;
      o++;
    }
  }

  /** Forgets the run: every task enabled, nothing logged. */
  reset(store: FootprintStore = this.store): void {
    this.store = store;
    this.n = 0;
    this.nWaiting = 0;
    this.waitKind.fill(WAIT_NONE);
    this.woken.fill(0);
    this.done.fill(0);
    this.waitAny.fill(0);
    this.attemptStart.fill(0);
  }

  /** Whether task `t` may take the next step. */
  enabled(t: number): boolean {
    return this.done[t] === 0 && (this.waitKind[t] === WAIT_NONE || this.woken[t] === 1);
  }

  /** Whether `t` waits for someone else (and nobody has changed what it waits on yet). */
  waiting(t: number): boolean {
    return this.done[t] === 0 && this.waitKind[t] !== WAIT_NONE && this.woken[t] === 0;
  }

  /** The enabled tasks, ascending, into `out`. */
  enabledTasks(out: number[]): number[] {
    out.length = 0;
    for (let t = 0; t < this.tasks; t++) if (this.enabled(t)) out.push(t);
    return out;
  }

  /**
   * Task `t` took a step whose footprint is handle `h` in the store (-1: none recorded) and that
   * yielded `outcome` (0 for an ordinary atomic point, BLOCKED, RETRY_WAIT); `finished` if the
   * task ended with it.
   */
  onStep(t: number, h: number, outcome: number, finished: boolean): void {
    if (this.n === this.logTask.length) {
      this.logTask = grown(this.logTask, new Int32Array(this.n * 2));
      this.logFp = grown(this.logFp, new Int32Array(this.n * 2));
    }
    const idx = this.n++;
    this.logTask[idx] = t;
    this.logFp[idx] = h;
    if (this.waitKind[t] !== WAIT_NONE) {
      // It ran, so it was woken: a retry begins a new attempt; a lock retry goes on with the old one.
      if (this.waitKind[t] === RETRY_WAIT) this.attemptStart[t] = idx;
      this.waitKind[t] = WAIT_NONE;
      this.nWaiting--;
    }
    if (this.nWaiting > 0) this.wake(t, h);
    if (finished) {
      this.done[t] = 1;
      return;
    }
    if (outcome === BLOCKED) this.beginBlocked(t, h);
    else if (outcome === RETRY_WAIT) this.beginRetryWait(t, idx);
  }

  /**
   * Whether the step just logged (task `t`, footprint `h`) modifies something another unfinished
   * task touched in its current attempt: what it waits on, or would wait on if it retried, or
   * what makes its next retry stale. Such a step moved earlier or later changes when that task
   * is enabled, though it commutes with every step in between (the explorer's bound needs this).
   */
  affectsAttempts(t: number, h: number): boolean {
    if (h < 0) return h === UNKNOWN_CHANGE;
    const store = this.store;
    const last = this.n - 1;
    for (let s = 0; s < last; s++) {
      const u = this.logTask[s]!;
      if (u === t || this.done[u] === 1 || s < this.attemptStart[u]!) continue;
      const g = this.logFp[s]!;
      if (g < 0) {
        if (g === UNKNOWN_CHANGE || g === NO_CHANGE) return true;
        continue;
      }
      if (store.modifiesSome(h, g)) return true;
    }
    return false;
  }

  /** Wakes every waiting task other than `t` whose wait set footprint `h` modifies (all, for UNKNOWN_CHANGE). */
  private wake(t: number, h: number): void {
    if (h === NO_CHANGE) return;
    // A step of reads only changes nothing anyone waits on.
    if (h >= 0 && !this.store.modifiesAny(h)) return;
    if (h < 0) {
      for (let u = 0; u < this.tasks; u++) {
        if (u === t || this.waitKind[u] === WAIT_NONE || this.woken[u] === 1) continue;
        this.woken[u] = 1;
        this.wokenAt[u] = this.n - 1;
      }
      return;
    }
    const store = this.store;
    for (let u = 0; u < this.tasks; u++) {
      if (u === t || this.waitKind[u] === WAIT_NONE || this.woken[u] === 1) continue;
      // A blocked task whose step had no footprint waits on any change (`beginBlocked`).
      if (this.waitAny[u] === 1) {
        this.woken[u] = 1;
        this.wokenAt[u] = this.n - 1;
        continue;
      }
      if (
        this.waitKind[u] === BLOCKED
          ? store.modifiesSome(h, this.waitOn[u]!)
          : this.modifiesAttempt(h, u)
      ) {
        this.woken[u] = 1;
        this.wokenAt[u] = this.n - 1;
      }
    }
  }

  /** It waits on what its blocking step touched: that step's own footprint. */
  private beginBlocked(t: number, h: number): void {
    this.waitOn[t] = h;
    this.waitAny[t] = h < 0 ? 1 : 0;
    this.waitKind[t] = BLOCKED;
    this.woken[t] = 0;
    this.nWaiting++;
  }

  /**
   * The wait set of a retry: everything `t` touched since its attempt began, held as its own
   * steps' footprints in the log rather than merged into one (a retry after a 2 MiB split holds
   * a footprint of a thousand ids, and merging and copying it at every retry was a twentieth of
   * the three-vCPU race's time). One pass over the attempt notes whether another task modified
   * an id after `t` had touched it (then it is woken at once: such a step modifies an id of the
   * union exactly when it modifies it in one of the footprints before it) and whether a step of
   * the attempt had no footprint (then any change wakes it).
   */
  private beginRetryWait(t: number, idx: number): void {
    let stale = false;
    let staleAt = -1;
    let own = false;
    let any = 0;
    const store = this.store;
    const start = this.attemptStart[t]!;
    for (let s = start; s <= idx; s++) {
      const h = this.logFp[s]!;
      // The task's own call advanced an injected fault's counter: the retry may end otherwise,
      // with no other task's step to wake it (it is then enabled on its own, no waker).
      if (h >= 0 && this.logTask[s] === t && store.modifiesId(h, R_INJECTED)) own = true;
      if (h < 0) {
        // A step with no footprint: if it was the task's own, what it waits on is unknown.
        if (this.logTask[s] === t) any = 1;
        else if (h === UNKNOWN_CHANGE && !stale) {
          stale = true;
          staleAt = s;
        }
        continue;
      }
      // Another task's step that only read cannot have made the attempt stale.
      if (
        this.logTask[s] !== t &&
        !stale &&
        store.modifiesAny(h) &&
        this.touchedBefore(h, t, start, s)
      ) {
        stale = true;
        staleAt = s;
      }
    }
    this.waitOn[t] = idx;
    this.waitAny[t] = any;
    this.waitKind[t] = RETRY_WAIT;
    this.woken[t] = stale || own ? 1 : 0;
    this.wokenAt[t] = own ? -1 : staleAt;
    this.nWaiting++;
  }

  /** Whether footprint `h` modifies an id that a step of task `t` in `[from, to)` of the log touched. */
  private touchedBefore(h: number, t: number, from: number, to: number): boolean {
    for (let s = from; s < to; s++) {
      const g = this.logFp[s]!;
      if (this.logTask[s] === t && g >= 0 && this.store.modifiesSome(h, g)) return true;
    }
    return false;
  }

  /** Whether footprint `h` modifies what retrying task `u` waits on: an id its attempt touched. */
  private modifiesAttempt(h: number, u: number): boolean {
    return this.touchedBefore(h, u, this.attemptStart[u]!, this.waitOn[u]! + 1);
  }
}
