/**
 * The TDP MMU of one VM: its roots, its counters, and the primitives every operation is built from
 * (`arch/x86/kvm/mmu/tdp_mmu.c`): the SPTE setters, `handle_changed_spte`, `handle_removed_pt`,
 * linking a new table, the backend hooks of mirror roots, and remote TLB flushes.
 *
 * Setters come in the kernel's two flavours:
 * - `setSpteAtomic` (read lock): a cmpxchg against the iterator's snapshot; on a lost race it
 *   refreshes the snapshot and returns false, and the caller retries (-EBUSY from the
 *   kernel's `tdp_mmu_set_spte_atomic()`);
 * - `setSpte` (write lock): a plain store; the writer owns the table.
 * A mirror SPTE becoming present goes through `set_external_spte_present` instead (the step
 * machine `AtomicSet` in `atomic-set.ts`): freeze, call the backend, then publish or roll back,
 * so no walker acts on an entry the backend has not seen.
 */
import { KVM_MAX_HUGEPAGE_LEVEL, PAGES_PER_LEVEL, type Level } from "../arch/levels.js";
import { gfnWithoutDirectBits } from "../arch/gpa.js";
import {
  EPT_W,
  FROZEN_SPTE_HI,
  FROZEN_SPTE_LO,
  HI_HOST_WRITABLE,
  HI_MMU_WRITABLE,
  isFrozen,
  isLastSpte,
  isShadowPresent,
  isWritable,
  makeNonleafHi,
  makeNonleafLo,
  RAM_MEMTYPE_BITS,
  RAM_MEMTYPE_BITS_GUEST_PAT,
  spteToPfn,
} from "../arch/spte.js";
import {
  DIRECT_NEW_LEAF,
  DIRECT_NEW_WRITABLE,
  DIRECT_OLD_LEAF,
  DIRECT_OLD_WRITABLE,
  type Backend,
} from "../backend/backend.js";
import type { BackendVm } from "../backend/backend-vm.js";
import type { EventSink } from "../events/events.js";
import type { Clock } from "../exec/clock.js";
import { KVM_ARCH_NR_OBJS_PER_MEMORY_CACHE, type ExecCtx, type Op } from "../exec/ctx.js";
import { Rcu } from "../exec/rcu.js";
import { R_INVALIDATE, R_ROOTS } from "../exec/footprint.js";
import { RwLock } from "../exec/rwlock.js";
import {
  ROLE_ADOPTED,
  ROLE_INVALID,
  ROLE_MIRROR,
  ROLE_ROOT,
  U32_PER_TABLE,
  type PtPool,
} from "../mem/pt-pool.js";
import { MmuStats } from "./mmu-stats.js";
import { KVM_DIRECT_ROOTS, KVM_INVALID_ROOTS, KVM_MIRROR_ROOTS, Root } from "./roots.js";
import { KVM_REQ_TLB_FLUSH, VcpuRequests } from "../vm/vcpu-requests.js";
import type { TdpIter } from "./tdp-iter.js";
import { KvmBug } from "./kvm-bug.js";
import { AtomicSet } from "./atomic-set.js";
import { ExternalZaps } from "./external-zap.js";
import { runSteps } from "../exec/step-machine.js";
import { grown } from "../mem/typed-arrays.js";

export { KvmBug };

/**
 * How a mirror SPTE becomes present. `freeze` is the kernel's `set_external_spte_present`:
 * freeze, call the backend, publish. `atomic-then-hook` is the unprotected order of the TDX
 * patch's description: publish with a cmpxchg, call the backend after, which lets another vCPU
 * build on an entry the backend has not seen yet.
 */
export type MirrorStrategy = "freeze" | "atomic-then-hook";

export interface MmuOptions {
  strategy?: MirrorStrategy;
  /**
   * Debug: replace the cmpxchg under the read lock by a read step and a separate write step,
   * as a buggy kernel would. For showing that the explorer finds the race this creates.
   */
  unsafeNonAtomicSet?: boolean;
  /**
   * TDX maps private memory at 2 MiB where it can (`options.tdxHugePages`, which this overrides
   * when set): the TDX backend reads it from `VmConfig.tdxHugePages`.
   */
  tdxHugePages?: boolean;
}

