/**
 * guest_memfd's hole punch after a conversion to shared (`kvm_gmem_punch_hole`, which QEMU's
 * `kvm_convert_memory` calls once KVM_SET_MEMORY_ATTRIBUTES has returned): a syscall of its own,
 * whose invalidation unmaps the range's private mappings before it frees the pages.
 */
import { describe, expect, it } from "vitest";
import { AccessTally, ExecCtx, guestAccessRange, hostOps, type BackendVm } from "../src/testing.js";
import { FakeMirrorBackend, makeVm, run } from "./helpers.js";

const GFN = 0x10;
const GPA = GFN * 4096;

/** A VM on the fake mirror backend whose guest_memfd frees go to `freed` (SEV's RMPUPDATE hook). */
function punchVm(freed: number[]): ReturnType<typeof makeVm> {
  const backend = new FakeMirrorBackend();
  Object.assign(backend, {
    gmemInvalidate: (_vm: BackendVm, pfn: number, npages: number) => {
      for (let i = 0; i < npages; i++) freed.push(pfn + i);
    },
  });
  return makeVm({ memory: 16 * 2 ** 20, vcpus: 2, backend });
}

/** An invalidation of GFN is in progress (a fault that sampled the sequence now must retry). */
function invalidating(vm: ReturnType<typeof makeVm>): boolean {
  return vm.mmu.invalidateRetryGfn(vm.mmu.invalidateSeq, GFN);
}

function mappedPrivate(vm: ReturnType<typeof makeVm>): boolean {
  return (vm.backend as FakeMirrorBackend).leaves.has(GFN);
}

describe("guest_memfd's hole punch after a conversion to shared", () => {
  it("runs after kvm->slots_lock is released, in an invalidation that unmaps a page mapped private again before it is freed", () => {
    const freed: number[] = [];
    const vm = punchVm(freed);
    run(guestAccessRange(vm, vm.vcpus[0]!, GPA, 1, true, false, new AccessTally()));
    expect(mappedPrivate(vm)).toBe(true);
    vm.setInterleave(true);
    const op = hostOps.convertMemory(vm, vm.hostCtx, GFN, GFN + 1, false);
    let r = op.next();
    // The ioctl is done (lock released, attributes shared, its invalidation over), the
    // punch not yet begun: nothing freed.
    while (
      !r.done &&
      !(vm.slotsLock.peekOwner() === null && !vm.attributes.peekPrivate(GFN) && !invalidating(vm))
    )
      r = op.next();
    expect(r.done).toBe(false);
    expect(mappedPrivate(vm)).toBe(false);
    expect(freed).toEqual([]);
    // Meanwhile another vCPU's conversion takes the page back to private and its access maps it.
    const other = new ExecCtx("vcpu1-psc", true);
    expect(run(hostOps.convertMemory(vm, other, GFN, GFN + 1, true))).toBe(1);
    run(guestAccessRange(vm, vm.vcpus[1]!, GPA, 1, true, false, new AccessTally()));
    expect(mappedPrivate(vm)).toBe(true);
    // The punch: the mapping goes first, under the write lock; the page is freed after.
    let unmappedBeforeFree = true;
    for (r = op.next(); !r.done; r = op.next()) {
      if (freed.length > 0 && mappedPrivate(vm)) unmappedBeforeFree = false;
    }
    expect(unmappedBeforeFree).toBe(true);
    expect(freed.length).toBe(1);
    expect(mappedPrivate(vm)).toBe(false);
    expect(invalidating(vm)).toBe(false);
  });

  it("waits for a fault that holds the page's folio to prepare it", () => {
    const freed: number[] = [];
    const vm = punchVm(freed);
    run(guestAccessRange(vm, vm.vcpus[0]!, GPA, 1, true, false, new AccessTally()));
    const gmem = vm.memslots.find(GFN)!.gmem!;
    const pgoff = GFN - vm.memslots.find(GFN)!.baseGfn;
    vm.setInterleave(true);
    gmem.beginPrepare(pgoff);
    const op = hostOps.convertMemory(vm, vm.hostCtx, GFN, GFN + 1, false);
    let r = op.next();
    let blocked = 0;
    while (!r.done && blocked < 3) {
      if (r.value !== undefined) blocked++;
      r = op.next();
    }
    expect(blocked).toBe(3);
    expect(freed).toEqual([]);
    gmem.endPrepare(pgoff);
    while (!r.done) r = op.next();
    expect(freed.length).toBe(1);
  });

  it("follows every conversion to shared that returned 0, whether or not it changed anything, under filemap_invalidate_lock", () => {
    const freed: number[] = [];
    const vm = punchVm(freed);
    vm.setInterleave(true);
    for (const round of [1, 2]) {
      const op = hostOps.convertMemory(vm, vm.hostCtx, GFN, GFN + 1, false);
      let punched = false;
      let r = op.next();
      for (; !r.done; r = op.next()) {
        if (vm.gmemLock.peekOwner() !== null) {
          punched = true;
          expect(vm.slotsLock.peekOwner()).toBeNull();
        }
      }
      expect([round, r.value]).toEqual([round, round === 1 ? 1 : 0]);
      expect(punched).toBe(true);
    }
  });
});
