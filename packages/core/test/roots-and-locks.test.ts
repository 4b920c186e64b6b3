import { describe, expect, it } from "vitest";
import {
  ExecCtx,
  FootprintStore,
  KVM_DIRECT_ROOTS,
  KVM_INVALID_ROOTS,
  KVM_MIRROR_ROOTS,
  RET_PF_FIXED,
  TdpIter,
  checkInvariants,
  fastPageFault,
  guestAccessPage,
  hostOps,
  isWritable,
  recordedStep,
  type Backend,
  type Root,
  type Vm,
} from "../src/testing.js";
import { FakeMirrorBackend, cachedExternalSpts, makeVm, run } from "./helpers.js";

function privateAccess(vm: Vm, gfn: number) {
  return guestAccessPage(vm, vm.vcpus[0]!, gfn * 4096, true, false);
}

describe("root matching (tdp_mmu_root_match)", () => {
  it("an invalid root is matched only when invalid roots are asked for, and only of its own kind", () => {
    const vm = makeVm({ backend: new FakeMirrorBackend() });
    run(privateAccess(vm, 0));
    const direct = vm.vcpus[0]!.root!;
    const mirror = vm.vcpus[0]!.mirrorRoot!;
    vm.mmu.invalidateRoots(KVM_MIRROR_ROOTS);
    expect(vm.mmu.rootsOfTypes(KVM_DIRECT_ROOTS)).toEqual([direct]);
    expect(vm.mmu.rootsOfTypes(KVM_DIRECT_ROOTS | KVM_INVALID_ROOTS)).toEqual([direct]);
    expect(vm.mmu.rootsOfTypes(KVM_MIRROR_ROOTS)).toEqual([]);
    expect(vm.mmu.rootsOfTypes(KVM_MIRROR_ROOTS | KVM_INVALID_ROOTS)).toEqual([mirror]);
    expect(vm.mmu.validRoots()).toEqual([direct]);
  });

  it("zapping shared mappings leaves an invalid mirror root alone", () => {
    const be = new FakeMirrorBackend();
    const vm = makeVm({ backend: be });
    run(privateAccess(vm, 0));
    vm.mmu.invalidateRoots(KVM_MIRROR_ROOTS);
    run(hostOps.convertMemory(vm, vm.hostCtx, 0, 1, true)); // no-op: already private
    run(hostOps.convertMemory(vm, vm.hostCtx, 2, 3, false)); // zaps private mappings of GFN 2 only
    expect(be.leaves.size).toBe(1);
  });
});

describe("a root's words are resources of their own", () => {
  /** The footprint of `f`, done on `vm` with a recorder set, in `store`. */
  function footprint(vm: Vm, store: FootprintStore, f: () => void): number {
    return recordedStep(vm.clock, f).saveTo(store);
  }

  it("taking a reference commutes with another and with a fault's validity check; dropping one or invalidating does not", () => {
    const vm = makeVm({ backend: new FakeMirrorBackend() });
    run(privateAccess(vm, 0));
    const root: Root = vm.vcpus[0]!.root!;
    const store = new FootprintStore();
    const get = footprint(vm, store, () => root.get());
    const get2 = footprint(vm, store, () => root.get());
    const valid = footprint(vm, store, () => root.invalid);
    const put = footprint(vm, store, () => root.put());
    const refs = footprint(vm, store, () => root.refcount);
    const invalidate = footprint(vm, store, () => root.markInvalid());
    expect(store.dependsOn(get, get2)).toBe(false);
    expect(store.dependsOn(get, valid)).toBe(false);
    expect(store.dependsOn(put, valid)).toBe(false);
    expect(store.dependsOn(get, put)).toBe(true);
    expect(store.dependsOn(get, refs)).toBe(true);
    expect(store.dependsOn(put, put)).toBe(true);
    expect(store.dependsOn(invalidate, valid)).toBe(true);
    expect(store.dependsOn(invalidate, get)).toBe(false);
  });
});

describe("kvm_mmu_reload", () => {
  it("loads a root (and flushes the vCPU's TLB for it) only when the vCPU has no valid one", () => {
    for (const mirror of [false, true]) {
      const vm = makeVm(mirror ? { backend: new FakeMirrorBackend() } : {});
      const host = vm.hostVcpu;
      // Pre-faults reload the host vCPU's roots before every page, as kvm_arch_vcpu_pre_fault_memory does.
      run(hostOps.populate(vm, host, 0, 1));
      const root = host.root;
      const mirrorRoot = host.mirrorRoot;
      const flushes = vm.mmu.stats.vcpuTlbFlushes;
      run(hostOps.populate(vm, host, 1, 4));
      expect(vm.mmu.stats.vcpuTlbFlushes).toBe(flushes);
      expect(host.root).toBe(root);
      expect(host.mirrorRoot).toBe(mirrorRoot);
      // The direct root invalidated: it alone is loaded again, with one flush. KVM never
      // reloads a mirror root while the TD runs (only its teardown invalidates mirror roots).
      vm.mmu.invalidateRoots(KVM_DIRECT_ROOTS);
      expect(vm.rootsStale(host)).toBe(true);
      run(vm.reloadRoots(host, false));
      expect(vm.rootsStale(host)).toBe(false);
      expect(vm.mmu.stats.vcpuTlbFlushes).toBe(flushes + 1);
      expect(host.root).not.toBe(root);
      expect(host.mirrorRoot).toBe(mirrorRoot);
    }
  });
});

