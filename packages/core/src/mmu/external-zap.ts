/**
 * The backend calls for mirror entries zapped under the write lock, in the kernel's order:
 * `remove_external_spte` for each leaf, then `free_external_spt` for the table that held it.
 *
 * The kernel makes these calls in `arch/x86/kvm/mmu/tdp_mmu.c`, with `mmu_lock` held for write:
 * `tdp_mmu_set_spte()` for a zapped leaf, `handle_removed_pt()` for each entry of a removed
 * table and then the table itself. The model queues them there and the walker runs them right after
 * the store, as a step machine (`begin`): one atomic point per call, and as many as a backend's
 * removal takes, so that a walker that interleaves yields between them and one that does not
 * runs them straight through, with no generator per zapped leaf. TDX's removal takes four:
 * `tdx_sept_remove_private_spte` is TDH.MEM.RANGE.BLOCK, TDH.MEM.TRACK with the kick of every
 * vCPU, TDH.MEM.PAGE.REMOVE and TDH.PHYMEM.PAGE.WBINVD, separate SEAMCALLs between which a vCPU
 * on another CPU can enter the TD, take an EPT violation on the blocked page or ACCEPT it.
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
import { STEP_YIELD, runNow, runSteps, type StepMachine } from "../exec/step-machine.js";
import { KvmBug } from "./kvm-bug.js";
import type { TdpMmu } from "./tdp-mmu.js";

const EXT_REMOVE = 0;
const EXT_FREE = 1;
const EXT_SPLIT = 2;

export class ExternalZaps implements StepMachine {
  /** Pending calls, four numbers each: kind, then gfn, level, pfn (remove), slot (free) or the new table's external page (split). */
  private readonly queue: number[] = [];
  /** The call `step` is at, as an index into `queue`. */
  private next = 0;
  /** The backend's machine of the removal or split at `next`, while it has points left. */
  private removal: StepMachine | null = null;

  constructor(private readonly mmu: TdpMmu) {}

  /** Calls queued by a store whose walker has not run them yet. */
  get pending(): boolean {
    return this.queue.length > 0;
  }

  /** A mirror SPTE was zapped: its old value, if a leaf, leaves the backend (`remove_external_spte`). */
  queueRemove(gfn: number, oldLo: number, oldHi: number, level: number): void {
    const mmu = this.mmu;
    if (!isShadowPresent(oldLo) || !isLastSpte(oldLo, level) || !mmu.backend.removeExternalSpte)
      return;
    // KVM zaps external (S-EPT) entries only with mmu_lock held for write.
    mmu.lock.assertHeldWrite("remove_external_spte");
    mmu.mirrorInFlightAdd(gfn, level);
    this.queue.push(EXT_REMOVE, gfn, level, spteToPfn(oldLo, oldHi));
  }

  /**
   * A mirror huge leaf became a table whose external page is `externalSpt`
   * (`split_external_spte`): until the backend's split is done the entry and its new small
   * leaves are in flight.
   */
  queueSplit(gfn: number, level: number, externalSpt: number): void {
    const mmu = this.mmu;
    mmu.lock.assertHeldWrite("split_external_spte");
    if (!mmu.backend.splitExternalSpte)
      throw new KvmBug(
        `split of a mirror huge leaf at gfn ${gfn} level ${level}: the backend cannot split`,
      );
    mmu.mirrorResizeBegin(gfn, level, true);
    this.queue.push(EXT_SPLIT, gfn, level, externalSpt);
  }

  /** A mirror table was unlinked and its entries queued: its external page follows them. */
  queueFree(slot: number): void {
    this.queue.push(EXT_FREE, slot, 0, 0);
  }

  /**
   * The queued calls as a step machine (`runSteps` or `runNow`): the first runs in the step of
   * the store that queued them, each later one at an atomic point of its own. Ends with 0.
   */
  begin(): this {
    this.next = 0;
    this.removal = null;
    return this;
  }

  step(): number {
    const q = this.queue;
    const mmu = this.mmu;
    for (;;) {
      const i = this.next;
      if (this.removal !== null) {
        const r = this.removal.step();
        if (r < 0) return r;
        this.removal = null;
        // A step machine's result is the errno's magnitude.
        this.done(q[i]!, q[i + 1]!, q[i + 2]!, -r);
      } else if (i >= q.length) {
        q.length = 0;
        return 0;
      } else if (q[i] !== EXT_FREE) {
        mmu.clock.step++;
        const r =
          q[i] === EXT_REMOVE
            ? mmu.backend.removeExternalSpte!(mmu.vm, q[i + 1]!, q[i + 2]! as Level, q[i + 3]!)
            : mmu.backend.splitExternalSpte!(mmu.vm, q[i + 1]!, q[i + 2]! as Level, q[i + 3]!);
        if (typeof r !== "number") {
          // Its first point is this one.
          this.removal = r;
          continue;
        }
        this.done(q[i]!, q[i + 1]!, q[i + 2]!, r);
      } else {
        this.free(q[i + 1]!);
      }
      this.next = i + 4;
      if (this.next < q.length) {
        mmu.clock.step++;
        return STEP_YIELD;
      }
    }
  }

  /** A step threw (a KVM bug): the run is over, nothing queued is left for the next store. */
  abort(): void {
    const q = this.queue;
    for (let i = this.next; i < q.length; i += 4)
      if (q[i] === EXT_SPLIT) this.mmu.mirrorResizeEnd();
    this.removal?.abort();
    this.removal = null;
    this.queue.length = 0;
  }

  /** `remove_external_spte` or `split_external_spte` returned `ret`: a failure is a KVM bug. */
  private done(kind: number, gfn: number, level: number, ret: number): void {
    const mmu = this.mmu;
    if (kind === EXT_REMOVE) mmu.mirrorInFlightDelete(gfn, level);
    else mmu.mirrorResizeEnd();
    const hook = kind === EXT_REMOVE ? "removeExternalSpte" : "splitExternalSpte";
    mmu.hookEvent(hook, gfn, level, ret);
    if (ret !== 0)
      throw new KvmBug(
        `${kind === EXT_REMOVE ? "remove_external_spte" : "split_external_spte"} failed (${ret}) at gfn ${gfn} level ${level}`,
      );
  }

  /**
   * `free_external_spt`, then the table's page after a grace period. On failure the kernel
   * (`handle_removed_pt()` in arch/x86/kvm/mmu/tdp_mmu.c) WARNs, drops its pointer and so leaks the
   * page on purpose (the TDX module may still own it, encrypted); the model counts the leak.
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

/**
 * The walker's side: after a store under the write lock, the backend calls it queued, yielding
 * between their atomic points when the walker interleaves.
 */
export function* runExternalCalls(mmu: TdpMmu, ctx: ExecCtx): Op {
  if (!mmu.externalZaps.pending) return;
  if (ctx.interleave) yield* runSteps(mmu.externalZaps.begin(), ctx);
  else runNow(mmu.externalZaps.begin());
}
