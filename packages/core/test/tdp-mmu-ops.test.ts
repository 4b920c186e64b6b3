import { describe, expect, it } from "vitest";
import {
  ExecCtx,
  HostMemoryExhausted,
  checkInvariants,
  formatSpte,
  guestAccessPage,
  hostOps,
  isLastSpte,
  isWritable,
  runToEnd,
  spteToPfn,
  wrprotGfnRange,
  TdpIter,
  type Vm,
} from "../src/testing.js";
import { GiB, MiB, makeVm, run } from "./helpers.js";

function access(vm: Vm, gfnStart: number, count: number, write = true): void {
  const v = vm.vcpus[0]!;
  for (let g = gfnStart; g < gfnStart + count; g++)
    expect(run(guestAccessPage(vm, v, g * 4096, write, false))).toBe("ok");
}

/** The leaf mapping `gfn` in the vCPU's root: [level, lo, hi] or null. */
function leafOf(vm: Vm, gfn: number): [number, number, number] | null {
  const it = new TdpIter(vm.host.pool);
  let found: [number, number, number] | null = null;
  for (it.start(vm.vcpus[0]!.root!, 1, gfn, 0); it.valid && it.gfn < gfn + 1; it.next()) {
    if (it.oldLo & 0x800 && isLastSpte(it.oldLo, it.level)) found = [it.level, it.oldLo, it.oldHi];
  }
  return found;
}

function clean(vm: Vm): void {
  expect(checkInvariants(vm, { final: true }).violations).toEqual([]);
}

describe("map: the fault path", () => {
  it("sequential 4K faults: one leaf per page, tables counted without the root", () => {
    const vm = makeVm();
    access(vm, 0, 1024);
    const s = vm.mmu.stats;
    expect(s.faults).toBe(1024);
    expect(s.pages[1]).toBe(1024);
    expect(s.tablePages).toBe(1 + 1 + 2); // L3, L2, two L1
    expect(s.faultRetries).toBe(0);
    clean(vm);
  });

  it("the leaf maps the frame backing the GFN, writable, with A and D set", () => {
    const vm = makeVm();
    access(vm, 7, 1);
    const [level, lo, hi] = leafOf(vm, 7)!;
    expect(level).toBe(1);
    expect(spteToPfn(lo, hi)).toBe(vm.memslots.find(7)!.shared.peekPfn(7));
    expect(formatSpte(lo, hi)).toMatch(/^0x86000000[0-9a-f]{5}b77$/);
  });

  it("a second access to a mapped page does not fault", () => {
    const vm = makeVm();
    access(vm, 0, 4);
    access(vm, 0, 4, false);
    expect(vm.mmu.stats.faults).toBe(4);
  });

  it("with 2M host pages a fault maps 2M at once, with 1G host pages 1G", () => {
    const vm2 = makeVm({ hostPageLevel: 2 });
    access(vm2, 0, 1024);
    expect(vm2.mmu.stats.faults).toBe(2);
    expect(vm2.mmu.stats.pages[2]).toBe(2);
    expect(vm2.mmu.stats.tablePages).toBe(2);
    clean(vm2);
    const vm1g = makeVm({ memory: 2 * GiB, hostPageLevel: 3 });
    access(vm1g, 5, 1);
    expect(vm1g.mmu.stats.pages[3]).toBe(1);
    expect(leafOf(vm1g, 512 * 511)![0]).toBe(3);
    clean(vm1g);
  });

  it("a huge page never reaches past the memslot", () => {
    const vm = makeVm({ memory: 3 * MiB, hostPageLevel: 2 });
    access(vm, 512, 1); // the 2M page at 2M would end at 4M > 3M
    expect(vm.mmu.stats.pages[2]).toBe(0);
    expect(vm.mmu.stats.pages[1]).toBe(1);
  });

  it("running out of host memory is an error, not a crash, and leaves the tables consistent", () => {
    const vm = makeVm({ memory: 64 * MiB, hostMemory: 8 * MiB });
    expect(() => access(vm, 0, 16384)).toThrow(HostMemoryExhausted);
    clean(vm);
  });
});

