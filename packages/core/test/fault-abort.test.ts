/**
 * A fault whose step throws (a backend hook failing, as a KVM_BUG_ON unwinds) drops what it
 * holds, as the kernel's unwinding would: `mmu_lock` for read, RCU and the `kvm->srcu` section.
 * Afterwards the host takes the lock for write and runs every RCU callback, and faults elsewhere
 * map. (What the failed store left in its SPTE is the bug's: a thrown error is an oops, not a
 * status the fault path handles.)
 */
import { describe, expect, it } from "vitest";
import { guestAccessPage, hostOps, type BackendVm, type Level } from "../src/index.js";
import { FakeMirrorBackend, makeVm, run } from "./helpers.js";

class ThrowingHook extends FakeMirrorBackend {
  throwNext = false;

  override setExternalSpte(vm: BackendVm, gfn: number, level: Level, pfn: number): number {
    if (this.throwNext) {
      this.throwNext = false;
      throw new Error("the hook failed");
    }
    return super.setExternalSpte(vm, gfn, level, pfn);
  }
}

describe("a fault that throws", () => {
  it("releases mmu_lock, RCU and kvm->srcu", () => {
    const be = new ThrowingHook();
    const vm = makeVm({ backend: be });
    be.throwNext = true;
    expect(() => run(guestAccessPage(vm, vm.vcpus[0]!, 0x1000, true, false))).toThrow("the hook failed");
    expect(vm.srcu.isReading(0)).toBe(false);
    // No RCU reader is left (rcu_barrier refuses to run inside one), and the host takes the
    // lock for write at once.
    vm.mmu.rcu.barrier();
    run(hostOps.zapGfnRange(vm, vm.hostCtx, 0, 512));
    // Another vCPU's fault elsewhere takes the lock for read and maps.
    expect(run(guestAccessPage(vm, vm.vcpus[0]!, 0x5000, true, false))).toBe("ok");
    expect(be.leaves.has(5)).toBe(true);
  });

});
