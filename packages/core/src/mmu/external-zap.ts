/**
 * The backend calls for mirror entries zapped under the write lock, in the kernel's order:
 * `remove_external_spte` for each leaf, then `free_external_spt` for the table that held it.
 *
 * The kernel makes these calls inside `handle_changed_spte` and `handle_removed_pt`, with
 * `mmu_lock` held for write. The model queues them there and runs them right after the store,
 * from the walker's coroutine (`run`), so that a backend whose removal takes several atomic
 * points yields between them. TDX's does: `tdx_sept_remove_private_spte` is TDH.MEM.RANGE.BLOCK,
 * TDH.MEM.TRACK with the kick of every vCPU, TDH.MEM.PAGE.REMOVE and TDH.PHYMEM.PAGE.WBINVD,
 * separate SEAMCALLs between which a vCPU on another CPU can enter the TD, take an EPT
 * violation on the blocked page or ACCEPT it.
 *
 * Only the zapping thread reads a mirror table while it holds the write lock, so no task can
 * tell whether child i + 1 is frozen before or after child i's SEAMCALLs: what the others see,
 * the backend's state, changes in the kernel's order. While its calls are pending an entry is
 * "in flight" (`TdpMmu.isMirrorInFlight`), which the backend's invariants allow to differ from
 * the mirror.
 */
import type { Level } from "../arch/levels.js";
import { isLastSpte, isShadowPresent, spteToPfn } from "../arch/spte.js";
import type { ExecCtx, Op } from "../exec/ctx.js";
import { runSteps } from "../exec/step-machine.js";
import { KvmBug } from "./kvm-bug.js";
import type { TdpMmu } from "./tdp-mmu.js";

const EXT_REMOVE = 0;
const EXT_FREE = 1;

export class ExternalZaps {
  /** Pending calls, four numbers each: kind, then gfn, level, pfn (remove) or slot (free). */
  private readonly queue: number[] = [];

  constructor(private readonly mmu: TdpMmu) {}

  /** Calls queued by a store whose walker has not run them yet. */
  get pending(): boolean {
    return this.queue.length > 0;
  }

  /** A mirror SPTE was zapped: its old value, if a leaf, leaves the backend (`remove_external_spte`). */
  queueRemove(gfn: number, oldLo: number, oldHi: number, level: number): void {
    const mmu = this.mmu;
    if (!isShadowPresent(oldLo) || !isLastSpte(oldLo, level) || !mmu.backend.removeExternalSpte) return;
    // KVM zaps external (S-EPT) entries only with mmu_lock held for write.
    mmu.lock.assertHeldWrite("remove_external_spte");
    mmu.mirrorInFlightAdd(gfn, level);
    this.queue.push(EXT_REMOVE, gfn, level, spteToPfn(oldLo, oldHi));
  }

  /** A mirror table was unlinked and its entries queued: its external page follows them. */
  queueFree(slot: number): void {
    this.queue.push(EXT_FREE, slot, 0, 0);
  }

  /**
   * Runs the queued calls, one atomic point each (and as many as the backend's removal takes),
   * the first in the step of the store that queued them.
   */
  *run(ctx: ExecCtx): Op {
    const q = this.queue;
    try {
      for (let i = 0; i < q.length; i += 4) {
        if (i > 0) {
          this.mmu.clock.step++;
          if (ctx.interleave) yield;
        }
        if (q[i] === EXT_REMOVE) yield* this.remove(ctx, q[i + 1]!, q[i + 2]!, q[i + 3]!);
        else this.free(q[i + 1]!);
      }
    } finally {
      q.length = 0;
    }
  }

  /** `remove_external_spte`: a failure is a KVM bug. */
  private *remove(ctx: ExecCtx, gfn: number, level: number, pfn: number): Op {
    const mmu = this.mmu;
    mmu.clock.step++;
    const r = mmu.backend.removeExternalSpte!(mmu.vm, gfn, level as Level, pfn);
    // A step machine's result is the errno's magnitude.
    const ret = typeof r === "number" ? r : -(yield* runSteps(r, ctx));
    mmu.mirrorInFlightDelete(gfn, level);
    mmu.hookEvent("removeExternalSpte", gfn, level, ret);
    if (ret !== 0) throw new KvmBug(`remove_external_spte failed (${ret}) at gfn ${gfn} level ${level}`);
  }

  /**
   * `free_external_spt`, then the table's page after a grace period. On failure the kernel
   * WARNs, drops its pointer and so leaks the page on purpose (the TDX module may still own it,
   * encrypted); the model counts the leak.
   */
  private free(slot: number): void {
    const mmu = this.mmu;
    const pool = mmu.pool;
    let ext = pool.spExternal[slot]!;
    pool.spExternal[slot] = -1;
    if (ext >= 0 && mmu.backend.freeExternalSpt) {
      mmu.clock.step++;
      const level = pool.spLevel[slot]! as Level;
      const gfn = pool.spGfn[slot]!;
      const ret = mmu.backend.freeExternalSpt(mmu.vm, gfn, level, ext);
      mmu.hookEvent("freeExternalSpt", gfn, level, ret);
      if (ret !== 0) {
        mmu.leak(`free_external_spt failed: ${mmu.backend.lastError?.() ?? ret}`);
        if (mmu.events.on) mmu.tableEvent("leak", slot);
        ext = -1;
      }
    }
    mmu.freeAfterGracePeriod(slot, ext);
  }
}