export class TdpMmu {
  /** `tdp_mmu_roots`: reached through `roots` (recorded) or `peekRoots` (checks). */
  private readonly rootList: Root[] = [];
  readonly stats = new MmuStats();
  readonly pool: PtPool;
  readonly lock: RwLock;
  readonly rcu: Rcu;
  /** Requests made on the vCPUs (`KVM_REQ_TLB_FLUSH`), acted on at their next entry. */
  readonly requests: VcpuRequests;
  /** The roots' own resources (`rootIds`: refcount, validity, freed), beside R_ROOTS for the list. */
  readonly rootSpace: number;
  readonly rootLevel: Level;
  /** `kvm->arch.gfn_direct_bits`: the shared bit as a GFN on TDX, 0 elsewhere. */
  readonly gfnDirectBits: number;
  /** The memory-type bits of a leaf for guest RAM (`vmx_get_mt_mask`, fixed per VM). */
  readonly memtypeBits: number;
  readonly events: EventSink;
  readonly clock: Clock;
  /**
   * `mmu_invalidate_seq`, bumped by every invalidation and checked by faults for staleness, and
   * `mmu_invalidate_in_progress` with the union of the ranges in progress: one resource
   * (R_INVALIDATE), reached only through the methods below, which record their accesses.
   */
  private seq = 0;
  private inProgress = 0;
  private rangeStart = 0;
  private rangeEnd = 0;
  /** The backend calls of mirror entries zapped under the write lock, run by the walker. */
  readonly externalZaps = new ExternalZaps(this);
  /** Pages (tables and roots) unlinked and waiting for their RCU grace period. */
  deferredFrees = 0;
  /**
   * Table pages allocated by a walker and not yet linked (the kernel's per-vCPU SP caches,
   * `vcpu->arch.mmu_shadow_page_cache`, which `tdp_mmu_alloc_sp()` takes from).
   */
  inFlightSps = 0;
  /**
   * Mirror entries between their first change and the end of their backend call, as
   * gfn * 8 + level: at most one per thread (a hook runs inside one set). A few doubles in a
   * typed array: adding and removing one costs no hashing, no allocation and no builtin call
   * (`Array.prototype.indexOf` and a `pop` to empty showed in the TDX fault path's profile).
   */
  private mirrorInFlight = new Float64Array(8);
  /** The backend follows the direct roots' stores (`directSpteChanged`). */
  private readonly directHook: boolean;
  private nMirrorInFlight = 0;

  /**
   * Whether the mirror entry at (gfn, level) differs from the backend's for now: its own call is
   * under way, or it is a small leaf of a huge one being split (the backend still has the huge
   * leaf until its split call is done).
   */
  isMirrorInFlight(gfn: number, level: number): boolean {
    if (this.resizeKey >= 0) {
      if (this.resizeKey === gfn * 8 + level) return true;
      const span = PAGES_PER_LEVEL[level + 1];
      if (span !== undefined && this.resizeKey === (gfn - (gfn % span)) * 8 + level + 1)
        return true;
    }
    return this.nMirrorInFlight > 0 && this.mirrorInFlightIndex(gfn * 8 + level) >= 0;
  }

  /**
   * The mirror entry whose size the backend is changing, as gfn * 8 + level, or -1: a huge leaf
   * being split (`split_external_spte`: the entry is a table already, which KVM accounts, with
   * its 512 leaves, once the backend is done) or a table being merged (`promoteExternalSpt`: the
   * entry is still the table). Both run under the write lock, one at a time.
   */
  private resizeKey = -1;
  private resizeIsSplit = false;

  mirrorResizeBegin(gfn: number, level: number, split: boolean): void {
    if (this.resizeKey >= 0) throw new KvmBug("a mirror entry changes size while another one does");
    this.resizeKey = gfn * 8 + level;
    this.resizeIsSplit = split;
    this.clock.bump();
  }

  mirrorResizeEnd(): void {
    this.resizeKey = -1;
    this.clock.bump();
  }

  /** 1 if the mirror table at (gfn, level) is a huge leaf being split, 2 if it is being merged, else 0 (for the checks). */
  mirrorResizing(gfn: number, level: number): number {
    return this.resizeKey === gfn * 8 + level ? (this.resizeIsSplit ? 1 : 2) : 0;
  }

  /**
   * The mirror table under `iter` (level 2) becomes the huge leaf `lo`/`hi` the backend has
   * merged it into (`promoteExternalSpt` returned 0), under the write lock: its leaves leave
   * with it, with no backend call of their own, and the table page and its external page (the
   * backend's, free again) go after a grace period.
   */
  replaceTableByMergedLeaf(iter: TdpIter, lo: number, hi: number): void {
    this.lock.assertHeldWrite("promote_external_spt");
    const oldLo = iter.oldLo;
    const oldHi = iter.oldHi;
    const slot = this.pool.pfnToSlot(spteToPfn(oldLo, oldHi));
    this.writeSpte(iter.mem, iter.off, lo, hi, iter.tableSlot, iter.level, iter.gfn, "promote");
    iter.oldLo = lo;
    iter.oldHi = hi;
    // The caller found the table full of leaves (`mergeableLeaves`), under this same lock.
    this.stats.pages[iter.level - 1]! -= 512;
    this.stats.pages[iter.level]!++;
    this.stats.tablePages--;
    this.deferredFrees++;
    if (this.events.on) this.tableEvent("unlink", slot);
    const ext = this.pool.spExternal[slot]!;
    this.pool.spExternal[slot] = -1;
    this.freeAfterGracePeriod(slot, ext);
  }

  /** Every mirror entry whose backend call is under way, as (gfn, level) (for the checks). */
  forEachMirrorInFlight(cb: (gfn: number, level: number) => void): void {
    for (let i = 0; i < this.nMirrorInFlight; i++) {
      const key = this.mirrorInFlight[i]!;
      cb(Math.floor(key / 8), key % 8);
    }
  }

  private mirrorInFlightIndex(key: number): number {
    const list = this.mirrorInFlight;
    for (let i = 0; i < this.nMirrorInFlight; i++) if (list[i] === key) return i;
    return -1;
  }

  constructor(
    readonly vm: BackendVm,
    readonly backend: Backend,
    rootLevel: Level,
    readonly options: MmuOptions = {},
  ) {
    this.pool = vm.host.pool;
    this.lock = new RwLock(vm.clock, { sink: vm.events, vm: vm.id });
    this.events = vm.events;
    this.clock = vm.clock;
    this.rcu = new Rcu(vm.clock);
    this.requests = new VcpuRequests(vm.clock, vm.config.vcpus);
    this.rootSpace = vm.clock.newResourceSpace();
    this.rootLevel = rootLevel;
    this.gfnDirectBits = backend.gfnDirectBits?.(vm) ?? 0;
    this.memtypeBits = backend.honorsGuestPat ? RAM_MEMTYPE_BITS_GUEST_PAT : RAM_MEMTYPE_BITS;
    this.directHook = backend.directSpteChanged !== undefined;
  }

