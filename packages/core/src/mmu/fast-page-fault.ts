/**
 * `fast_page_fault` on a direct root, with only RCU held: the write-protection fix-up that needs
 * no `mmu_lock`.
 */
import { EPT_W, HI_MMU_WRITABLE, isLastSpte, isShadowPresent } from "../arch/spte.js";
import type { ExecCtx, Op } from "../exec/ctx.js";
import { STEP_YIELD, runSteps, type StepMachine } from "../exec/step-machine.js";
import { U32_PER_TABLE } from "../mem/pt-pool.js";
import type { Root } from "./roots.js";
import {
  RET_PF_FIXED,
  RET_PF_INVALID,
  RET_PF_SPURIOUS,
  isAccessAllowed,
  type PageFault,
} from "./tdp-map.js";
import type { TdpIter } from "./tdp-iter.js";
import type { TdpMmu } from "./tdp-mmu.js";

const F_WALK = 0;
const F_FIX = 1;

/**
 * `fast_page_fault` on a direct root, with only RCU held, as a step machine: a write to a leaf
 * that KVM made read-only for dirty logging (MMU-writable set, W clear) gets W back by one
 * cmpxchg against the walk's snapshot, and the page is marked dirty. Huge leaves of a
 * dirty-logged slot are left to the slow path, which splits them. A lost cmpxchg walks again,
 * at most 4 retries. Returns RET_PF_FIXED, RET_PF_SPURIOUS, or RET_PF_INVALID to take the slow
 * path.
 */
export class FastPageFault implements StepMachine {
  private iter!: TdpIter;
  private root!: Root;
  private fault!: PageFault;
  private state = F_WALK;
  private retry = 0;
  /** kvm_tdp_mmu_fast_pf_get_last_sptep: the last SPTE on the way to the GFN, and its snapshot. */
  private mem: Uint32Array | null = null;
  private off = 0;
  private level = 0;
  private table = 0;
  private lo = 0;
  private hi = 0;
  private gfn = 0;
  private ctx!: ExecCtx;

  constructor(private readonly mmu: TdpMmu) {}

  begin(iter: TdpIter, root: Root, fault: PageFault, ctx: ExecCtx): this {
    this.ctx = ctx;
    this.iter = iter;
    this.root = root;
    this.fault = fault;
    this.state = F_WALK;
    this.retry = 0;
    return this;
  }

  step(): number {
    const mmu = this.mmu;
    const fault = this.fault;
    for (;;) {
      if (this.state === F_WALK) {
        if (this.root.mirror) return RET_PF_INVALID;
        const iter = this.iter;
        this.mem = null;
        for (
          iter.start(this.root, 1, fault.gfn, mmu.rootGfnBits(this.root));
          iter.valid && iter.gfn < fault.gfn + 1;
          iter.next()
        ) {
          this.mem = iter.mem;
          this.off = iter.off;
          this.level = iter.level;
          this.table = iter.tableSlot;
          this.lo = iter.oldLo;
          this.hi = iter.oldHi;
          this.gfn = iter.gfn;
        }
        mmu.clock.step++;
        this.state = F_FIX;
        if (this.ctx.interleave) return STEP_YIELD;
        continue;
      }
      const { mem, off, level, lo, hi } = this;
      if (mem === null || !isShadowPresent(lo) || !isLastSpte(lo, level)) return RET_PF_INVALID;
      // Someone fixed it already, or the TLB was stale.
      if (isAccessAllowed(fault, lo)) return RET_PF_SPURIOUS;
      if (!fault.write || (hi & HI_MMU_WRITABLE) === 0) return RET_PF_INVALID;
      if (level > 1 && fault.slot?.dirtyBitmap) return RET_PF_INVALID;
      // fast_pf_fix_direct_spte: one cmpxchg against the snapshot.
      if (
        mmu.pool.readSpte(this.table, (off % U32_PER_TABLE) >>> 1) === lo &&
        mmu.pool.readHi === hi
      ) {
        mmu.writeSpte(mem, off, (lo | EPT_W) >>> 0, hi, this.table, level, this.gfn, "fast-pf");
        fault.slot?.markDirty(fault.gfn);
        return RET_PF_FIXED;
      }
      if (this.retry++ >= 4) return RET_PF_INVALID;
      this.state = F_WALK;
    }
  }

  abort(): void {}
}

/** `fast_page_fault` as a coroutine (tests, callers without a machine of their own). */
export function* fastPageFault(
  mmu: TdpMmu,
  ctx: ExecCtx,
  iter: TdpIter,
  root: Root,
  fault: PageFault,
): Op<number> {
  return yield* runSteps(new FastPageFault(mmu).begin(iter, root, fault, ctx), ctx);
}
