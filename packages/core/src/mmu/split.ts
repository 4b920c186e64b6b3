/**
 * Eager huge-page splitting (`kvm_tdp_mmu_try_split_huge_pages`): replace every huge leaf in a
 * range by a table of small leaves down to `targetLevel`, with no flush (same PFNs, same rights).
 * The walk is pre-order from `targetLevel + 1`, so a 1G leaf becomes 512 2M leaves which are
 * then split in turn. Mirror roots cannot be split (TDX) and are skipped.
 */
import { PAGES_PER_LEVEL } from "../arch/levels.js";
import { isLargePte, isShadowPresent, makeNonleafHi, makeNonleafLo } from "../arch/spte.js";
import type { ExecCtx, Op } from "../exec/ctx.js";
import { iterResched, shouldResched } from "./iter-resched.js";
import { runExternalCalls } from "./external-zap.js";
import { KVM_DIRECT_ROOTS, KVM_MIRROR_ROOTS, type Root } from "./roots.js";
import { TdpIter } from "./tdp-iter.js";
import { fillSplitTable, tdpMmuSplitHugePage } from "./tdp-map.js";
import type { TdpMmu } from "./tdp-mmu.js";

/**
 * `tdp_mmu_split_huge_pages_root` over the direct roots. Caller holds `mmu_lock` (read if
 * `shared`, else write) and RCU. With no page at hand for the next split, the walk drops
 * `mmu_lock` and RCU to allocate one (the allocation may sleep), takes them again and restarts
 * from the root; a page left over at the end is freed. Returns leaves split.
 */
export function* trySplitHugePages(
  mmu: TdpMmu,
  ctx: ExecCtx,
  start: number,
  end: number,
  targetLevel: number,
  shared: boolean,
): Op<number> {
  return yield* mmu.forEachRoot(KVM_DIRECT_ROOTS, 0, (root, split) =>
    splitHugePagesRoot(mmu, ctx, root, start, end, targetLevel, shared, split),
  );
}

/** `tdp_mmu_split_huge_pages_root`: `split` leaves split so far, returned with this root's added. */
function* splitHugePagesRoot(
  mmu: TdpMmu,
  ctx: ExecCtx,
  root: Root,
  start: number,
  end: number,
  targetLevel: number,
  shared: boolean,
  split: number,
): Op<number> {
  const iter = new TdpIter(mmu.pool);
  let sp = -1;
  for (
    iter.start(root, targetLevel + 1, start, mmu.rootGfnBits(root));
    iter.valid && iter.gfn < end;
    iter.next()
  ) {
    // retry: a lost cmpxchg goes back through the yield check, as the `goto retry` of
    // `tdp_mmu_split_huge_pages_root()` in arch/x86/kvm/mmu/tdp_mmu.c.
    for (;;) {
      if (shouldResched(mmu, iter)) {
        yield* iterResched(mmu, ctx, iter, false, shared);
        break;
      }
      if (!isShadowPresent(iter.oldLo) || !isLargePte(iter.oldLo)) break;
      if (sp < 0) {
        sp = yield* allocWithLockDropped(mmu, ctx, shared);
        iter.yielded = true;
        break;
      }
      mmu.initChildSp(sp, iter);
      mmu.clock.step++;
      if (ctx.interleave) yield;
      if (yield* tdpMmuSplitHugePage(mmu, ctx, iter, sp, shared)) {
        split++;
        sp = -1;
        break;
      }
    }
  }
  // Another thread (a vCPU splitting for NX huge pages, say) may have won the last race.
  if (sp >= 0) mmu.freeUnlinkedSp(sp);
  return split;
}

/**
 * `tdp_mmu_alloc_sp_for_split` with `mmu_lock` and RCU dropped around it, as
 * `tdp_mmu_split_huge_pages_root()` (arch/x86/kvm/mmu/tdp_mmu.c) does.
 */
function* allocWithLockDropped(mmu: TdpMmu, ctx: ExecCtx, shared: boolean): Op<number> {
  mmu.rcu.readUnlock(ctx);
  if (shared) mmu.lock.readUnlock(ctx);
  else mmu.lock.writeUnlock(ctx);
  mmu.clock.step++;
  if (ctx.interleave) yield;
  const sp = mmu.allocSpForSplit();
  if (shared) yield* mmu.lock.readLock(ctx);
  else yield* mmu.lock.writeLock(ctx);
  mmu.rcu.readLock(ctx);
  return sp;
}

/**
 * `kvm_split_cross_boundary_leafs` for the mirror roots (the TDX huge-page series), under the
 * write lock: every huge private leaf that straddles `start` or `end` becomes a table of 4K
 * leaves, so that what follows (a zap of [start, end), a smaller mapping the guest accepted)
 * touches only the pages inside. A leaf wholly inside the range stays huge: the zap removes it
 * whole. Each split is a store of the new table, then the backend's `split_external_spte`
 * (TDX: BLOCK, TRACK, DEMOTE). The series takes the new table from a cache it tops up before
 * taking `mmu_lock`; the model allocates it in place. Returns leaves split.
 */
export function* splitCrossBoundaryLeafs(
  mmu: TdpMmu,
  ctx: ExecCtx,
  start: number,
  end: number,
): Op<number> {
  mmu.lock.assertHeldWrite("kvm_split_cross_boundary_leafs");
  if (!mmu.backend.splitExternalSpte) return 0;
  return yield* mmu.forEachRoot(KVM_MIRROR_ROOTS, 0, (root, split) =>
    splitCrossBoundaryRoot(mmu, ctx, root, start, end, split),
  );
}

/** `splitCrossBoundaryLeafs` in one mirror root: `split` so far, returned with this root's added. */
function* splitCrossBoundaryRoot(
  mmu: TdpMmu,
  ctx: ExecCtx,
  root: Root,
  start: number,
  end: number,
  split: number,
): Op<number> {
  const iter = new TdpIter(mmu.pool);
  for (iter.start(root, 2, start, 0); iter.valid && iter.gfn < end; iter.next()) {
    if (!isShadowPresent(iter.oldLo) || !isLargePte(iter.oldLo)) continue;
    const span = PAGES_PER_LEVEL[iter.level]!;
    if (iter.gfn >= start && iter.gfn + span <= end) continue;
    mmu.clock.step++;
    if (ctx.interleave) yield;
    const child = mmu.allocChildSp(iter);
    fillSplitTable(mmu, iter, child);
    const pfn = mmu.pool.slotToPfn(child);
    mmu.setSpte(iter, makeNonleafLo(pfn), makeNonleafHi(pfn));
    yield* runExternalCalls(mmu, ctx);
    // tdp_mmu_split_huge_page: the table and its leaves are accounted once the link (and with
    // it the backend's split) is done.
    mmu.linkedSp(child);
    mmu.stats.pages[iter.level - 1]! += 512;
    split++;
  }
  return split;
}
