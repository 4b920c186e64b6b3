/**
 * Where the model follows the kernel's order and choice of roots, in cases an interleaving or a
 * count can tell apart: a pre-fault over a split huge page, kvm_zap_gfn_range's roots, and a
 * memslot deletion on a VM with private memory.
 */
import { describe, expect, it } from "vitest";
import { AccessTally, KVM_DIRECT_ROOTS, guestAccessRange, hostOps, type BackendVm, type TdpEvent } from "../src/index.js";
import { bareBackend, makeVm, run } from "./helpers.js";

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

describe("kvm_mmu_zap_memslot", () => {
  it("deleting a memslot of a VM with private memory takes no invalidation and keeps the sequence; it flushes the slot", () => {
    const backend = {
      ...bareBackend(),
      hasPrivateMemory: true,
      classifyFault: (_vm: BackendVm, _gpa: number, privateAccess: boolean) => privateAccess,
    };
    const vm = makeVm({ memory: 16 * 2 ** 20, backend });
    run(guestAccessRange(vm, vm.vcpus[0]!, 0, 4, true, false, new AccessTally()));
    const seq = vm.mmu.invalidateSeq;
    const flushes: TdpEvent[] = [];
    vm.events.subscribe((e) => {
      if (e.type === "flush") flushes.push(e);
    });
    let inProgress = 0;
    const begin = vm.mmu.invalidateBegin.bind(vm.mmu);
    vm.mmu.invalidateBegin = (s: number, e: number) => {
      inProgress++;
      begin(s, e);
    };
    run(hostOps.deleteMemslot(vm, vm.hostCtx, 0));
    expect(vm.mmu.stats.pages[1]).toBe(0);
    expect(inProgress).toBe(0);
    expect(vm.mmu.invalidateSeq).toBe(seq);
    // kvm_flush_remote_tlbs_memslot: the slot's range, not the whole VM.
    expect(flushes).toHaveLength(1);
    expect(flushes[0]).toMatchObject({ gfn: 0, level: 4096 });
  });
});
