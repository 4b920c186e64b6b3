/**
 * `kvm->mmu_lock` as an rwlock in the model. Readers share it, a writer excludes everyone. Like the
 * kernel's queued rwlock (`include/asm-generic/qrwlock.h`: `queued_read_lock()` sends a reader to
 * the slow path while a writer waits), a waiting writer stops new readers from entering, so a zap
 * is not starved by a stream of faults. A coroutine that cannot take the lock yields until it can;
 * a coroutine that runs without interleaving and finds the lock taken is a deadlock in the model.
 */
import type { Clock } from "./clock.js";
import { BLOCKED, type ExecCtx, type Op } from "./ctx.js";
import { R_LOCK_READERS, R_LOCK_WAITERS, R_LOCK_WRITER } from "./footprint.js";
import { ErrorOfKind } from "../error-kind.js";
import type { EventSink } from "../events/events.js";

export class DeadlockError extends ErrorOfKind("DeadlockError") {}

/**
 * A function ran without the lock it needs (`lockdep_assert_held*`). The model's coroutines do
 * not run on threads, so "held" means held by the task whose step is running (`Clock.ctx`), in
 * the mode it needs, as lockdep checks it for `current`.
 */
export class LockdepError extends ErrorOfKind("LockdepError") {}

/** The lock's words as they stand (`RwLock.peekState`). */
export interface RwLockState {
  readonly readers: number;
  /** The task holding it for write. */
  readonly writer: string | null;
  readonly waitingWriters: number;
  readonly waitingReaders: number;
}

export class RwLock {
  // Private, so that no step reads them around the lock operations that record them: checks,
  // views and tests read them between steps through `peekState`.
  private readers = 0;
  private writer: ExecCtx | null = null;
  private waitingWriters = 0;
  private waitingReaders = 0;

  constructor(
    private readonly clock: Clock,
    /** Where the lock's release and contended acquisition are told, while anyone listens. */
    private readonly events: { sink: EventSink; vm: number } | null = null,
  ) {}

  /**
   * The task that released the lock last: instrumentation for virtual time, not the lock's
   * state (nothing decides by it; the waiter's step already conflicts with the release through
   * the lock's own resources).
   */
  private lastReleaser = "";

  /** Tells listeners (virtual time) that the current task took the lock after waiting. */
  private tellWaited(mode: "read" | "write"): void {
    const ev = this.events;
    if (ev !== null && ev.sink.on)
      ev.sink.emit({ type: "lock", vm: ev.vm, mode, after: this.lastReleaser });
  }

  /**
   * How the running task holds the lock (0 not, 1 read, 2 write), as lockdep asks it of
   * `current`: its own context's state when the step's task names one (`Clock.ctx`), which no
   * other task can change, so the answer depends on nothing shared and records nothing. Without
   * a task context (setup, a test's own calls, nothing interleaving) the lock's words answer:
   * held by anyone at all.
   */
  private heldMode(): number {
    const ctx = this.clock.ctx;
    if (ctx !== null) return ctx.lockMode;
    return this.writer !== null ? 2 : this.readers > 0 ? 1 : 0;
  }

  private static notHeld(mode: number): string {
    return mode === 2
      ? "but it is held for write"
      : mode === 1
        ? "but it is held for read"
        : "but it is not held";
  }

  /** `lockdep_assert_held_write(&kvm->mmu_lock)`, for function `fn`. */
  assertHeldWrite(fn: string): void {
    const mode = this.heldMode();
    if (mode !== 2)
      throw new LockdepError(`${fn}: mmu_lock must be held for write, ${RwLock.notHeld(mode)}`);
  }

  /** `lockdep_assert_held_read(&kvm->mmu_lock)`. */
  assertHeldRead(fn: string): void {
    const mode = this.heldMode();
    if (mode !== 1)
      throw new LockdepError(`${fn}: mmu_lock must be held for read, ${RwLock.notHeld(mode)}`);
  }

  /** `lockdep_assert_held(&kvm->mmu_lock)`: for read or for write. */
  assertHeld(fn: string): void {
    if (this.heldMode() === 0)
      throw new LockdepError(`${fn}: mmu_lock must be held, but it is not`);
  }

