/**
 * `kvm->mmu_lock` as an rwlock in the model. Readers share it, a writer excludes everyone. Like
 * the kernel's queued rwlock, a waiting writer stops new readers from entering, so a zap is not
 * starved by a stream of faults. A coroutine that cannot take the lock yields until it can; a
 * coroutine that runs without interleaving and finds the lock taken is a deadlock in the model.
 */
import type { Clock } from "./clock.js";
import type { ExecCtx, Op } from "./ctx.js";

export class DeadlockError extends Error {}

export class RwLock {
  readers = 0;
  writer: ExecCtx | null = null;
  waitingWriters = 0;
  waitingReaders = 0;

  constructor(private readonly clock: Clock) {}

  /** `rwlock_needbreak`: someone waits for the lock. */
  contended(): boolean {
    return this.waitingWriters > 0 || this.waitingReaders > 0;
  }

  *readLock(ctx: ExecCtx): Op {
    this.clock.step++;
    if (ctx.interleave) yield;
    if (this.writer === null && this.waitingWriters === 0) {
      this.readers++;
      ctx.lockMode = 1;
      return;
    }
    if (!ctx.interleave) throw new DeadlockError(`${ctx.name}: read_lock(mmu_lock) would block without interleaving`);
    this.waitingReaders++;
    while (this.writer !== null || this.waitingWriters > 0) {
      yield;
      this.clock.step++;
    }
    this.waitingReaders--;
    this.readers++;
    ctx.lockMode = 1;
  }

  readUnlock(ctx: ExecCtx): void {
    this.clock.step++;
    this.readers--;
    ctx.lockMode = 0;
  }

  *writeLock(ctx: ExecCtx): Op {
    this.clock.step++;
    if (ctx.interleave) yield;
    if (this.writer === null && this.readers === 0) {
      this.writer = ctx;
      ctx.lockMode = 2;
      return;
    }
    if (!ctx.interleave) throw new DeadlockError(`${ctx.name}: write_lock(mmu_lock) would block without interleaving`);
    this.waitingWriters++;
    while (this.writer !== null || this.readers > 0) {
      yield;
      this.clock.step++;
    }
    this.waitingWriters--;
    this.writer = ctx;
    ctx.lockMode = 2;
  }

  writeUnlock(ctx: ExecCtx): void {
    this.clock.step++;
    this.writer = null;
    ctx.lockMode = 0;
  }
}
