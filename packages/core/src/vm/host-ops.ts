/**
 * The host's side: what the VMM asks of KVM (ioctls and mm notifications), each as a coroutine
 * that takes `mmu_lock` the way the kernel does. Locks and RCU are released in `finally`, so an
 * error in the middle (a KVM_BUG, the host out of memory) never leaves the MMU locked.
 */
import {
  KVM_FILTER_PRIVATE,
  KVM_FILTER_SHARED,
  unmapGfnRange,
  zapAll,
  zapInvalidatedRoots,
  zapLeafsOfValidRoots,
  ZapTally,
} from "../mmu/zap.js";
import { KVM_DIRECT_ROOTS, KVM_MIRROR_ROOTS } from "../mmu/roots.js";
import { collectDirtyLog, wrprotSlot } from "../mmu/dirty-log.js";
import { splitCrossBoundaryLeafs, trySplitHugePages } from "../mmu/split.js";
import { recoverHugePages, recoverMirrorHugePages } from "../mmu/recover.js";
import { ageGfnRange } from "../mmu/age.js";
import { maxMappingLevel } from "../mmu/max-level.js";
import { postSetMemoryAttributes } from "../mmu/mixed-hugepages.js";
import type { TdpMmu } from "../mmu/tdp-mmu.js";
import { BLOCKED, RETRY_WAIT, type ExecCtx, type Op } from "../exec/ctx.js";
import { withMutex } from "../exec/mutex.js";
import { gfnToGpa } from "../arch/gpa.js";
import { KVM_MAX_HUGEPAGE_LEVEL, PAGES_PER_LEVEL } from "../arch/levels.js";
import {
  RET_PF_EMULATE,
  RET_PF_FIXED,
  RET_PF_RETRY,
  RET_PF_SPURIOUS,
  RET_PF_WRITE_PROTECTED,
} from "../mmu/tdp-map.js";
import { RET_PF_MEMORY_FAULT_EXIT } from "./tdp-fault.js";
import type { Memslot } from "../mem/memslots.js";
import { GuestLivelock, MAX_TRIES, tdpPageFault } from "./guest-access.js";
import { OpError } from "./op-error.js";
import { EEXIST, EFAULT, EINVAL, EIO, ENOENT, ENOTTY, EOPNOTSUPP } from "../backend/backend.js";
import type { Vcpu, Vm } from "./vm.js";

function clampRange(vm: Vm, start: number, end: number): [number, number] {
  return [Math.max(0, start), Math.min(end, vm.npages)];
}

/** `write_lock(&kvm->mmu_lock)` around `body`, with RCU held as the TDP MMU's walkers hold it. */
export function* withWriteLock<T>(mmu: TdpMmu, ctx: ExecCtx, body: () => Op<T>): Op<T> {
  yield* mmu.lock.writeLock(ctx);
  mmu.rcu.readLock(ctx);
  try {
    return yield* body();
  } finally {
    mmu.rcu.readUnlock(ctx);
    mmu.lock.writeUnlock(ctx);
  }
}

/**
 * An op of no atomic point of its own: `f`, run when the op is. For a critical section that
 * only stores (a `function*` closure instead would outlive young collections: see
 * `TdpMmu.forEachRoot`).
 */
function* atOnce<T>(f: () => T): Op<T> {
  return f();
}

/** `read_lock(&kvm->mmu_lock)` around `body`, with RCU held. */
function* withReadLock<T>(mmu: TdpMmu, ctx: ExecCtx, body: () => Op<T>): Op<T> {
  yield* mmu.lock.readLock(ctx);
  mmu.rcu.readLock(ctx);
  try {
    return yield* body();
  } finally {
    mmu.rcu.readUnlock(ctx);
    mmu.lock.readUnlock(ctx);
  }
}

/** An invalidation of [start, end): faults that raced with it retry (`mmu_invalidate_begin/end`). */
function* invalidating<T>(mmu: TdpMmu, start: number, end: number, body: () => Op<T>): Op<T> {
  mmu.invalidateBegin(start, end);
  try {
    return yield* body();
  } finally {
    mmu.invalidateEnd();
  }
}

/**
 * `KVM_SET_MEMORY_ATTRIBUTES` (`kvm_vm_set_mem_attributes`): make [start, end) private or
 * shared, in the kernel's three phases. Under the write lock, the invalidation begins and the
 * mappings of the other kind are zapped (`kvm_arch_pre_set_memory_attributes`: going private
 * zaps shared mappings, going shared private ones), then the TLBs are flushed. With `mmu_lock`
 * dropped the attributes are stored. Under the write lock again the invalidation ends and
 * `kvm_arch_post_set_memory_attributes` says which huge pages are mixed now (faults read that,
 * not the attributes: `mmu/mixed-hugepages.ts`). A fault on the range in between retries.
 * Returns pages changed.
 * `vcpu` is the vCPU whose request the change answers (its page-state change or MapGPA), -1 when
 * the VMM converts on its own (a host op, or its answer to a KVM_EXIT_MEMORY_FAULT).
 * `atOpStart` (here and in the other ops that take `kvm->slots_lock`): the caller is a scenario
 * program that has just yielded to begin this op, so taking the lock is that step's first atomic
 * point (`Mutex.lock`), not a step of its own.
 */