  /** `kvm_gfn_root_bits`: the direct bits on a direct root, 0 on a mirror root. */
  rootGfnBits(root: Root): number {
    return root.mirror ? 0 : this.gfnDirectBits;
  }

  isMirrorSlot(slot: number): boolean {
    return (this.pool.spRole[slot]! & ROLE_MIRROR) !== 0;
  }

  // ---------------------------------------------------------------- SPTE writes

  /**
   * Every store to a table goes through here, so the event stream sees every change. Kept
   * small enough to be inlined into the fault path (the event is built elsewhere), which also
   * spares boxing the SPTE halves, doubles above 2^30, into heap numbers on every call.
   */
  writeSpte(
    mem: Uint32Array,
    off: number,
    lo: number,
    hi: number,
    tableSlot: number,
    level: number,
    gfn: number,
    by: string,
  ): void {
    if (this.events.on || this.directHook) {
      this.writeSpteNoted(mem, off, lo, hi, tableSlot, level, gfn, by);
      return;
    }
    mem[off] = lo;
    mem[off + 1] = hi;
    if (level > 1) this.pool.upperWrites++;
    this.clock.touch(tableSlot * 512 + ((off & (U32_PER_TABLE - 1)) >>> 1));
  }

  /** `writeSpte` when someone is told of it: the event stream, or the backend's `directSpteChanged`. */
  private writeSpteNoted(
    mem: Uint32Array,
    off: number,
    lo: number,
    hi: number,
    tableSlot: number,
    level: number,
    gfn: number,
    by: string,
  ): void {
    const oldLo = mem[off]!;
    const oldHi = mem[off + 1]!;
    mem[off] = lo;
    mem[off + 1] = hi;
    if (level > 1) this.pool.upperWrites++;
    this.clock.touch(tableSlot * 512 + ((off & (U32_PER_TABLE - 1)) >>> 1));
    if (this.events.on) this.spteEvent(off, oldLo, oldHi, lo, hi, tableSlot, level, gfn, by);
    if (this.directHook && !this.isMirrorSlot(tableSlot))
      this.directChanged(gfn, level, oldLo, oldHi, lo, hi);
  }

  /** `directSpteChanged` for a store to a direct root, unless only accessed or dirty bits changed. */
  private directChanged(
    gfn: number,
    level: number,
    oldLo: number,
    oldHi: number,
    lo: number,
    hi: number,
  ): void {
    const oldPfn = isShadowPresent(oldLo) ? spteToPfn(oldLo, oldHi) : -1;
    const newPfn = isShadowPresent(lo) ? spteToPfn(lo, hi) : -1;
    const flags =
      (oldPfn >= 0 && isLastSpte(oldLo, level) ? DIRECT_OLD_LEAF : 0) |
      (newPfn >= 0 && isLastSpte(lo, level) ? DIRECT_NEW_LEAF : 0) |
      (oldPfn >= 0 && isWritable(oldLo) ? DIRECT_OLD_WRITABLE : 0) |
      (newPfn >= 0 && isWritable(lo) ? DIRECT_NEW_WRITABLE : 0);
    // Old and new alike: nothing the backend is told of changed.
    if (
      oldPfn === newPfn &&
      (flags & DIRECT_OLD_LEAF) === (flags & DIRECT_NEW_LEAF) >> 1 &&
      (flags & DIRECT_OLD_WRITABLE) === (flags & DIRECT_NEW_WRITABLE) >> 1
    )
      return;
    // A walker's GFN is without the direct bits, a removed table's children (its `spGfn`) have
    // them: the hook is told the GFN without them either way.
    gfn = gfnWithoutDirectBits(gfn, this.gfnDirectBits);
    this.backend.directSpteChanged!(this.vm, gfn, level as Level, oldPfn, newPfn, flags);
    this.hookEvent("directSpteChanged", gfn, level, 0);
  }

  private spteEvent(
    off: number,
    oldLo: number,
    oldHi: number,
    lo: number,
    hi: number,
    tableSlot: number,
    level: number,
    gfn: number,
    by: string,
  ): void {
    this.events.emit({
      type: "spte",
      vm: this.vm.id,
      table: tableSlot,
      index: (off % U32_PER_TABLE) >>> 1,
      mirror: this.isMirrorSlot(tableSlot),
      level,
      gfn,
      oldLo,
      oldHi,
      newLo: lo,
      newHi: hi,
      by,
    });
  }

  /**
   * `tdp_mmu_set_spte_atomic` for a non-mirror SPTE, under the read lock: one cmpxchg against
   * `iter.oldLo/oldHi`. On a lost race the snapshot is refreshed and false returned.
   */
  setSpteAtomic(iter: TdpIter, lo: number, hi: number): boolean {
    this.lock.assertHeldRead("tdp_mmu_set_spte_atomic");
    const mem = iter.mem;
    const off = iter.off;
    if (mem[off] !== iter.oldLo || mem[off + 1] !== iter.oldHi) {
      iter.read();
      return false;
    }
    const oldLo = iter.oldLo;
    const oldHi = iter.oldHi;
    this.writeSpte(mem, off, lo, hi, iter.tableSlot, iter.level, iter.gfn, "cmpxchg");
    this.handleChangedSpte(iter.gfn, oldLo, oldHi, lo, hi, iter.level, true);
    return true;
  }