describe("populate (KVM_PRE_FAULT_MEMORY)", () => {
  it("a fault that maps a huge page covers the rest of it: 2 MiB from 0x1000 is two faults, each a 2M leaf", () => {
    const vm = makeVm({ hostPageLevel: 2 });
    run(vm.reloadRoots(vm.hostVcpu, false));
    const { mapped } = run(hostOps.populate(vm, vm.hostVcpu, 1, 1 + 512));
    expect(mapped).toBe(512);
    expect(vm.mmu.stats.faults).toBe(2);
    expect(vm.mmu.stats.spuriousFaults).toBe(0);
    expect(vm.mmu.stats.pages.slice(1, 3)).toEqual([0, 2]);
  });

  it("with 4K host pages it faults every page", () => {
    const vm = makeVm({ hostPageLevel: 1 });
    run(vm.reloadRoots(vm.hostVcpu, false));
    expect(run(hostOps.populate(vm, vm.hostVcpu, 0, 16))).toEqual({
      mapped: 16,
      status: 0,
      detail: "",
    });
    expect(vm.mmu.stats.faults).toBe(16);
    expect(vm.mmu.stats.pages[1]).toBe(16);
  });
});

describe("zap", () => {
  it("zap_leafs makes leaves non-present, keeps tables, flushes once, and the pages fault in again", () => {
    const vm = makeVm();
    access(vm, 0, 1024);
    const zapped = run(hostOps.zapGfnRange(vm, vm.hostCtx, 0, 512));
    expect(zapped).toBe(512);
    expect(vm.mmu.stats.pages[1]).toBe(512);
    expect(vm.mmu.stats.tablePages).toBe(4);
    expect(vm.mmu.stats.tlbFlushes).toBe(1);
    clean(vm);
    access(vm, 0, 512, false);
    expect(vm.mmu.stats.faults).toBe(1536);
    expect(vm.mmu.stats.pages[1]).toBe(1024);
  });

  it("a zap counts the leaves it zapped, not those another task zapped while it waited for the lock", () => {
    const vm = makeVm();
    access(vm, 0, 16);
    // The first zap's first step ends at its attempt at mmu_lock; another zap runs whole
    // before it goes on (the explorer's order of two independent steps).
    const ctx = new ExecCtx("host", true);
    const first = hostOps.zapGfnRange(vm, ctx, 0, 1);
    expect(first.next().done).toBe(false);
    expect(run(hostOps.zapGfnRange(vm, vm.hostCtx, 8, 16))).toBe(8);
    let r = first.next();
    while (!r.done) r = first.next();
    expect(r.value).toBe(1);
    expect(vm.mmu.stats.zappedLeaves).toBe(9);
  });

  it("a zap of a range that starts inside a huge page zaps the whole huge page", () => {
    const vm = makeVm({ hostPageLevel: 2 });
    access(vm, 0, 1);
    run(hostOps.zapGfnRange(vm, vm.hostCtx, 5, 6));
    expect(vm.mmu.stats.pages[2]).toBe(0);
    clean(vm);
  });

  it("teardown frees every table and every frame of the VM", () => {
    const vm = makeVm({ hostPageLevel: 2 });
    access(vm, 0, 4096);
    run(hostOps.teardown(vm, vm.hostCtx));
    expect(vm.mmu.stats.tablePages).toBe(0);
    expect(vm.mmu.stats.pages.slice(1, 4)).toEqual([0, 0, 0]);
    expect(vm.mmu.roots).toEqual([]);
    expect(vm.host.pool.liveTables).toBe(0);
    // Only the page-table pool's own block stays with the host.
    expect(vm.host.frames.usedFrames).toBe(512);
  });

  it("memslot deletion invalidates the direct root; the vCPU loads a new one and the old root is freed", () => {
    const vm = makeVm();
    access(vm, 0, 16);
    const oldRoot = vm.vcpus[0]!.root!;
    run(hostOps.deleteMemslot(vm, vm.hostCtx, 0));
    expect(oldRoot.invalid).toBe(true);
    expect(vm.mmu.stats.pages[1]).toBe(0);
    expect(vm.mmu.stats.tablePages).toBe(0);
    // The vCPU still holds its reference; the root page lives until it lets go.
    expect(vm.host.pool.isLive(oldRoot.slot)).toBe(true);
    expect(run(guestAccessPage(vm, vm.vcpus[0]!, 0, false, false))).toBe("mmio");
    expect(vm.vcpus[0]!.root).not.toBe(oldRoot);
    expect(oldRoot.freed).toBe(true);
    expect(vm.mmu.roots).toEqual([vm.vcpus[0]!.root]);
    expect(vm.host.pool.liveTables).toBe(1); // the new root only
    clean(vm);
  });
});

