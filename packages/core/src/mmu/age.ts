/**
 * Aging for the host's page reclaim (`kvm_tdp_mmu_age_gfn_range`, `kvm_tdp_mmu_test_age_gfn`):
 * with A/D bits on, clear the Accessed bit of each leaf and report whether any was young. It
 * runs under RCU only, without `mmu_lock`: the atomic bit clear cannot corrupt a concurrent
 * update. Only valid roots holding shared mappings are aged (the notifier's filter); private
 * memory is not reclaimable this way.
 */
import { SPTE_ACCESSED, isLastSpte, isShadowPresent } from "../arch/spte.js";
import type { ExecCtx, Op } from "../exec/ctx.js";
import { TdpIter } from "./tdp-iter.js";
import type { TdpMmu } from "./tdp-mmu.js";
import { KVM_FILTER_SHARED, filterToRootTypes } from "./zap.js";

/**
 * Returns how many young leaves were found and cleared; with `testOnly` (test_age), 1 at the
 * first young leaf and nothing cleared, else 0.
 */
export function* ageGfnRange(
  mmu: TdpMmu,
  ctx: ExecCtx,
  start: number,
  end: number,
  testOnly: boolean,
): Op<number> {
  let young = 0;
  const iter = new TdpIter(mmu.pool);
  mmu.rcu.readLock(ctx);
  try {
    for (const root of mmu.rootsOfTypes(filterToRootTypes(mmu, KVM_FILTER_SHARED))) {
      for (
        iter.start(root, 1, start, mmu.rootGfnBits(root));
        iter.valid && iter.gfn < end;
        iter.next()
      ) {
        if (!isShadowPresent(iter.oldLo) || !isLastSpte(iter.oldLo, iter.level)) continue;
        if ((iter.oldLo & SPTE_ACCESSED) === 0) continue;
        if (testOnly) return 1;
        young++;
        mmu.clock.step++;
        if (ctx.interleave) yield;
        // An atomic fetch-and on the live entry, not a cmpxchg on the snapshot.
        const lo = (iter.mem[iter.off]! & ~SPTE_ACCESSED) >>> 0;
        mmu.writeSpte(
          iter.mem,
          iter.off,
          lo,
          iter.mem[iter.off + 1]!,
          iter.tableSlot,
          iter.level,
          iter.gfn,
          "age",
        );
      }
    }
  } finally {
    mmu.rcu.readUnlock(ctx);
  }
  return young;
}