  /**
   * `tdp_mmu_set_spte_atomic` for the read-lock walkers that run as coroutines (zap, dirty log,
   * recovery): the step machine of `atomic-set.ts`, one step per atomic point. The fault path
   * runs its own reused machine instead.
   */
  *setSpteAtomicOp(ctx: ExecCtx, iter: TdpIter, lo: number, hi: number): Op<boolean> {
    // A plain cmpxchg is one step of its own caller's: no machine needed (the common case).
    if (!iter.root.mirror && !this.options.unsafeNonAtomicSet)
      return this.setSpteAtomic(iter, lo, hi);
    return (yield* runSteps(new AtomicSet(this).begin(iter, lo, hi, ctx), ctx)) === 1;
  }

  mirrorInFlightAdd(gfn: number, level: number): void {
    if (this.nMirrorInFlight === this.mirrorInFlight.length) {
      this.mirrorInFlight = grown(this.mirrorInFlight, new Float64Array(2 * this.nMirrorInFlight));
    }
    this.mirrorInFlight[this.nMirrorInFlight++] = gfn * 8 + level;
    // No step's footprint names the in-flight set (the SPTE's own resource orders the calls),
    // but the checks read it: a change of it alone must still move the check version.
    this.clock.bump();
  }

  mirrorInFlightDelete(gfn: number, level: number): void {
    const i = this.mirrorInFlightIndex(gfn * 8 + level);
    if (i < 0) return;
    this.mirrorInFlight[i] = this.mirrorInFlight[--this.nMirrorInFlight]!;
    this.clock.bump();
  }

  /** The backend call for a mirror SPTE becoming present: link a table or set a leaf. */
  callSetHook(gfn: number, level: number, lo: number, hi: number): number {
    this.lock.assertHeld("set_external_spte_present");
    let ret: number;
    if (isLastSpte(lo, level)) {
      ret = this.backend.setExternalSpte
        ? this.backend.setExternalSpte(this.vm, gfn, level as Level, spteToPfn(lo, hi))
        : 0;
      this.hookEvent("setExternalSpte", gfn, level, ret);
    } else {
      const slot = this.pool.pfnToSlot(spteToPfn(lo, hi));
      const ext = this.pool.spExternal[slot]!;
      if ((this.pool.spRole[slot]! & ROLE_ADOPTED) !== 0) {
        // The backend's secure table is already where the entry points: nothing to link. From
        // here on the page goes with the mirror table like any linked one.
        this.hookEvent("adoptExternalSpt", gfn, level, 0);
        return 0;
      }
      ret = this.backend.linkExternalSpt
        ? this.backend.linkExternalSpt(this.vm, gfn, level as Level, ext)
        : 0;
      this.hookEvent("linkExternalSpt", gfn, level, ret);
    }
    return ret;
  }

  /**
   * `tdp_mmu_iter_set_spte` under the write lock: a plain store, then `handle_changed_spte`,
   * then, on a mirror root, `remove_external_spte` for a zap, or `split_external_spte` for a
   * huge leaf becoming a table (the TDX huge-page series; nothing else may become present here).
   * The mirror's backend calls are queued: the walker runs them (`externalZaps.begin`) before its
   * next store, yielding between their atomic points.
   */
  setSpte(iter: TdpIter, lo: number, hi: number): void {
    this.lock.assertHeldWrite("tdp_mmu_iter_set_spte");
    if (this.externalZaps.pending)
      throw new KvmBug("SPTE store before the backend calls of the previous one ran");
    const oldLo = iter.mem[iter.off]!;
    const oldHi = iter.mem[iter.off + 1]!;
    if (isFrozen(oldLo, oldHi) || isFrozen(lo, hi)) {
      throw new KvmBug(
        `non-atomic set from or to FROZEN_SPTE at gfn ${iter.gfn} level ${iter.level}`,
      );
    }
    this.writeSpte(iter.mem, iter.off, lo, hi, iter.tableSlot, iter.level, iter.gfn, "store");
    // As `tdp_mmu_iter_set_spte`, the snapshot becomes the value that was replaced.
    iter.oldLo = oldLo;
    iter.oldHi = oldHi;
    this.handleChangedSpte(iter.gfn, oldLo, oldHi, lo, hi, iter.level, false);
    if (iter.root.mirror) {
      if (!isShadowPresent(lo)) this.externalZaps.queueRemove(iter.gfn, oldLo, oldHi, iter.level);
      else if (
        isShadowPresent(oldLo) &&
        isLastSpte(oldLo, iter.level) &&
        !isLastSpte(lo, iter.level)
      ) {
        this.externalZaps.queueSplit(
          iter.gfn,
          iter.level,
          this.pool.spExternal[this.pool.pfnToSlot(spteToPfn(lo, hi))]!,
        );
      } else throw new KvmBug("non-atomic set of a present mirror SPTE that is not a split");
    }
  }

