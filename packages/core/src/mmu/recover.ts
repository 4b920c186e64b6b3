/**
 * Huge-page recovery (`kvm_tdp_mmu_recover_huge_pages`, read lock, v6.13+): when dirty logging
 * stops, a table whose range may again be mapped huge is replaced by one huge leaf built from
 * its first present leaf (`make_huge_spte`), atomically; the memslot is flushed once at the end.
 * Mirror roots are skipped: private memory is never mapped huge by the TDP MMU (4K only).
 */
import { PAGES_PER_LEVEL, KVM_MAX_HUGEPAGE_LEVEL } from "../arch/levels.js";
import { isLastSpte, isShadowPresent, makeHugeSpte, spteToPfn } from "../arch/spte.js";
import type { ExecCtx, Op } from "../exec/ctx.js";
import { iterResched, shouldResched } from "./iter-resched.js";
import { validRoots } from "./dirty-log.js";
import { TdpIter } from "./tdp-iter.js";
import type { TdpMmu } from "./tdp-mmu.js";

/**
 * `kvm_tdp_mmu_make_huge_spte`: the first present leaf under the table at `iter` (walking down
 * through present tables), as a huge SPTE for `iter.level`; null if the subtree has no leaf.
 */
function makeHugeFromChild(mmu: TdpMmu, iter: TdpIter): { lo: number; hi: number } | null {
  let slot = mmu.pool.pfnToSlot(spteToPfn(iter.oldLo, iter.oldHi));
  let level = iter.level - 1;
  for (;;) {
    const mem = mmu.pool.tableMem(slot);
    const base = mmu.pool.tableOff(slot);
    let found = -1;
    for (let i = 0; i < 512; i++) {
      if (isShadowPresent(mem[base + 2 * i]!)) {
        found = i;
        break;
      }
    }
    if (found < 0) return null;
    const lo = mem[base + 2 * found]!;
    const hi = mem[base + 2 * found + 1]!;
    if (isLastSpte(lo, level)) return makeHugeSpte(lo, hi, PAGES_PER_LEVEL[iter.level]!);
    slot = mmu.pool.pfnToSlot(spteToPfn(lo, hi));
    level--;
  }
}

/**
 * Caller holds the read lock and RCU. `maxLevel(gfn)` is `kvm_mmu_max_mapping_level` for the
 * slot. Returns how many tables were replaced by huge leaves.
 */
export function* recoverHugePages(mmu: TdpMmu, ctx: ExecCtx, start: number, end: number, maxLevel: (gfn: number) => number): Op<number> {
  let recovered = 0;
  const iter = new TdpIter(mmu.pool);
  for (const root of validRoots(mmu)) {
    if (root.mirror) continue;
    for (iter.start(root, 2, start, mmu.rootGfnBits(root)); iter.valid && iter.gfn < end; iter.next()) {
      if (shouldResched(mmu, iter)) {
        yield* iterResched(mmu, ctx, iter, false, true);
        continue;
      }
      for (;;) {
        if (iter.level > KVM_MAX_HUGEPAGE_LEVEL || !isShadowPresent(iter.oldLo)) break;
        // A leaf that could be huge would have been mapped huge at fault time.
        if (isLastSpte(iter.oldLo, iter.level)) break;
        // The huge page must lie inside the slot.
        if (iter.gfn < start || iter.gfn + PAGES_PER_LEVEL[iter.level]! > end) break;
        if (maxLevel(iter.gfn) < iter.level) break;
        const huge = makeHugeFromChild(mmu, iter);
        if (!huge) break;
        mmu.clock.step++;
        if (ctx.interleave) yield;
        if (mmu.setSpteAtomic(iter, huge.lo, huge.hi)) {
          recovered++;
          break;
        }
      }
    }
  }
  return recovered;
}
