/**
 * The host's side: what the VMM asks of KVM (ioctls and mm notifications), each as a coroutine
 * that takes `mmu_lock` the way the kernel does.
 */
import { KVM_FILTER_PRIVATE, KVM_FILTER_SHARED, unmapGfnRange, zapAll, zapInvalidatedRoots } from "../mmu/zap.js";
import { KVM_DIRECT_ROOTS, KVM_MIRROR_ROOTS } from "../mmu/roots.js";
import { collectDirtyLog, validRoots, wrprotGfnRange } from "../mmu/dirty-log.js";
import { trySplitHugePages } from "../mmu/split.js";
import { recoverHugePages } from "../mmu/recover.js";
import { ageGfnRange } from "../mmu/age.js";
import { maxMappingLevel } from "../mmu/max-level.js";
import { zapLeafs } from "../mmu/zap.js";
import type { ExecCtx, Op } from "../exec/ctx.js";
import { gfnToGpa } from "../arch/gpa.js";
import { RET_PF_EMULATE, RET_PF_FIXED, RET_PF_SPURIOUS } from "../mmu/tdp-map.js";
import { tdpPageFault } from "./guest-access.js";
import type { Vcpu, Vm } from "./vm.js";

import { OpError } from "./op-error.js";

function clampRange(vm: Vm, start: number, end: number): [number, number] {
  return [Math.max(0, start), Math.min(end, vm.npages)];
}

/**
 * `KVM_SET_MEMORY_ATTRIBUTES`: make [start, end) private or shared. Under the write lock the
 * mappings of the other kind are zapped (`kvm_arch_pre_set_memory_attributes`: going private
 * zaps shared mappings, going shared zaps private ones), then the attributes change, inside an
 * `mmu_invalidate_begin/end` pair so faults that raced with it retry. Returns pages changed.
 */
export function* convertMemory(vm: Vm, ctx: ExecCtx, start: number, end: number, toPrivate: boolean): Op<number> {
  if (toPrivate && !vm.backend.hasPrivateMemory) {
    throw new OpError(`backend '${vm.backend.name}' has no private memory: KVM_SET_MEMORY_ATTRIBUTES(PRIVATE) fails with -EINVAL`);
  }
  [start, end] = clampRange(vm, start, end);
  if (end <= start) return 0;
  // kvm_range_has_memory_attributes: nothing to do if the range already has them.
  if (vm.attributes.isUniform(start, end - start) && vm.attributes.isPrivate(start) === toPrivate) return 0;
  const mmu = vm.mmu;
  yield* mmu.lock.writeLock(ctx);
  mmu.invalidateInProgress++;
  mmu.rcu.readLock(ctx);
  try {
    yield* unmapGfnRange(mmu, ctx, start, end, toPrivate ? KVM_FILTER_SHARED : KVM_FILTER_PRIVATE, "convert");
  } finally {
    mmu.rcu.readUnlock(ctx);
  }
  const changed = vm.attributes.set(start, end, toPrivate);
  if (vm.events.on) vm.events.emit({ type: "attributes", vm: vm.id, gfn: start, npages: end - start, private: toPrivate });
  mmu.invalidateSeq++;
  mmu.invalidateInProgress--;
  mmu.lock.writeUnlock(ctx);
  return changed;
}

/** `kvm_zap_gfn_range`: zap every mapping of [start, end), private and shared, in every root. */
export function* zapGfnRange(vm: Vm, ctx: ExecCtx, start: number, end: number): Op<number> {
  [start, end] = clampRange(vm, start, end);
  const mmu = vm.mmu;
  const before = mmu.stats.zappedLeaves;
  yield* mmu.lock.writeLock(ctx);
  mmu.invalidateInProgress++;
  mmu.rcu.readLock(ctx);
  try {
    yield* unmapGfnRange(mmu, ctx, start, end, KVM_FILTER_SHARED | KVM_FILTER_PRIVATE, "zap");
  } finally {
    mmu.rcu.readUnlock(ctx);
  }
  mmu.invalidateSeq++;
  mmu.invalidateInProgress--;
  mmu.lock.writeUnlock(ctx);
  return mmu.stats.zappedLeaves - before;
}

/**
 * Initial content before the guest runs: pre-fault every page of [start, end) through the fault
 * path (`KVM_PRE_FAULT_MEMORY`, which TDX's `KVM_TDX_INIT_MEM_REGION` also uses), private or
 * shared as the attributes say, then let the backend measure private pages (PAGE.ADD,
 * LAUNCH_UPDATE). Returns pages mapped.
 */
