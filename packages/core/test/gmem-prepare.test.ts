/**
 * guest_memfd prepare: a page is marked prepared only once the backend's prepare succeeded
 * (`kvm_gmem_prepare_folio` marks the folio up to date on success), so a failed prepare is
 * tried again by the retried fault.
 */
import { describe, expect, it } from "vitest";
import { BLOCKED, EBUSY, guestAccessPage, hostOps, type BackendVm } from "../src/testing.js";
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

describe("a fault that waited for the folio lock (kvm_gmem_get_pfn inside kvm_mmu_faultin_pfn)", () => {
  /**
   * vCPU 0's fault blocks on GFN 5's folio, which another fault holds to prepare it; the host
   * zaps the GFN meanwhile (kvm_zap_gfn_range: the sequence moves); the folio comes free. The
   * woken fault's faults and retries, and its access's result.
   */
  function waitThenZap(zap: boolean): { retries: number; result: string } {
    const backend = { ...privateBackend(), gmemPrepare: () => 0 };
    const vm = makeVm({ memory: 16 * 2 ** 20, backend });
    const gmem = vm.memslots.find(5)!.gmem!;
    const pgoff = 5 - vm.memslots.find(5)!.baseGfn;
    vm.setInterleave(true);
    // The other fault: the page counts as prepared, its folio locked until its prepare is done.
    gmem.testAndSetPrepared(pgoff);
    gmem.beginPrepare(pgoff);
    const access = guestAccessPage(vm, vm.vcpus[0]!, 5 * 4096, true, false);
    let r = access.next();
    while (!r.done && r.value !== BLOCKED) r = access.next();
    expect(r.done).toBe(false);
    if (zap) run(hostOps.zapGfnRange(vm, vm.hostCtx, 5, 6));
    gmem.endPrepare(pgoff);
    while (!r.done) r = access.next();
    return { retries: vm.mmu.stats.faultRetries, result: r.value };
  }

  it("goes on with the sequence it sampled before the wait: an invalidation during it is a retry", () => {
    expect(waitThenZap(false)).toEqual({ retries: 0, result: "ok" });
    // mmu_invalidate_retry_gfn_unsafe after the PFN is in sees the zap's sequence.
    expect(waitThenZap(true)).toEqual({ retries: 1, result: "ok" });
  });
});