  /**
   * `handle_changed_spte`: bookkeeping after an SPTE changed from old to new. Page stats follow
   * leafness; a present table replaced by a leaf or a non-present value is torn down.
   * FROZEN counts as non-present here. A WARN of the kernel is a `KvmBug` in the model.
   */
  handleChangedSpte(
    gfn: number,
    oldLo: number,
    oldHi: number,
    newLo: number,
    newHi: number,
    level: number,
    shared: boolean,
  ): void {
    // The fault path's common case, kept small enough to inline: a non-present, non-frozen
    // entry becomes a 4K leaf. Everything else takes the full checks below.
    if (
      level === 1 &&
      !isShadowPresent(oldLo) &&
      isShadowPresent(newLo) &&
      !isFrozen(oldLo, oldHi)
    ) {
      checkSpteWritableInvariants(newLo, newHi, gfn, level);
      this.stats.pages[1]!++;
      return;
    }
    this.handleChangedSpteFull(gfn, oldLo, oldHi, newLo, newHi, level, shared);
  }

  private handleChangedSpteFull(
    gfn: number,
    oldLo: number,
    oldHi: number,
    newLo: number,
    newHi: number,
    level: number,
    shared: boolean,
  ): void {
    const wasPresent = isShadowPresent(oldLo);
    const isPresent = isShadowPresent(newLo);
    const wasLeaf = wasPresent && isLastSpte(oldLo, level);
    const isLeaf = isPresent && isLastSpte(newLo, level);
    if (level > KVM_MAX_HUGEPAGE_LEVEL && isLeaf)
      throw new KvmBug(`leaf SPTE at level ${level} (gfn ${gfn})`);
    if (isLeaf) checkSpteWritableInvariants(newLo, newHi, gfn, level);
    if (oldLo === newLo && oldHi === newHi) return;
    const pfnChanged = spteToPfn(oldLo, oldHi) !== spteToPfn(newLo, newHi);
    if (wasLeaf && isLeaf && pfnChanged) {
      throw new KvmBug(
        `present leaf at gfn ${gfn} level ${level} changed PFN ${spteToPfn(oldLo, oldHi)} → ${spteToPfn(newLo, newHi)}`,
      );
    }
    // Non-present to non-present is legal only toward FROZEN (or MMIO, not modelled): a WARN.
    if (!wasPresent && !isPresent) {
      if (!isFrozen(newLo, newHi))
        throw new KvmBug(
          `WARN: non-present SPTE at gfn ${gfn} level ${level} changed to another non-present value`,
        );
      return;
    }
    if (wasLeaf !== isLeaf) this.stats.pages[level]! += isLeaf ? 1 : -1;
    if (wasLeaf && !isPresent) this.stats.zappedLeaves++;
    if (wasPresent && !wasLeaf && (isLeaf || !isPresent || pfnChanged)) {
      this.handleRemovedPt(this.pool.pfnToSlot(spteToPfn(oldLo, oldHi)), shared);
    }
  }

  /**
   * `handle_removed_pt`: a table was unlinked. Unaccount it, freeze each of its 512 entries
   * (recursing into child tables through `handle_changed_spte`), tell the backend about mirror
   * leaves and the mirror table itself, and free the page after an RCU grace period, since a
   * walker may still hold a pointer into it.
   *
   * Under the read lock the kernel (`arch/x86/kvm/mmu/tdp_mmu.c`: `handle_removed_pt()`) xchg's
   * each entry to FROZEN and spins while another thread has it frozen. In the model the 512 entries
   * are frozen in the same step as the unlink, and on a direct root no one else can hold a child of
   * an unlinked table frozen (only the thread that unlinked it freezes its children); mirror tables
   * are torn down only under the write lock. Meeting a FROZEN child under the read lock is
   * therefore a bug here.
   */
  handleRemovedPt(slot: number, shared: boolean): void {
    const pool = this.pool;
    const level = pool.spLevel[slot]!;
    const baseGfn = pool.spGfn[slot]!;
    const mirror = (pool.spRole[slot]! & ROLE_MIRROR) !== 0;
    const mem = pool.tableMem(slot);
    const base = pool.tableOff(slot);
    const span = PAGES_PER_LEVEL[level]!;
    if (mirror && shared) throw new KvmBug("mirror page table removed under the shared mmu_lock");
    this.stats.tablePages--;
    if (this.events.on) this.tableEvent("unlink", slot);
    for (let i = 0; i < 512; i++) {
      const off = base + 2 * i;
      const gfn = baseGfn + i * span;
      const oldLo = mem[off]!;
      const oldHi = mem[off + 1]!;
      if (shared) {
        if (isFrozen(oldLo, oldHi))
          throw new KvmBug(`child ${i} of removed table at gfn ${gfn} already frozen`);
      } else if (!isShadowPresent(oldLo)) {
        continue;
      }
      this.writeSpte(mem, off, FROZEN_SPTE_LO, FROZEN_SPTE_HI, slot, level, gfn, "freeze");
      this.handleChangedSpte(gfn, oldLo, oldHi, FROZEN_SPTE_LO, FROZEN_SPTE_HI, level, shared);
      if (mirror) this.externalZaps.queueRemove(gfn, oldLo, oldHi, level);
    }
    this.deferredFrees++;
    if (mirror) this.externalZaps.queueFree(slot);
    else this.freeAfterGracePeriod(slot, -1);
  }

