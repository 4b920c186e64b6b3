/**
 * Eager huge-page splitting (`kvm_tdp_mmu_try_split_huge_pages`): replace every huge leaf in a
 * range by a table of small leaves down to `targetLevel`, with no flush (same PFNs, same rights).
 * The walk is pre-order from `targetLevel + 1`, so a 1G leaf becomes 512 2M leaves which are
 * then split in turn. Mirror roots cannot be split (TDX) and are skipped.
 */
import { isLargePte, isShadowPresent } from "../arch/spte.js";
import type { ExecCtx, Op } from "../exec/ctx.js";
import { iterResched, shouldResched } from "./iter-resched.js";
import { KVM_DIRECT_ROOTS } from "./roots.js";
import { TdpIter } from "./tdp-iter.js";
import { tdpMmuSplitHugePage } from "./tdp-map.js";
import type { TdpMmu } from "./tdp-mmu.js";

/** Caller holds `mmu_lock` (read if `shared`, else write) and RCU. Returns leaves split. */
export function* trySplitHugePages(mmu: TdpMmu, ctx: ExecCtx, start: number, end: number, targetLevel: number, shared: boolean): Op<number> {
  let split = 0;
  const iter = new TdpIter(mmu.pool);
  yield* mmu.forEachRoot(KVM_DIRECT_ROOTS, function* (root) {
    for (iter.start(root, targetLevel + 1, start, mmu.rootGfnBits(root)); iter.valid && iter.gfn < end; iter.next()) {
      // retry: a lost cmpxchg goes back through the yield check, as the kernel's `goto retry`.
      for (;;) {
        if (shouldResched(mmu, iter)) {
          yield* iterResched(mmu, ctx, iter, false, shared);
          break;
        }
        if (!isShadowPresent(iter.oldLo) || !isLargePte(iter.oldLo)) break;
        // The kernel allocates with the lock dropped when its caches are empty, then restarts
        // the walk; the pool here never sleeps, so the page is taken in place.
        const child = mmu.allocChildSp(iter);
        mmu.clock.step++;
        if (ctx.interleave) yield;
        if (yield* tdpMmuSplitHugePage(mmu, ctx, iter, child, shared)) {
          split++;
          break;
        }
        mmu.freeUnlinkedSp(child);
      }
    }
  });
  return split;
}
