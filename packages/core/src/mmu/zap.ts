/**
 * Zapping: leaves of a GFN range (`kvm_tdp_mmu_zap_leafs`, write lock), whole roots
 * (`tdp_mmu_zap_root`), everything (`kvm_tdp_mmu_zap_all`), and the invalidated roots
 * (`kvm_tdp_mmu_zap_invalidated_roots`).
 */
import { type Level } from "../arch/levels.js";
import { maxGfnExclusive } from "../arch/gpa.js";
import {
  SHADOW_NONPRESENT_HI,
  SHADOW_NONPRESENT_LO,
  isLastSpte,
  isShadowPresent,
} from "../arch/spte.js";
import type { ExecCtx, Op } from "../exec/ctx.js";
import { runExternalCalls } from "./external-zap.js";
import { iterResched, shouldResched } from "./iter-resched.js";
import { KVM_DIRECT_ROOTS, KVM_INVALID_ROOTS, KVM_MIRROR_ROOTS, type Root } from "./roots.js";
import { TdpIter } from "./tdp-iter.js";
import { KvmBug, type TdpMmu } from "./tdp-mmu.js";

/** `attr_filter` of a `kvm_gfn_range`: which mappings an invalidation is about. */
export const KVM_FILTER_SHARED = 1;
export const KVM_FILTER_PRIVATE = 2;

/**
 * `kvm_gfn_range_filter_to_root_types`: on a VM with a mirror root, private mappings live there
 * and shared ones in the direct root; elsewhere both live in the direct root.
 */
export function filterToRootTypes(mmu: TdpMmu, filter: number): number {
  if (!mmu.backend.usesMirrorRoot) return KVM_DIRECT_ROOTS;
  let types = 0;
  if (filter & KVM_FILTER_PRIVATE) types |= KVM_MIRROR_ROOTS;
  if (filter & KVM_FILTER_SHARED) types |= KVM_DIRECT_ROOTS;
  return types;
}

/**
 * The leaves one zap made non-present, counted by the zap itself: the MMU's `zappedLeaves` also
 * counts what other tasks zap while this one waits for `mmu_lock` or has dropped it to yield,
 * and no footprint records a read of that statistic.
 */
export class ZapTally {
  leaves = 0;
}

/**
 * `tdp_mmu_zap_leafs` (write lock): make every present leaf in [start, end) non-present; tables
 * stay. Returns whether a TLB flush is due (never for an invalid root: no vCPU uses it).
 */
export function* zapLeafs(
  mmu: TdpMmu,
  ctx: ExecCtx,
  root: Root,
  start: number,
  end: number,
  canYield: boolean,
  flush: boolean,
  tally: ZapTally | null = null,
): Op<boolean> {
  const iter = new TdpIter(mmu.pool);
  for (
    iter.start(root, 1, start, mmu.rootGfnBits(root));
    iter.valid && iter.gfn < end;
    iter.next()
  ) {
    if (canYield && shouldResched(mmu, iter)) {
      yield* iterResched(mmu, ctx, iter, flush, false);
      flush = false;
      continue;
    }
    if (!isShadowPresent(iter.oldLo) || !isLastSpte(iter.oldLo, iter.level)) continue;
    mmu.clock.step++;
    if (ctx.interleave) yield;
    mmu.setSpte(iter, SHADOW_NONPRESENT_LO, SHADOW_NONPRESENT_HI);
    if (tally !== null) tally.leaves++;
    yield* runExternalCalls(mmu, ctx);
    if (!root.invalid) flush = true;
  }
  return flush;
}

/**
 * `kvm_tdp_mmu_unmap_gfn_range` + flush (write lock held by the caller): zap the leaves of
 * [start, end) in every root the filter selects, and in invalid roots (an mmu_notifier or
 * attribute invalidation must reach mappings a vCPU may still use through an invalid root). The
 * flush is of the range, or of the whole VM where the kernel's caller flushes that way
 * (`kvm_handle_gfn_range` for attribute changes, `kvm_mmu_zap_memslot`).
 */
export function* unmapGfnRange(
  mmu: TdpMmu,
  ctx: ExecCtx,
  start: number,
  end: number,
  filter: number,
  reason: string,
  wholeVmFlush = false,
): Op<boolean> {
  return yield* zapLeafsOfRoots(
    mmu,
    ctx,
    filterToRootTypes(mmu, filter) | KVM_INVALID_ROOTS,
    start,
    end,
    reason,
    wholeVmFlush,
  );
}

