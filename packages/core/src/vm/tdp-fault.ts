/**
 * `kvm_tdp_page_fault` as a step machine (see `exec/step-machine.ts`), one per vCPU and reused
 * for every fault, so the fault path allocates nothing: the checks against memslots and memory
 * attributes, `fast_page_fault` (RCU only), then the slow path: `kvm_faultin_pfn` (with the
 * backend's gmem prepare), `kvm_mmu_hugepage_adjust`, the read lock, the staleness check and
 * `kvm_tdp_mmu_map`. The result is a RET_PF_* code.
 */
import { gfnWithoutDirectBits, gpaToGfn } from "../arch/gpa.js";
import { gfnOffsetInLevel, type Level } from "../arch/levels.js";
import type { FaultResult } from "../events/events.js";
import { STEP_BLOCKED, STEP_YIELD, type StepMachine } from "../exec/step-machine.js";
import { faultinMaxLevel, hugepageAdjust } from "../mmu/max-level.js";
import type { Root } from "../mmu/roots.js";
import { FastPageFault } from "../mmu/fast-page-fault.js";
import {
  MapWalk,
  RET_PF_EMULATE,
  RET_PF_FIXED,
  RET_PF_INVALID,
  RET_PF_RETRY,
  RET_PF_SPURIOUS,
} from "../mmu/tdp-map.js";
import { PT64_ROOT_MAX_LEVEL } from "../mem/pt-pool.js";
import { OpError } from "./op-error.js";
import type { Vcpu, Vm } from "./vm.js";

/** Not a kernel RET_PF_*: the fault exits to userspace with `KVM_EXIT_MEMORY_FAULT`. */
export const RET_PF_MEMORY_FAULT_EXIT = 100;

const P_START = 0;
/** `fast_page_fault` under RCU. */
const P_FAST = 1;
/** `kvm_faultin_pfn` and the slow path up to the lock. */
const P_FAULTIN = 2;
/** The backend prepares a gmem page before its first mapping. */
const P_PREPARE = 3;
/** `read_lock(&kvm->mmu_lock)`: the attempt, and the retries of a blocked reader. */
const P_LOCK = 4;
const P_LOCK_WAIT = 5;
/** `kvm_tdp_mmu_map` under the read lock and RCU. */
const P_MAP = 6;
/** Waiting for the folio lock another fault holds while it prepares the page. */
const P_FAULTIN_WAIT = 7;

/**
 * What `faultin` found besides RET_PF_RETRY: go on to the lock, prepare the gmem page first, or
 * wait for another fault's prepare of the page (its folio lock).
 */
const FAULTIN_DONE = -1;
const FAULTIN_PREPARE = -2;
const FAULTIN_WAIT = -3;

function faultResult(r: number): FaultResult {
  switch (r) {
    case RET_PF_FIXED:
      return "fixed";
    case RET_PF_SPURIOUS:
      return "spurious";
    case RET_PF_RETRY:
      return "retry";
    case RET_PF_EMULATE:
      return "emulate";
    case RET_PF_MEMORY_FAULT_EXIT:
      return "memory-fault-exit";
    default:
      return "write-protected";
  }
}

export class TdpFault implements StepMachine {
  private readonly map: MapWalk;
  private readonly fast: FastPageFault;
  private state = P_START;
  private gpa = 0;
  private present = false;
  private root!: Root;
  /** `fault->mmu_seq`, sampled before the PFN is looked up. */
  private mmuSeq = 0;
  private pfn = 0;
  /** `fault->max_level` after faultin: the folio's and the backend's bound (see `adjust`). */
  private maxLevel: Level = 1;
  /** What this fault holds, for `abort`. */
  private holdsRcu = false;
  private holdsLock = false;
  /** The gmem page whose folio this fault holds locked for its prepare, or -1. */
  private preparing = -1;
  /** Woken from the folio lock: `faultin` goes on at the folio (`faultinPfn`). */
  private resumed = false;

  constructor(
    private readonly vm: Vm,
    private readonly vcpu: Vcpu,
  ) {
    this.map = new MapWalk(vm.mmu);
    this.fast = new FastPageFault(vm.mmu);
  }

  /** A new fault at `gpa`; `present` is the exit qualification's "GPA was mapped". */
  begin(
    gpa: number,
    write: boolean,
    privateAccess: boolean,
    prefetch: boolean,
    present: boolean,
  ): this {
    const fault = this.vcpu.fault;
    fault.write = write;
    fault.isPrivate = privateAccess;
    fault.prefetch = prefetch;
    this.gpa = gpa;
    this.present = present;
    this.state = P_START;
    return this;
  }

