/**
 * A fault whose step throws (a backend hook failing, as a KVM_BUG_ON unwinds) drops what it
 * holds and nothing else. The case of a throw under `mmu_lock` is `roots-and-locks.test.ts`'s;
 * here the throw comes before the fault takes `mmu_lock` or RCU (the guest_memfd prepare), while
 * another task holds both for read: the unwinding must leave that task's holds alone.
 */
import { describe, expect, it } from "vitest";
import { ExecCtx, guestAccessPage, runToEnd, type BackendVm } from "../src/testing.js";
import { FakeMirrorBackend, makeVm, run } from "./helpers.js";

class ThrowingPrepare extends FakeMirrorBackend {
  gmemPrepare(_vm: BackendVm, _gfn: number, _pfn: number): number {
    throw new Error("the prepare failed");
  }
}

describe("a fault that throws before it takes mmu_lock", () => {
  it("releases its kvm->srcu section and nothing it did not take", () => {
    const vm = makeVm({ backend: new ThrowingPrepare() });
    const other = new ExecCtx("other", false);
    runToEnd(vm.mmu.lock.readLock(other));
    vm.mmu.rcu.readLock(other);
    expect(() => run(guestAccessPage(vm, vm.vcpus[0]!, 0x1000, true, false))).toThrow(
      "the prepare failed",
    );
    expect(vm.srcu.isReading(0)).toBe(false);
    expect(vm.mmu.lock.peekState().readers).toBe(1);
    expect(vm.vcpus[0]!.ctx.rcuNest).toBe(0);
    expect(vm.vcpus[0]!.ctx.lockMode).toBe(0);
    vm.mmu.rcu.readUnlock(other);
    vm.mmu.lock.readUnlock(other);
    expect(vm.mmu.lock.peekState().readers).toBe(0);
    // Nothing is inside RCU any more: rcu_barrier runs.
    vm.mmu.rcu.barrier();
  });
});
