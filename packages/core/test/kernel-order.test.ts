/**
 * Where the model follows the kernel's order and choice of roots, in cases an interleaving or a
 * count can tell apart: a pre-fault over a split huge page, and kvm_zap_gfn_range's roots.
 */
import { describe, expect, it } from "vitest";
import { AccessTally, KVM_DIRECT_ROOTS, guestAccessRange, hostOps } from "../src/index.js";
import { makeVm, run } from "./helpers.js";

describe("tdp_mmu_map_handle_target_level", () => {
  it("a pre-fault over a split 2M page installs the 2M leaf again, frees the table and flushes (not spurious)", () => {
    const vm = makeVm({ hostPageLevel: 2 });
    run(guestAccessRange(vm, vm.vcpus[0]!, 0, 1, true, false, new AccessTally()));
    expect(vm.mmu.stats.pages[2]).toBe(1);
    expect(run(hostOps.split(vm, vm.hostCtx, 0, 512))).toBeGreaterThan(0);
    expect(vm.mmu.stats.pages[1]).toBe(512);
    const flushes = vm.mmu.stats.tlbFlushes;
    const spurious = vm.mmu.stats.spuriousFaults;
    run(hostOps.populate(vm, vm.hostVcpu, 0, 512));
    expect(vm.mmu.stats.pages[2]).toBe(1);
    expect(vm.mmu.stats.pages[1]).toBe(0);
    expect(vm.mmu.stats.tlbFlushes).toBe(flushes + 1);
    expect(vm.mmu.stats.spuriousFaults).toBe(spurious);
  });

  it("a pre-fault of a page already mapped by a leaf is spurious and changes nothing", () => {
    const vm = makeVm({});
    run(guestAccessRange(vm, vm.vcpus[0]!, 0, 1, true, false, new AccessTally()));
    const spurious = vm.mmu.stats.spuriousFaults;
    run(hostOps.populate(vm, vm.hostVcpu, 0, 1));
    expect(vm.mmu.stats.spuriousFaults).toBe(spurious + 1);
    expect(vm.mmu.stats.pages[1]).toBe(1);
  });
});

describe("kvm_zap_gfn_range", () => {
  it("zaps the leaves of valid roots only: an invalidated root a vCPU still holds is left to its own zap", () => {
    const vm = makeVm({});
    run(guestAccessRange(vm, vm.vcpus[0]!, 0, 4, true, false, new AccessTally()));
    // The vCPU's root is invalidated but not yet zapped (the vCPU still holds a reference).
    vm.mmu.invalidateRoots(KVM_DIRECT_ROOTS);
    expect(vm.mmu.roots.every((r) => r.invalid)).toBe(true);
    expect(run(hostOps.zapGfnRange(vm, vm.hostCtx, 0, 4))).toBe(0);
    expect(vm.mmu.stats.pages[1]).toBe(4);
  });
});