describe("errors never leave the MMU locked", () => {
  it("a backend that throws in the middle of a fault: the read lock and RCU are released", () => {
    const be = new FakeMirrorBackend();
    (be as { setExternalSpte: Backend["setExternalSpte"] }).setExternalSpte = () => {
      throw new Error("backend exploded");
    };
    const vm = makeVm({ backend: be });
    expect(() => run(privateAccess(vm, 0))).toThrow("backend exploded");
    expect(vm.mmu.lock.peekState().readers).toBe(0);
    expect(vm.vcpus[0]!.ctx.rcuNest).toBe(0);
    expect(vm.vcpus[0]!.ctx.lockMode).toBe(0);
    // The MMU still works: a zap takes the write lock at once.
    run(hostOps.zapGfnRange(vm, vm.hostCtx, 0, 16));
  });
});

describe("external pages go back to the host", () => {
  it("every external page is released: unlinked ones at once, linked ones with their table", () => {
    const be = new FakeMirrorBackend();
    const vm = makeVm({ backend: be });
    be.failNextSet = 1; // the first leaf fails, the fault retries
    for (let g = 0; g < 600; g++) run(privateAccess(vm, g));
    // One per table, and those the vCPU's cache holds for its next tables (given back when
    // the vCPU goes, at teardown).
    expect(be.liveExternal.size).toBe(vm.mmu.stats.tablePages + cachedExternalSpts(vm));
    run(hostOps.teardown(vm, vm.hostCtx));
    expect(be.liveExternal.size).toBe(0);
  });

  it("a fault takes its tables' external pages from its vCPU's cache, filled before mmu_lock", () => {
    const be = new FakeMirrorBackend();
    let allocs = 0;
    let locked = 0;
    const alloc = be.allocExternalSpt.bind(be);
    be.allocExternalSpt = () => {
      allocs++;
      // As kvm_mmu_topup_memory_cache: before the fault takes mmu_lock.
      locked += vm.vcpus[0]!.ctx.lockMode;
      return alloc();
    };
    const vm = makeVm({ backend: be });
    run(privateAccess(vm, 0));
    expect(locked).toBe(0);
    // The first fault fills the cache to its capacity (KVM_ARCH_NR_OBJS_PER_MEMORY_CACHE).
    expect(allocs).toBe(40);
    const cached = cachedExternalSpts(vm);
    const tables = vm.mmu.stats.tablePages;
    expect(cached).toBeLessThan(40);
    // A fault 40 MiB away needs a new table: it comes from the cache, the backend is not asked.
    run(privateAccess(vm, 512 * 20));
    expect(vm.mmu.stats.tablePages).toBeGreaterThan(tables);
    expect(allocs).toBe(40);
    expect(cachedExternalSpts(vm)).toBe(cached - (vm.mmu.stats.tablePages - tables));
  });

  it("a leaked table's external page is never released", () => {
    const be = new FakeMirrorBackend();
    const vm = makeVm({ backend: be });
    run(privateAccess(vm, 0));
    be.failFree = true;
    run(hostOps.teardown(vm, vm.hostCtx));
    expect(vm.mmu.stats.leakedPages).toBe(3);
    expect(be.liveExternal.size).toBe(3);
  });
});

describe("fast page fault", () => {
  it("decides on the walk's snapshot: a change in between fails the cmpxchg, and it walks again", () => {
    const vm = makeVm();
    const v = vm.vcpus[0]!;
    run(guestAccessPage(vm, v, 0, true, false));
    run(hostOps.dirtyLogStart(vm, vm.hostCtx, 0));
    const ctx = new ExecCtx("fast", true);
    const fault = v.fault;
    Object.assign(fault, {
      gfn: 0,
      write: true,
      isPrivate: false,
      prefetch: false,
      slot: vm.memslots.find(0),
    });
    const op = fastPageFault(vm.mmu, ctx, new TdpIter(vm.host.pool), v.root!, fault);
    op.next(); // walked, snapshot taken, yielded before the cmpxchg
    run(hostOps.age(vm, vm.hostCtx, 0, 1)); // clears A: the SPTE is no longer the snapshot
    op.next(); // cmpxchg fails; walks again and yields
    const r = op.next();
    expect(r).toEqual({ done: true, value: RET_PF_FIXED });
    const it2 = new TdpIter(vm.host.pool);
    it2.start(v.root!, 1, 0, 0);
    while (it2.level > 1) it2.next();
    expect(isWritable(it2.oldLo)).toBe(true);
    expect(run(hostOps.dirtyLogCollect(vm, vm.hostCtx, 0))).toEqual([0]);
  });
});

