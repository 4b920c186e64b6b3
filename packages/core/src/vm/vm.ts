/**
 * A VM: memslots, memory attributes, the TDP MMU, the backend and the vCPUs, wired together as
 * KVM wires them. The vCPU-facing path (guest access → hardware walk → EPT violation → fault
 * handler → retry) is in `guest-access.ts`, the host's ioctls in `host-ops.ts`.
 */
import { type Level } from "../arch/levels.js";
import { gpaToGfn, rootLevelForGpaw } from "../arch/gpa.js";
import type { Backend, MirrorView } from "../backend/backend.js";
import type { BackendVm, VmConfig } from "../backend/backend-vm.js";
import { EventSink } from "../events/events.js";
import { Clock } from "../exec/clock.js";
import { R_GMEM_LOCK, R_SLOTS_LOCK, R_TORN_DOWN, resourceId } from "../exec/footprint.js";
import { Mutex } from "../exec/mutex.js";
import { ExecCtx, type Op } from "../exec/ctx.js";
import { GuestBacking } from "../mem/guest-backing.js";
import { PT64_ROOT_MAX_LEVEL } from "../mem/pt-pool.js";
import type { Host, HostStorage } from "../mem/host.js";
import { MemAttributes } from "../mem/mem-attributes.js";
import { Srcu } from "../exec/srcu.js";
import { KVM_REQ_TLB_FLUSH } from "./vcpu-requests.js";
import { recordedBackend } from "../backend/recorded-backend.js";
import { Memslot, Memslots } from "../mem/memslots.js";
import { PageFault } from "../mmu/tdp-map.js";
import { TdpIter } from "../mmu/tdp-iter.js";
import { initMemslotMemoryAttributes, postSetMemoryAttributes } from "../mmu/mixed-hugepages.js";
import { WalkOut } from "./ept-walk.js";
import { TdpFault } from "./tdp-fault.js";
import { TdpMmu, type MmuOptions } from "../mmu/tdp-mmu.js";
import type { Root } from "../mmu/roots.js";

export class Vcpu {
  readonly iter: TdpIter;
  readonly fault = new PageFault();
  /** The fault handler's state machine, reused for every fault of this vCPU. */
  readonly pf: TdpFault;
  /** The translation the last hardware walk found. */
  readonly walk = new WalkOut();
  /**
   * `mmu->root` (direct) and `mmu->mirror_root_hpa`, loaded on first entry and after
   * invalidation. The vCPU's own, but the host's teardown unloads them (`kvm_mmu_unload` at vCPU
   * destruction), so they are a resource of their own, recorded by `root` and `mirrorRoot`.
   */
  private rootRef: Root | null = null;
  private mirrorRef: Root | null = null;
  private readonly clock: Clock;
  private readonly rootsId: number;
  /** Guest exceptions (#VE, #VC) this vCPU received. */
  exceptions = 0;

  constructor(
    readonly id: number,
    readonly ctx: ExecCtx,
    vm: Vm,
  ) {
    this.iter = new TdpIter(vm.host.pool);
    this.pf = new TdpFault(vm, this);
    this.clock = vm.clock;
    this.rootsId = resourceId(vm.vcpuRootSpace, id + 1);
  }

  get root(): Root | null {
    this.clock.fp?.read(this.rootsId);
    return this.rootRef;
  }

  set root(r: Root | null) {
    this.clock.touch(this.rootsId);
    this.rootRef = r;
  }

  get mirrorRoot(): Root | null {
    this.clock.fp?.read(this.rootsId);
    return this.mirrorRef;
  }

  set mirrorRoot(r: Root | null) {
    this.clock.touch(this.rootsId);
    this.mirrorRef = r;
  }

  /** The roots' slots, recording nothing: for checks, views and the audits, between steps. */
  peekRoots(): string {
    this.clock.assertBetweenSteps("a vCPU's roots");
    return `${this.rootRef?.slot}/${this.mirrorRef?.slot}`;
  }
}

export interface VmOptions {
  mmu?: MmuOptions;
  clock?: Clock;
  events?: EventSink;
  /** Interleave vCPU and host coroutines step by step (set by the scheduler). */
  interleave?: boolean;
}

