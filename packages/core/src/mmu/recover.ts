/**
 * Huge-page recovery (`kvm_tdp_mmu_recover_huge_pages`, read lock, v6.13+): when dirty logging
 * stops, a table whose range may again be mapped huge is replaced by one huge leaf built from
 * the first present leaf below it (`make_huge_spte`), atomically. Each root's memslot range is
 * flushed once, at the end of that root, and before any yield that leaves changes unflushed.
 * Mirror roots are recovered apart (`recoverMirrorHugePages`), under the write lock and through
 * the backend, which must merge its own table first.
 */
import { PAGES_PER_LEVEL, KVM_MAX_HUGEPAGE_LEVEL } from "../arch/levels.js";
import { isLastSpte, isShadowPresent, makeHugeSpte, spteToPfn } from "../arch/spte.js";
import type { ExecCtx, Op } from "../exec/ctx.js";
import { runNow, runSteps } from "../exec/step-machine.js";
import { iterResched, shouldResched } from "./iter-resched.js";
import { KvmBug } from "./kvm-bug.js";
import { KVM_DIRECT_ROOTS, KVM_MIRROR_ROOTS, type Root } from "./roots.js";
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
function makeHugeFromChild(
  mmu: TdpMmu,
  iter: TdpIter,
): { lo: number; hi: number } | null | typeof EAGAIN {
  const pool = mmu.pool;
  const find = (slot: number, level: number): { lo: number; hi: number } | null | typeof EAGAIN => {
    for (let i = 0; i < 512; i++) {
      const lo = pool.readSpte(slot, i);
      if (!isShadowPresent(lo)) continue;
      const hi = pool.readHi;
      if (isLastSpte(lo, level))
        return shouldResched(mmu, iter)
          ? EAGAIN
          : makeHugeSpte(lo, hi, PAGES_PER_LEVEL[iter.level]!);
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
export function* recoverHugePages(
  mmu: TdpMmu,
  ctx: ExecCtx,
  start: number,
  end: number,
  maxLevel: (gfn: number) => number,
): Op<number> {
  return yield* mmu.forEachRoot(KVM_DIRECT_ROOTS, 0, (root, recovered) =>
    recoverHugePagesRange(mmu, ctx, root, start, end, maxLevel, recovered),
  );
}

/** `recover_huge_pages_range` in one root: `recovered` so far, returned with this root's added. */
function* recoverHugePagesRange(
  mmu: TdpMmu,
  ctx: ExecCtx,
  root: Root,
  start: number,
  end: number,
  maxLevel: (gfn: number) => number,
  recovered: number,
): Op<number> {
  const iter = new TdpIter(mmu.pool);
  let flush = false;
  for (
    iter.start(root, 2, start, mmu.rootGfnBits(root));
    iter.valid && iter.gfn < end;
    iter.next()
  ) {
    // retry: a lost cmpxchg, or -EAGAIN from make_huge_spte, goes back through the yield
    // check, as the `goto retry` of `recover_huge_pages_range()` in arch/x86/kvm/mmu/tdp_mmu.c.
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
  return recovered;
}

/** `promoteExternalSpt`'s refusal: -EAGAIN, or 11 as a step machine's result. */
const EAGAIN_ERRNO = 11;

/**
 * Huge-page recovery of the mirror roots (`recover` with a backend that can merge its tables:
 * TDX's TDH.MEM.PAGE.PROMOTE). No posted KVM series does this: the TDX huge-page series forbids
 * merging in mirror roots (`disallowed_hugepage_adjust`), and only splits. The model offers it
 * as the module allows it, under the write lock as a split is: a level-2 table inside
 * [start, end) whose 512 entries are 4K leaves over contiguous pages from a 2 MiB-aligned one,
 * where `maxLevel` allows 2M, is offered to the backend; if it merges its own table, the mirror
 * table becomes the huge leaf. The backend may refuse (its leaves are not all in the same state:
 * some accepted, some not), and the table stays. Returns tables merged.
 */
export function* recoverMirrorHugePages(
  mmu: TdpMmu,
  ctx: ExecCtx,
  start: number,
  end: number,
  maxLevel: (gfn: number) => number,
): Op<number> {
  mmu.lock.assertHeldWrite("recover mirror huge pages");
  const backend = mmu.backend;
  if (!backend.promoteExternalSpt) return 0;
  return yield* mmu.forEachRoot(KVM_MIRROR_ROOTS, 0, (root, merged) =>
    recoverMirrorRoot(mmu, ctx, root, start, end, maxLevel, merged),
  );
}

/** `recoverMirrorHugePages` in one mirror root: `merged` so far, returned with this root's added. */
function* recoverMirrorRoot(
  mmu: TdpMmu,
  ctx: ExecCtx,
  root: Root,
  start: number,
  end: number,
  maxLevel: (gfn: number) => number,
  merged: number,
): Op<number> {
  const iter = new TdpIter(mmu.pool);
  for (iter.start(root, 2, start, 0); iter.valid && iter.gfn < end; iter.next()) {
    if (iter.level !== 2 || !isShadowPresent(iter.oldLo) || isLastSpte(iter.oldLo, 2)) continue;
    if (iter.gfn < start || iter.gfn + 512 > end || maxLevel(iter.gfn) < 2) continue;
    const huge = mergeableLeaves(mmu, iter);
    if (huge === null) continue;
    mmu.clock.step++;
    if (ctx.interleave) yield;
    const gfn = iter.gfn;
    const ext = mmu.pool.spExternal[mmu.pool.pfnToSlot(spteToPfn(iter.oldLo, iter.oldHi))]!;
    mmu.mirrorResizeBegin(gfn, 2, false);
    let r: number;
    try {
      const m = mmu.backend.promoteExternalSpt!(mmu.vm, gfn, 2, ext);
      r = typeof m === "number" ? m : -(ctx.interleave ? yield* runSteps(m, ctx) : runNow(m));
    } finally {
      mmu.mirrorResizeEnd();
    }
    mmu.hookEvent("promoteExternalSpt", gfn, 2, r);
    if (r === -EAGAIN_ERRNO) continue;
    if (r !== 0) throw new KvmBug(`promote_external_spt failed (${r}) at gfn ${gfn} level 2`);
    mmu.replaceTableByMergedLeaf(iter, huge.lo, huge.hi);
    merged++;
  }
  return merged;
}

/** The 2M leaf the table under `iter` stands for, if its 512 entries are 4K leaves over contiguous pages from a 2 MiB-aligned one; else null. */
function mergeableLeaves(mmu: TdpMmu, iter: TdpIter): { lo: number; hi: number } | null {
  const pool = mmu.pool;
  const slot = pool.pfnToSlot(spteToPfn(iter.oldLo, iter.oldHi));
  const lo0 = pool.readSpte(slot, 0);
  const hi0 = pool.readHi;
  if (!isShadowPresent(lo0) || !isLastSpte(lo0, 1)) return null;
  const first = spteToPfn(lo0, hi0);
  if (first % 512 !== 0) return null;
  for (let i = 1; i < 512; i++) {
    const lo = pool.readSpte(slot, i);
    if (!isShadowPresent(lo) || !isLastSpte(lo, 1) || spteToPfn(lo, pool.readHi) !== first + i)
      return null;
  }
  return makeHugeSpte(lo0, hi0, PAGES_PER_LEVEL[2]!);
}
