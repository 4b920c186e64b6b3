/**
 * `tdp_mmu_set_spte_atomic` as the fault path and the other read-lock walkers call it, as a
 * step machine (see `exec/step-machine.ts`): one cmpxchg against the iterator's snapshot, or,
 * for a mirror SPTE becoming present, the freeze protocol around the backend hook, or the
 * unsafe split store of `MmuOptions.unsafeNonAtomicSet`.
 *
 * The first step runs in the caller's step (the one that read the entry): the cmpxchg, or the
 * freeze, happens at the same atomic point as the read the decision was made on. The result is
 * 1 when the new value was set, 0 when the race was lost (the snapshot is then refreshed and the
 * caller retries; -EBUSY from the kernel's `tdp_mmu_set_spte_atomic()`).
 *
 * One machine is reused per walker, so a fault allocates nothing.
 */
import { FROZEN_SPTE_HI, FROZEN_SPTE_LO, isShadowPresent } from "../arch/spte.js";
import type { ExecCtx } from "../exec/ctx.js";
import { STEP_YIELD, type StepMachine } from "../exec/step-machine.js";
import type { TdpIter } from "./tdp-iter.js";
import { KvmBug } from "./kvm-bug.js";
import type { TdpMmu } from "./tdp-mmu.js";

const S_FIRST = 0;
/** Mirror, freeze protocol: the entry is FROZEN; next, the backend hook. */
const S_FROZEN_HOOK = 1;
/** Mirror, freeze protocol: the hook returned; next, publish or unfreeze. */
const S_FROZEN_PUBLISH = 2;
/** Mirror, atomic-then-hook: the final value is visible; next, the hook (and a rollback). */
const S_PUBLISHED_HOOK = 3;
/** Unsafe non-atomic store: compared; next, the store. */
const S_UNSAFE_STORE = 4;

export class AtomicSet implements StepMachine {
  private iter!: TdpIter;
  private lo = 0;
  private hi = 0;
  private oldLo = 0;
  private oldHi = 0;
  private state = S_FIRST;
  private hookRet = 0;
  private ctx!: ExecCtx;

  constructor(private readonly mmu: TdpMmu) {}

  /** The entry's value when the set began (what it replaces). */
  get replaced(): number {
    return this.oldLo;
  }

  begin(iter: TdpIter, lo: number, hi: number, ctx: ExecCtx): this {
    this.ctx = ctx;
    this.iter = iter;
    this.lo = lo;
    this.hi = hi;
    this.oldLo = iter.oldLo;
    this.oldHi = iter.oldHi;
    this.state = S_FIRST;
    return this;
  }