  step(): number {
    const vm = this.vm;
    const mmu = vm.mmu;
    const vcpu = this.vcpu;
    const ctx = vcpu.ctx;
    const fault = vcpu.fault;
    for (;;) {
      switch (this.state) {
        case P_START: {
          const r = this.start();
          if (r !== RET_PF_INVALID) return this.end(r);
          // page_fault_can_be_fast: with A/D bits on, only a write to a present translation can
          // be fixed without mmu_lock (the exit qualification says whether the GPA was mapped).
          // It walks the direct root only, so private faults of a mirror-root VM never take it.
          // page_fault_can_be_fast's own (racy) look at the memslot and attributes, last, so that
          // only a fault that could be fast reads them: a mismatch takes the slow path.
          if (
            fault.write &&
            this.present &&
            !fault.prefetch &&
            !(fault.isPrivate && vm.backend.usesMirrorRoot) &&
            fault.slot !== null &&
            vm.attributes.isPrivate(fault.gfn) === fault.isPrivate
          ) {
            mmu.rcu.readLock(ctx);
            this.holdsRcu = true;
            this.fast.begin(vcpu.iter, this.root, fault, ctx);
            this.state = P_FAST;
            continue;
          }
          this.state = P_FAULTIN;
          continue;
        }
        case P_FAST: {
          const r = this.fast.step();
          if (r < 0) return r;
          mmu.rcu.readUnlock(ctx);
          this.holdsRcu = false;
          if (r !== RET_PF_INVALID) return this.end(r);
          this.state = P_FAULTIN;
          continue;
        }
        case P_FAULTIN: {
          const r = this.resumed ? this.faultinPfn() : this.faultin();
          this.resumed = false;
          if (r === RET_PF_RETRY || r === RET_PF_MEMORY_FAULT_EXIT || r === RET_PF_EMULATE)
            return this.end(r);
          // Blocked on the folio lock: the folio is tried again once something has changed.
          // Alone, no other fault can hold it.
          if (r === FAULTIN_WAIT) {
            if (!ctx.interleave)
              throw new Error(
                `TdpFault: gfn 0x${fault.gfn.toString(16)} is being prepared, but nothing else runs`,
              );
            this.state = P_FAULTIN_WAIT;
            return STEP_BLOCKED;
          }
          // Either way an atomic point follows: the gmem prepare, or the step of read_lock.
          this.state = r === FAULTIN_PREPARE ? P_PREPARE : P_LOCK;
          if (ctx.interleave) return STEP_YIELD;
          continue;
        }
        case P_FAULTIN_WAIT:
          // Another try for the folio lock is an atomic point of its own, as a retried read_lock.
          // kvm_gmem_get_pfn slept inside kvm_mmu_faultin_pfn: the fault goes on from the folio
          // with the sequence it sampled before, not from a new snapshot.
          mmu.clock.step++;
          this.resumed = true;
          this.state = P_FAULTIN;
          continue;
        case P_PREPARE: {
          const ret = vm.backend.gmemPrepare!(vm, fault.gfn, this.pfn);
          mmu.hookEvent("gmemPrepare", fault.gfn, 1, ret);
          // The folio is unlocked: a fault waiting for it goes on.
          this.endPrepare();
          if (ret !== 0) {
            // kvm_gmem_prepare_folio marks the folio up to date only on success, so a later
            // fault prepares again. A simplification: here this fault retries, where the kernel
            // returns the errno from KVM_RUN (kvm_mmu_faultin_pfn_private) and QEMU stops the
            // VM; the model has no stopped VM to end every program in.
            fault.slot!.gmem!.discard(fault.gfn - fault.slot!.baseGfn);
            return this.end(RET_PF_RETRY);
          }
          // kvm_mmu_faultin_pfn checks again once the PFN is in, to spare contending mmu_lock.
          if (mmu.invalidateRetryGfn(this.mmuSeq, fault.gfn)) return this.end(RET_PF_RETRY);
          this.adjust();
          this.state = P_LOCK;
          if (ctx.interleave) return STEP_YIELD;
          continue;
        }
        case P_LOCK:
          if (!mmu.lock.tryReadLock(ctx)) {
            this.state = P_LOCK_WAIT;
            return STEP_BLOCKED;
          }
          this.state = P_MAP;
          if (!this.locked()) return this.end(RET_PF_RETRY);
          continue;
        case P_LOCK_WAIT:
          if (!mmu.lock.retryReadLock(ctx)) return STEP_BLOCKED;
          this.state = P_MAP;
          if (!this.locked()) return this.end(RET_PF_RETRY);
          continue;
        case P_MAP: {
          const r = this.map.step();
          if (r < 0) return r;
          mmu.rcu.readUnlock(ctx);
          this.holdsRcu = false;
          mmu.lock.readUnlock(ctx);
          this.holdsLock = false;
          return this.end(r);
        }
      }
      throw new Error(`TdpFault: bad state ${this.state}`);
    }
  }