export function* convertMemory(
  vm: Vm,
  ctx: ExecCtx,
  start: number,
  end: number,
  toPrivate: boolean,
  vcpu = -1,
  atOpStart = false,
): Op<number> {
  if (toPrivate && !vm.backend.hasPrivateMemory) {
    throw new OpError(
      `backend '${vm.backend.name}' has no private memory: KVM_SET_MEMORY_ATTRIBUTES(PRIVATE) fails with -EINVAL`,
    );
  }
  [start, end] = clampRange(vm, start, end);
  if (end <= start) return 0;
  const changed = yield* withMutex(
    vm.slotsLock,
    ctx,
    () => setMemoryAttributes(vm, ctx, start, end, toPrivate, vcpu),
    atOpStart,
  );
  // QEMU's kvm_convert_memory punches the range out of the guest_memfd once the ioctl has
  // returned 0, whether or not it changed anything: a syscall of its own, outside
  // kvm->slots_lock.
  if (!toPrivate) yield* punchHole(vm, ctx, start, end);
  return changed;
}

/** `kvm_vm_set_mem_attributes` under `kvm->slots_lock`: the body of `convertMemory`. */
function* setMemoryAttributes(
  vm: Vm,
  ctx: ExecCtx,
  start: number,
  end: number,
  toPrivate: boolean,
  vcpu: number,
): Op<number> {
  // kvm_range_has_memory_attributes: nothing to do if the range already has them.
  if (vm.attributes.isUniform(start, end - start) && vm.attributes.isPrivate(start) === toPrivate)
    return 0;
  const mmu = vm.mmu;
  yield* withWriteLock(mmu, ctx, () => preSetMemoryAttributes(vm, ctx, start, end, toPrivate));
  // xa_store of each GFN's attributes, with mmu_lock dropped: an atomic point of its own.
  vm.clock.step++;
  if (ctx.interleave) yield;
  const changed = vm.attributes.set(start, end, toPrivate);
  if (vm.events.on)
    vm.events.emit({
      type: "attributes",
      vm: vm.id,
      gfn: start,
      npages: end - start,
      private: toPrivate,
    });
  yield* withWriteLock(mmu, ctx, () =>
    atOnce(() => {
      // The second section's on_lock ends the invalidation, then its handler,
      // kvm_arch_post_set_memory_attributes, runs under the same lock: the backend hears of the
      // change at that point.
      mmu.invalidateEnd();
      for (const slot of vm.memslots.all()) {
        const s = Math.max(start, slot.baseGfn);
        const e = Math.min(end, slot.endGfn);
        if (s < e) postSetMemoryAttributes(vm, slot, s, e, toPrivate);
      }
      vm.backend.memoryAttributesChanged?.(vm, start, end - start, toPrivate, vcpu);
    }),
  );
  return changed;
}

/** The first section of `convertMemory`, under the write lock: `kvm_arch_pre_set_memory_attributes`. */
function* preSetMemoryAttributes(
  vm: Vm,
  ctx: ExecCtx,
  start: number,
  end: number,
  toPrivate: boolean,
): Op<void> {
  const mmu = vm.mmu;
  mmu.invalidateBegin(start, end);
  widenToHugepages(vm, start, end);
  // kvm_arch_pre_set_memory_attributes in the TDX huge-page series: a private huge page that
  // straddles the range is split first (DEMOTE), so that only the converted pages leave it.
  yield* splitCrossBoundaryLeafs(mmu, ctx, start, end);
  yield* unmapGfnRange(
    mmu,
    ctx,
    start,
    end,
    toPrivate ? KVM_FILTER_SHARED : KVM_FILTER_PRIVATE,
    "convert",
    true,
  );
}

/**
 * `kvm_arch_pre_set_memory_attributes`: where the head or tail huge page of [start, end) (2M and
 * 1G) lies in the memslot and is not mixed, its whole range joins the invalidation, so that no
 * fault maps a huge page over GFNs whose attributes are changing while the change is under way.
 * Only [start, end) itself is unmapped: that unmaps any huge page over it anyway.
 */
function widenToHugepages(vm: Vm, start: number, end: number): void {
  const slot = vm.memslots.find(start);
  if (!slot) return;
  for (let level = 2; level <= KVM_MAX_HUGEPAGE_LEVEL; level++) {
    const span = PAGES_PER_LEVEL[level]!;
    const head = start - (start % span);
    const tail = end - 1 - ((end - 1) % span);
    if (
      (head !== start || head + span > end) &&
      head >= slot.baseGfn &&
      head + span <= slot.endGfn &&
      vm.attributes.isUniform(head, span)
    ) {
      vm.mmu.invalidateRangeAdd(head, head + span);
    }
    if (tail === head) continue;
    if (tail + span > end && tail + span <= slot.endGfn && vm.attributes.isUniform(tail, span)) {
      vm.mmu.invalidateRangeAdd(tail, tail + span);
    }
  }
}

