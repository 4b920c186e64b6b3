/**
 * Huge-page recovery (`kvm_tdp_mmu_recover_huge_pages`, read lock, v6.13+): when dirty logging
 * stops, a table whose range may again be mapped huge is replaced by one huge leaf built from
 * the first present leaf below it (`make_huge_spte`), atomically. Each root's memslot range is
 * flushed once, at the end of that root, and before any yield that leaves changes unflushed.
 * Mirror roots are skipped: private memory is never mapped huge by the TDP MMU (4K only).
 */
import { PAGES_PER_LEVEL, KVM_MAX_HUGEPAGE_LEVEL } from "../arch/levels.js";
import { isLastSpte, isShadowPresent, makeHugeSpte, spteToPfn } from "../arch/spte.js";
import type { ExecCtx, Op } from "../exec/ctx.js";
import { iterResched, shouldResched } from "./iter-resched.js";
import { KVM_DIRECT_ROOTS } from "./roots.js";
import { TdpIter } from "./tdp-iter.js";
import type { TdpMmu } from "./tdp-mmu.js";

/** `tdp_mmu_make_huge_spte`'s -EAGAIN: the walker should yield first. */
const EAGAIN = "EAGAIN";

/**
 * `tdp_mmu_make_huge_spte`: the first present leaf of the subtree under the table at `iter`
 * (pre-order, as `tdp_root_for_each_leaf_pte` walks it), as a huge SPTE for `iter.level`; null
 * if the subtree holds no leaf at all (-ENOENT). When it finds the leaf while the parent walk
 * should yield (`tdp_mmu_iter_need_resched` on the parent, so the progress check is the
 * caller's), EAGAIN: the caller retries, and its yield check yields.
 */
function makeHugeFromChild(mmu: TdpMmu, iter: TdpIter): { lo: number; hi: number } | null | typeof EAGAIN {
  const pool = mmu.pool;
  const find = (slot: number, level: number): { lo: number; hi: number } | null | typeof EAGAIN => {
    for (let i = 0; i < 512; i++) {
      const lo = pool.readSpte(slot, i);
      if (!isShadowPresent(lo)) continue;
      const hi = pool.readHi;
      if (isLastSpte(lo, level)) return shouldResched(mmu, iter) ? EAGAIN : makeHugeSpte(lo, hi, PAGES_PER_LEVEL[iter.level]!);
      const below = find(pool.pfnToSlot(spteToPfn(lo, hi)), level - 1);
      if (below) return below;
    }
    return null;
  };
  return find(pool.pfnToSlot(spteToPfn(iter.oldLo, iter.oldHi)), iter.level - 1);
}

/**
 * Caller holds the read lock and RCU. `maxLevel(gfn)` is `kvm_mmu_max_mapping_level` for the
 * slot, which also keeps huge pages inside it. Returns how many tables were replaced.
 */
export function* recoverHugePages(mmu: TdpMmu, ctx: ExecCtx, start: number, end: number, maxLevel: (gfn: number) => number): Op<number> {
  let recovered = 0;
  const iter = new TdpIter(mmu.pool);
  yield* mmu.forEachRoot(KVM_DIRECT_ROOTS, function* (root) {
    let flush = false;
    for (iter.start(root, 2, start, mmu.rootGfnBits(root)); iter.valid && iter.gfn < end; iter.next()) {
      // retry: a lost cmpxchg, or -EAGAIN from make_huge_spte, goes back through the yield
      // check, as the kernel's `goto retry`.
      for (;;) {
        if (shouldResched(mmu, iter)) {
          yield* iterResched(mmu, ctx, iter, flush, true);
          flush = false;
          break;
        }
        if (iter.level > KVM_MAX_HUGEPAGE_LEVEL || !isShadowPresent(iter.oldLo)) break;
        // A leaf that could be huge would have been mapped huge at fault time.
        if (isLastSpte(iter.oldLo, iter.level)) break;
        // The page for this level overlaps the range but starts outside it.
        if (iter.gfn < start || iter.gfn >= end) break;
        if (maxLevel(iter.gfn) < iter.level) break;
        const huge = makeHugeFromChild(mmu, iter);
        if (huge === EAGAIN) continue;
        if (!huge) break;
        mmu.clock.step++;
        if (ctx.interleave) yield;
        if (yield* mmu.setSpteAtomicOp(ctx, iter, huge.lo, huge.hi)) {
          recovered++;
          flush = true;
          break;
        }
      }
    }
    if (flush) mmu.flushRemoteTlbs(start, end - start, "recover huge pages");
  });
  return recovered;
}
