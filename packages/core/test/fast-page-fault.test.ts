/**
 * `fast_page_fault` decides from the last SPTE of its walk, with RCU only: a write to a leaf KVM
 * write-protected for dirty logging (MMU-writable, W clear) gets W back by one cmpxchg; anything
 * else is spurious (the access is allowed already) or goes to the slow path (RET_PF_INVALID).
 */
import { describe, expect, it } from "vitest";
import {
  ExecCtx,
  HI_MMU_WRITABLE,
  RET_PF_FIXED,
  RET_PF_INVALID,
  RET_PF_SPURIOUS,
  SPTE_ACCESSED,
  TdpIter,
  fastPageFault,
  guestAccessPage,
  hostOps,
  isWritable,
  runToEnd,
  type Root,
  type Vm,
} from "../src/testing.js";
import { FakeMirrorBackend, makeVm, run } from "./helpers.js";

/** The last SPTE on the way to `gfn` in `root`: where it is, and its level. */
function leafOf(vm: Vm, root: Root, gfn: number): { mem: Uint32Array; off: number; level: number } {
  const it = new TdpIter(vm.host.pool);
  let last = { mem: it.mem, off: 0, level: 0 };
  for (it.start(root, 1, gfn, 0); it.valid && it.gfn <= gfn; it.next())
    last = { mem: it.mem, off: it.off, level: it.level };
  return last;
}

/** A fast page fault of vCPU 0 at `gfn`, run to its end (`ctx` may interleave). */
function fastPf(
  vm: Vm,
  gfn: number,
  write: boolean,
  root = vm.vcpus[0]!.root!,
  ctx = new ExecCtx("fast", false),
) {
  const fault = vm.vcpus[0]!.fault;
  Object.assign(fault, {
    gfn,
    write,
    isPrivate: false,
    prefetch: false,
    slot: vm.memslots.find(gfn),
  });
  return fastPageFault(vm.mmu, ctx, new TdpIter(vm.host.pool), root, fault);
}

/** A VM whose page 0 is mapped, then write-protected by dirty logging. */
function dirtyLogged(): Vm {
  const vm = makeVm();
  run(guestAccessPage(vm, vm.vcpus[0]!, 0, true, false));
  run(hostOps.dirtyLogStart(vm, vm.hostCtx, 0));
  return vm;
}

describe("fast page fault", () => {
  it("a write to a leaf write-protected for dirty logging is fixed: W back, the page logged dirty", () => {
    const vm = dirtyLogged();
    const leaf = leafOf(vm, vm.vcpus[0]!.root!, 0);
    expect(isWritable(leaf.mem[leaf.off]!)).toBe(false);
    expect(runToEnd(fastPf(vm, 0, true))).toBe(RET_PF_FIXED);
    expect(isWritable(leaf.mem[leaf.off]!)).toBe(true);
    expect(run(hostOps.dirtyLogCollect(vm, vm.hostCtx, 0))).toEqual([0]);
  });

  it("a read of a present leaf is spurious and changes nothing", () => {
    const vm = dirtyLogged();
    const leaf = leafOf(vm, vm.vcpus[0]!.root!, 0);
    const before = leaf.mem[leaf.off];
    expect(runToEnd(fastPf(vm, 0, false))).toBe(RET_PF_SPURIOUS);
    expect(leaf.mem[leaf.off]).toBe(before);
    expect(run(hostOps.dirtyLogCollect(vm, vm.hostCtx, 0))).toEqual([]);
  });

  it("a write to a leaf that is not MMU-writable, or to no leaf, or through a mirror root takes the slow path", () => {
    const vm = dirtyLogged();
    const leaf = leafOf(vm, vm.vcpus[0]!.root!, 0);
    leaf.mem[leaf.off + 1] = (leaf.mem[leaf.off + 1]! & ~HI_MMU_WRITABLE) >>> 0;
    expect(runToEnd(fastPf(vm, 0, true))).toBe(RET_PF_INVALID);
    expect(isWritable(leaf.mem[leaf.off]!)).toBe(false);
    expect(runToEnd(fastPf(vm, 7, true))).toBe(RET_PF_INVALID); // never mapped
    const tdx = makeVm({ backend: new FakeMirrorBackend() });
    run(guestAccessPage(tdx, tdx.vcpus[0]!, 0, true, false));
    expect(runToEnd(fastPf(tdx, 0, true, tdx.vcpus[0]!.mirrorRoot!))).toBe(RET_PF_INVALID);
  });

  it("a write to a 2M leaf is fixed only while its slot is not dirty-logged (the slow path splits it)", () => {
    const vm = makeVm({ hostPageLevel: 2 });
    run(guestAccessPage(vm, vm.vcpus[0]!, 0, true, false));
    const leaf = leafOf(vm, vm.vcpus[0]!.root!, 0);
    expect(leaf.level).toBe(2);
    const clearW = () => {
      leaf.mem[leaf.off] = (leaf.mem[leaf.off]! & ~2) >>> 0;
    };
    clearW();
    expect(runToEnd(fastPf(vm, 5, true))).toBe(RET_PF_FIXED);
    clearW();
    vm.memslots.find(0)!.setDirtyLogging(true);
    expect(runToEnd(fastPf(vm, 5, true))).toBe(RET_PF_INVALID);
    expect(isWritable(leaf.mem[leaf.off]!)).toBe(false);
  });

  it("a lost cmpxchg walks again, four times at most: the fifth loss takes the slow path", () => {
    for (const losses of [4, 5]) {
      const vm = dirtyLogged();
      const leaf = leafOf(vm, vm.vcpus[0]!.root!, 0);
      const op = fastPf(vm, 0, true, vm.vcpus[0]!.root!, new ExecCtx("fast", true));
      let r = op.next(); // walked; the cmpxchg is the next point
      for (let i = 0; i < losses; i++) {
        // Someone changes the SPTE between the walk and the cmpxchg (the CPU's Accessed bit).
        leaf.mem[leaf.off] = (leaf.mem[leaf.off]! ^ SPTE_ACCESSED) >>> 0;
        r = op.next();
      }
      while (!r.done) r = op.next();
      expect(r.value).toBe(losses === 4 ? RET_PF_FIXED : RET_PF_INVALID);
    }
  });

  it("the fault path sends a guest write to a present leaf there first, and nothing else", () => {
    // page_fault_can_be_fast: a write to a present translation, not a pre-fault, on the direct root.
    const byOf = (vm: Vm, op: () => void) => {
      const by: string[] = [];
      const off = vm.events.subscribe((e) => {
        if (e.type === "spte") by.push(e.by);
      });
      op();
      off();
      return by;
    };
    const vm = dirtyLogged();
    expect(byOf(vm, () => run(guestAccessPage(vm, vm.vcpus[0]!, 0, true, false)))).toEqual([
      "fast-pf",
    ]);
    expect(run(hostOps.dirtyLogCollect(vm, vm.hostCtx, 0))).toEqual([0]);
    // A read of the write-protected page is allowed already: no fault, no store.
    expect(byOf(vm, () => run(guestAccessPage(vm, vm.vcpus[0]!, 0, false, false)))).toEqual([]);
    // A write to a page never mapped goes the slow way (a new leaf, not a fast fix).
    expect(
      byOf(vm, () => run(guestAccessPage(vm, vm.vcpus[0]!, 0x5000, true, false))),
    ).not.toContain("fast-pf");
  });
});