export class Vm implements BackendVm, HostStorage {
  readonly id: number;
  readonly owner: number;
  readonly memslots: Memslots;
  readonly attributes: MemAttributes;
  readonly mmu: TdpMmu;
  readonly vcpus: Vcpu[] = [];
  readonly hostCtx: ExecCtx;
  /** The host's handle for vCPU ioctls it issues itself (pre-faulting initial memory). */
  readonly hostVcpu: Vcpu;
  readonly clock: Clock;
  readonly backend: Backend;
  readonly events: EventSink;
  readonly rootLevel: Level;
  private tornDown = false;
  /** The resources of the vCPUs' root pointers (`Vcpu.root`), one per vCPU and the host's. */
  readonly vcpuRootSpace: number;
  /** `kvm->srcu`: faults read the memslots inside it; memslot updates wait for them (`synchronizeSrcu`). */
  readonly srcu: Srcu;
  /**
   * `kvm->slots_lock`: memory-attribute changes, memslot updates, dirty-log collection and
   * guest_memfd population hold it, so none of them interleave (`exec/mutex.ts`).
   */
  readonly slotsLock: Mutex;
  /**
   * guest_memfd's `filemap_invalidate_lock`, taken for write by a hole punch for its whole
   * length and by `kvm_gmem_populate`, so neither runs inside the other (the private fault path
   * takes none). One for the VM: the kernel has one per guest_memfd file, and the model's
   * memslots each have their own, so two memslots' punches are kept apart here and not there.
   */
  readonly gmemLock: Mutex;
  /** The view of the VM's tables that the backend's invariant checks walk (`check/mirror-view.ts`), made on first use. */
  checkView: MirrorView | null = null;

  constructor(
    readonly host: Host,
    readonly config: VmConfig,
    backend: Backend,
    opts: VmOptions = {},
  ) {
    this.owner = host.newOwnerId();
    this.id = this.owner;
    this.clock = opts.clock ?? new Clock();
    // The backend as the core calls it: its accesses recorded, by itself or by the wrapper.
    backend = recordedBackend(backend, this.clock);
    this.backend = backend;
    this.clock.addBackend(backend.checkIgnoresGuestMemory === true);
    this.events = opts.events ?? new EventSink(this.clock);
    this.rootLevel = rootLevelForGpaw(config.gpaw);
    const npages = gpaToGfn(config.memory);
    this.attributes = new MemAttributes(npages, this.clock);
    this.memslots = new Memslots(this.clock);
    this.srcu = new Srcu(this.clock, config.vcpus);
    this.slotsLock = new Mutex(this.clock, R_SLOTS_LOCK, "kvm->slots_lock");
    this.gmemLock = new Mutex(this.clock, R_GMEM_LOCK, "filemap_invalidate_lock");
    backend.init?.(this);
    this.mmu = new TdpMmu(this, backend, this.rootLevel, opts.mmu);
    // One memslot for all of guest memory: userspace memory for shared pages and, on a VM with
    // private memory, a guest_memfd for private ones (KVM_MEM_GUEST_MEMFD).
    const shared = new GuestBacking(
      host.frames,
      this.owner,
      "shared",
      npages,
      config.hostPageLevel,
      this.clock,
    );
    const gmem = backend.hasPrivateMemory
      ? new GuestBacking(host.frames, this.owner, "gmem", npages, config.hostPageLevel, this.clock)
      : null;
    const slot = new Memslot(0, 0, npages, { dirtyLogging: false, readonly: false }, shared, gmem);
    this.memslots.add(slot);
    initMemslotMemoryAttributes(this, slot);
    // A confidential VM starts with all of its memory private, as QEMU sets it up (an
    // attribute change over the whole slot: no huge page of it is mixed).
    if (backend.hasPrivateMemory) {
      this.attributes.set(0, npages, true);
      postSetMemoryAttributes(this, slot, 0, npages, true);
    }
    const interleave = opts.interleave ?? false;
    this.clock.interleaved = interleave;
    this.clock.shareRecorder(host.pool);
    this.clock.shareRecorder(host.frames);
    this.hostCtx = new ExecCtx("host", interleave);
    // No invariant check reads a vCPU's roots.
    this.vcpuRootSpace = this.clock.newResourceSpace(false);
    for (let i = 0; i < config.vcpus; i++)
      this.vcpus.push(new Vcpu(i, new ExecCtx(`vcpu${i}`, interleave), this));
    this.hostVcpu = new Vcpu(-1, this.hostCtx, this);
    host.onRelease(this);
  }