describe("stale faults (mmu_invalidate_retry_gfn)", () => {
  it("only an invalidation of the fault's own GFN, or a finished one, makes it retry", () => {
    const vm = makeVm();
    const seq = vm.mmu.invalidateSeq;
    vm.mmu.invalidateBegin(100, 200);
    expect(vm.mmu.invalidateRetryGfn(seq, 150)).toBe(true);
    expect(vm.mmu.invalidateRetryGfn(seq, 50)).toBe(false);
    vm.mmu.invalidateEnd();
    expect(vm.mmu.invalidateRetryGfn(seq, 50)).toBe(true);
    expect(vm.mmu.invalidateRetryGfn(vm.mmu.invalidateSeq, 50)).toBe(false);
  });
});

describe("well-formed SPTEs", () => {
  it("a non-present SPTE that is neither empty nor FROZEN is reported", () => {
    const vm = makeVm();
    run(guestAccessPage(vm, vm.vcpus[0]!, 0, true, false));
    const it = new TdpIter(vm.host.pool);
    it.start(vm.vcpus[0]!.root!, 1, 5, 0);
    while (it.level > 1) it.next();
    it.mem[it.off] = 0x1; // R without the MMU-present bit
    const v = checkInvariants(vm, { final: true }).violations;
    expect(v.map((x) => x.check)).toEqual(["spte-well-formed"]);
  });
});

describe("kvm_mmu_destroy", () => {
  it("gives each vCPU's table-page cache back to the pool, with its roots", () => {
    const vm = makeVm({ vcpus: 2 });
    for (const v of vm.vcpus) run(vm.reloadRoots(v, true));
    const cached = vm.vcpus.map((v) => v.ctx.mmuPageCache);
    expect(Math.min(...cached)).toBeGreaterThan(0);
    const free = vm.host.pool.freeCount;
    run(hostOps.teardown(vm, vm.hostCtx));
    for (const v of vm.vcpus) {
      expect(v.ctx.mmuPageCache).toBe(0);
      expect(v.root).toBeNull();
    }
    // The caches' pages, and the one root's (both vCPUs share it; freed after its grace period).
    expect(vm.host.pool.freeCount).toBe(free + cached[0]! + cached[1]! + 1);
  });

  it("puts a vCPU's direct root before the backend frees the vCPU, and its mirror root after", () => {
    // kvm_arch_vcpu_destroy: kvm_mmu_unload, then vcpu_free, then kvm_mmu_destroy's mirror root.
    const backend = new FakeMirrorBackend();
    const seen: string[] = [];
    let vm: Vm | null = null;
    Object.assign(backend, {
      vcpuFree(_vm: unknown, id: number) {
        const v = vm!.vcpus[id]!;
        seen.push(
          `${id}: direct ${v.root === null ? "put" : "held"}, mirror ${v.mirrorRoot === null ? "put" : "held"}`,
        );
      },
    });
    vm = makeVm({ vcpus: 2, backend });
    for (const v of vm.vcpus) run(vm.reloadRoots(v, true));
    const sections: string[] = [];
    const readLock = vm.mmu.lock.readLock.bind(vm.mmu.lock);
    vm.mmu.lock.readLock = (ctx, atStepStart) => {
      // Which frees came before, and whether kvm->srcu is held (kvm_mmu_destroy's section).
      sections.push(`${seen.length}${vm.srcu.isReading(-1) ? " srcu" : ""}`);
      return readLock(ctx, atStepStart);
    };
    run(hostOps.teardown(vm, vm.hostCtx));
    expect(seen).toEqual(["0: direct put, mirror held", "1: direct put, mirror held"]);
    // Per vCPU, one read-lock section before its free (the direct root) and one after (the
    // mirror root, inside kvm->srcu); the host's own vCPU, which never loaded roots, still takes
    // the mirror's.
    expect(sections).toEqual(["0", "1 srcu", "1", "2 srcu", "2 srcu"]);
    expect(vm.srcu.isReading(-1)).toBe(false);
    for (const v of [...vm.vcpus, vm.hostVcpu])
      expect([v.root, v.mirrorRoot]).toEqual([null, null]);
  });
});