/**
 * `kvm_tdp_mmu_zap_leafs` + `kvm_zap_gfn_range`'s flush of the range (write lock held by the
 * caller): the leaves of [start, end) in every *valid* root, direct and mirror
 * (`for_each_valid_tdp_mmu_root_yield_safe`). Invalid roots are left to their own zap.
 */
export function* zapLeafsOfValidRoots(
  mmu: TdpMmu,
  ctx: ExecCtx,
  start: number,
  end: number,
  reason: string,
  tally: ZapTally | null = null,
): Op<boolean> {
  return yield* zapLeafsOfRoots(
    mmu,
    ctx,
    KVM_DIRECT_ROOTS | KVM_MIRROR_ROOTS,
    start,
    end,
    reason,
    false,
    tally,
  );
}

function* zapLeafsOfRoots(
  mmu: TdpMmu,
  ctx: ExecCtx,
  types: number,
  start: number,
  end: number,
  reason: string,
  wholeVmFlush: boolean,
  tally: ZapTally | null = null,
): Op<boolean> {
  const flush = yield* mmu.forEachRoot(types, false, (root, flush) =>
    zapLeafs(mmu, ctx, root, start, end, true, flush, tally),
  );
  if (flush) {
    if (wholeVmFlush) mmu.flushRemoteTlbs(0, Infinity, reason);
    else mmu.flushRemoteTlbs(start, end - start, reason);
  }
  return flush;
}

/**
 * `__tdp_mmu_zap_root` at one level: zap every present entry at `zapLevel` (tables included,
 * which tears down everything below them).
 */
function* zapRootAtLevel(
  mmu: TdpMmu,
  ctx: ExecCtx,
  root: Root,
  shared: boolean,
  zapLevel: number,
): Op {
  const iter = new TdpIter(mmu.pool);
  const end = maxGfnExclusive(root.level as Level);
  // `for_each_tdp_pte_min_level_all`: the whole root, with no GFN bits OR'd in (on a direct root
  // of a TDX VM the GFNs seen here include the shared bit).
  for (iter.start(root, zapLevel, 0, 0); iter.valid && iter.gfn < end; iter.next()) {
    // retry: a lost cmpxchg (the snapshot refreshed) goes back through the yield check and the
    // tests, as the `goto retry` of `__tdp_mmu_zap_root()` in arch/x86/kvm/mmu/tdp_mmu.c.
    for (;;) {
      if (shouldResched(mmu, iter)) {
        yield* iterResched(mmu, ctx, iter, false, shared);
        break;
      }
      if (!isShadowPresent(iter.oldLo) || iter.level > zapLevel) break;
      mmu.clock.step++;
      if (ctx.interleave) yield;
      if (!shared) {
        mmu.setSpte(iter, SHADOW_NONPRESENT_LO, SHADOW_NONPRESENT_HI);
        yield* runExternalCalls(mmu, ctx);
        break;
      }
      if (yield* mmu.setSpteAtomicOp(ctx, iter, SHADOW_NONPRESENT_LO, SHADOW_NONPRESENT_HI)) break;
    }
  }
}

/**
 * `tdp_mmu_zap_root`: leaves before tables, in passes at 4K, 2M, 1G and then the root level, so
 * no single step tears down a huge subtree (and, for a mirror root, leaves leave the backend
 * before the tables that hold them). Mirror roots are zapped under the write lock only.
 */
export function* zapRoot(mmu: TdpMmu, ctx: ExecCtx, root: Root, shared: boolean): Op {
  if (root.mirror && shared) throw new KvmBug("mirror root zapped under the shared mmu_lock");
  for (const level of [1, 2, 3, root.level]) yield* zapRootAtLevel(mmu, ctx, root, shared, level);
}

/**
 * `kvm_tdp_mmu_zap_invalidated_roots`: zap each root that `invalidateRoots` scheduled, then drop
 * the MMU's own reference to it. No flush: vCPUs get a fresh root with a local flush.
 */
export function* zapInvalidatedRoots(mmu: TdpMmu, ctx: ExecCtx, shared: boolean): Op {
  for (const root of [...mmu.roots]) {
    if (!root.takeScheduledZap()) continue;
    yield* zapRoot(mmu, ctx, root, shared);
    mmu.putRoot(root);
  }
}

/**
 * `kvm_tdp_mmu_zap_all` (write lock): zap direct and invalid roots; valid mirror roots are left
 * to VM teardown, which zaps them once the backend can reclaim their pages.
 */
export function* zapAll(mmu: TdpMmu, ctx: ExecCtx): Op {
  yield* mmu.forEachRoot(KVM_DIRECT_ROOTS | KVM_INVALID_ROOTS, undefined, (root) =>
    zapRoot(mmu, ctx, root, false),
  );
}