  /**
   * The host is discarded (`Host.release`, after each explorer schedule): the VM's per-GFN
   * bitmaps go to the next VM of the same size. Nothing may use the VM again.
   */
  release(): void {
    this.attributes.discardStorage();
    for (const slot of this.memslots.all()) {
      slot.shared.discardStorage();
      slot.gmem?.discardStorage();
    }
  }

  setInterleave(on: boolean): void {
    this.clock.interleaved = on;
    this.hostCtx.interleave = on;
    for (const v of this.vcpus) v.ctx.interleave = on;
  }

  /**
   * Whether the vCPU's direct root is missing or invalid (`kvm_mmu_reload`'s test, and the root
   * an earlier KVM_REQ_MMU_FREE_OBSOLETE_ROOTS frees): then `reloadRoots` runs before it enters
   * (or pre-faults), and takes `mmu_lock`. A TD's mirror root is loaded with the first direct
   * root and stays until the vCPU is destroyed. Callers test this first, so that an entry with
   * current roots (nearly every one) makes no generator.
   */
  rootsStale(vcpu: Vcpu): boolean {
    const root = vcpu.root;
    return root === null || root.invalid;
  }

  /**
   * `vcpu_enter_guest` up to the entry, as far as the MMU goes, for a vCPU whose roots are
   * current (`rootsStale` false): a pending `KVM_REQ_TLB_FLUSH` is a flush now.
   */
  enterGuest(vcpu: Vcpu): void {
    if (this.mmu.requests.check(vcpu.id, KVM_REQ_TLB_FLUSH))
      this.mmu.flushVcpuTlb(vcpu.id, "KVM_REQ_TLB_FLUSH");
  }

  /**
   * The roots' part of `vcpu_enter_guest` (`entering`) or of a pre-fault (`kvm_mmu_reload`
   * alone), for a vCPU whose roots are stale. Every step takes `mmu_lock` for read, as KVM does
   * for TDP MMU roots, so it waits behind a writer (a zap, a conversion) like a fault:
   *
   * - KVM_REQ_MMU_FREE_OBSOLETE_ROOTS (`kvm_mmu_free_obsolete_roots`, early in the request
   *   block): an invalid direct root is put in a read-lock section of its own
   *   (`kvm_mmu_free_roots`; `mmu_free_root_page` asserts the read lock). KVM frees obsolete
   *   direct roots only: a mirror root is never reloaded while the TD runs (only its teardown
   *   invalidates mirror roots), and is put at vCPU destruction (`mmuDestroyMirror`).
   * - then, entering, a pending `KVM_REQ_TLB_FLUSH`, later in the same request block;
   * - `kvm_mmu_load`: the vCPU's caches topped up, then (`mmu_alloc_direct_roots`) the mirror
   *   root if there is none and the direct root, each by `kvm_tdp_mmu_alloc_root` in a read-lock
   *   section of its own (one atomic point here: see below);
   * - and, with the lock dropped, `flush_tlb_current` for the new root.
   *
   * `atOpStart`: the vCPU's first KVM_RUN, at the start of its first op (the scenario program
   * has just yielded to begin it), where taking the lock is the step's first atomic point.
   */
  *reloadRoots(vcpu: Vcpu, entering: boolean, atOpStart = false): Op<void> {
    const mmu = this.mmu;
    const ctx = vcpu.ctx;
    // The first lock of an op's start is that step's atomic point (`RwLock.readLock`).
    let now = atOpStart;
    const old = vcpu.root;
    if (old !== null && old.invalid) {
      yield* this.putRootLocked(old, ctx, now);
      vcpu.root = null;
      now = false;
    }
    if (entering) this.enterGuest(vcpu);
    // kvm_mmu_load tops the vCPU's caches up first, with no lock held (mmu_topup_memory_caches,
    // as a fault does): a new root's page comes from the vCPU's own cache.
    mmu.pool.topUp(ctx, PT64_ROOT_MAX_LEVEL);
    mmu.topUpExternalSpts(ctx, PT64_ROOT_MAX_LEVEL);
    if (this.backend.usesMirrorRoot && vcpu.mirrorRoot === null) {
      yield* mmu.lock.readLock(ctx, now);
      vcpu.mirrorRoot = mmu.getRoot(true, ctx);
      mmu.lock.readUnlock(ctx);
      // KVM takes the lock again for the direct root; with private memory the model goes on in
      // the same atomic point. There, while vCPUs run, none of the model's writers changes the
      // root list or a root's validity (a memslot deletion invalidates no root; only the
      // teardown, which waits for the vCPUs, does), and a walk of the roots between the two
      // sections could only miss a direct root not allocated yet, which holds nothing. What
      // could come between is another vCPU's first load, which would then allocate
      // the direct root from its own cache instead: the same roots, in another page. Apart, the
      // two sections tripled the traces of tdx-race-2m-4k (3,914 to 12,034).
      now = this.backend.hasPrivateMemory;
    }
    yield* mmu.lock.readLock(ctx, now);
    vcpu.root = mmu.getRoot(false, ctx);
    mmu.lock.readUnlock(ctx);
    mmu.flushVcpuTlb(vcpu.id, "new root");
  }

