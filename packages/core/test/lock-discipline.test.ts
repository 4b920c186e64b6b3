/**
 * The kernel's lock discipline, as behaviour a change of it would alter: a long walk under the
 * write lock yields it to a waiting fault (tdp_mmu_iter_cond_resched); a fault re-checks, under
 * the lock, that no invalidation ran since it sampled mmu_invalidate_seq (is_page_fault_stale);
 * a zap flushes the TLBs of what it zapped; and a setter reached without the lock it needs is a
 * lockdep violation naming the function.
 */
import { describe, expect, it } from "vitest";
import {
  BLOCKED,
  Clock,
  ExecCtx,
  LockdepError,
  RwLock,
  SharedFlag,
  resourceId,
  stepTask,
  Scheduler,
  TdpIter,
  guestAccessPage,
  guestAccessRange,
  AccessTally,
  hostOps,
  zapLeafs,
  buildRun,
  parseScenarioText,
  explore,
  KVM_DIRECT_ROOTS,
  type Task,
} from "../src/testing.js";
import { FakeMirrorBackend, bareBackend, makeVm, run } from "./helpers.js";

/** A VM with GFNs [0, n) mapped 4K by vCPU 0, interleaving from here on. */
function mapped(n: number) {
  const vm = makeVm({ vcpus: 1 });
  run(guestAccessRange(vm, vm.vcpus[0]!, 0, n, true, false, new AccessTally()));
  vm.setInterleave(true);
  return vm;
}