/**
 * `fallocate(PUNCH_HOLE)` on the guest_memfd behind [start, end) (`kvm_gmem_punch_hole`), as
 * QEMU makes it after a conversion to shared, under the file's `filemap_invalidate_lock` (so
 * not inside another punch or a `kvm_gmem_populate`), in the kernel's three parts:
 * `kvm_gmem_invalidate_begin` under the write lock (the invalidation begins, a private huge page
 * that straddles the range is split in the TDX huge-page series, the range's private mappings
 * are zapped and the whole VM flushed); `truncate_inode_pages_range` with `mmu_lock` dropped,
 * which locks each folio (waiting for a fault that holds it to prepare the page) and frees it,
 * `kvm_arch_gmem_invalidate` giving it back (SEV: RMPUPDATE to hypervisor-owned); then
 * `kvm_gmem_invalidate_end` under the write lock. A fault that raced with it retries, and a
 * page mapped private again in the meantime (another conversion back) is unmapped before it is
 * freed. The range is the memslot of `start`'s, as QEMU punches one RAM block. The truncation
 * visits the prepared pages only: a fault's attribute check, PFN and prepare are one atomic
 * point here, so no page becomes prepared in the range while the invalidation is in progress
 * (in the kernel a fault past its lockless check can still create one, which the truncation may
 * miss and the fault then drops as stale).
 */
function* punchHole(vm: Vm, ctx: ExecCtx, start: number, end: number): Op<void> {
  const slot = vm.memslots.find(start);
  if (!slot?.gmem) return;
  end = Math.min(end, slot.endGfn);
  yield* withMutex(vm.gmemLock, ctx, () => punchLocked(vm, ctx, slot, start, end));
}

/** The body of `punchHole`, under `filemap_invalidate_lock`. */
function* punchLocked(vm: Vm, ctx: ExecCtx, slot: Memslot, start: number, end: number): Op<void> {
  const gmem = slot.gmem!;
  const mmu = vm.mmu;
  yield* withWriteLock(mmu, ctx, () => gmemInvalidateBegin(mmu, ctx, start, end));
  for (let gfn = start; gfn < end; gfn++) {
    const pgoff = gfn - slot.baseGfn;
    // Only pages in the page cache are truncated: the prepared ones. None becomes prepared
    // while the invalidation is in progress (a fault in the range retries before its prepare).
    if (!gmem.isPrepared(pgoff)) continue;
    // folio_lock: an atomic point of its own, blocked while a fault holds the folio to prepare it.
    vm.clock.step++;
    if (ctx.interleave) yield;
    while (gmem.isPreparing(pgoff)) {
      if (!ctx.interleave)
        throw new Error(
          `punch of gfn 0x${gfn.toString(16)}: a fault holds its folio, and nothing else runs`,
        );
      yield BLOCKED;
      vm.clock.step++;
    }
    if (gmem.discard(pgoff)) vm.backend.gmemInvalidate?.(vm, gmem.peekPfn(pgoff), 1);
  }
  yield* withWriteLock(mmu, ctx, () => atOnce(() => mmu.invalidateEnd()));
}

/** `kvm_gmem_invalidate_begin`, under the write lock (the first part of `punchHole`). */
function* gmemInvalidateBegin(mmu: TdpMmu, ctx: ExecCtx, start: number, end: number): Op<void> {
  mmu.invalidateBegin(start, end);
  yield* splitCrossBoundaryLeafs(mmu, ctx, start, end);
  yield* unmapGfnRange(mmu, ctx, start, end, KVM_FILTER_PRIVATE, "gmem-punch", true);
}

/** Guest memory goes back to the host; guest_memfd pages are invalidated first (`kvm_gmem_free_folio`). */
function releaseBacking(vm: Vm, slot: Memslot): void {
  releaseGmem(vm, slot);
  slot.shared.release();
}

/**
 * guest_memfd's folios go back to the host (`kvm_gmem_free_folio` → `kvm_arch_gmem_invalidate`:
 * SEV makes each page shared in the RMP first).
 */
function releaseGmem(vm: Vm, slot: Memslot): void {
  const gmem = slot.gmem;
  if (!gmem) return;
  if (vm.backend.gmemInvalidate) {
    for (const [pfn, npages] of gmem.populated()) vm.backend.gmemInvalidate(vm, pfn, npages);
  }
  gmem.release();
}

/** `kvm_zap_gfn_range`: zap every mapping of [start, end), private and shared, in every valid root. */
export function* zapGfnRange(vm: Vm, ctx: ExecCtx, start: number, end: number): Op<number> {
  [start, end] = clampRange(vm, start, end);
  const mmu = vm.mmu;
  // The kernel returns only whether to flush; the op reports how many leaves it zapped.
  const tally = new ZapTally();
  yield* withWriteLock(mmu, ctx, () =>
    invalidating(mmu, start, end, () => splitAndZapLeafs(mmu, ctx, start, end, tally)),
  );
  return tally.leaves;
}

