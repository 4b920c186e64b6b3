/**
 * The TDP fault path below the lock: `kvm_tdp_mmu_map` and
 * `tdp_mmu_map_handle_target_level` (read lock, inside RCU), and the huge-page split the walk may
 * need on the way down. `fast_page_fault` (RCU only, no `mmu_lock`) is in `fast-page-fault.ts`.
 */
import { PAGES_PER_LEVEL } from "../arch/levels.js";
import {
  isFrozen,
  isLargePte,
  isLastSpte,
  isShadowPresent,
  isWritable,
  makeLeafHi,
  makeLeafLo,
  makeNonleafHi,
  makeNonleafLo,
  makeSmallSpteHi,
  makeSmallSpteLo,
  spteToPfn,
} from "../arch/spte.js";
import type { ExecCtx, Op } from "../exec/ctx.js";
import { STEP_YIELD, type StepMachine } from "../exec/step-machine.js";
import type { Memslot } from "../mem/memslots.js";
import type { Root } from "./roots.js";
import { AtomicSet } from "./atomic-set.js";
import { KvmBug } from "./kvm-bug.js";
import type { TdpMmu } from "./tdp-mmu.js";
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

const W_ENTRY = 0;
const W_DECIDE = 1;
const W_SET_LEAF = 2;
const W_SET_LINK = 3;

/**
 * `kvm_tdp_mmu_map` as a step machine (see `exec/step-machine.ts`), under the read lock and
 * RCU: one atomic point per entry the walk reads; at the goal level the leaf is set
 * (`tdp_mmu_map_handle_target_level`); on the way down a missing table is linked and a huge
 * leaf in the way is split. The result is a RET_PF_* code. Each vCPU reuses one walker.
 */
export class MapWalk implements StepMachine {
  private readonly set: AtomicSet;
  private iter!: TdpIter;
  private root!: Root;
  private fault!: PageFault;
  private state = W_ENTRY;
  /** The table being linked, and whether it holds a split huge page. */
  private child = -1;
  private splitting = false;
  private ctx!: ExecCtx;

  constructor(private readonly mmu: TdpMmu) {
    this.set = new AtomicSet(mmu);
  }

  begin(iter: TdpIter, root: Root, fault: PageFault, ctx: ExecCtx): this {
    this.ctx = ctx;
    this.iter = iter;
    this.root = root;
    this.fault = fault;
    this.state = W_ENTRY;
    const bits = this.mmu.rootGfnBits(root);
    // Not interleaving, a 4K fault under a path the last walk took and nothing above level 1
    // has changed since: the upper entries would be read, found present and stepped through,
    // one atomic point each; the iterator jumps to the leaf and the steps are counted.
    if (!ctx.interleave && fault.goalLevel === 1 && iter.startAtLeaf(root, fault.gfn, bits)) {
      this.mmu.clock.step += root.level - 1;
      return this;
    }
    iter.start(root, 1, fault.gfn, bits);
    return this;
  }

  step(): number {
    const mmu = this.mmu;
    const iter = this.iter;
    const fault = this.fault;
    for (;;) {
      switch (this.state) {
        case W_ENTRY:
          if (!iter.valid || iter.gfn >= fault.gfn + 1) {
            // The walk ended above the goal level, e.g. an upper-level SPTE was frozen meanwhile.
            return RET_PF_RETRY;
          }
          // The read of the entry is one atomic point; what follows decides on that snapshot.
          mmu.clock.step++;
          this.state = W_DECIDE;
          // Without interleaving, the atomic points are passed straight through.
          if (this.ctx.interleave) return STEP_YIELD;
          continue;
        case W_DECIDE: {
          if (isFrozen(iter.oldLo, iter.oldHi)) return RET_PF_RETRY;
          // disallowed_hugepage_adjust on a mirror root (the TDX huge-page series): a table
          // already at the goal level is never merged into a huge leaf; the goal goes one down.
          if (
            this.root.mirror &&
            iter.level === fault.goalLevel &&
            iter.level > 1 &&
            isShadowPresent(iter.oldLo) &&
            !isLargePte(iter.oldLo)
          ) {
            fault.pfn +=
              (fault.gfn % PAGES_PER_LEVEL[iter.level]!) -
              (fault.gfn % PAGES_PER_LEVEL[iter.level - 1]!);
            fault.goalLevel--;
          }
          if (iter.level === fault.goalLevel) {
            // A plain cmpxchg needs no step of its own; mirror roots and the unsafe store do.
            if (!this.root.mirror && !mmu.options.unsafeNonAtomicSet)
              return mapHandleTargetLevelAtomic(mmu, iter, fault);
            const pre = targetLevelPrepare(mmu, iter, fault);
            if (pre >= 0) return pre;
            this.set.begin(iter, fault.newLo, fault.newHi, this.ctx);
            this.state = W_SET_LEAF;
            continue;
          }
          // Step down into the lower level table if it exists.
          if (isShadowPresent(iter.oldLo) && !isLargePte(iter.oldLo)) {
            iter.next();
            this.state = W_ENTRY;
            continue;
          }
          // The SPTE is either non-present or a huge page that has to be split.
          const child = mmu.allocChildSp(iter, this.ctx);
          this.child = child;
          this.splitting = isShadowPresent(iter.oldLo);
          if (this.splitting) {
            if (this.root.mirror)
              throw new KvmBug("huge page split on a mirror root in the fault path");
            fillSplitTable(mmu, iter, child);
          }
          const pfn = mmu.pool.slotToPfn(child);
          this.set.begin(iter, makeNonleafLo(pfn), makeNonleafHi(pfn), this.ctx);
          this.state = W_SET_LINK;
          continue;
        }
        case W_SET_LEAF: {
          const r = this.set.step();
          if (r < 0) return r;
          if (r === 0) return RET_PF_RETRY;
          return targetLevelDone(mmu, iter, this.set.replaced, iter.level);
        }
        case W_SET_LINK: {
          const r = this.set.step();
          if (r < 0) return r;
          if (r === 0) {
            mmu.freeUnlinkedSp(this.child);
            return RET_PF_RETRY;
          }
          mmu.linkedSp(this.child);
          if (this.splitting) mmu.stats.pages[iter.level - 1]! += 512;
          iter.next();
          this.state = W_ENTRY;
          continue;
        }
      }
      throw new Error(`MapWalk: bad state ${this.state}`);
    }
  }

