/**
 * Whole-root zaps: `kvm_tdp_mmu_zap_all` empties the direct roots and keeps them valid, and
 * `tdp_mmu_zap_root` zaps in passes, leaves before the tables that hold them.
 */
import { describe, expect, it } from "vitest";
import { AccessTally, guestAccessRange, zapAll, zapRoot, type TdpEvent } from "../src/testing.js";
import { makeVm, run } from "./helpers.js";

/** A VM with GFNs [0, 1024) mapped 4K and, 1 GiB up, one more page under other tables. */
function populated() {
  const vm = makeVm({ memory: 2 ** 31 });
  run(guestAccessRange(vm, vm.vcpus[0]!, 0, 1024, true, false, new AccessTally()));
  run(guestAccessRange(vm, vm.vcpus[0]!, 2 ** 30, 1, true, false, new AccessTally()));
  return vm;
}

describe("zapping whole roots", () => {
  it("kvm_tdp_mmu_zap_all leaves no mapping in the direct root, which stays valid", () => {
    const vm = populated();
    const ctx = vm.hostCtx;
    const root = vm.mmu.roots[0]!;
    run(vm.mmu.lock.writeLock(ctx));
    run(zapAll(vm.mmu, ctx));
    vm.mmu.lock.writeUnlock(ctx);
    expect([vm.mmu.stats.pages[1], vm.mmu.stats.pages[2], vm.mmu.stats.pages[3]]).toEqual([
      0, 0, 0,
    ]);
    expect(vm.mmu.stats.zappedLeaves).toBe(1025);
    expect(root.invalid).toBe(false);
    // The tables went too (freed after their RCU grace period).
    expect(vm.mmu.stats.tablePages).toBe(0);
  });

  it("tdp_mmu_zap_root zaps every leaf before any table above it, level by level", () => {
    const vm = populated();
    const ctx = vm.hostCtx;
    const levels: number[] = [];
    vm.events.subscribe((e: TdpEvent) => {
      if (e.type === "spte" && e.by === "store") levels.push(e.level);
    });
    run(vm.mmu.lock.writeLock(ctx));
    run(zapRoot(vm.mmu, ctx, vm.mmu.roots[0]!, false));
    vm.mmu.lock.writeUnlock(ctx);
    // 1025 leaves at level 1, then the level-1 tables' entries at level 2, then level 3's.
    expect(levels.filter((l) => l === 1).length).toBe(1025);
    const firstAbove = levels.findIndex((l) => l > 1);
    expect(firstAbove).toBe(1025);
    for (let i = 1; i < levels.length; i++)
      expect(levels[i]!).toBeGreaterThanOrEqual(levels[i - 1]!);
    expect(levels.filter((l) => l === 2).length).toBe(3);
  });
});