describe("mmu_lock and the walkers", () => {
  it("a zap of many leaves yields the write lock to a fault that waits for it, and finishes after it", () => {
    const vm = mapped(1024);
    const zap = hostOps.zapGfnRange(vm, vm.hostCtx, 0, 1024);
    while (vm.mmu.stats.zappedLeaves < 8) zap.next();
    expect(vm.mmu.lock.peekState().writer).not.toBeNull();
    // A fault outside the range being zapped (nothing tells it to retry early) waits for the lock.
    const fault = guestAccessPage(vm, vm.vcpus[0]!, 0x800000, true, false);
    const tasks: Task[] = [
      { name: "zap", op: zap, done: false },
      { name: "fault", op: fault, done: false },
    ];
    const finished: string[] = [];
    new Scheduler("round-robin", 0).run(tasks, vm.clock, (t) => {
      if (t.done && !finished.includes(t.name)) finished.push(t.name);
    });
    expect(finished).toEqual(["fault", "zap"]);
    expect(vm.mmu.stats.zappedLeaves).toBe(1024);
  });

  it("a fault whose GFN was invalidated after it sampled mmu_invalidate_seq retries once it holds the lock", () => {
    const vm = makeVm({ vcpus: 1 });
    vm.setInterleave(true);
    const vcpu = vm.vcpus[0]!;
    const fault = guestAccessPage(vm, vcpu, 0x5000, true, false);
    // Up to the step that sampled the sequence (the fault is inside kvm->srcu, without the lock).
    while (!vm.srcu.isReading(vcpu.id)) fault.next();
    expect(vm.mmu.lock.peekState().readers).toBe(0);
    run(hostOps.zapGfnRange(vm, vm.hostCtx, 0, 16));
    const retries = vm.mmu.stats.faultRetries;
    for (let r = fault.next(); !r.done; r = fault.next()) {
      /* the fault runs alone */
    }
    expect(vm.mmu.stats.faultRetries).toBe(retries + 1);
    expect(vm.mmu.stats.pages[1]).toBe(1);
  });

  it("a vCPU whose root was invalidated waits for mmu_lock to drop it and load a new one", () => {
    // kvm_mmu_free_roots and kvm_tdp_mmu_alloc_root take mmu_lock for read: a vCPU re-entering
    // while a writer (here the one that invalidated its root, as kvm_mmu_zap_all_fast does)
    // holds the lock waits for it.
    const vm = mapped(1);
    const vcpu = vm.vcpus[0]!;
    const old = vcpu.root!;
    const ctx = vm.hostCtx;
    function* writer() {
      yield* vm.mmu.lock.writeLock(ctx);
      vm.mmu.invalidateRoots(KVM_DIRECT_ROOTS);
      yield;
      vm.mmu.lock.writeUnlock(ctx);
    }
    const tasks: Task[] = [
      { name: "host", op: writer(), done: false, ctx },
      { name: "vcpu0", op: guestAccessPage(vm, vcpu, 0, false, false), done: false, ctx: vcpu.ctx },
    ];
    stepTask(tasks, 0, vm.clock);
    stepTask(tasks, 0, vm.clock);
    expect(old.invalid).toBe(true);
    stepTask(tasks, 1, vm.clock);
    expect(stepTask(tasks, 1, vm.clock)).toBe(BLOCKED);
    expect(vcpu.root).toBe(old);
    stepTask(tasks, 0, vm.clock);
    expect(tasks[0]!.done).toBe(true);
    while (!tasks[1]!.done) expect(stepTask(tasks, 1, vm.clock)).not.toBe(BLOCKED);
    expect(vcpu.root).not.toBe(old);
    expect(vcpu.root!.invalid).toBe(false);
    expect(old.refcount).toBe(1);
  });

  it("a TD vCPU's first entry waits for a writer at its first step, then loads both roots in one", () => {
    const vm = makeVm({ backend: new FakeMirrorBackend() });
    vm.setInterleave(true);
    const vcpu = vm.vcpus[0]!;
    const ctx = vm.hostCtx;
    function* writer() {
      yield* vm.mmu.lock.writeLock(ctx);
      yield;
      vm.mmu.lock.writeUnlock(ctx);
    }
    const tasks: Task[] = [
      { name: "host", op: writer(), done: false, ctx },
      { name: "vcpu0", op: vm.reloadRoots(vcpu, true, true), done: false, ctx: vcpu.ctx },
    ];
    stepTask(tasks, 0, vm.clock);
    stepTask(tasks, 0, vm.clock);
    // At the op's start the attempt is the step's atomic point: no step of its own before it.
    expect(stepTask(tasks, 1, vm.clock)).toBe(BLOCKED);
    expect(vcpu.mirrorRoot).toBeNull();
    stepTask(tasks, 0, vm.clock);
    expect(stepTask(tasks, 1, vm.clock)).toBe(0);
    expect(tasks[1]!.done).toBe(true);
    expect(vcpu.mirrorRoot!.mirror).toBe(true);
    expect(vcpu.root!.mirror).toBe(false);
    expect(vm.mmu.lock.peekState().readers).toBe(0);
  });

  it("a zap flushes the TLBs once for what it zapped, and not at all when it zapped nothing", () => {
    const vm = mapped(4);
    const before = vm.mmu.stats.tlbFlushes;
    expect(run(hostOps.zapGfnRange(vm, vm.hostCtx, 0, 4))).toBe(4);
    expect(vm.mmu.stats.tlbFlushes).toBe(before + 1);
    expect(run(hostOps.zapGfnRange(vm, vm.hostCtx, 0, 4))).toBe(0);
    expect(vm.mmu.stats.tlbFlushes).toBe(before + 1);
  });
});