describe("split and recover", () => {
  it("eager split turns a 2M leaf into 512 4K leaves with the same frames and rights, no flush", () => {
    const vm = makeVm({ hostPageLevel: 2 });
    access(vm, 0, 1);
    const [, hlo, hhi] = leafOf(vm, 0)!;
    const n = run(hostOps.split(vm, vm.hostCtx, 0, 512));
    expect(n).toBe(1);
    expect(vm.mmu.stats.pages[2]).toBe(0);
    expect(vm.mmu.stats.pages[1]).toBe(512);
    expect(vm.mmu.stats.tablePages).toBe(3);
    expect(vm.mmu.stats.tlbFlushes).toBe(0);
    for (const g of [0, 1, 300, 511]) {
      const [level, lo, hi] = leafOf(vm, g)!;
      expect(level).toBe(1);
      expect(spteToPfn(lo, hi)).toBe(spteToPfn(hlo, hhi) + g);
      expect(isWritable(lo)).toBe(true);
    }
    clean(vm);
  });

  it("a write to a dirty-logged 2M page splits it in the fault path: 512 stores, one per child GFN", () => {
    const vm = makeVm({ hostPageLevel: 2 });
    access(vm, 0, 1);
    // Dirty logging on without the eager split (KVM's eager_page_split=N): the 2M leaf is only
    // write-protected, and the write fault splits it.
    vm.memslots.find(0)!.setDirtyLogging(true);
    const ctx = new ExecCtx("wrprot", false);
    runToEnd(vm.mmu.lock.readLock(ctx));
    vm.mmu.rcu.readLock(ctx);
    expect(run(wrprotGfnRange(vm.mmu, ctx, vm.mmu.peekRoots()[0]!, 0, 512, 2))).toBe(true);
    vm.mmu.rcu.readUnlock(ctx);
    vm.mmu.lock.readUnlock(ctx);
    const [, hlo, hhi] = leafOf(vm, 0)!;
    const split: number[] = [];
    const off = vm.events.subscribe((e) => {
      if (e.type === "spte" && e.by === "split") split.push(e.gfn);
    });
    run(guestAccessPage(vm, vm.vcpus[0]!, 0x5000, true, false));
    off();
    // Each child's store names the GFN it maps (the events a user follows in the UI and traces).
    expect(split).toEqual(Array.from({ length: 512 }, (_, i) => i));
    for (const g of [0, 5, 511])
      expect(spteToPfn(...(leafOf(vm, g)!.slice(1) as [number, number]))).toBe(
        spteToPfn(hlo, hhi) + g,
      );
    expect(leafOf(vm, 5)![0]).toBe(1);
  });

  it("a 1G leaf splits into 2M leaves and then 4K leaves", () => {
    const vm = makeVm({ memory: 1 * GiB, hostPageLevel: 3 });
    access(vm, 0, 1);
    run(hostOps.split(vm, vm.hostCtx, 0, 512 * 512));
    expect(vm.mmu.stats.pages[3]).toBe(0);
    expect(vm.mmu.stats.pages[2]).toBe(0);
    expect(vm.mmu.stats.pages[1]).toBe(512 * 512);
    expect(vm.mmu.stats.tablePages).toBe(1 + 1 + 512);
    clean(vm);
  });

  it("recovery collapses the split table back into one 2M leaf and frees the table after a flush", () => {
    const vm = makeVm({ hostPageLevel: 2 });
    access(vm, 0, 1);
    const before = formatSpte(...(leafOf(vm, 0)!.slice(1) as [number, number]));
    run(hostOps.split(vm, vm.hostCtx, 0, 512));
    const n = run(hostOps.recover(vm, vm.hostCtx, 0, vm.npages));
    expect(n).toBe(1);
    expect(vm.mmu.stats.pages[2]).toBe(1);
    expect(vm.mmu.stats.pages[1]).toBe(0);
    expect(vm.mmu.stats.tablePages).toBe(2);
    expect(vm.mmu.stats.tlbFlushes).toBe(1);
    expect(formatSpte(...(leafOf(vm, 0)!.slice(1) as [number, number]))).toBe(before);
    clean(vm);
  });

  it("recovery leaves 4K-only memory alone", () => {
    const vm = makeVm({ hostPageLevel: 1 });
    access(vm, 0, 512);
    expect(run(hostOps.recover(vm, vm.hostCtx, 0, vm.npages))).toBe(0);
  });
});

