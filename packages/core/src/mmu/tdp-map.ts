/**
 * The TDP fault path below the lock: `kvm_tdp_mmu_map` and
 * `tdp_mmu_map_handle_target_level` (read lock, inside RCU), the huge-page split the walk may
 * need on the way down, and `fast_page_fault` (RCU only, no `mmu_lock`).
 */
import { PAGES_PER_LEVEL } from "../arch/levels.js";
import {
  EPT_W, HI_MMU_WRITABLE, isFrozen, isLargePte, isLastSpte, isShadowPresent, isWritable,
  makeLeafHi, makeLeafLo, makeSmallSpteHi, makeSmallSpteLo, spteToPfn,
} from "../arch/spte.js";
import type { ExecCtx, Op } from "../exec/ctx.js";
import type { Memslot } from "../mem/memslots.js";
import type { Root } from "./roots.js";
import { KvmBug, type TdpMmu } from "./tdp-mmu.js";
import type { TdpIter } from "./tdp-iter.js";

export const RET_PF_CONTINUE = 0;
export const RET_PF_RETRY = 1;
export const RET_PF_EMULATE = 2;
export const RET_PF_WRITE_PROTECTED = 3;
export const RET_PF_INVALID = 4;
export const RET_PF_FIXED = 5;
export const RET_PF_SPURIOUS = 6;

/** `struct kvm_page_fault`, the parts the TDP MMU reads. Reused per vCPU, never allocated per fault. */
export class PageFault {
  /** GFN without the shared bit (`fault->gfn`). */
  gfn = 0;
  write = false;
  isPrivate = false;
  pfn = 0;
  goalLevel = 1;
  /** The host mapping is writable (`fault->map_writable`). */
  mapWritable = true;
  /** A pre-fault (`KVM_PRE_FAULT_MEMORY`, TDX initial memory): no Accessed bit, no overwrite. */
  prefetch = false;
  /** The SPTE `make_spte` built for the target level. */
  newLo = 0;
  newHi = 0;
  slot: Memslot | null = null;
}

/** `kvm_tdp_mmu_map` */
export function* kvmTdpMmuMap(mmu: TdpMmu, ctx: ExecCtx, iter: TdpIter, root: Root, fault: PageFault): Op<number> {
  const end = fault.gfn + 1;
  const clock = mmu.clock;
  for (iter.start(root, 1, fault.gfn, mmu.rootGfnBits(root)); iter.valid && iter.gfn < end; iter.next()) {
    // The read of the entry is one atomic point; what follows decides on that snapshot.
    clock.step++;
    if (ctx.interleave) yield;
    if (isFrozen(iter.oldLo, iter.oldHi)) return RET_PF_RETRY;
    if (iter.level === fault.goalLevel) {
      // A plain cmpxchg needs no generator; the mirror and the unsafe store take steps of their own.
      if (root.mirror || mmu.options.unsafeNonAtomicSet) return yield* mapHandleTargetLevel(mmu, ctx, iter, fault);
      return mapHandleTargetLevelAtomic(mmu, iter, fault);
    }
    // Step down into the lower level table if it exists.
    if (isShadowPresent(iter.oldLo) && !isLargePte(iter.oldLo)) continue;
    // The SPTE is either non-present or a huge page that has to be split.
    const child = mmu.allocChildSp(iter);
    let ok: boolean;
    if (isShadowPresent(iter.oldLo)) {
      if (root.mirror) throw new KvmBug("huge page split on a mirror root in the fault path");
      ok = yield* tdpMmuSplitHugePage(mmu, ctx, iter, child, true);
    } else {
      ok = yield* mmu.linkSp(ctx, iter, child, true);
    }
    if (!ok) {
      mmu.freeUnlinkedSp(child);
      return RET_PF_RETRY;
    }
  }
  // The walk ended above the goal level, e.g. an upper-level SPTE was frozen meanwhile.
  return RET_PF_RETRY;
}

function isAccessAllowed(fault: PageFault, lo: number): boolean {
  return fault.write ? isWritable(lo) : true;
}

/**
 * `tdp_mmu_map_handle_target_level`, up to the set: RET_PF_SPURIOUS if the entry already allows
 * the access, else -1 with the new SPTE in `fault.newLo/newHi` (`make_spte`).
 */
function targetLevelPrepare(mmu: TdpMmu, iter: TdpIter, fault: PageFault): number {
  const oldLo = iter.oldLo;
  if (fault.prefetch && isShadowPresent(oldLo)) return RET_PF_SPURIOUS;
  if (isShadowPresent(oldLo) && isAccessAllowed(fault, oldLo) && isLastSpte(oldLo, iter.level)) return RET_PF_SPURIOUS;
  fault.newLo = makeLeafLo(fault.pfn, iter.level, fault.mapWritable, fault.prefetch);
  fault.newHi = makeLeafHi(fault.pfn, fault.mapWritable);
  // make_spte: a writable SPTE in a dirty-logged slot marks its page dirty at once, before the
  // SPTE is even set.
  if (fault.mapWritable && fault.slot!.dirtyBitmap) fault.slot!.markDirty(iter.gfn, mmu.clock.fp);
  if (fault.newLo === oldLo && fault.newHi === iter.oldHi) return RET_PF_SPURIOUS;
  return -1;
}