/**
 * The body of `zapGfnRange`. As guest_memfd's hole punch in the TDX huge-page series: a private
 * huge page that straddles the range is split first, and only the pages inside are zapped.
 */
function* splitAndZapLeafs(
  mmu: TdpMmu,
  ctx: ExecCtx,
  start: number,
  end: number,
  tally: ZapTally,
): Op<boolean> {
  yield* splitCrossBoundaryLeafs(mmu, ctx, start, end);
  return yield* zapLeafsOfValidRoots(mmu, ctx, start, end, "zap", tally);
}

/**
 * Initial content before the guest runs: pre-fault [start, end) through the fault path
 * (`KVM_PRE_FAULT_MEMORY`, which TDX's `KVM_TDX_INIT_MEM_REGION` also uses), private or shared
 * as the attributes say, then let the backend add private pages (PAGE.ADD, LAUNCH_UPDATE),
 * measured if `measure`. As `kvm_arch_vcpu_pre_fault_memory`, a fault that mapped a huge page
 * covers the rest of it: the next fault is at the end of that page. A GFN the backend does not
 * populate is the pre-fault's, -EOPNOTSUPP until the backend allows it (`preFaultAllowed`: TDX
 * and SEV-SNP once finalized). Returns pages mapped, and the errno of the first page refused
 * (the ioctl stops there), else 0.
 */
export function* populate(
  vm: Vm,
  hostVcpu: Vcpu,
  start: number,
  end: number,
  measure = true,
  atOpStart = false,
): Op<PopulateResult> {
  // KVM_PRE_FAULT_MEMORY alone is a vCPU ioctl that takes no slots_lock; the backends' own
  // population (KVM_TDX_INIT_MEM_REGION, KVM_SEV_SNP_LAUNCH_UPDATE, the realm's) holds it
  // around kvm_gmem_populate, which asserts it.
  // kvm_gmem_populate holds the guest_memfd's filemap_invalidate_lock too, so no hole punch
  // runs between a page's mapping and its PAGE.ADD / LAUNCH_UPDATE.
  if (!vm.backend.populate) return yield* populateRange(vm, hostVcpu, start, end, measure);
  return yield* withMutex(
    vm.slotsLock,
    hostVcpu.ctx,
    () =>
      withMutex(vm.gmemLock, hostVcpu.ctx, () => populateRange(vm, hostVcpu, start, end, measure)),
    atOpStart,
  );
}

/**
 * What a population did: pages mapped, and the errno of the page it stopped at (0 if none),
 * with why (`detail`, empty if it did not stop).
 */
export interface PopulateResult {
  mapped: number;
  status: number;
  detail: string;
}

/**
 * The population stopped at a page with `status`: why, as the backend said it in the same atomic
 * point (its `lastError` is any task's last failure, so it is read here and nowhere later).
 */
function stopped(vm: Vm, mapped: number, status: number): PopulateResult {
  return refused(vm, mapped, status, vm.backend.lastError?.() ?? "");
}

/** The backend's population refused a private page: the ioctl's errno (`Backend.populateErrno`). */
function refused(vm: Vm, mapped: number, status: number, detail: string): PopulateResult {
  return { mapped, status: vm.backend.populateErrno ?? status, detail };
}

