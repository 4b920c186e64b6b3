import { describe, expect, it } from "vitest";
import {
  EBUSY,
  ExecCtx,
  Host,
  KvmBug,
  Vm,
  runSteps,
  SHADOW_NONPRESENT_HI,
  SHADOW_NONPRESENT_LO,
  STEP_YIELD,
  Scheduler,
  TdpIter,
  checkInvariants,
  guestAccessPage,
  hostOps,
  type BackendVm,
  type Level,
  type Op,
  type StepMachine,
  type Task,
} from "../src/testing.js";
import { FakeMirrorBackend, cachedExternalSpts, makeVm, run } from "./helpers.js";

function privateAccess(vm: Vm, vcpu: number, gfn: number) {
  return guestAccessPage(vm, vm.vcpus[vcpu]!, gfn * 4096, true, false);
}

describe("mirror root: the backend sees every private change, in order", () => {
  it("a private fault links the mirror tables parent first, then sets the leaf", () => {
    const be = new FakeMirrorBackend();
    const vm = makeVm({ backend: be });
    expect(run(privateAccess(vm, 0, 5))).toBe("ok");
    expect(be.calls).toEqual(["link", "link", "link", "set"]);
    expect(be.leaves.get(5)).toBe(vm.memslots.find(5)!.gmem!.peekPfn(5));
    // The direct root is untouched by a private fault.
    expect(vm.vcpus[0]!.root!.slot).not.toBe(vm.vcpus[0]!.mirrorRoot!.slot);
    expect(vm.mmu.stats.tablePages).toBe(3);
  });

  it("a shared access goes to the direct root through the shared alias and never reaches the backend", () => {
    const be = new FakeMirrorBackend();
    const vm = makeVm({ backend: be });
    run(hostOps.convertMemory(vm, vm.hostCtx, 0, 1, false));
    expect(run(guestAccessPage(vm, vm.vcpus[0]!, 0, true, true))).toBe("ok");
    expect(be.calls).toEqual([]);
    expect(vm.mmu.stats.pages[1]).toBe(1);
    expect(checkInvariants(vm, { final: true }).violations).toEqual([]);
  });

  it("a backend failure unfreezes the entry (old value back) and the fault is retried", () => {
    const be = new FakeMirrorBackend();
    const vm = makeVm({ backend: be });
    be.failNextSet = 2;
    expect(run(privateAccess(vm, 0, 9))).toBe("ok");
    expect(vm.mmu.stats.faultRetries).toBe(2);
    expect(vm.mmu.stats.faults).toBe(3);
    expect(be.calls.filter((c) => c === "set")).toHaveLength(3);
    expect(checkInvariants(vm, { final: true }).violations).toEqual([]);
  });

  it("converting private memory to shared removes the leaf from the backend under the write lock", () => {
    const be = new FakeMirrorBackend();
    const vm = makeVm({ backend: be });
    run(privateAccess(vm, 0, 1));
    run(hostOps.convertMemory(vm, vm.hostCtx, 1, 2, false));
    expect(be.leaves.size).toBe(0);
    expect(be.calls.at(-1)).toBe("remove");
    expect(vm.mmu.stats.zappedLeaves).toBe(1);
    expect(vm.mmu.stats.tlbFlushes).toBe(1);
  });

  it("a mirror table the backend cannot reclaim at teardown is leaked on purpose and counted", () => {
    const be = new FakeMirrorBackend();
    const vm = makeVm({ backend: be });
    run(privateAccess(vm, 0, 1));
    be.failFree = true;
    run(hostOps.teardown(vm, vm.hostCtx));
    expect(vm.mmu.stats.leakedPages).toBe(3);
    expect(be.calls.filter((c) => c === "free")).toHaveLength(3);
    expect(vm.mmu.stats.tablePages).toBe(0);
  });

  it("two vCPUs racing to fault under one missing table: every interleaving keeps the backend in order", () => {
    // The freeze protocol: a vCPU that meets the FROZEN entry of a table being linked retries,
    // instead of adding a leaf under a table the backend has not seen (the 2M-vs-4K race).
    let sawRetry = false;
    for (let seed = 1; seed <= 60; seed++) {
      const be = new FakeMirrorBackend();
      const vm = makeVm({ backend: be, vcpus: 2 });
      vm.setInterleave(true);
      const tasks: Task[] = [
        { name: "vcpu0", op: privateAccess(vm, 0, 0), done: false },
        { name: "vcpu1", op: privateAccess(vm, 1, 1), done: false },
      ];
      new Scheduler("random", seed).run(tasks, vm.clock, () => {
        expect(checkInvariants(vm, { final: false }).violations).toEqual([]);
      });
      expect(be.leaves.size).toBe(2);
      expect(vm.mmu.stats.tablePages).toBe(3);
      expect(checkInvariants(vm, { final: true }).violations).toEqual([]);
      if (vm.mmu.stats.faultRetries > 0) sawRetry = true;
    }
    expect(sawRetry).toBe(true);
  });
});

