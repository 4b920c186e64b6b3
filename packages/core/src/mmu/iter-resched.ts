/**
 * `tdp_mmu_iter_cond_resched`: a long walk drops `mmu_lock` (and RCU) when someone waits for
 * the lock, but only after forward progress (`nextLastLevelGfn != yieldedGfn`), so two walkers
 * cannot keep each other from finishing. After the yield the iterator restarts from the root.
 * The model has no `need_resched()`: only lock contention makes a walker yield.
 */
import type { ExecCtx, Op } from "../exec/ctx.js";
import type { TdpIter } from "./tdp-iter.js";
import type { TdpMmu } from "./tdp-mmu.js";

/** The cheap test, done inline on every step so that no generator is created per entry. */
export function shouldResched(mmu: TdpMmu, iter: TdpIter): boolean {
  return iter.nextLastLevelGfn !== iter.yieldedGfn && mmu.lock.contended();
}

export function* iterResched(
  mmu: TdpMmu,
  ctx: ExecCtx,
  iter: TdpIter,
  flush: boolean,
  shared: boolean,
): Op {
  if (flush) mmu.flushRemoteTlbs(0, Infinity, "yield");
  mmu.rcu.readUnlock(ctx);
  if (shared) {
    mmu.lock.readUnlock(ctx);
    yield* mmu.lock.readLock(ctx);
  } else {
    mmu.lock.writeUnlock(ctx);
    yield* mmu.lock.writeLock(ctx);
  }
  mmu.rcu.readLock(ctx);
  iter.yielded = true;
}