/** The body of `populate`. */
function* populateRange(
  vm: Vm,
  hostVcpu: Vcpu,
  start: number,
  end: number,
  measure = true,
): Op<PopulateResult> {
  [start, end] = clampRange(vm, start, end);
  let mapped = 0;
  let checked = false;
  let preFaultChecked = false;
  for (let gfn = start; gfn < end; gfn++) {
    const priv = vm.attributes.isPrivate(gfn);
    const slot = vm.memslots.find(gfn);
    // A GFN the backend does not populate is KVM_PRE_FAULT_MEMORY's, which a VM with private
    // memory may issue only once its initial state is measured (-EOPNOTSUPP before any page).
    if (!(priv && vm.backend.populate) && !preFaultChecked) {
      preFaultChecked = true;
      if (vm.backend.preFaultAllowed?.(vm) === false)
        return {
          mapped,
          status: EOPNOTSUPP,
          detail: `KVM_PRE_FAULT_MEMORY at GFN 0x${gfn.toString(16)} before the VM is finalized (pre_fault_allowed)`,
        };
    }
    // No memslot: kvm_gmem_populate refuses the GFN (-EINVAL: `kvm_slot_can_be_private`); a
    // pre-fault meets kvm_handle_noslot_fault (RET_PF_EMULATE, -ENOENT) or, for a private GFN,
    // a memory fault exit (-EFAULT). The ioctl returns it to the VMM.
    if (slot === null) {
      const detail = `GFN 0x${gfn.toString(16)} has no memslot`;
      if (priv && vm.backend.populate) return refused(vm, mapped, EINVAL, detail);
      return { mapped, status: priv ? EFAULT : ENOENT, detail };
    }
    if (priv && vm.backend.populate) {
      // The ioctl's own checks come before any page is touched (TDX: -EINVAL once finalized).
      if (!checked) {
        checked = true;
        const ret = vm.backend.canPopulate?.(vm) ?? 0;
        if (ret !== 0) return stopped(vm, mapped, ret);
      }
      // kvm_gmem_populate takes only pages guest_memfd has not prepared yet: a page populated
      // before, or already faulted in by the guest, is -EEXIST before any firmware call. The
      // ioctl returns it to the VMM: whether the guest's fault came first is up to the schedule,
      // so it is the op's result, not an error in the scenario.
      if (slot.gmem?.isPrepared(gfn - slot.baseGfn)) {
        return refused(
          vm,
          mapped,
          EEXIST,
          `GFN 0x${gfn.toString(16)} is already populated or in use by the guest (kvm_gmem_populate)`,
        );
      }
    }
    if (priv && vm.backend.populate && vm.backend.populateMapsFirst === false) {
      // kvm_gmem_populate: the page goes into guest_memfd and the backend measures it; the NPT
      // is left alone. The folio is marked prepared (no gmemPrepare later) only on success.
      const pgoff = gfn - slot.baseGfn;
      const ret = populatePage(vm, gfn, slot.gmem!.getPfn(pgoff), measure);
      if (ret !== 0) return stopped(vm, mapped, ret);
      slot.gmem!.testAndSetPrepared(pgoff);
      mapped++;
      continue;
    }
    // kvm_tdp_map_page faults again for as long as the fault says retry, as a guest access
    // does: retries that make no progress are a livelock, subject to the explorer's fairness.
    let r: number;
    for (let tries = 0; ;) {
      if (vm.rootsStale(hostVcpu)) yield* vm.reloadRoots(hostVcpu, false);
      r = yield* tdpPageFault(vm, hostVcpu, gfnToGpa(gfn), false, priv, true);
      if (r !== RET_PF_RETRY) break;
      if (++tries >= MAX_TRIES)
        throw new GuestLivelock(
          `populate: GFN 0x${gfn.toString(16)} made no progress after ${MAX_TRIES} faults`,
        );
      // Until someone else changes what the fault met (a FROZEN entry, an invalidation, a lost
      // cmpxchg), another try would meet it again.
      if (hostVcpu.ctx.interleave) yield RETRY_WAIT;
    }
    // kvm_tdp_map_page: RET_PF_EMULATE (no memslot now, MMIO) is -ENOENT.
    if (r === RET_PF_EMULATE)
      return { mapped, status: ENOENT, detail: `GFN 0x${gfn.toString(16)} has no memslot` };
    // Any other result ends the ioctl at once. A private/shared mismatch (a conversion changed
    // the GFN's attributes since this loop read them) is kvm_mmu_prepare_memory_fault_exit's
    // -EFAULT; what is neither fixed nor spurious nor write-protected is -EIO, with a WARN
    // ("could not fix page fault during prefault").
    if (r === RET_PF_MEMORY_FAULT_EXIT)
      return {
        mapped,
        status: EFAULT,
        detail: `GFN 0x${gfn.toString(16)} is no longer ${priv ? "private" : "shared"}: KVM_EXIT_MEMORY_FAULT`,
      };
    if (r !== RET_PF_FIXED && r !== RET_PF_SPURIOUS && r !== RET_PF_WRITE_PROTECTED)
      return {
        mapped,
        status: EIO,
        detail: `GFN 0x${gfn.toString(16)}: could not fix page fault during prefault`,
      };
    if (priv && vm.backend.populate) {
      // The backend measures every 4K page (TDX maps private memory at 4K only).
      const ret = populatePage(vm, gfn, slot.gmem!.peekPfn(gfn - slot.baseGfn), measure);
      if (ret !== 0) return stopped(vm, mapped, ret);
      mapped++;
      continue;
    }
    const span = PAGES_PER_LEVEL[hostVcpu.fault.goalLevel]!;
    const next = Math.min(end, gfn - (gfn % span) + span);
    mapped += next - gfn;
    gfn = next - 1;
  }
  return { mapped, status: 0, detail: "" };
}

/** The backend's part of populating one page, as one atomic point: its status. */
function populatePage(vm: Vm, gfn: number, pfn: number, measure: boolean): number {
  vm.slotsLock.assertHeld("kvm_gmem_populate");
  vm.clock.step++;
  const ret = vm.backend.populate!(vm, gfn, pfn, measure);
  vm.mmu.hookEvent("populate", gfn, 1, ret);
  return ret;
}

/**
 * The VMM finalizes the VM (TDX: KVM_TDX_FINALIZE_VM), one atomic point: the backend's status.
 * `tdx_td_finalize` holds `kvm->slots_lock`; the model takes none here, because finalize is one
 * synchronous step and no vCPU runs, so none converts, before it (they wait on `R_FINALIZED`).
 */