  /**
   * The page of an unlinked table, and its external page if the backend gave it back, are freed
   * after an RCU grace period: a walker may still hold a pointer into the table. The page counts
   * in `deferredFrees` from its unlink.
   */
  freeAfterGracePeriod(slot: number, ext: number): void {
    this.rcu.callRcu(() => {
      if (this.events.on) this.tableEvent("free", slot);
      // tdp_mmu_free_sp: the external page goes back to the host with the table.
      if (ext >= 0) this.backend.releaseExternalSpt?.(this.vm, ext);
      this.pool.free(slot);
      this.deferredFrees--;
    });
  }

  /** Counts a page leaked on purpose, with its cause. */
  leak(cause: string): void {
    this.stats.leakedPages++;
    this.stats.leakCauses[cause] = (this.stats.leakCauses[cause] ?? 0) + 1;
  }

  // ---------------------------------------------------------------- tables

  /**
   * `tdp_mmu_alloc_sp` + `tdp_mmu_init_child_sp` (+ `kvm_mmu_alloc_external_spt` on a mirror):
   * from the page cache of `cache`'s task (a faulting vCPU's), else from the pool.
   */
  allocChildSp(iter: TdpIter, cache: ExecCtx | null = null): number {
    const level = iter.level - 1;
    const mirror = iter.root.mirror;
    const slot = this.pool.alloc(this.vm.id, level, iter.gfn, mirror ? ROLE_MIRROR : 0, cache);
    if (mirror) {
      // A secure table the backend made itself is adopted rather than a new one linked.
      const adopted = this.backend.adoptExternalSpt
        ? this.backend.adoptExternalSpt(this.vm, iter.gfn, iter.level as Level)
        : -1;
      if (adopted >= 0) {
        this.pool.spExternal[slot] = adopted;
        this.pool.spRole[slot] = this.pool.spRole[slot]! | ROLE_ADOPTED;
      } else if (this.backend.allocExternalSpt) {
        this.pool.spExternal[slot] =
          cache !== null && cache.externalSptCache > 0
            ? cache.externalSpts[--cache.externalSptCache]!
            : this.backend.allocExternalSpt(this.vm);
      }
    }
    this.inFlightSps++;
    if (this.events.on) this.tableEvent("alloc", slot);
    return slot;
  }

  /**
   * `mmu_topup_memory_caches` for `vcpu->arch.mmu_external_spt_cache` (a VM with mirror roots):
   * at least `min` backend pages in `cache`, else filled to its capacity. Each page taken here
   * comes from the backend's allocator, shared by every task; one taken from the cache later
   * (`allocChildSp`) is the task's own.
   */
  topUpExternalSpts(cache: ExecCtx, min: number): void {
    const be = this.backend;
    if (!be.allocExternalSpt || !be.usesMirrorRoot || cache.externalSptCache >= min) return;
    const pages = cache.externalSpts;
    while (cache.externalSptCache < KVM_ARCH_NR_OBJS_PER_MEMORY_CACHE)
      pages[cache.externalSptCache++] = be.allocExternalSpt(this.vm);
  }

  /** `kvm_mmu_free_memory_cache` of the external-SPT cache: its pages go back to the backend. */
  freeExternalSpts(cache: ExecCtx): void {
    while (cache.externalSptCache > 0)
      this.backend.releaseExternalSpt?.(this.vm, cache.externalSpts[--cache.externalSptCache]!);
  }

  /**
   * `tdp_mmu_alloc_sp_for_split`: a page for eager splitting, allocated with `mmu_lock` dropped
   * and made the child of an entry only when used (`initChildSp`). Direct roots only.
   */
  allocSpForSplit(): number {
    const slot = this.pool.alloc(this.vm.id, 0, 0, 0);
    this.inFlightSps++;
    return slot;
  }

  /** `tdp_mmu_init_child_sp`: page `slot` (from `allocSpForSplit`) is to become the table under `iter`. */
  initChildSp(slot: number, iter: TdpIter): void {
    if (iter.root.mirror) throw new KvmBug("eager split of a mirror root");
    this.pool.initSlot(slot, iter.level - 1, iter.gfn, 0);
    if (this.events.on) this.tableEvent("alloc", slot);
  }

  /**
   * `tdp_mmu_free_sp` for a page that was never linked: freed at once, nobody could see it; its
   * external page was never given to the backend's hardware, so it simply goes back.
   */
  freeUnlinkedSp(slot: number): void {
    const ext = this.pool.spExternal[slot]!;
    this.pool.spExternal[slot] = -1;
    // An adopted page stays the backend's secure table: it was never handed over.
    if (ext >= 0 && (this.pool.spRole[slot]! & ROLE_ADOPTED) === 0)
      this.backend.releaseExternalSpt?.(this.vm, ext);
    this.pool.free(slot);
    this.inFlightSps--;
  }

  /**
   * `tdp_mmu_link_sp`: make the entry at `iter` point to the table `child` (atomically under the
   * read lock), then account the page. Returns false if the cmpxchg lost a race.
   */
  *linkSp(ctx: ExecCtx, iter: TdpIter, child: number, shared: boolean): Op<boolean> {
    const pfn = this.pool.slotToPfn(child);
    if (shared) {
      if (!(yield* this.setSpteAtomicOp(ctx, iter, makeNonleafLo(pfn), makeNonleafHi(pfn))))
        return false;
    } else {
      this.setSpte(iter, makeNonleafLo(pfn), makeNonleafHi(pfn));
    }
    this.linkedSp(child);
    return true;
  }