describe("lockdep", () => {
  it("a write-lock walker run under the read lock fails, naming the setter and the lock", () => {
    const vm = mapped(4);
    vm.setInterleave(false);
    const ctx = vm.hostCtx;
    run(vm.mmu.lock.readLock(ctx));
    const zap = zapLeafs(vm.mmu, ctx, vm.mmu.roots[0]!, 0, 4, false, false);
    expect(() => run(zap)).toThrow(LockdepError);
    expect(() => run(zapLeafs(vm.mmu, ctx, vm.mmu.roots[0]!, 0, 4, false, false))).toThrow(
      /tdp_mmu_iter_set_spte: mmu_lock must be held for write, but it is held for read/,
    );
  });

  it("a cmpxchg with no lock held fails (tdp_mmu_set_spte_atomic asserts the read lock)", () => {
    const vm = mapped(1);
    const it = new TdpIter(vm.host.pool);
    it.start(vm.mmu.roots[0]!, 1, 0, 0);
    while (it.level > 1) it.next();
    expect(() => vm.mmu.setSpteAtomic(it, it.oldLo, it.oldHi)).toThrow(
      /tdp_mmu_set_spte_atomic: mmu_lock must be held for read, but it is not held/,
    );
  });

  it("a task that does not hold the lock fails its assertion while another task holds it", () => {
    const vm = mapped(1);
    vm.setInterleave(false);
    run(vm.mmu.lock.readLock(vm.vcpus[0]!.ctx));
    const it = new TdpIter(vm.host.pool);
    it.start(vm.mmu.roots[0]!, 1, 0, 0);
    while (it.level > 1) it.next();
    function* cmpxchg() {
      yield;
      vm.mmu.setSpteAtomic(it, it.oldLo, it.oldHi);
    }
    // The vCPU holds the read lock; the host's step asks for it and does not hold it.
    const tasks: Task[] = [{ name: "host", op: cmpxchg(), done: false, ctx: vm.hostCtx }];
    stepTask(tasks, 0, vm.clock);
    expect(() => stepTask(tasks, 0, vm.clock)).toThrow(
      /tdp_mmu_set_spte_atomic: mmu_lock must be held for read, but it is not held/,
    );
    // The same call from the holder's own step passes.
    const own: Task[] = [{ name: "vcpu0", op: cmpxchg(), done: false, ctx: vm.vcpus[0]!.ctx }];
    stepTask(own, 0, vm.clock);
    expect(() => stepTask(own, 0, vm.clock)).not.toThrow();
  });

  it("the explorer finds an assertion that only another task's hold satisfies, with every algorithm", () => {
    // H holds the write lock across a wait for V; V, which never takes the lock, asserts it while
    // H still holds it. Asked of the lock's words the assertion passes in that order, and its
    // step, reading nothing shared, never races with H's unlock: the reduction would not run the
    // order where it fails. Asked of V itself it fails in every order.
    function make() {
      const clock = new Clock();
      clock.interleaved = true;
      const space = clock.newResourceSpace();
      const lock = new RwLock(clock);
      const f1 = new SharedFlag(clock, resourceId(space, 1), false);
      const f2 = new SharedFlag(clock, resourceId(space, 2), false);
      const hctx = new ExecCtx("H", true);
      const vctx = new ExecCtx("V", true);
      function* h() {
        yield* lock.writeLock(hctx);
        f1.raise();
        yield;
        while (!f2.get()) yield BLOCKED;
        lock.writeUnlock(hctx);
      }
      function* v() {
        while (!f1.get()) yield BLOCKED;
        f2.raise();
        yield;
        lock.assertHeldWrite("forgot_the_lock");
      }
      const tasks: Task[] = [
        { name: "H", op: h(), done: false, ctx: hctx },
        { name: "V", op: v(), done: false, ctx: vctx },
      ];
      return {
        tasks,
        clock,
        setRecorder: () => {},
        check: () => [],
        classify: (e: unknown) =>
          e instanceof LockdepError
            ? { check: "lockdep", message: e.message, step: clock.tick }
            : null,
      };
    }
    for (const algorithm of ["optimal", "sleep"] as const) {
      const r = explore(make, { algorithm });
      expect(r.violation?.violations[0]?.message).toMatch(
        /forgot_the_lock: mmu_lock must be held for write, but it is not held/,
      );
    }
  });

  it("the explorer reports a lockdep failure as a violation of its own", () => {
    const scn = parseScenarioText(
      `
name: lockdep
vm: { memory: 4MiB, vcpus: 1 }
backend: plain
vcpus:
  - - { op: access, gpa: 0x0, write: true }
`,
      "lockdep.yaml",
    );
    const r = explore(() => {
      const built = buildRun(scn, { backend: bareBackend(), interleave: true });
      // A host task that zaps leaves holding only the read lock: a write-lock path under the read lock.
      function* wrongLock() {
        yield* built.vm.mmu.lock.readLock(built.vm.hostCtx);
        yield* zapLeafs(built.vm.mmu, built.vm.hostCtx, built.vm.mmu.roots[0]!, 0, 1, false, false);
        built.vm.mmu.lock.readUnlock(built.vm.hostCtx);
      }
      const tasks: Task[] = [...built.tasks, { name: "host", op: wrongLock(), done: false }];
      return {
        tasks,
        clock: built.clock,
        setRecorder: () => {},
        check: (final) => built.check(final).violations,
        classify: (e) =>
          e instanceof LockdepError
            ? { check: "lockdep", message: e.message, step: built.clock.step }
            : null,
      };
    });
    expect(r.violation?.violations[0]).toMatchObject({ check: "lockdep" });
    expect(r.violation!.violations[0]!.message).toMatch(/tdp_mmu_iter_set_spte/);
  });
});