describe("the rwlock and RCU models", () => {
  it("a zap waits for a fault in flight, and the fault completes first", () => {
    const vm = makeVm({ vcpus: 1 });
    vm.setInterleave(true);
    const order: string[] = [];
    const fault = (function* () {
      yield* guestAccessPage(vm, vm.vcpus[0]!, 0, true, false);
      order.push("fault");
    })();
    const zap = (function* () {
      yield* hostOps.zapGfnRange(vm, vm.hostCtx, 0, 1);
      order.push("zap");
    })();
    // Run the fault until it holds the read lock, then the zap until it queues.
    const tasks: Task[] = [
      { name: "f", op: fault, done: false },
      { name: "z", op: zap, done: false },
    ];
    while (vm.mmu.lock.peekState().readers === 0) tasks[0]!.op.next();
    for (let i = 0; i < 5; i++) tasks[1]!.op.next();
    expect(vm.mmu.lock.peekState().waitingWriters).toBe(1);
    new Scheduler("round-robin", 0).run(tasks, vm.clock);
    expect(order).toEqual(["fault", "zap"]);
    expect(vm.mmu.stats.pages[1]).toBe(0);
    expect(vm.mmu.stats.zappedLeaves).toBe(1);
  });

  it("a table is not freed while a reader that could see it is still inside RCU", () => {
    const vm = makeVm({ hostPageLevel: 2 });
    run(guestAccessPage(vm, vm.vcpus[0]!, 0, true, false));
    run(hostOps.split(vm, vm.hostCtx, 0, 512));
    const reader = new ExecCtx("reader", false);
    vm.mmu.rcu.readLock(reader);
    const liveBefore = vm.host.pool.liveTables;
    run(hostOps.recover(vm, vm.hostCtx, 0, vm.npages)); // unlinks the 4K table
    expect(vm.mmu.stats.tablePages).toBe(2);
    expect(vm.host.pool.liveTables).toBe(liveBefore);
    expect(vm.mmu.deferredFrees).toBe(1);
    vm.mmu.rcu.readUnlock(reader);
    expect(vm.host.pool.liveTables).toBe(liveBefore - 1);
    expect(vm.mmu.deferredFrees).toBe(0);
  });
});

/**
 * A mirror backend whose removal takes two atomic points (as TDX's takes four), each noted in
 * `calls` with the step of the clock it ran at; the leaf goes at the second.
 */
class TwoStepRemoval extends FakeMirrorBackend {
  readonly at: number[] = [];
  failWith = 0;
  private vm!: BackendVm;

  init(vm: BackendVm): void {
    this.vm = vm;
  }