export function finalize(vm: Vm): number {
  if (!vm.backend.finalize) return 0;
  vm.clock.step++;
  const ret = vm.backend.finalize(vm);
  vm.mmu.hookEvent("finalize", 0, 0, ret);
  if (ret !== 0)
    throw new OpError(
      `finalize failed (${ret})${vm.backend.lastError?.() ? `: ${vm.backend.lastError()}` : ""}`,
    );
  return ret;
}

function slotById(vm: Vm, id: number): Memslot {
  const slot = vm.memslots.byId(id);
  if (!slot) throw new OpError(`no memslot ${id}`);
  return slot;
}

/**
 * `synchronize_srcu(&kvm->srcu)` after `kvm_swap_active_memslots` published new memslot flags:
 * waits until every fault that may have read the old flags has finished. Only then does
 * `kvm_commit_memory_region` act on the new ones, so no fault that missed them maps after that.
 */
function* synchronizeSrcu(vm: Vm, ctx: ExecCtx): Op {
  // A new generation: faults that enter kvm->srcu from here on read the new memslots.
  const gen = vm.srcu.newGeneration();
  for (;;) {
    if (!vm.srcu.readersBefore(gen)) return;
    // Without interleaving no fault can be in flight while a host op runs.
    if (!ctx.interleave)
      throw new OpError(
        "synchronize_srcu would wait forever: a fault is in flight and nothing interleaves",
      );
    yield BLOCKED;
  }
}

/**
 * Dirty logging on (`KVM_MEM_LOG_DIRTY_PAGES` set; `kvm_mmu_slot_apply_flags` without PML): the
 * flag is published and in-flight faults drained (`synchronizeSrcu`), then eager split of the
 * slot's huge pages, then write-protect every leaf at 4K, each under its own read-lock section,
 * then flush the slot.
 */
export function* dirtyLogStart(vm: Vm, ctx: ExecCtx, slotId: number, atOpStart = false): Op<void> {
  return yield* withMutex(vm.slotsLock, ctx, () => dirtyLogStartLocked(vm, ctx, slotId), atOpStart);
}

/** `dirtyLogStart` under `kvm->slots_lock` (`kvm_set_memory_region`). */
function* dirtyLogStartLocked(vm: Vm, ctx: ExecCtx, slotId: number): Op<void> {
  const slot = slotById(vm, slotId);
  if (slot.gmem)
    throw new OpError(
      `memslot ${slotId} has a guest_memfd: KVM_MEM_LOG_DIRTY_PAGES is not allowed on it (-EINVAL)`,
    );
  if (slot.dirtyBitmap) return;
  slot.setDirtyLogging(true);
  yield* synchronizeSrcu(vm, ctx);
  const mmu = vm.mmu;
  yield* withReadLock(mmu, ctx, () =>
    trySplitHugePages(mmu, ctx, slot.baseGfn, slot.endGfn, 1, true),
  );
  yield* withReadLock(mmu, ctx, () => wrprotSlot(mmu, ctx, slot, 1));
  mmu.flushRemoteTlbs(slot.baseGfn, slot.npages, "dirty log: write-protect slot");
}

/**
 * `KVM_GET_DIRTY_LOG`: the dirty GFNs since the last collection, write-protected again under the
 * write lock, then one flush after the lock is dropped if any page was dirty.
 */
export function* dirtyLogCollect(
  vm: Vm,
  ctx: ExecCtx,
  slotId: number,
  atOpStart = false,
): Op<number[]> {
  return yield* withMutex(
    vm.slotsLock,
    ctx,
    () => dirtyLogCollectLocked(vm, ctx, slotId),
    atOpStart,
  );
}

/** `dirtyLogCollect` under `kvm->slots_lock` (`kvm_vm_ioctl_get_dirty_log`). */
function* dirtyLogCollectLocked(vm: Vm, ctx: ExecCtx, slotId: number): Op<number[]> {
  const slot = slotById(vm, slotId);
  if (!slot.dirtyBitmap)
    throw new OpError(
      `dirty logging is not enabled on memslot ${slotId}: KVM_GET_DIRTY_LOG fails with -ENOENT`,
    );
  const mmu = vm.mmu;
  const dirty = yield* withWriteLock(mmu, ctx, () => atOnce(() => collectDirtyLog(mmu, slot)));
  if (dirty.length > 0)
    mmu.flushRemoteTlbs(slot.baseGfn, slot.npages, "dirty log: write-protect collected pages");
  return dirty;
}

/** Dirty logging off: drop the bitmap and recover huge pages (`kvm_mmu_recover_huge_pages`). */
export function* dirtyLogStop(vm: Vm, ctx: ExecCtx, slotId: number, atOpStart = false): Op<number> {
  return yield* withMutex(vm.slotsLock, ctx, () => dirtyLogStopLocked(vm, ctx, slotId), atOpStart);
}