  step(): number {
    const mmu = this.mmu;
    const iter = this.iter;
    // Without interleaving, the atomic points are passed straight through.
    for (;;)
      switch (this.state) {
        case S_FIRST: {
          if (iter.root.mirror) {
            assertMirrorSetPresent(iter, this.lo);
            if (mmu.options.strategy === "atomic-then-hook") {
              if (!mmu.setSpteAtomic(iter, this.lo, this.hi)) return 0;
              mmu.mirrorInFlightAdd(iter.gfn, iter.level);
              this.state = S_PUBLISHED_HOOK;
              mmu.clock.step++;
              if (this.ctx.interleave) return STEP_YIELD;
              continue;
            }
            // set_external_spte_present, 1: cmpxchg old → FROZEN. A lost race refreshes the
            // snapshot (the 2026 fix 02eaaffdd865).
            if (!this.compare()) return 0;
            mmu.writeSpte(
              iter.mem,
              iter.off,
              FROZEN_SPTE_LO,
              FROZEN_SPTE_HI,
              iter.tableSlot,
              iter.level,
              iter.gfn,
              "freeze",
            );
            mmu.mirrorInFlightAdd(iter.gfn, iter.level);
            this.state = S_FROZEN_HOOK;
            mmu.clock.step++;
            if (this.ctx.interleave) return STEP_YIELD;
            continue;
          }
          if (mmu.options.unsafeNonAtomicSet) {
            if (!this.compare()) return 0;
            this.state = S_UNSAFE_STORE;
            mmu.clock.step++;
            if (this.ctx.interleave) return STEP_YIELD;
            continue;
          }
          return mmu.setSpteAtomic(iter, this.lo, this.hi) ? 1 : 0;
        }
        case S_FROZEN_HOOK:
          // 2: the backend (`link_external_spt` for a table, `set_external_spte` for a leaf).
          this.hookRet = mmu.callSetHook(iter.gfn, iter.level, this.lo, this.hi);
          this.state = S_FROZEN_PUBLISH;
          mmu.clock.step++;
          if (this.ctx.interleave) return STEP_YIELD;
          continue;
        case S_FROZEN_PUBLISH:
          // 3: this thread owns the frozen entry, so a plain store publishes or rolls back.
          mmu.mirrorInFlightDelete(iter.gfn, iter.level);
          if (this.hookRet !== 0) {
            mmu.writeSpte(
              iter.mem,
              iter.off,
              this.oldLo,
              this.oldHi,
              iter.tableSlot,
              iter.level,
              iter.gfn,
              "unfreeze",
            );
            iter.read();
            return 0;
          }
          mmu.writeSpte(
            iter.mem,
            iter.off,
            this.lo,
            this.hi,
            iter.tableSlot,
            iter.level,
            iter.gfn,
            "publish",
          );
          mmu.handleChangedSpte(
            iter.gfn,
            this.oldLo,
            this.oldHi,
            this.lo,
            this.hi,
            iter.level,
            true,
          );
          return 1;
        case S_PUBLISHED_HOOK: {
          // The unprotected order: walkers may already have used the new entry.
          let ret: number;
          try {
            ret = mmu.callSetHook(iter.gfn, iter.level, this.lo, this.hi);
          } finally {
            mmu.mirrorInFlightDelete(iter.gfn, iter.level);
          }
          if (ret === 0) return 1;
          if (iter.mem[iter.off] === this.lo && iter.mem[iter.off + 1] === this.hi) {
            mmu.writeSpte(
              iter.mem,
              iter.off,
              this.oldLo,
              this.oldHi,
              iter.tableSlot,
              iter.level,
              iter.gfn,
              "rollback",
            );
            mmu.handleChangedSpte(
              iter.gfn,
              this.lo,
              this.hi,
              this.oldLo,
              this.oldHi,
              iter.level,
              true,
            );
          }
          iter.read();
          return 0;
        }
        case S_UNSAFE_STORE:
          // The compare was a step ago: whatever another coroutine stored meanwhile is lost.
          mmu.writeSpte(
            iter.mem,
            iter.off,
            this.lo,
            this.hi,
            iter.tableSlot,
            iter.level,
            iter.gfn,
            "store",
          );
          mmu.handleChangedSpte(
            iter.gfn,
            this.oldLo,
            this.oldHi,
            this.lo,
            this.hi,
            iter.level,
            true,
          );
          return 1;
        default:
          throw new Error(`AtomicSet: bad state ${this.state}`);
      }
  }

  /** Nothing is held across steps: an entry left FROZEN by a failed step is a finding, not a leak to undo. */
  abort(): void {}

  /** The compare half of a cmpxchg; refreshes the snapshot when it fails. */
  private compare(): boolean {
    const iter = this.iter;
    // A step of its own (the unsafe mode's compare comes after the read's step): its read of
    // the entry is recorded whichever way it goes, or a store between the two would commute.
    iter.noteRead();
    if (iter.mem[iter.off] === this.oldLo && iter.mem[iter.off + 1] === this.oldHi) return true;
    iter.read();
    return false;
  }
}

/**
 * An atomic update of a mirror SPTE may only make a non-present entry present: an atomic zap or
 * change of a present mirror SPTE is a KVM_BUG_ON in the kernel (`arch/x86/kvm/mmu/tdp_mmu.c`:
 * `__tdp_mmu_set_spte_atomic()` returns -EBUSY, `set_external_spte_present()`).
 */
function assertMirrorSetPresent(iter: TdpIter, lo: number): void {
  if (isShadowPresent(iter.oldLo) || !isShadowPresent(lo)) {
    throw new KvmBug(
      `atomic update of mirror SPTE at gfn ${iter.gfn} level ${iter.level} from a present value or to a non-present one`,
    );
  }
}