/** After a successful set: replacing a table by a huge page needs a flush of its range. */
function targetLevelDone(mmu: TdpMmu, iter: TdpIter, oldLo: number, level: number): number {
  if (isShadowPresent(oldLo) && !isLastSpte(oldLo, level)) {
    mmu.flushRemoteTlbs(iter.gfn, PAGES_PER_LEVEL[level]!, "replace table by huge page");
  }
  return RET_PF_FIXED;
}

/** `tdp_mmu_map_handle_target_level` with the set as its own step(s) (mirror roots, unsafe store). */
function* mapHandleTargetLevel(mmu: TdpMmu, ctx: ExecCtx, iter: TdpIter, fault: PageFault): Op<number> {
  const oldLo = iter.oldLo;
  const level = iter.level;
  const pre = targetLevelPrepare(mmu, iter, fault);
  if (pre >= 0) return pre;
  if (!(yield* mmu.setSpteAtomicOp(ctx, iter, fault.newLo, fault.newHi))) return RET_PF_RETRY;
  return targetLevelDone(mmu, iter, oldLo, level);
}

/** `tdp_mmu_map_handle_target_level` with one cmpxchg, in the step that read the entry. */
function mapHandleTargetLevelAtomic(mmu: TdpMmu, iter: TdpIter, fault: PageFault): number {
  const oldLo = iter.oldLo;
  const level = iter.level;
  const pre = targetLevelPrepare(mmu, iter, fault);
  if (pre >= 0) return pre;
  if (!mmu.setSpteAtomic(iter, fault.newLo, fault.newHi)) return RET_PF_RETRY;
  return targetLevelDone(mmu, iter, oldLo, level);
}

/**
 * `tdp_mmu_split_huge_page`: fill `child` with the 512 small SPTEs of the huge leaf at `iter`
 * (`make_small_spte`), link it in place of the leaf without a flush (same PFNs, same rights),
 * and account 512 pages one level down.
 */
export function* tdpMmuSplitHugePage(mmu: TdpMmu, ctx: ExecCtx, iter: TdpIter, child: number, shared: boolean): Op<boolean> {
  const hugeLo = iter.oldLo;
  const hugeHi = iter.oldHi;
  const childLevel = iter.level - 1;
  const per = PAGES_PER_LEVEL[childLevel]!;
  const pool = mmu.pool;
  const mem = pool.tableMem(child);
  const base = pool.tableOff(child);
  const gfn0 = iter.gfn;
  const pfn0 = spteToPfn(hugeLo, hugeHi);
  for (let i = 0; i < 512; i++) {
    const pfn = pfn0 + i * per;
    mmu.writeSpte(mem, base + 2 * i, makeSmallSpteLo(hugeLo, pfn, childLevel), makeSmallSpteHi(hugeHi, pfn), child, childLevel, gfn0 + i * per, "split");
  }
  if (!(yield* mmu.linkSp(ctx, iter, child, shared))) return false;
  mmu.stats.pages[childLevel]! += 512;
  return true;
}

/**
 * `fast_page_fault` on a direct root, with only RCU held: a write to a leaf that KVM made
 * read-only for dirty logging (MMU-writable set, W clear) gets W back by one cmpxchg against
 * the walk's snapshot, and the page is marked dirty. Huge leaves of a dirty-logged slot are left
 * to the slow path, which splits them. A lost cmpxchg walks again, at most 4 retries. Returns
 * RET_PF_FIXED, RET_PF_SPURIOUS, or RET_PF_INVALID to take the slow path.
 */
export function* fastPageFault(mmu: TdpMmu, ctx: ExecCtx, iter: TdpIter, root: Root, fault: PageFault): Op<number> {
  if (root.mirror) return RET_PF_INVALID;
  const clock = mmu.clock;
  for (let retry = 0; ; retry++) {
    // kvm_tdp_mmu_fast_pf_get_last_sptep: the last SPTE on the way to the GFN, and its snapshot.
    let mem: Uint32Array | null = null;
    let off = 0, level = 0, table = 0, lo = 0, hi = 0, gfn = 0;
    for (iter.start(root, 1, fault.gfn, mmu.rootGfnBits(root)); iter.valid && iter.gfn < fault.gfn + 1; iter.next()) {
      mem = iter.mem;
      off = iter.off;
      level = iter.level;
      table = iter.tableSlot;
      lo = iter.oldLo;
      hi = iter.oldHi;
      gfn = iter.gfn;
    }
    clock.step++;
    if (ctx.interleave) yield;
    if (mem === null || !isShadowPresent(lo) || !isLastSpte(lo, level)) return RET_PF_INVALID;
    // Someone fixed it already, or the TLB was stale.
    if (isAccessAllowed(fault, lo)) return RET_PF_SPURIOUS;
    if (!fault.write || (hi & HI_MMU_WRITABLE) === 0) return RET_PF_INVALID;
    if (level > 1 && fault.slot?.dirtyBitmap) return RET_PF_INVALID;
    const newLo = (lo | EPT_W) >>> 0;
    // fast_pf_fix_direct_spte: one cmpxchg against the snapshot.
    mmu.pool.fp?.read(table * 512 + ((off % 1024) >>> 1));
    if (mem[off] === lo && mem[off + 1] === hi) {
      mmu.writeSpte(mem, off, newLo, hi, table, level, gfn, "fast-pf");
      fault.slot?.markDirty(fault.gfn, mmu.clock.fp);
      return RET_PF_FIXED;
    }
    if (retry >= 4) return RET_PF_INVALID;
  }
}
