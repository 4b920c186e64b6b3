/**
 * guest_memfd prepare: a page is marked prepared only once the backend's prepare succeeded
 * (`kvm_gmem_prepare_folio` marks the folio up to date on success), so a failed prepare is
 * tried again by the retried fault.
 */
import { describe, expect, it } from "vitest";
import { EBUSY, guestAccessPage, hostOps, type BackendVm } from "../src/testing.js";
import { makeVm, privateBackend, run } from "./helpers.js";

describe("gmem prepare", () => {
  it("a prepare that fails leaves the page unprepared: the retried fault prepares it again, then maps it", () => {
    const calls: number[] = [];
    const backend = {
      ...privateBackend(),
      gmemPrepare: (_vm: BackendVm, gfn: number) => {
        calls.push(gfn);
        return calls.length === 1 ? EBUSY : 0;
      },
    };
    const vm = makeVm({ memory: 16 * 2 ** 20, backend });
    expect(run(guestAccessPage(vm, vm.vcpus[0]!, 5 * 4096, true, false))).toBe("ok");
    expect(calls).toEqual([5, 5]);
    expect(vm.mmu.stats.faultRetries).toBe(1);
    expect(vm.mmu.stats.pages[1]).toBe(1);
    // Prepared now: a fault on it after a zap maps it without preparing it again.
    run(hostOps.zapGfnRange(vm, vm.hostCtx, 5, 6));
    expect(vm.mmu.stats.pages[1]).toBe(0);
    expect(run(guestAccessPage(vm, vm.vcpus[0]!, 5 * 4096, true, false))).toBe("ok");
    expect(calls).toEqual([5, 5]);
    expect(vm.mmu.stats.pages[1]).toBe(1);
  });
});