  override removeExternalSpte(
    vm: BackendVm,
    gfn: number,
    level: Level,
    pfn: number,
  ): number | StepMachine {
    let phase = 0;
    const note = (name: string) => {
      this.calls.push(name);
      this.at.push(this.vm.clock.step);
    };
    return {
      step: () => {
        if (phase++ === 0) {
          note(`block:${gfn}`);
          this.vm.clock.step++;
          return STEP_YIELD;
        }
        note(`remove:${gfn}`);
        if (this.failWith !== 0) return this.failWith;
        super.removeExternalSpte(vm, gfn, level, pfn);
        this.calls.pop();
        return 0;
      },
      abort: () => {},
    };
  }

  override freeExternalSpt(): number {
    const r = super.freeExternalSpt();
    this.at.push(this.vm.clock.step);
    return r;
  }
}

/** Runs `op` as a coroutine that yields at every atomic point; returns the yields it made. */
function stepAll(op: Op<unknown>): number {
  let yields = 0;
  while (!op.next().done) yields++;
  return yields;
}

describe("remove_external_spte in several atomic points", () => {
  it("a removal that is a step machine yields between its points under the write lock, and is reported once", () => {
    const be = new TwoStepRemoval();
    const vm = makeVm({ backend: be });
    run(privateAccess(vm, 0, 1));
    const hooks: string[] = [];
    vm.events.subscribe((e) => {
      if (e.type === "hook" && e.hook === "removeExternalSpte") hooks.push(`${e.gfn}:${e.result}`);
    });
    const ctx = new ExecCtx("host", true);
    const op = hostOps.convertMemory(vm, ctx, 1, 2, false);
    let lockedAtBlock = -1;
    for (let r = op.next(); !r.done; r = op.next()) {
      if (be.calls.at(-1) === "block:1" && lockedAtBlock < 0) lockedAtBlock = ctx.lockMode;
    }
    expect(be.calls.slice(-2)).toEqual(["block:1", "remove:1"]);
    expect(be.at[1]).toBeGreaterThan(be.at[0]!);
    expect(lockedAtBlock).toBe(2);
    expect(be.leaves.size).toBe(0);
    expect(hooks).toEqual(["1:0"]);
    expect(vm.mmu.isMirrorInFlight(1, 1)).toBe(false);
    expect(checkInvariants(vm, { final: true }).violations).toEqual([]);
  });

  it("a removal whose machine ends with an errno is a KVM bug naming it", () => {
    const be = new TwoStepRemoval();
    const vm = makeVm({ backend: be });
    run(privateAccess(vm, 0, 1));
    be.failWith = 5;
    expect(() => run(hostOps.convertMemory(vm, vm.hostCtx, 1, 2, false))).toThrow(
      /remove_external_spte failed \(-5\) at gfn 1 level 1/,
    );
  });

  it("a mirror table torn down with leaves in it: each leaf leaves the backend, then the table, one atomic point per call", () => {
    const be = new TwoStepRemoval();
    const vm = makeVm({ backend: be });
    run(privateAccess(vm, 0, 1));
    run(privateAccess(vm, 0, 2));
    be.calls.length = 0;
    const mmu = vm.mmu;
    const ctx = new ExecCtx("host", true);
    const live = vm.host.pool.liveTables;
    const zapTable = function* (): Op<void> {
      yield* mmu.lock.writeLock(ctx);
      const iter = new TdpIter(mmu.pool);
      for (iter.start(vm.vcpus[0]!.mirrorRoot!, 2, 0, 0); iter.valid; iter.next())
        if (iter.level === 2) break;
      mmu.setSpte(iter, SHADOW_NONPRESENT_LO, SHADOW_NONPRESENT_HI);
      // The walker runs the queued calls before it may store again.
      expect(() => mmu.setSpte(iter, SHADOW_NONPRESENT_LO, SHADOW_NONPRESENT_HI)).toThrow(KvmBug);
      yield* runSteps(mmu.externalZaps.begin(), ctx);
      mmu.lock.writeUnlock(ctx);
    };
    stepAll(zapTable());
    expect(be.calls).toEqual(["block:1", "remove:1", "block:2", "remove:2", "free"]);
    // Five calls, five points: each call at a step of its own.
    expect(new Set(be.at.slice(-5)).size).toBe(5);
    expect(be.leaves.size).toBe(0);
    expect(mmu.externalZaps.pending).toBe(false);
    // The table's page went back after its grace period, its external page with it: two
    // tables' pages are left, beside those the vCPU's cache holds for its next tables.
    expect(vm.host.pool.liveTables).toBe(live - 1);
    expect(be.liveExternal.size).toBe(2 + cachedExternalSpts(vm));
  });
});