/** `dirtyLogStop` under `kvm->slots_lock` (`kvm_set_memory_region`). */
function* dirtyLogStopLocked(vm: Vm, ctx: ExecCtx, slotId: number): Op<number> {
  const slot = slotById(vm, slotId);
  if (!slot.dirtyBitmap) return 0;
  slot.setDirtyLogging(false);
  yield* synchronizeSrcu(vm, ctx);
  return yield* recover(vm, ctx, slot.baseGfn, slot.endGfn);
}

/** `kvm_mmu_recover_huge_pages` over [start, end) of the slot holding `start`. Returns tables replaced. */
export function* recover(vm: Vm, ctx: ExecCtx, start: number, end: number): Op<number> {
  [start, end] = clampRange(vm, start, end);
  const slot = vm.memslots.find(start);
  if (!slot) return 0;
  end = Math.min(end, slot.endGfn);
  const mmu = vm.mmu;
  const maxLevel = (gfn: number): number => {
    if (slot.dirtyBitmap) return 1;
    // kvm_mmu_max_mapping_level: private GFNs are capped by the backend too (SEV: the RMP size).
    const priv = vm.attributes.isPrivate(gfn);
    const backing = priv ? slot.gmem : slot.shared;
    const pfn = backing ? backing.peekPfn(gfn - slot.baseGfn) : -1;
    return pfn < 0 ? 1 : maxMappingLevel(vm, vm.backend, slot, gfn, priv, pfn);
  };
  const direct = yield* withReadLock(mmu, ctx, () =>
    recoverHugePages(mmu, ctx, start, end, maxLevel),
  );
  // The mirror roots' tables, merged by the backend (TDX: PROMOTE), under the write lock.
  if (!vm.backend.promoteExternalSpt) return direct;
  return (
    direct +
    (yield* withWriteLock(mmu, ctx, () => recoverMirrorHugePages(mmu, ctx, start, end, maxLevel)))
  );
}

/**
 * Eager split of [start, end) down to 4K under the read lock. Returns huge leaves split. The
 * kernel splits eagerly only for dirty logging (turning it on, KVM_CLEAR_DIRTY_LOG), with
 * `kvm->slots_lock` held; `recover`, which also stands for the NX huge page recovery worker,
 * takes none.
 */
export function* split(
  vm: Vm,
  ctx: ExecCtx,
  start: number,
  end: number,
  atOpStart = false,
): Op<number> {
  [start, end] = clampRange(vm, start, end);
  const mmu = vm.mmu;
  return yield* withMutex(
    vm.slotsLock,
    ctx,
    () => withReadLock(mmu, ctx, () => trySplitHugePages(mmu, ctx, start, end, 1, true)),
    atOpStart,
  );
}

/** Aging by the host's reclaim: clears Accessed on shared leaves; returns how many were young. */
export function* age(vm: Vm, ctx: ExecCtx, start: number, end: number): Op<number> {
  [start, end] = clampRange(vm, start, end);
  return yield* ageGfnRange(vm.mmu, ctx, start, end, false);
}

/**
 * Memslot deletion. A default VM (no private memory) takes `kvm_mmu_zap_all_fast`
 * (`KVM_X86_QUIRK_SLOT_ZAP_ALL`): invalidate the direct roots under the write lock, then zap them
 * under the read lock; vCPUs load fresh roots on their next entry. A VM with private memory
 * (TDX, SEV-SNP) zaps only the slot (`kvm_mmu_zap_memslot`: private and shared mappings, invalid
 * roots included). Then the slot's memory goes back to the host.
 */
export function* deleteMemslot(vm: Vm, ctx: ExecCtx, slotId: number, atOpStart = false): Op<void> {
  return yield* withMutex(vm.slotsLock, ctx, () => deleteMemslotLocked(vm, ctx, slotId), atOpStart);
}

/** `deleteMemslot` under `kvm->slots_lock` (`kvm_set_memory_region`). */
function* deleteMemslotLocked(vm: Vm, ctx: ExecCtx, slotId: number): Op<void> {
  const slot = slotById(vm, slotId);
  const mmu = vm.mmu;
  // kvm_invalidate_memslot: publish the slot as KVM_MEMSLOT_INVALID and wait for the faults that
  // may still use it (synchronize_srcu); from here a fault that hits it retries, so none maps
  // it again between the zap below and its removal.
  slot.markInvalid();
  yield* synchronizeSrcu(vm, ctx);
  if (!vm.backend.hasPrivateMemory) {
    yield* withWriteLock(mmu, ctx, () => atOnce(() => mmu.invalidateRoots(KVM_DIRECT_ROOTS)));
    yield* withReadLock(mmu, ctx, () => zapInvalidatedRoots(mmu, ctx, true));
  } else {
    // kvm_mmu_zap_memslot: no mmu_invalidate_begin/end and no new sequence number. None is
    // needed: a fault that looked the slot up before it was marked invalid has left kvm->srcu
    // (synchronizeSrcu above), and one that looks it up now finds it invalid and retries. The
    // flush covers the slot (kvm_flush_remote_tlbs_memslot), inside the write lock.
    yield* withWriteLock(mmu, ctx, () =>
      unmapGfnRange(
        mmu,
        ctx,
        slot.baseGfn,
        slot.endGfn,
        KVM_FILTER_SHARED | KVM_FILTER_PRIVATE,
        "delete memslot",
      ),
    );
  }
  vm.memslots.remove(slotId);
  releaseBacking(vm, slot);
}