  abort(): void {
    const mmu = this.vm.mmu;
    if (this.holdsRcu) mmu.rcu.readUnlock(this.vcpu.ctx);
    if (this.holdsLock) mmu.lock.readUnlock(this.vcpu.ctx);
    this.holdsRcu = false;
    this.holdsLock = false;
    this.vm.srcu.readUnlock(this.vcpu.id);
    this.endPrepare();
  }

  /** Unlocks the folio this fault locked for its prepare, if any. */
  private endPrepare(): void {
    if (this.preparing < 0) return;
    this.vcpu.fault.slot!.gmem!.endPrepare(this.preparing);
    this.preparing = -1;
  }

  /**
   * Before any table is looked at: the GFN without the shared bit and its memslot. Whether the
   * access matches the memory attributes, and a fault with no memslot, are `faultin`'s, after its
   * snapshot of the invalidation sequence; here a mismatch or a missing memslot only keeps the
   * fault off the fast path (`page_fault_can_be_fast`). RET_PF_INVALID means "go on".
   */
  private start(): number {
    const vm = this.vm;
    const mmu = vm.mmu;
    const vcpu = this.vcpu;
    const fault = vcpu.fault;
    mmu.stats.faults++;
    const gfn = gfnWithoutDirectBits(gpaToGfn(this.gpa), mmu.gfnDirectBits);
    fault.gfn = gfn;
    // The fault runs inside kvm->srcu: a memslot update waits for it before acting on new flags.
    vm.srcu.readLock(vcpu.id);
    const slot = vm.memslots.find(gfn);
    fault.slot = slot;
    this.root = fault.isPrivate && vm.backend.usesMirrorRoot ? vcpu.mirrorRoot! : vcpu.root!;
    return RET_PF_INVALID;
  }

  /**
   * `kvm_mmu_faultin_pfn`: the PFN from guest_memfd (private) or the host mapping (shared).
   * FAULTIN_PREPARE if the backend must prepare the gmem page first, which is an atomic point of
   * its own; RET_PF_RETRY if an invalidation of the GFN is already under way
   * (`mmu_invalidate_retry_gfn_unsafe`, before the PFN is looked up); else the goal level is
   * computed at once and FAULTIN_DONE returned.
   */
  private faultin(): number {
    const vm = this.vm;
    const mmu = vm.mmu;
    const fault = this.vcpu.fault;
    // The snapshot of the invalidation sequence comes first: a conversion that changes the
    // attributes after it is an invalidation is_page_fault_stale sees, and one before it is seen
    // by the check below (kvm_mmu_faultin_pfn: "Now that we have a snapshot of
    // mmu_invalidate_seq we can check for a private vs. shared mismatch").
    this.mmuSeq = mmu.invalidateSeq;
    // An access that does not match the attributes exits to userspace
    // (kvm_mmu_prepare_memory_fault_exit), memslot or not.
    if (vm.attributes.isPrivate(fault.gfn) !== fault.isPrivate) {
      mmu.stats.memoryFaultExits++;
      return RET_PF_MEMORY_FAULT_EXIT;
    }
    const slot = fault.slot;
    if (slot === null) {
      // kvm_handle_noslot_fault: a private access to no memslot exits to userspace too; a
      // shared one is emulated MMIO. A simplification: the model has no MMIO SPTEs, as with
      // `enable_mmio_caching=0`, so each such access exits and no table is made for it. The
      // kernel refuses TDX and SEV-ES without MMIO caching: there the fault takes mmu_lock,
      // links the tables down to the GFN and installs an MMIO SPTE (`make_mmio_spte`), and the
      // guest's next access takes an EPT misconfiguration (TDX: a #VE) without this path.
      if (fault.isPrivate) {
        mmu.stats.memoryFaultExits++;
        return RET_PF_MEMORY_FAULT_EXIT;
      }
      mmu.stats.mmioExits++;
      return RET_PF_EMULATE;
    }
    // A memslot being deleted: retry (its SPTEs are zapped before it goes), or, for a pre-fault,
    // fail (-EAGAIN: prefaulting promises no forward progress).
    if (slot.invalid) {
      if (fault.prefetch)
        throw new OpError(
          `pre-fault of GFN 0x${fault.gfn.toString(16)}: its memslot is being deleted (-EAGAIN)`,
        );
      return RET_PF_RETRY;
    }
    if (mmu.invalidateRetryGfn(this.mmuSeq, fault.gfn)) return RET_PF_RETRY;
    return this.faultinPfn();
  }