  /** The accounting of `tdp_mmu_link_sp` once the entry points to `child`. */
  linkedSp(child: number): void {
    this.stats.tablePages++;
    this.inFlightSps--;
    if (this.events.on) this.tableEvent("link", child);
  }

  // ---------------------------------------------------------------- flushes and events

  /**
   * `kvm_flush_remote_tlbs_range` (a whole-VM flush passes npages = Infinity): without a
   * range-flush hook (Hyper-V's), x86 falls back to `kvm_flush_remote_tlbs`, which makes
   * `KVM_REQ_TLB_FLUSH` on every vCPU and kicks those in guest mode out. Each flushes at its next
   * entry (`flushVcpuTlb`), once for any number of requests.
   */
  flushRemoteTlbs(gfn: number, npages: number, reason: string): void {
    this.stats.tlbFlushes++;
    this.clock.step++;
    this.requests.makeAll(KVM_REQ_TLB_FLUSH);
    if (this.backend.kickVcpu)
      for (let v = 0; v < this.requests.vcpus; v++) this.backend.kickVcpu(this.vm, v);
    if (this.events.on) {
      this.events.emit({
        type: "flush",
        vm: this.vm.id,
        reason,
        gfn,
        level: npages === Infinity ? 0 : npages,
      });
    }
  }

  /**
   * A vCPU's own TLB flush before it enters the guest: `kvm_vcpu_flush_tlb_all` for a pending
   * `KVM_REQ_TLB_FLUSH`, or `flush_tlb_current` after `kvm_mmu_load` loaded a new root (INVEPT,
   * the ASID flush, TDX's `tdx_flush_tlb_all`/`_current`: the backend's `flushTlb`).
   */
  flushVcpuTlb(vcpu: number, reason: string): void {
    this.stats.vcpuTlbFlushes++;
    this.backend.flushTlb?.(this.vm, vcpu);
    if (this.events.on)
      this.events.emit({
        type: "flush",
        vm: this.vm.id,
        reason: `${reason} (vcpu${vcpu})`,
        gfn: 0,
        level: -1,
      });
  }

  hookEvent(hook: string, gfn: number, level: number, result: number): void {
    if (this.events.on)
      this.events.emit({ type: "hook", vm: this.vm.id, hook, gfn, level, result });
  }

  tableEvent(action: "alloc" | "link" | "unlink" | "free" | "leak", slot: number): void {
    const p = this.pool;
    this.events.emit({
      type: "table",
      vm: this.vm.id,
      action,
      slot,
      pfn: p.slotToPfn(slot),
      level: p.spLevel[slot]!,
      gfn: p.spGfn[slot]!,
      mirror: (p.spRole[slot]! & ROLE_MIRROR) !== 0,
    });
  }

  // ---------------------------------------------------------------- invalidation

  /** `kvm_mmu_invalidate_begin` + `kvm_mmu_invalidate_range_add` (under the write lock). */
  invalidateBegin(start: number, end: number): void {
    this.clock.touch(R_INVALIDATE);
    if (this.inProgress++ === 0) {
      this.rangeStart = start;
      this.rangeEnd = end;
    } else {
      this.rangeStart = Math.min(this.rangeStart, start);
      this.rangeEnd = Math.max(this.rangeEnd, end);
    }
  }

  /** `kvm_mmu_invalidate_range_add`: the range in progress grows to cover [start, end) too. */
  invalidateRangeAdd(start: number, end: number): void {
    this.clock.touch(R_INVALIDATE);
    this.rangeStart = Math.min(this.rangeStart, start);
    this.rangeEnd = Math.max(this.rangeEnd, end);
  }

  /** `kvm_mmu_invalidate_end`: a new sequence number, then one fewer in progress. */
  invalidateEnd(): void {
    this.clock.touch(R_INVALIDATE);
    this.seq++;
    this.inProgress--;
  }

  /** `kvm->mmu_invalidate_seq`, as a fault samples it before looking the PFN up. */
  get invalidateSeq(): number {
    this.clock.fp?.read(R_INVALIDATE);
    return this.seq;
  }

  /** `mmu_invalidate_retry_gfn`: must a fault that sampled `seq` for `gfn` retry? */
  invalidateRetryGfn(seq: number, gfn: number): boolean {
    this.clock.fp?.read(R_INVALIDATE);
    if (this.inProgress > 0 && gfn >= this.rangeStart && gfn < this.rangeEnd) return true;
    return this.seq !== seq;
  }

  /** The invalidation state as a string, recording nothing: for the footprint audit. */
  invalidateAuditState(): string {
    return `${this.seq}/${this.inProgress}/${this.rangeStart}-${this.rangeEnd}`;
  }

  // ---------------------------------------------------------------- roots

  /** The root list, newest first, as a walker reads it. */
  get roots(): readonly Root[] {
    this.clock.fp?.read(R_ROOTS);
    return this.rootList;
  }

  /** The root list, recording nothing: for checks and views between steps. */
  peekRoots(): readonly Root[] {
    this.clock.assertBetweenSteps("the root list");
    return this.rootList;
  }