/**
 * The VMM ends the VM before destroying it (TDX: KVM_TDX_TERMINATE_VM): one atomic point, the
 * backend's. Returns its status; -ENOTTY for a backend without the hook. The teardown follows.
 */
export function terminate(vm: Vm): number {
  if (!vm.backend.terminate) return ENOTTY;
  vm.clock.step++;
  const ret = vm.backend.terminate(vm);
  vm.mmu.hookEvent("terminate", 0, 0, ret);
  return ret;
}

/**
 * VM teardown: the MMU notifier's release zaps everything it may (`kvm_mmu_zap_all`: direct and
 * invalid roots), the guest_memfd's release zaps every private mapping and its folios go back
 * to the host, the backend gives up the guest's key (TDX: HKID release, after which S-EPT pages
 * can be reclaimed), the vCPUs are destroyed (each one's direct root, its backend state, then
 * its mirror root and caches), then `kvm_mmu_uninit_tdp_mmu` invalidates every root and zaps
 * them under the write lock, the deferred frees run, the memslots go and the shared memory with
 * them.
 *
 * A guest_memfd file holds a reference to its VM, so `kvm_gmem_release` runs before the VM is
 * destroyed: `kvm_gmem_invalidate_begin` over the whole file, one invalidation under the write
 * lock that unmaps private mappings only (KVM_FILTER_PRIVATE) and flushes the whole VM. On TDX
 * that removes every private page from the S-EPT (BLOCK, TRACK, REMOVE, WBINVD) while the TD
 * still has its key: `tdx_sept_remove_private_spte` treats a removal after the HKID release as
 * a KVM bug. What is left of a mirror root for the last zap is its tables. The file's inode
 * goes with it, and with the inode its folios (`kvm_gmem_free_folio`), all before the VM's
 * destruction begins: the model takes the files to be released before the VM's last reference
 * goes (a file that held the last one would destroy the VM inside its release, and free its
 * folios after that).
 */
export function* teardown(vm: Vm, ctx: ExecCtx, extraVcpus: Vcpu[] = []): Op<void> {
  const mmu = vm.mmu;
  yield* withWriteLock(mmu, ctx, () => zapAll(mmu, ctx));
  if (vm.backend.hasPrivateMemory) {
    const end = vm.npages;
    yield* withWriteLock(mmu, ctx, () =>
      invalidating(mmu, 0, end, () =>
        unmapGfnRange(mmu, ctx, 0, end, KVM_FILTER_PRIVATE, "guest_memfd release", true),
      ),
    );
    for (const slot of vm.memslots.all()) releaseGmem(vm, slot);
  }
  if (vm.backend.teardown) {
    vm.clock.step++;
    vm.backend.teardown(vm);
  }
  // kvm_destroy_vcpus, before kvm_mmu_uninit_vm; per vCPU, kvm_arch_vcpu_destroy:
  // kvm_mmu_unload puts the direct root, then the vCPU's own state goes (`vcpu_free`), then
  // kvm_mmu_destroy, inside a kvm->srcu read section, puts the mirror root and frees the pages
  // the vCPU's caches still hold (mmu_shadow_page_cache, mmu_external_spt_cache). The host's
  // own vCPU (pre-faults, populate) goes last; KVM has no such vCPU.
  for (const v of new Set([...vm.vcpus, ...extraVcpus, vm.hostVcpu])) {
    yield* vm.mmuUnload(v, ctx);
    if (vm.backend.vcpuFree && vm.vcpus.includes(v)) {
      vm.clock.step++;
      vm.backend.vcpuFree(vm, v.id);
    }
    vm.srcu.readLock(vm.hostVcpu.id);
    yield* vm.mmuDestroyMirror(v, ctx);
    mmu.pool.freeCache(v.ctx);
    mmu.freeExternalSpts(v.ctx);
    vm.srcu.readUnlock(vm.hostVcpu.id);
  }
  yield* withWriteLock(mmu, ctx, () => uninitTdpMmu(mmu, ctx));
  for (const slot of [...vm.memslots.all()]) {
    vm.memslots.remove(slot.id);
    releaseBacking(vm, slot);
  }
  if (vm.backend.destroy) {
    vm.clock.step++;
    vm.backend.destroy(vm);
  }
  vm.markDead();
}

/** `kvm_mmu_uninit_tdp_mmu`'s zap, under the write lock: every root invalidated, then zapped. */
function* uninitTdpMmu(mmu: TdpMmu, ctx: ExecCtx): Op<void> {
  mmu.invalidateRoots(KVM_DIRECT_ROOTS | KVM_MIRROR_ROOTS);
  yield* zapInvalidatedRoots(mmu, ctx, false);
}