export function* populate(vm: Vm, hostVcpu: Vcpu, start: number, end: number): Op<number> {
  [start, end] = clampRange(vm, start, end);
  let mapped = 0;
  vm.loadRoots(hostVcpu);
  for (let gfn = start; gfn < end; gfn++) {
    const priv = vm.attributes.isPrivate(gfn);
    let r: number;
    let tries = 0;
    do {
      r = yield* tdpPageFault(vm, hostVcpu, gfnToGpa(gfn), false, priv, true);
      if (r === RET_PF_EMULATE) throw new OpError(`populate: GFN 0x${gfn.toString(16)} has no memslot`);
      if (++tries > 1000) throw new OpError(`populate: GFN 0x${gfn.toString(16)} could not be mapped`);
    } while (r !== RET_PF_FIXED && r !== RET_PF_SPURIOUS);
    if (priv && vm.backend.populate) {
      const slot = vm.memslots.find(gfn)!;
      vm.clock.step++;
      const ret = vm.backend.populate(vm, gfn, slot.gmem!.peekPfn(gfn - slot.baseGfn));
      vm.mmu.hookEvent("populate", gfn, 1, ret);
      if (ret !== 0) throw new OpError(`populate: the backend refused GFN 0x${gfn.toString(16)} (${ret})`);
    }
    mapped++;
  }
  return mapped;
}

export function finalize(vm: Vm): number {
  if (!vm.backend.finalize) return 0;
  vm.clock.step++;
  const ret = vm.backend.finalize(vm);
  vm.mmu.hookEvent("finalize", 0, 0, ret);
  if (ret !== 0) throw new OpError(`finalize failed (${ret})`);
  return ret;
}

function slotById(vm: Vm, id: number) {
  const slot = vm.memslots.byId(id);
  if (!slot) throw new OpError(`no memslot ${id}`);
  return slot;
}

/**
 * Dirty logging on (`KVM_MEM_LOG_DIRTY_PAGES` set): eager split of the slot's huge pages, then
 * write-protect every leaf at 4K (`kvm_mmu_slot_apply_flags` without PML), flush.
 */
export function* dirtyLogStart(vm: Vm, ctx: ExecCtx, slotId: number): Op<number> {
  const slot = slotById(vm, slotId);
  if (slot.gmem) throw new OpError(`memslot ${slotId} has a guest_memfd: KVM_MEM_LOG_DIRTY_PAGES is not allowed on it (-EINVAL)`);
  if (slot.dirtyBitmap) return 0;
  slot.flags.dirtyLogging = true;
  slot.dirtyBitmap = new Uint32Array(Math.ceil(slot.npages / 32));
  const mmu = vm.mmu;
  yield* mmu.lock.readLock(ctx);
  mmu.rcu.readLock(ctx);
  let changed = false;
  try {
    yield* trySplitHugePages(mmu, ctx, slot.baseGfn, slot.endGfn, 1, true);
    for (const root of validRoots(mmu)) {
      if (yield* wrprotGfnRange(mmu, ctx, root, slot.baseGfn, slot.endGfn, 1)) changed = true;
    }
  } finally {
    mmu.rcu.readUnlock(ctx);
  }
  mmu.lock.readUnlock(ctx);
  if (changed) mmu.flushRemoteTlbs(slot.baseGfn, slot.npages, "dirty log: write-protect slot");
  return 0;
}

/** `KVM_GET_DIRTY_LOG`: the dirty GFNs since the last collection; they are write-protected again. */
export function* dirtyLogCollect(vm: Vm, ctx: ExecCtx, slotId: number): Op<number[]> {
  const slot = slotById(vm, slotId);
  if (!slot.dirtyBitmap) throw new OpError(`dirty logging is not enabled on memslot ${slotId}: KVM_GET_DIRTY_LOG fails with -ENOENT`);
  const mmu = vm.mmu;
  yield* mmu.lock.writeLock(ctx);
  let dirty: number[];
  try {
    dirty = collectDirtyLog(mmu, slot);
  } finally {
    mmu.lock.writeUnlock(ctx);
  }
  return dirty;
}

/** Dirty logging off: drop the bitmap and recover huge pages (`kvm_mmu_recover_huge_pages`). */
export function* dirtyLogStop(vm: Vm, ctx: ExecCtx, slotId: number): Op<number> {
  const slot = slotById(vm, slotId);
  if (!slot.dirtyBitmap) return 0;
  slot.flags.dirtyLogging = false;
  slot.dirtyBitmap = null;
  return yield* recover(vm, ctx, slot.baseGfn, slot.endGfn);
}

/** `kvm_mmu_recover_huge_pages` over [start, end) of the slot holding `start`. Returns tables replaced. */
export function* recover(vm: Vm, ctx: ExecCtx, start: number, end: number): Op<number> {
  [start, end] = clampRange(vm, start, end);
  const slot = vm.memslots.find(start);
  if (!slot) return 0;
  end = Math.min(end, slot.endGfn);
  const mmu = vm.mmu;
  yield* mmu.lock.readLock(ctx);
  mmu.rcu.readLock(ctx);
  let n = 0;
  try {
    n = yield* recoverHugePages(mmu, ctx, start, end, (gfn) => {
      if (slot.dirtyBitmap) return 1;
      const pfn = slot.shared.peekPfn(gfn - slot.baseGfn);
      return pfn < 0 ? 1 : maxMappingLevel(vm, vm.backend, slot, gfn, false, pfn);
    });
  } finally {
    mmu.rcu.readUnlock(ctx);
  }
  mmu.lock.readUnlock(ctx);
  if (n > 0) mmu.flushRemoteTlbs(slot.baseGfn, slot.npages, "recover huge pages");
  return n;
}