  /** `rwlock_needbreak`: someone waits for the lock. */
  contended(): boolean {
    this.clock.fp?.read(R_LOCK_WAITERS);
    return this.waitingWriters > 0 || this.waitingReaders > 0;
  }

  /**
   * The attempt of `read_lock` at its atomic point (the caller has counted the step): take the
   * lock if no writer holds it or waits for it; else register as a waiting reader and return
   * false, and the caller blocks and calls `retryReadLock` once something changed. Without
   * interleaving nobody else can release the lock, so blocking would be a deadlock.
   */
  tryReadLock(ctx: ExecCtx): boolean {
    const fp = this.clock.fp;
    fp?.read(R_LOCK_WRITER);
    if (this.writer === null && this.waitingWriters === 0) {
      fp?.add(R_LOCK_READERS);
      this.readers++;
      ctx.lockMode = 1;
      return true;
    }
    if (!ctx.interleave)
      throw new DeadlockError(`${ctx.name}: read_lock(mmu_lock) would block without interleaving`);
    // A count, read only by `contended`: two readers that queue commute.
    fp?.add(R_LOCK_WAITERS);
    this.waitingReaders++;
    return false;
  }

  /** A waiting reader tries again (one atomic point): true once it holds the lock. */
  retryReadLock(ctx: ExecCtx): boolean {
    this.clock.step++;
    this.clock.fp?.read(R_LOCK_WRITER);
    if (this.writer !== null || this.waitingWriters !== 0) return false;
    this.clock.update(R_LOCK_WAITERS);
    this.clock.fp?.add(R_LOCK_READERS);
    this.waitingReaders--;
    this.readers++;
    ctx.lockMode = 1;
    this.tellWaited("read");
    return true;
  }

  /**
   * `read_lock`: an atomic point of its own, unless `atStepStart`: the attempt belongs to the
   * current atomic point (the caller says why no other task's step between would matter; at an
   * op's start, the task has just yielded).
   */
  *readLock(ctx: ExecCtx, atStepStart = false): Op {
    if (!atStepStart) {
      this.clock.step++;
      if (ctx.interleave) yield;
    }
    if (this.tryReadLock(ctx)) return;
    do yield BLOCKED;
    while (!this.retryReadLock(ctx));
  }

  readUnlock(ctx: ExecCtx): void {
    this.clock.step++;
    this.clock.fp?.add(R_LOCK_READERS);
    this.readers--;
    ctx.lockMode = 0;
    this.lastReleaser = this.clock.task;
  }

  *writeLock(ctx: ExecCtx): Op {
    this.clock.step++;
    if (ctx.interleave) yield;
    const fp = this.clock.fp;
    fp?.read(R_LOCK_READERS);
    fp?.write(R_LOCK_WRITER);
    if (this.writer === null && this.readers === 0) {
      this.writer = ctx;
      ctx.lockMode = 2;
      return;
    }
    if (!ctx.interleave)
      throw new DeadlockError(`${ctx.name}: write_lock(mmu_lock) would block without interleaving`);
    fp?.write(R_LOCK_WAITERS);
    this.waitingWriters++;
    for (;;) {
      yield BLOCKED;
      this.clock.step++;
      this.clock.fp?.read(R_LOCK_READERS);
      this.clock.fp?.read(R_LOCK_WRITER);
      if (this.writer === null && this.readers === 0) break;
    }
    this.clock.touch(R_LOCK_WAITERS);
    this.clock.touch(R_LOCK_WRITER);
    this.waitingWriters--;
    this.writer = ctx;
    ctx.lockMode = 2;
    this.tellWaited("write");
  }

  writeUnlock(ctx: ExecCtx): void {
    this.clock.step++;
    this.clock.touch(R_LOCK_WRITER);
    this.writer = null;
    ctx.lockMode = 0;
    this.lastReleaser = this.clock.task;
  }

  /** The lock's words, recording nothing: for checks, views and tests, between steps. */
  peekState(): RwLockState {
    this.clock.assertBetweenSteps("mmu_lock's words");
    return {
      readers: this.readers,
      writer: this.writer?.name ?? null,
      waitingWriters: this.waitingWriters,
      waitingReaders: this.waitingReaders,
    };
  }
}