  /**
   * The rest of `kvm_mmu_faultin_pfn`, from `__kvm_mmu_faultin_pfn` on: the PFN, and for a
   * private page its folio, whose lock a fault that prepares the page holds. A fault that waited
   * for that lock (`resumed`) goes on here with the sequence it sampled before the wait, and
   * checks it once more (`mmu_invalidate_retry_gfn_unsafe` after the PFN is in); without a wait
   * nothing can have changed since the same check in `faultin`, in the same atomic step.
   */
  private faultinPfn(): number {
    const vm = this.vm;
    const mmu = vm.mmu;
    const fault = this.vcpu.fault;
    const slot = fault.slot!;
    const pgoff = fault.gfn - slot.baseGfn;
    if (fault.isPrivate) {
      const gmem = slot.gmem!;
      this.pfn = gmem.getPfn(pgoff);
      fault.mapWritable = true;
      // The folio lock: while another fault prepares this page, wait for it (then the page is
      // prepared, or its prepare failed and this fault prepares it).
      if (gmem.isPreparing(pgoff)) return FAULTIN_WAIT;
      // The page counts as prepared from here; its folio stays locked until the prepare step.
      if (gmem.testAndSetPrepared(pgoff) && vm.backend.gmemPrepare) {
        gmem.beginPrepare(pgoff);
        this.preparing = pgoff;
        mmu.clock.step++;
        return FAULTIN_PREPARE;
      }
    } else {
      this.pfn = slot.shared.getPfn(pgoff);
      fault.mapWritable = !slot.flags.readonly;
    }
    if (this.resumed && mmu.invalidateRetryGfn(this.mmuSeq, fault.gfn)) return RET_PF_RETRY;
    this.adjust();
    return FAULTIN_DONE;
  }

  /**
   * The end of `kvm_mmu_faultin_pfn`: the bound the folio and the backend put on the level
   * (`hugepageAdjust` finishes it under the lock); then `mmu_topup_memory_caches` (the vCPU's
   * cache of table pages holds enough for a full walk, before taking the lock), then the step of
   * `read_lock`.
   */
  private adjust(): void {
    const vm = this.vm;
    const fault = this.vcpu.fault;
    this.maxLevel = faultinMaxLevel(
      vm,
      vm.backend,
      fault.slot!,
      fault.gfn,
      fault.isPrivate,
      this.pfn,
    );
    // Until the adjust under the lock, the bound is the level a stale fault's event reports.
    fault.goalLevel = this.maxLevel;
    vm.mmu.pool.topUp(this.vcpu.ctx, PT64_ROOT_MAX_LEVEL);
    vm.mmu.topUpExternalSpts(this.vcpu.ctx, PT64_ROOT_MAX_LEVEL);
    vm.mmu.clock.step++;
  }

  /**
   * The read lock is held: `is_page_fault_stale` (the vCPU's root went away, or an invalidation
   * of this GFN ran or is running since the PFN was looked up), then RCU and the map walk.
   * False if the fault is stale (the lock is dropped again).
   */
  private locked(): boolean {
    const mmu = this.vm.mmu;
    const ctx = this.vcpu.ctx;
    this.holdsLock = true;
    if (this.vcpu.root!.invalid || mmu.invalidateRetryGfn(this.mmuSeq, this.vcpu.fault.gfn)) {
      mmu.lock.readUnlock(ctx);
      this.holdsLock = false;
      return false;
    }
    // kvm_tdp_mmu_map starts with kvm_mmu_hugepage_adjust, under the lock: the goal level.
    const fault = this.vcpu.fault;
    const level = hugepageAdjust(fault.slot!, fault.gfn, this.maxLevel);
    fault.goalLevel = level;
    fault.pfn = this.pfn - gfnOffsetInLevel(this.pfn, level);
    mmu.rcu.readLock(ctx);
    this.holdsRcu = true;
    this.map.begin(this.vcpu.iter, this.root, fault, ctx);
    return true;
  }

  /** Counts and reports the fault's outcome. */
  private end(r: number): number {
    const vm = this.vm;
    const mmu = vm.mmu;
    vm.srcu.readUnlock(this.vcpu.id);
    if (r === RET_PF_RETRY) mmu.stats.faultRetries++;
    else if (r === RET_PF_SPURIOUS) mmu.stats.spuriousFaults++;
    if (vm.events.on) {
      const f = this.vcpu.fault;
      vm.events.emit({
        type: "fault",
        vm: vm.id,
        vcpu: this.vcpu.id,
        gpa: this.gpa,
        write: f.write,
        private: f.isPrivate,
        result: faultResult(r),
        level: f.goalLevel,
      });
    }
    return r;
  }
}