/** Eager split of [start, end) down to 4K under the read lock. Returns huge leaves split. */
export function* split(vm: Vm, ctx: ExecCtx, start: number, end: number): Op<number> {
  [start, end] = clampRange(vm, start, end);
  const mmu = vm.mmu;
  yield* mmu.lock.readLock(ctx);
  mmu.rcu.readLock(ctx);
  let n = 0;
  try {
    n = yield* trySplitHugePages(mmu, ctx, start, end, 1, true);
  } finally {
    mmu.rcu.readUnlock(ctx);
  }
  mmu.lock.readUnlock(ctx);
  return n;
}

/** Aging by the host's reclaim: clears Accessed on shared leaves; returns how many were young. */
export function* age(vm: Vm, ctx: ExecCtx, start: number, end: number): Op<number> {
  [start, end] = clampRange(vm, start, end);
  return yield* ageGfnRange(vm.mmu, ctx, start, end, false);
}

/**
 * Memslot deletion. A VM without a mirror root takes the default path
 * (`KVM_X86_QUIRK_SLOT_ZAP_ALL`): `kvm_mmu_zap_all_fast` invalidates the direct roots and zaps
 * them under the read lock; vCPUs load fresh roots on their next entry. A VM with a mirror root
 * zaps only the slot's leaves (`kvm_mmu_zap_memslot_leafs`), since dropping the mirror would
 * drop private memory the guest still owns. Then the slot's memory goes back to the host.
 */
export function* deleteMemslot(vm: Vm, ctx: ExecCtx, slotId: number): Op<void> {
  const slot = slotById(vm, slotId);
  const mmu = vm.mmu;
  yield* mmu.lock.writeLock(ctx);
  mmu.invalidateSeq++;
  if (!vm.backend.usesMirrorRoot) {
    mmu.invalidateRoots(KVM_DIRECT_ROOTS);
    mmu.lock.writeUnlock(ctx);
    yield* mmu.lock.readLock(ctx);
    mmu.rcu.readLock(ctx);
    try {
      yield* zapInvalidatedRoots(mmu, ctx, true);
    } finally {
      mmu.rcu.readUnlock(ctx);
    }
    mmu.lock.readUnlock(ctx);
  } else {
    mmu.rcu.readLock(ctx);
    let flush = false;
    try {
      for (const root of mmu.rootsOfTypes(KVM_DIRECT_ROOTS | KVM_MIRROR_ROOTS)) {
        flush = yield* zapLeafs(mmu, ctx, root, slot.baseGfn, slot.endGfn, true, flush);
      }
    } finally {
      mmu.rcu.readUnlock(ctx);
    }
    if (flush) mmu.flushRemoteTlbs(slot.baseGfn, slot.npages, "delete memslot");
    mmu.lock.writeUnlock(ctx);
  }
  vm.memslots.remove(slotId);
  slot.shared.release();
  slot.gmem?.release();
}

/**
 * VM teardown: vCPUs drop their roots, the MMU notifier's release zaps everything it may
 * (`kvm_mmu_zap_all`: direct and invalid roots), the backend gives up the guest's key (TDX: HKID
 * release, after which S-EPT pages can be reclaimed), then `kvm_mmu_uninit_tdp_mmu` invalidates
 * every root and zaps them under the write lock, the deferred frees run, and guest memory goes
 * back to the host.
 */
export function* teardown(vm: Vm, ctx: ExecCtx, extraVcpus: Vcpu[] = []): Op<void> {
  const mmu = vm.mmu;
  for (const v of [...vm.vcpus, ...extraVcpus]) vm.unloadRoots(v);
  yield* mmu.lock.writeLock(ctx);
  mmu.rcu.readLock(ctx);
  try {
    yield* zapAll(mmu, ctx);
    if (vm.backend.teardown) {
      vm.clock.step++;
      vm.backend.teardown(vm);
    }
    mmu.invalidateRoots(KVM_DIRECT_ROOTS | KVM_MIRROR_ROOTS);
    yield* zapInvalidatedRoots(mmu, ctx, false);
  } finally {
    mmu.rcu.readUnlock(ctx);
  }
  mmu.lock.writeUnlock(ctx);
  for (const slot of [...vm.memslots.all()]) {
    vm.memslots.remove(slot.id);
    slot.shared.release();
    slot.gmem?.release();
  }
  vm.dead = true;
}