  abort(): void {}
}

/** The leaf already allows the access (`is_access_allowed`). */
export function isAccessAllowed(fault: PageFault, lo: number): boolean {
  return fault.write ? isWritable(lo) : true;
}

/**
 * `tdp_mmu_map_handle_target_level`, up to the set: RET_PF_SPURIOUS if the entry already allows
 * the access, else -1 with the new SPTE in `fault.newLo/newHi` (`make_spte`).
 */
function targetLevelPrepare(mmu: TdpMmu, iter: TdpIter, fault: PageFault): number {
  const oldLo = iter.oldLo;
  // A prefetch does not overwrite a present leaf; a table under it is replaced by the huge page.
  if (fault.prefetch && isShadowPresent(oldLo) && isLastSpte(oldLo, iter.level))
    return RET_PF_SPURIOUS;
  if (isShadowPresent(oldLo) && isAccessAllowed(fault, oldLo) && isLastSpte(oldLo, iter.level))
    return RET_PF_SPURIOUS;
  fault.newLo = makeLeafLo(
    fault.pfn,
    iter.level,
    fault.mapWritable,
    fault.prefetch,
    mmu.memtypeBits,
  );
  fault.newHi = makeLeafHi(fault.pfn, fault.mapWritable);
  // make_spte: a writable SPTE in a dirty-logged slot marks its page dirty at once, before the
  // SPTE is even set.
  if (fault.mapWritable) fault.slot!.markDirty(iter.gfn);
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

/** `tdp_mmu_map_handle_target_level` with one cmpxchg, in the step that read the entry. */
function mapHandleTargetLevelAtomic(mmu: TdpMmu, iter: TdpIter, fault: PageFault): number {
  const oldLo = iter.oldLo;
  const level = iter.level;
  const pre = targetLevelPrepare(mmu, iter, fault);
  if (pre >= 0) return pre;
  if (!mmu.setSpteAtomic(iter, fault.newLo, fault.newHi)) return RET_PF_RETRY;
  return targetLevelDone(mmu, iter, oldLo, level);
}

/** The 512 small SPTEs of the huge leaf at `iter`, written into the new table `child` (`make_small_spte`). */
export function fillSplitTable(mmu: TdpMmu, iter: TdpIter, child: number): void {
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
    mmu.writeSpte(
      mem,
      base + 2 * i,
      makeSmallSpteLo(hugeLo, pfn, childLevel),
      makeSmallSpteHi(hugeHi, pfn),
      child,
      childLevel,
      gfn0 + i * per,
      "split",
    );
  }
}

/**
 * `tdp_mmu_split_huge_page`: fill `child` with the 512 small SPTEs of the huge leaf at `iter`,
 * link it in place of the leaf without a flush (same PFNs, same rights), and account 512 pages
 * one level down.
 */
export function* tdpMmuSplitHugePage(
  mmu: TdpMmu,
  ctx: ExecCtx,
  iter: TdpIter,
  child: number,
  shared: boolean,
): Op<boolean> {
  fillSplitTable(mmu, iter, child);
  if (!(yield* mmu.linkSp(ctx, iter, child, shared))) return false;
  mmu.stats.pages[iter.level - 1]! += 512;
  return true;
}
