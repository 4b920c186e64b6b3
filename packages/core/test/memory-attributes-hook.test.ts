/**
 * A backend hears of each change of memory attributes (`memoryAttributesChanged`) once, with the
 * range and direction, where kvm_arch_post_set_memory_attributes runs: under the write mmu_lock,
 * with the attributes stored and the invalidation ended (the section's on_lock,
 * kvm_mmu_invalidate_end, runs before its handler); a change that changes nothing is not
 * reported.
 */
import { describe, expect, it } from "vitest";
import { hostOps, type Backend, type BackendVm, type Vm } from "../src/testing.js";
import { bareBackend, makeVm, run } from "./helpers.js";

interface Heard {
  gfn: number;
  npages: number;
  toPrivate: boolean;
  privateNow: boolean;
  invalidation: string;
}

function listening(): { backend: Backend; heard: Heard[] } {
  const heard: Heard[] = [];
  const base = bareBackend();
  const backend: Backend = {
    ...base,
    hasPrivateMemory: true,
    classifyFault: (_vm, _gpa, p) => p,
    memoryAttributesChanged(vm: BackendVm, gfn: number, npages: number, toPrivate: boolean) {
      const v = vm as Vm;
      v.mmu.lock.assertHeldWrite("memoryAttributesChanged");
      heard.push({
        gfn,
        npages,
        toPrivate,
        privateNow: v.attributes.peekPrivate(gfn),
        invalidation: v.mmu.invalidateAuditState().split("/")[1]!,
      });
    },
  };
  return { backend, heard };
}

describe("memoryAttributesChanged", () => {
  it("is told each conversion once, under the write lock, with the attributes already stored", () => {
    const { backend, heard } = listening();
    const vm = makeVm({ backend });
    run(hostOps.convertMemory(vm, vm.hostCtx, 16, 48, false));
    run(hostOps.convertMemory(vm, vm.hostCtx, 16, 20, true));
    expect(heard).toEqual([
      { gfn: 16, npages: 32, toPrivate: false, privateNow: false, invalidation: "0" },
      { gfn: 16, npages: 4, toPrivate: true, privateNow: true, invalidation: "0" },
    ]);
  });

  it("is not told of a conversion that changes nothing", () => {
    const { backend, heard } = listening();
    const vm = makeVm({ backend });
    run(hostOps.convertMemory(vm, vm.hostCtx, 0, 8, true)); // all private already
    expect(heard).toEqual([]);
  });
});