describe("dirty logging round trip", () => {
  it("write-protect on start, a write faults once and is collected, then protected again", () => {
    const vm = makeVm({ hostPageLevel: 2 });
    access(vm, 0, 1024); // two 2M pages
    run(hostOps.dirtyLogStart(vm, vm.hostCtx, 0));
    // Eager split, then every 4K leaf write-protected (MMU-writable kept).
    expect(vm.mmu.stats.pages[1]).toBe(1024);
    const [, lo, hi] = leafOf(vm, 3)!;
    expect(isWritable(lo)).toBe(false);
    expect((hi & (1 << 26)) !== 0).toBe(true);
    const faults = vm.mmu.stats.faults;
    access(vm, 3, 1, false); // reads do not fault
    expect(vm.mmu.stats.faults).toBe(faults);
    access(vm, 3, 2); // GFN 3 and 4
    access(vm, 700, 1);
    expect(vm.mmu.stats.faults).toBe(faults + 3);
    access(vm, 3, 2); // already writable again
    expect(vm.mmu.stats.faults).toBe(faults + 3);
    expect(run(hostOps.dirtyLogCollect(vm, vm.hostCtx, 0))).toEqual([3, 4, 700]);
    expect(isWritable(leafOf(vm, 3)![1])).toBe(false);
    expect(run(hostOps.dirtyLogCollect(vm, vm.hostCtx, 0))).toEqual([]);
    access(vm, 4, 1);
    expect(run(hostOps.dirtyLogCollect(vm, vm.hostCtx, 0))).toEqual([4]);
    // New mappings made while logging are 4K and dirty at once.
    access(vm, 2048, 1, false);
    expect(leafOf(vm, 2048)![0]).toBe(1);
    expect(run(hostOps.dirtyLogCollect(vm, vm.hostCtx, 0))).toEqual([2048]);
    // Stop: huge pages come back, also where only one 4K page was mapped (recovery builds the
    // huge SPTE from the first present leaf, as make_huge_spte does).
    expect(run(hostOps.dirtyLogStop(vm, vm.hostCtx, 0))).toBe(3);
    expect(vm.mmu.stats.pages[2]).toBe(3);
    expect(vm.mmu.stats.pages[1]).toBe(0);
    clean(vm);
  });
});

describe("dirty log: what a collection write-protects", () => {
  it("exactly the 4K leaves of the GFNs it reports, across bitmap words, and it flushes only when it reports any", () => {
    const vm = makeVm();
    access(vm, 0, 64);
    run(hostOps.dirtyLogStart(vm, vm.hostCtx, 0));
    access(vm, 5, 1);
    access(vm, 31, 2); // the last GFN of the first word and the first of the second
    // A leaf that is writable without being in the bitmap (made so behind KVM's back): the
    // collection must leave it alone, as it only touches the GFNs the mask names.
    const it = new TdpIter(vm.host.pool);
    for (it.start(vm.vcpus[0]!.root!, 1, 6, 0); it.valid && it.level > 1; it.next()) {
      /* down to GFN 6's leaf */
    }
    it.mem[it.off] = (it.mem[it.off]! | 2) >>> 0;
    const flushes = vm.mmu.stats.tlbFlushes;
    expect(run(hostOps.dirtyLogCollect(vm, vm.hostCtx, 0))).toEqual([5, 31, 32]);
    expect(vm.mmu.stats.tlbFlushes).toBe(flushes + 1);
    for (const g of [5, 31, 32]) expect(isWritable(leafOf(vm, g)![1])).toBe(false);
    expect(isWritable(leafOf(vm, 6)![1])).toBe(true);
    expect(run(hostOps.dirtyLogCollect(vm, vm.hostCtx, 0))).toEqual([]);
    expect(vm.mmu.stats.tlbFlushes).toBe(flushes + 1);
  });
});

describe("age", () => {
  it("clears Accessed on young leaves; the next access sets it again", () => {
    const vm = makeVm();
    access(vm, 0, 8);
    expect(run(hostOps.age(vm, vm.hostCtx, 0, 8))).toBe(8);
    expect(run(hostOps.age(vm, vm.hostCtx, 0, 8))).toBe(0);
    access(vm, 2, 1, false);
    expect(run(hostOps.age(vm, vm.hostCtx, 0, 8))).toBe(1);
  });
});