/** A VM with a fake mirror backend, interleaving, and the strategy given. */
function mirrorVm(strategy: "freeze" | "atomic-then-hook") {
  const be = new FakeMirrorBackend();
  const vm = new Vm(
    new Host({ memory: 256 * 2 ** 20 }),
    { memory: 64 * 2 ** 20, gpaw: 48, vcpus: 1, hostPageLevel: 1 },
    be,
    {
      mmu: { strategy },
      interleave: true,
    },
  );
  /** What happened to the 4K mirror entry and the backend, by the yield it happened after. */
  const seen: string[] = [];
  let yields = 0;
  vm.events.subscribe((e) => {
    if (e.type === "spte" && e.mirror && e.level === 1) seen.push(`${yields}:${e.by}`);
    if (e.type === "hook" && e.hook === "setExternalSpte") seen.push(`${yields}:hook=${e.result}`);
  });
  const step = (op: Op<unknown>) => {
    while (!op.next().done) yields++;
  };
  return { be, vm, seen, step };
}

describe("set_external_spte_present: where the atomic points are", () => {
  it("freeze: the FROZEN store, the backend call and the publish are three points, in that order", () => {
    const { be, vm, seen, step } = mirrorVm("freeze");
    step(privateAccess(vm, 0, 1));
    const leaf = seen.filter((s) => /freeze|hook|publish/.test(s));
    expect(leaf.map((s) => s.split(":")[1])).toEqual(["freeze", "hook=0", "publish"]);
    const at = leaf.map((s) => Number(s.split(":")[0]));
    expect(at[1]).toBeGreaterThan(at[0]!);
    expect(at[2]).toBeGreaterThan(at[1]!);
    expect(be.leaves.has(1)).toBe(true);
    expect(checkInvariants(vm, { final: true }).violations).toEqual([]);
  });

  it("atomic-then-hook: the entry is published a point before the backend hears of it", () => {
    const { be, vm, seen, step } = mirrorVm("atomic-then-hook");
    step(privateAccess(vm, 0, 1));
    const leaf = seen.filter((s) => /cmpxchg|hook/.test(s));
    expect(leaf.map((s) => s.split(":")[1])).toEqual(["cmpxchg", "hook=0"]);
    expect(Number(leaf[1]!.split(":")[0])).toBeGreaterThan(Number(leaf[0]!.split(":")[0]));
    expect(be.leaves.has(1)).toBe(true);
    expect(vm.mmu.isMirrorInFlight(1, 1)).toBe(false);
    expect(checkInvariants(vm, { final: true }).violations).toEqual([]);
  });

  it("atomic-then-hook: a failed hook rolls the published entry back, and the fault retries", () => {
    const { be, vm, seen, step } = mirrorVm("atomic-then-hook");
    be.failNextSet = 1;
    step(privateAccess(vm, 0, 1));
    expect(seen.filter((s) => /cmpxchg|hook|rollback/.test(s)).map((s) => s.split(":")[1])).toEqual(
      ["cmpxchg", `hook=${EBUSY}`, "rollback", "cmpxchg", "hook=0"],
    );
    expect(vm.mmu.stats.faultRetries).toBe(1);
    expect(vm.mmu.stats.pages[1]).toBe(1);
    expect(be.leaves.has(1)).toBe(true);
    expect(checkInvariants(vm, { final: true }).violations).toEqual([]);
  });
});