  /**
   * `kvm_tdp_mmu_alloc_root` (under `mmu_lock` for read): a valid root of the wanted kind gets
   * another reference; else a new root page is allocated with refcount 2 (the caller's and the
   * MMU's), from the page cache of `cache` (the vCPU's, topped up by `kvm_mmu_load` first).
   * Finding a valid root only reads the list and that root's validity, and takes a reference.
   */
  getRoot(mirror: boolean, cache: ExecCtx): Root {
    this.lock.assertHeld("kvm_tdp_mmu_alloc_root");
    for (const r of this.roots) {
      if (r.mirror === mirror && !r.invalid) {
        r.get();
        return r;
      }
    }
    this.clock.touch(R_ROOTS);
    const slot = this.pool.alloc(
      this.vm.id,
      this.rootLevel,
      0,
      ROLE_ROOT | (mirror ? ROLE_MIRROR : 0),
      cache,
    );
    const root = new Root(slot, this.rootLevel, mirror, this.clock, this.rootSpace);
    // list_add_rcu: a new root goes to the head of tdp_mmu_roots, so walks over the roots (zap,
    // unmap, invalidation) meet the newest first; on a TD, the direct root before the mirror,
    // which KVM allocates first.
    this.rootList.unshift(root);
    if (this.events.on)
      this.events.emit({
        type: "root",
        vm: this.vm.id,
        action: "alloc",
        root: slot,
        level: root.level,
        mirror,
      });
    return root;
  }

  /**
   * `kvm_tdp_mmu_put_root`: drop a reference; the last one frees the root after a grace period.
   * Only an invalid root may reach zero.
   */
  putRoot(root: Root): void {
    if (root.put() > 0) return;
    if (!root.invalid) throw new KvmBug(`last reference to valid root ${root.slot} dropped`);
    this.clock.touch(R_ROOTS);
    this.rootList.splice(this.rootList.indexOf(root), 1);
    root.markFreed();
    this.deferredFrees++;
    this.rcu.callRcu(() => {
      this.deferredFrees--;
      if (this.events.on)
        this.events.emit({
          type: "root",
          vm: this.vm.id,
          action: "free",
          root: root.slot,
          level: root.level,
          mirror: root.mirror,
        });
      this.pool.free(root.slot);
    });
  }

  /** `kvm_tdp_mmu_invalidate_roots` (write lock): mark roots of the given types invalid. */
  invalidateRoots(types: number): void {
    this.clock.fp?.read(R_ROOTS);
    for (const r of this.rootList) {
      if (r.invalid) continue;
      const want = r.mirror ? (types & KVM_MIRROR_ROOTS) !== 0 : (types & KVM_DIRECT_ROOTS) !== 0;
      if (!want) continue;
      r.markInvalid();
      this.pool.spRole[r.slot] = this.pool.spRole[r.slot]! | ROLE_INVALID;
      if (this.events.on)
        this.events.emit({
          type: "root",
          vm: this.vm.id,
          action: "invalidate",
          root: r.slot,
          level: r.level,
          mirror: r.mirror,
        });
    }
  }

  /**
   * Roots matching a type mask, in list order (`tdp_mmu_root_match`): an invalid root only if
   * `KVM_INVALID_ROOTS` is asked for, and in any case only if its kind (direct or mirror) is.
   */
  rootsOfTypes(types: number): Root[] {
    const out: Root[] = [];
    for (const r of this.roots) {
      if (r.invalid && (types & KVM_INVALID_ROOTS) === 0) continue;
      if ((types & (r.mirror ? KVM_MIRROR_ROOTS : KVM_DIRECT_ROOTS)) !== 0) out.push(r);
    }
    return out;
  }

  /** Valid roots of both kinds (`for_each_valid_tdp_mmu_root_yield_safe`). */
  validRoots(): Root[] {
    return this.rootsOfTypes(KVM_DIRECT_ROOTS | KVM_MIRROR_ROOTS);
  }

  /**
   * Walks each root of `types` with a reference held (`tdp_mmu_next_root`), so a walker that
   * drops the lock to yield never finds its root freed under it. Roots already on their way out
   * (refcount 0) are skipped. `body` takes the root and what the roots before it gave (`acc`
   * for the first) and returns it updated; the walk returns the last.
   *
   * The body is an arrow that calls a module-level `function*`, never a `function*` closure: V8
   * gives each generator closure its own prototype map, an old-generation object that points at
   * the closure, so whatever the closure captured (the VM) outlives young collections and is
   * promoted, for every schedule the explorer runs (lint forbids such closures).
   */
  *forEachRoot<T>(types: number, acc: T, body: (root: Root, acc: T) => Op<T>): Op<T> {
    for (const root of this.rootsOfTypes(types)) {
      if (root.refcount === 0 || root.freed) continue;
      root.get();
      try {
        acc = yield* body(root, acc);
      } finally {
        this.putRoot(root);
      }
    }
    return acc;
  }
}

/**
 * `check_spte_writable_invariants`: W implies MMU-writable, and MMU-writable implies
 * host-writable. A leaf that breaks this is a KVM bug.
 */
function checkSpteWritableInvariants(lo: number, hi: number, gfn: number, level: number): void {
  const notMmuWritable = (lo & EPT_W) !== 0 && (hi & HI_MMU_WRITABLE) === 0;
  const notHostWritable = (hi & HI_MMU_WRITABLE) !== 0 && (hi & HI_HOST_WRITABLE) === 0;
  // One throw site: with two, V8 shared the message's number-to-string of `gfn` between them
  // and computed it on every call, before either test (4 % of the fault path's time).
  if (notMmuWritable || notHostWritable) {
    throw new KvmBug(
      `${notMmuWritable ? "writable SPTE without MMU-writable" : "MMU-writable SPTE without host-writable"} at gfn ${gfn} level ${level}`,
    );
  }
}