  /**
   * `kvm_mmu_unload` at vCPU destruction, before the backend frees the vCPU (`vcpu_free`): the
   * direct root is put in a read-lock section (`kvm_mmu_free_roots`, which takes the lock only
   * when there is a root to free). `ctx` is the task destroying the VM.
   */
  *mmuUnload(vcpu: Vcpu, ctx: ExecCtx): Op<void> {
    const root = vcpu.root;
    if (root === null) return;
    yield* this.putRootLocked(root, ctx);
    vcpu.root = null;
  }

  /**
   * `kvm_mmu_destroy`'s own section, after the backend freed the vCPU: the mirror root is put
   * under `mmu_lock` for read. KVM takes the lock whether or not the vCPU has a mirror root
   * (`mmu_free_root_page` returns at once on an invalid one: SEV, plain, or a TD vCPU that
   * never ran), and so does the model.
   */
  *mmuDestroyMirror(vcpu: Vcpu, ctx: ExecCtx): Op<void> {
    const mirror = vcpu.mirrorRoot;
    yield* this.putRootLocked(mirror, ctx);
    if (mirror !== null) vcpu.mirrorRoot = null;
  }

  /**
   * `mmu_free_root_page` in a read-lock section of its own (`kvm_mmu_free_roots`); `null` is an
   * invalid root hpa, which it leaves alone.
   */
  private *putRootLocked(root: Root | null, ctx: ExecCtx, atStepStart = false): Op<void> {
    const mmu = this.mmu;
    yield* mmu.lock.readLock(ctx, atStepStart);
    mmu.lock.assertHeldRead("mmu_free_root_page");
    if (root !== null) mmu.putRoot(root);
    mmu.lock.readUnlock(ctx);
  }

  /** The VM has been torn down (`teardown`); no op may run on it any more. */
  get dead(): boolean {
    this.clock.fp?.read(R_TORN_DOWN);
    return this.tornDown;
  }

  /** The teardown's last act. */
  markDead(): void {
    this.clock.touch(R_TORN_DOWN);
    this.tornDown = true;
  }

  /** `dead`, recording nothing: for checks and the audits, between steps. */
  peekDead(): boolean {
    this.clock.assertBetweenSteps("whether the VM is torn down");
    return this.tornDown;
  }

  get npages(): number {
    return this.attributes.npages;
  }

  leak(cause: string): void {
    this.mmu.leak(cause);
  }
}
