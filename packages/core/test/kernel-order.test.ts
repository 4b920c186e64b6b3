/**
 * Where the model follows the kernel's order and choice of roots, in cases an interleaving or a
 * count can tell apart: a pre-fault over a split huge page, kvm_zap_gfn_range's roots, and a
 * memslot deletion on a VM with private memory.
 */
import { describe, expect, it } from "vitest";
import {
  AccessTally,
  BLOCKED,
  ExecCtx,
  RETRY_WAIT,
  KVM_DIRECT_ROOTS,
  TdpIter,
  guestAccessRange,
  hostOps,
  runToEnd,
  wrprotGfnRange,
  type BackendVm,
  type TdpEvent,
} from "../src/testing.js";
import { bareBackend, makeVm, privateBackend, run } from "./helpers.js";

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

  it("a pre-fault that must retry waits for a change, as a vCPU's fault does, then maps", () => {
    const vm = makeVm({});
    vm.setInterleave(true);
    // An invalidation of GFN 0 under way (an mmu notifier between its begin and end): the
    // fault sees it and says retry.
    vm.mmu.invalidateBegin(0, 1);
    const op = hostOps.populate(vm, vm.hostVcpu, 0, 1);
    let r = op.next();
    while (!r.done && r.value !== RETRY_WAIT) r = op.next();
    // Without the wait the loop faulted again at once, a thousand times, and failed the op.
    expect(r.value).toBe(RETRY_WAIT);
    vm.mmu.invalidateEnd();
    while (!r.done) r = op.next();
    expect(r.value).toEqual({ mapped: 1, status: 0, detail: "" });
    expect(vm.mmu.stats.pages[1]).toBe(1);
  });

  it("a pre-fault of a page already mapped by a leaf is spurious and changes nothing", () => {
    const vm = makeVm({});
    run(guestAccessRange(vm, vm.vcpus[0]!, 0, 1, true, false, new AccessTally()));
    const spurious = vm.mmu.stats.spuriousFaults;
    run(hostOps.populate(vm, vm.hostVcpu, 0, 1));
    expect(vm.mmu.stats.spuriousFaults).toBe(spurious + 1);
    expect(vm.mmu.stats.pages[1]).toBe(1);
  });

  it("a private pre-fault whose GFN a conversion makes shared under it returns -EFAULT at once (kvm_mmu_prepare_memory_fault_exit)", () => {
    const backend = privateBackend();
    const vm = makeVm({ memory: 16 * 2 ** 20, backend });
    vm.setInterleave(true);
    const faults = () => vm.mmu.stats.memoryFaultExits;
    // The pre-fault reads the GFN's attributes (private) and starts its fault; the conversion
    // to shared then runs whenever it can, the pre-fault when the conversion waits.
    const pre = hostOps.populate(vm, vm.hostVcpu, 3, 4);
    let p = pre.next();
    const convert = hostOps.convertMemory(vm, new ExecCtx("vmm", true), 3, 4, false);
    let c = convert.next();
    while (!c.done) {
      if (c.value === BLOCKED && !p.done) p = pre.next();
      else c = convert.next();
    }
    while (!p.done) p = pre.next();
    // One fault, and the ioctl's -EFAULT (retried, it met the same mismatch a thousand times).
    expect(p.value).toMatchObject({ mapped: 0, status: -14 });
    expect(faults()).toBe(1);
    expect(vm.mmu.stats.pages[1]).toBe(0);
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
    const backend = privateBackend();
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

describe("kvm_vm_set_mem_attributes", () => {
  it("zaps in one write-lock section, stores the attributes with mmu_lock dropped, ends the invalidation in a second; the range covers the head huge page", () => {
    const backend = privateBackend();
    const vm = makeVm({ memory: 16 * 2 ** 20, hostPageLevel: 2, backend });
    vm.setInterleave(true);
    const seq = vm.mmu.invalidateSeq;
    const op = hostOps.convertMemory(vm, vm.hostCtx, 0x201, 0x202, false);
    const seen: { locked: boolean; shared: boolean; widened: boolean; beyond: boolean }[] = [];
    for (let r = op.next(); !r.done; r = op.next()) {
      seen.push({
        locked: vm.mmu.lock.peekState().writer !== null,
        shared: !vm.attributes.peekPrivate(0x201),
        // A fault that sampled the sequence before the change, on the same 2M page but outside
        // the range converted, and on the next 2M page.
        widened: vm.mmu.invalidateRetryGfn(seq, 0x300),
        beyond: vm.mmu.invalidateRetryGfn(seq, 0x400),
      });
    }
    // Between the two lock sections: mmu_lock free, the invalidation (widened to the 2M page
    // around the range, not beyond it) in progress, the attributes not yet stored.
    const between = seen.findIndex((s) => !s.locked && s.widened && !s.shared);
    expect(between).toBeGreaterThanOrEqual(0);
    expect(seen[between]!.beyond).toBe(false);
    // Then the attributes are stored while the invalidation is still in progress, before the
    // second section ends it.
    expect(seen.slice(between).some((s) => s.shared && s.widened && !s.beyond)).toBe(true);
    expect(vm.attributes.peekPrivate(0x201)).toBe(false);
    expect(vm.attributes.peekPrivate(0x300)).toBe(true);
  });

  it("a fault between the store of the attributes and the second section still sees a mixed huge page as mixed (KVM_LPAGE_MIXED_FLAG): it maps 4K, not 2M over GFNs still being invalidated", () => {
    const vm = makeVm({ memory: 16 * 2 ** 20, hostPageLevel: 2, backend: privateBackend() });
    const access = (gfn: number) =>
      run(guestAccessRange(vm, vm.vcpus[0]!, gfn * 4096, 1, true, false, new AccessTally()));
    // GFN 0x200 shared: the 2M page 0x200-0x3ff is mixed.
    expect(run(hostOps.convertMemory(vm, vm.hostCtx, 0x200, 0x201, false))).toBe(1);
    vm.setInterleave(true);
    const op = hostOps.convertMemory(vm, vm.hostCtx, 0x200, 0x201, true);
    let r = op.next();
    // The attributes are private again, the invalidation of GFN 0x200 not yet over: the page
    // was mixed, so the invalidation was not widened, and GFN 0x205 is outside it.
    const seq = vm.mmu.invalidateSeq;
    while (!r.done && !(vm.attributes.peekPrivate(0x200) && vm.mmu.invalidateRetryGfn(seq, 0x200)))
      r = op.next();
    expect(r.done).toBe(false);
    expect(vm.mmu.invalidateRetryGfn(seq, 0x205)).toBe(false);
    access(0x205);
    expect([vm.mmu.stats.pages[1], vm.mmu.stats.pages[2]]).toEqual([1, 0]);
    for (r = op.next(); !r.done; r = op.next());
    // The second section found the page uniform: a fault there now maps 2M.
    vm.setInterleave(false);
    run(hostOps.zapGfnRange(vm, vm.hostCtx, 0x200, 0x400));
    access(0x210);
    expect(vm.mmu.stats.pages[2]).toBe(1);
  });
});

describe("kvm->slots_lock", () => {
  const privateVm = () => {
    const vm = makeVm({
      memory: 16 * 2 ** 20,
      backend: privateBackend(),
    });
    vm.setInterleave(true);
    return vm;
  };

  it("two conversions never interleave: the second blocks until the first has ended its invalidation", () => {
    const vm = privateVm();
    // The VMM converts one page while a vCPU's own page-state change converts another, in
    // another 2 MiB page (each invalidation widens to its head and tail huge pages).
    const a = hostOps.convertMemory(vm, vm.hostCtx, 0x10, 0x11, false);
    const b = hostOps.convertMemory(vm, vm.vcpus[0]!.ctx, 0x400, 0x401, false);
    a.next();
    a.next(); // a holds kvm->slots_lock
    const seq = vm.mmu.invalidateSeq;
    expect(b.next()).toEqual({ done: false, value: undefined }); // b's attempt at the lock
    for (let i = 0; i < 3; i++) expect(b.next().value).toBe(BLOCKED);
    // Nothing of b ran: the attributes are a's alone, and only a invalidates.
    expect(vm.attributes.peekPrivate(0x400)).toBe(true);
    // Until a's ioctl releases the lock (its hole punch after it invalidates only its own page).
    let r = a.next();
    while (!r.done && vm.slotsLock.peekOwner() !== null) {
      expect(vm.mmu.invalidateRetryGfn(seq, 0x400)).toBe(false);
      r = a.next();
    }
    while (!r.done) {
      expect(vm.mmu.invalidateRetryGfn(vm.mmu.invalidateSeq, 0x400)).toBe(false);
      r = a.next();
    }
    expect(r.value).toBe(1);
    let rb = b.next();
    while (!rb.done) rb = b.next();
    expect(rb.value).toBe(1);
    expect([vm.attributes.peekPrivate(0x10), vm.attributes.peekPrivate(0x400)]).toEqual([
      false,
      false,
    ]);
  });

  it("a conversion's check that there is nothing to do is made under the lock", () => {
    const vm = privateVm();
    const a = hostOps.convertMemory(vm, vm.hostCtx, 0x10, 0x11, false);
    const b = hostOps.convertMemory(vm, vm.vcpus[0]!.ctx, 0x10, 0x11, false);
    a.next();
    a.next();
    b.next();
    expect(b.next().value).toBe(BLOCKED);
    for (let r = a.next(); !r.done; r = a.next());
    // b finds the page shared already, once a has released the lock: nothing to do, so no
    // invalidation and no store of attributes (checked before the lock, it would do both).
    const seq = vm.mmu.invalidateSeq;
    const events: string[] = [];
    vm.events.subscribe((e) => events.push(e.type));
    // Until the hole punch QEMU makes after b's ioctl (which returned 0) takes guest_memfd's
    // lock: the punch invalidates the range on its own.
    let rb = b.next();
    while (!rb.done && vm.gmemLock.peekOwner() === null) rb = b.next();
    expect(vm.mmu.invalidateSeq).toBe(seq);
    expect(events).not.toContain("attributes");
    while (!rb.done) rb = b.next();
    expect(rb.value).toBe(0);
  });

  it("eager split waits for a conversion to end, as KVM_CLEAR_DIRTY_LOG does", () => {
    const vm = privateVm();
    const a = hostOps.convertMemory(vm, vm.hostCtx, 0x10, 0x11, false);
    const split = hostOps.split(vm, new ExecCtx("dirty-log", true), 0, 0x200);
    a.next();
    a.next(); // a holds kvm->slots_lock
    split.next(); // the split's attempt at the lock
    expect(split.next().value).toBe(BLOCKED);
    for (let r = a.next(); !r.done; r = a.next());
    let r = split.next();
    while (!r.done) {
      expect(r.value).not.toBe(BLOCKED);
      r = split.next();
    }
    expect(vm.slotsLock.peekOwner()).toBeNull();
  });

  it("is not held once the op ends, however it ends", () => {
    const vm = privateVm();
    expect(() => run(hostOps.deleteMemslot(vm, vm.hostCtx, 7))).toThrow(/memslot 7/);
    run(hostOps.convertMemory(vm, vm.hostCtx, 0, 1, false));
    expect(vm.slotsLock.peekOwner()).toBeNull();
  });
});

describe("kvm_arch_pre_set_memory_attributes: the invalidation covers the head and tail huge pages", () => {
  const privateVm = (memory: number) =>
    makeVm({
      memory,
      hostPageLevel: 2,
      backend: privateBackend(),
    });
  /**
   * Which of `probes` a fault that sampled the sequence before the conversion must retry, at any
   * point of the ioctl (the hole punch that follows it invalidates only the range itself).
   */
  const invalidated = (
    vm: ReturnType<typeof privateVm>,
    start: number,
    end: number,
    probes: number[],
  ) => {
    vm.setInterleave(true);
    const seq = vm.mmu.invalidateSeq;
    const hit = new Set<number>();
    const op = hostOps.convertMemory(vm, vm.hostCtx, start, end, false);
    let r = op.next();
    let locked = false;
    for (; !r.done; r = op.next()) {
      if (vm.slotsLock.peekOwner() !== null) locked = true;
      else if (locked) break;
      for (const g of probes) if (vm.mmu.invalidateRetryGfn(seq, g)) hit.add(g);
    }
    while (!r.done) r = op.next();
    vm.setInterleave(false);
    return probes.filter((g) => hit.has(g));
  };
  const MiB16 = 16 * 2 ** 20;

  it("widens to a uniform 2M page around a range inside it, and not beyond", () => {
    expect(
      invalidated(privateVm(MiB16), 0x201, 0x202, [0x1ff, 0x200, 0x201, 0x3ff, 0x400]),
    ).toEqual([0x200, 0x201, 0x3ff]);
    // Starting on the boundary, ending inside.
    expect(invalidated(privateVm(MiB16), 0x200, 0x201, [0x1ff, 0x200, 0x3ff, 0x400])).toEqual([
      0x200, 0x3ff,
    ]);
  });

  it("adds nothing to a range that is whole 2M pages", () => {
    expect(invalidated(privateVm(MiB16), 0x200, 0x400, [0x1ff, 0x200, 0x3ff, 0x400])).toEqual([
      0x200, 0x3ff,
    ]);
  });

  it("widens both ends of a range across two 2M pages", () => {
    expect(
      invalidated(privateVm(MiB16), 0x3ff, 0x401, [0x1ff, 0x200, 0x3ff, 0x400, 0x5ff, 0x600]),
    ).toEqual([0x200, 0x3ff, 0x400, 0x5ff]);
  });

  it("leaves out a head or tail 2M page whose attributes are mixed already", () => {
    const head = privateVm(MiB16);
    run(hostOps.convertMemory(head, head.hostCtx, 0x250, 0x251, false));
    expect(invalidated(head, 0x201, 0x202, [0x200, 0x201, 0x3ff])).toEqual([0x201]);
    const tail = privateVm(MiB16);
    run(hostOps.convertMemory(tail, tail.hostCtx, 0x450, 0x451, false));
    expect(invalidated(tail, 0x3ff, 0x401, [0x200, 0x400, 0x401, 0x5ff])).toEqual([0x200, 0x400]);
  });

  it("leaves out a head or tail 2M page that reaches past the memslot", () => {
    // 15 MiB: the last 2M page, 0xe00-0xfff, ends past the memslot's end at 0xf00.
    expect(invalidated(privateVm(15 * 2 ** 20), 0xe01, 0xe02, [0xe00, 0xe01, 0xeff])).toEqual([
      0xe01,
    ]);
    expect(
      invalidated(privateVm(15 * 2 ** 20), 0xdff, 0xe01, [0xc00, 0xdff, 0xe00, 0xe01, 0xeff]),
    ).toEqual([0xc00, 0xdff, 0xe00]);
  });
});

describe("goto retry after a lost cmpxchg (wrprot_gfn_range, __tdp_mmu_zap_root, split, recover)", () => {
  it("the retry passes through tdp_mmu_iter_cond_resched: a writer that began waiting meanwhile gets mmu_lock first", () => {
    const vm = makeVm({});
    run(guestAccessRange(vm, vm.vcpus[0]!, 0, 2, true, false, new AccessTally()));
    vm.setInterleave(true);
    const mmu = vm.mmu;
    const a = new ExecCtx("wrprot", true);
    runToEnd(mmu.lock.readLock(a));
    mmu.rcu.readLock(a);
    const root = mmu.peekRoots()[0]!;
    const w = wrprotGfnRange(mmu, a, root, 0, 2, 1);
    // GFN 0 is write-protected; then up to the atomic point before the cmpxchg of GFN 1's leaf
    // (past the first entry, so the walk has made progress and may yield).
    expect(w.next().done).toBe(false);
    expect(w.next().done).toBe(false);
    // Another CPU under the read lock changes that leaf (clears Accessed), so the cmpxchg loses...
    const other = new TdpIter(mmu.pool);
    for (
      other.start(root, 1, 1, 0);
      other.valid && (other.level > 1 || other.gfn < 1);
      other.next()
    ) {
      /* down to GFN 1's leaf */
    }
    expect(other.gfn).toBe(1);
    expect(mmu.setSpteAtomic(other, (other.oldLo & ~0x100) >>> 0, other.oldHi)).toBe(true);
    // ...and a writer starts waiting for mmu_lock.
    const b = new ExecCtx("writer", true);
    const writer = mmu.lock.writeLock(b);
    for (let i = 0; i < 2; i++) expect(writer.next().done).toBe(false); // its atomic point, then it blocks
    expect(mmu.lock.contended()).toBe(true);
    // The retry yields the lock to the writer before trying the cmpxchg again.
    w.next();
    expect(mmu.lock.peekState().readers).toBe(0);
    expect(writer.next().done).toBe(true);
  });
});

describe("tdp_mmu_split_huge_pages_root", () => {
  it("drops mmu_lock to allocate the page for a split, takes it again and restarts from the root", () => {
    const vm = makeVm({ hostPageLevel: 2 });
    run(guestAccessRange(vm, vm.vcpus[0]!, 0, 1, true, false, new AccessTally()));
    expect(vm.mmu.stats.pages[2]).toBe(1);
    vm.setInterleave(true);
    const lock = vm.mmu.lock;
    let unlocks = 0;
    const readUnlock = lock.readUnlock.bind(lock);
    lock.readUnlock = (ctx) => {
      unlocks++;
      readUnlock(ctx);
    };
    const tables = vm.mmu.stats.tablePages;
    // One section would unlock once, at the end; the kernel unlocks for the allocation too.
    expect(run(hostOps.split(vm, vm.hostCtx, 0, 512))).toBe(1);
    expect(unlocks).toBe(2);
    expect(vm.mmu.stats.pages[1]).toBe(512);
    expect(vm.mmu.stats.tablePages).toBe(tables + 1);
    expect(vm.mmu.inFlightSps).toBe(0);
  });
});

describe("kvm_flush_remote_tlbs", () => {
  it("is a KVM_REQ_TLB_FLUSH on every vCPU, done at each one's next entry, once for any number of requests", () => {
    const flushes: number[] = [];
    const backend = {
      ...bareBackend(),
      flushTlb: (_vm: BackendVm, vcpu: number) => {
        flushes.push(vcpu);
      },
    };
    const vm = makeVm({ vcpus: 2, backend });
    // First entries: kvm_mmu_load flushes for the new root.
    run(guestAccessRange(vm, vm.vcpus[0]!, 0, 1, true, false, new AccessTally()));
    run(guestAccessRange(vm, vm.vcpus[1]!, 0x1000, 1, true, false, new AccessTally()));
    expect(flushes).toEqual([0, 1]);
    // Two zaps: two requests, no flush yet.
    run(hostOps.zapGfnRange(vm, vm.hostCtx, 0, 1));
    run(hostOps.zapGfnRange(vm, vm.hostCtx, 1, 2));
    expect(vm.mmu.stats.tlbFlushes).toBe(2);
    expect(flushes).toEqual([0, 1]);
    // Each vCPU flushes once at its next entry; then nothing is pending.
    run(guestAccessRange(vm, vm.vcpus[1]!, 0x1000, 1, true, false, new AccessTally()));
    run(guestAccessRange(vm, vm.vcpus[0]!, 0, 1, true, false, new AccessTally()));
    run(guestAccessRange(vm, vm.vcpus[0]!, 0, 1, true, false, new AccessTally()));
    expect(flushes).toEqual([0, 1, 1, 0]);
    expect(vm.mmu.stats.vcpuTlbFlushes).toBe(4);
  });
});

describe("kvm_tdp_mmu_try_split_huge_pages over a range", () => {
  it("splits the huge leaves that start inside [start, end) only, down to the target level", () => {
    const vm = makeVm({ hostPageLevel: 2 });
    run(guestAccessRange(vm, vm.vcpus[0]!, 0, 1, true, false, new AccessTally()));
    run(guestAccessRange(vm, vm.vcpus[0]!, 0x200000, 1, true, false, new AccessTally()));
    expect(vm.mmu.stats.pages[2]).toBe(2);
    // [0, 512): the 2M leaf at GFN 512 starts at the end of the range and stays whole.
    expect(run(hostOps.split(vm, vm.hostCtx, 0, 512))).toBe(1);
    expect(vm.mmu.stats.pages[2]).toBe(1);
    expect(vm.mmu.stats.pages[1]).toBe(512);
    expect(run(hostOps.split(vm, vm.hostCtx, 512, 1024))).toBe(1);
    expect(vm.mmu.stats.pages[2]).toBe(0);
    expect(vm.mmu.stats.pages[1]).toBe(1024);
  });
});
