/**
 * Deterministic concurrency: the rwlock, FROZEN entries, RCU, racing faults, the explorer and
 * replay.
 */
import { describe, expect, it } from "vitest";
import {
  BLOCKED,
  Clock,
  ExecCtx,
  FROZEN_SPTE_HI,
  FROZEN_SPTE_LO,
  FootprintRecorder,
  FootprintStore,
  RwLock,
  KIND_READ,
  RET_PF_RETRY,
  Scheduler,
  TdpIter,
  DeadlockError,
  buildRun,
  explore,
  exploreScenario,
  guestAccessPage,
  hostOps,
  parseScenarioText,
  runScenario,
  tdpPageFault,
  type Op,
  type Task,
  type TdpEvent,
} from "../src/testing.js";
import { RACE, bareBackend, makeVm, run } from "./helpers.js";

/** An interleaving VM with GFN 0 mapped and a zap of GFNs [0, 16) stopped while it holds mmu_lock for write. */
function zapHoldingWriteLock() {
  const vm = makeVm({ vcpus: 1 });
  vm.setInterleave(true);
  run(guestAccessPage(vm, vm.vcpus[0]!, 0, true, false));
  const zap = hostOps.zapGfnRange(vm, vm.hostCtx, 0, 16);
  while (vm.mmu.lock.peekState().writer === null) zap.next();
  return { vm, zap };
}

describe("the mmu_lock rwlock", () => {
  it("faults wait for a zap that holds the write lock, then map", () => {
    const { vm, zap } = zapHoldingWriteLock();
    // A GFN outside the range being zapped: nothing tells the fault to retry early.
    const fault = guestAccessPage(vm, vm.vcpus[0]!, 0x20000, true, false);
    const tasks: Task[] = [
      { name: "fault", op: fault, done: false },
      { name: "zap", op: zap, done: false },
    ];
    // The fault runs until it has to wait for the lock: then it is blocked, the zap is not.
    for (let i = 0; i < 20; i++) if (fault.next().value === BLOCKED) break;
    expect(vm.mmu.lock.peekState().waitingReaders).toBe(1);
    new Scheduler("round-robin", 0).run(tasks, vm.clock);
    expect(vm.mmu.stats.zappedLeaves).toBe(1);
    expect(vm.mmu.stats.pages[1]).toBe(1); // the fault mapped 0x20000 after the zap
  });

  it("a fault on a GFN being invalidated retries before faulting the PFN in (mmu_invalidate_retry_gfn_unsafe), without waiting for the lock", () => {
    const { vm, zap } = zapHoldingWriteLock();
    const retries = vm.mmu.stats.faultRetries;
    const fault = guestAccessPage(vm, vm.vcpus[0]!, 0x5000, true, false);
    for (let i = 0; i < 20 && vm.mmu.stats.faultRetries === retries; i++) fault.next();
    expect(vm.mmu.stats.faultRetries).toBe(retries + 1);
    expect(vm.mmu.lock.peekState().waitingReaders).toBe(0);
    // It faults again once the zap is done, and maps.
    const tasks: Task[] = [
      { name: "fault", op: fault, done: false },
      { name: "zap", op: zap, done: false },
    ];
    new Scheduler("round-robin", 0).run(tasks, vm.clock);
    expect(vm.mmu.stats.pages[1]).toBe(1);
  });

  it("every unfinished task waiting is a deadlock", () => {
    const clock = new Clock();
    function* stuck(): Op {
      for (;;) yield BLOCKED;
    }
    const tasks: Task[] = [
      { name: "a", op: stuck(), done: false },
      { name: "b", op: stuck(), done: false },
    ];
    expect(() => new Scheduler("round-robin", 0).run(tasks, clock)).toThrow(DeadlockError);
  });
});

describe("FROZEN entries", () => {
  it("a walker that meets a FROZEN SPTE gives up and the fault returns RETRY", () => {
    const vm = makeVm();
    const v = vm.vcpus[0]!;
    run(guestAccessPage(vm, v, 0, true, false));
    const it = new TdpIter(vm.host.pool);
    it.start(v.root!, 1, 1, 0);
    while (it.level > 1) it.next();
    it.mem[it.off] = FROZEN_SPTE_LO;
    it.mem[it.off + 1] = FROZEN_SPTE_HI;
    expect(run(tdpPageFault(vm, v, 0x1000, true, false))).toBe(RET_PF_RETRY);
    expect(vm.mmu.stats.faultRetries).toBe(1);
  });
});

describe("racing faults", () => {
  it("two vCPUs faulting the same GFN: one mapping, one spurious fault", () => {
    const vm = makeVm({ vcpus: 2 });
    vm.setInterleave(true);
    const a = guestAccessPage(vm, vm.vcpus[0]!, 0x3000, true, false);
    const b = guestAccessPage(vm, vm.vcpus[1]!, 0x3000, true, false);
    // Both load their roots (a read-lock section) and take their EPT violation (the hardware
    // walk fails) before either maps the page.
    for (let i = 0; i < 3; i++) a.next();
    for (let i = 0; i < 3; i++) b.next();
    while (!a.next().done);
    while (!b.next().done);
    expect(vm.mmu.stats.faults).toBe(2);
    expect(vm.mmu.stats.spuriousFaults).toBe(1);
    expect(vm.mmu.stats.pages[1]).toBe(1);
  });

  it("in every interleaving, two vCPUs faulting the same GFN leave exactly one mapping", () => {
    const scn = parseScenarioText(RACE.replace("0x1000", "0x0"), "same-gfn.yaml");
    let schedules = 0;
    const r = explore(() => {
      const built = buildRun(scn, { backend: bareBackend(), interleave: true });
      return {
        tasks: built.tasks,
        clock: built.clock,
        setRecorder: (fp) => {
          built.host.pool.fp = fp;
        },
        check: (final) => {
          const v = built.check(final).violations;
          if (final) {
            schedules++;
            const s = built.vm.mmu.stats;
            if (s.pages[1] !== 1)
              v.push({ check: "one-mapping", message: `${s.pages[1]} mappings`, step: 0 });
            if (s.faults - s.spuriousFaults - s.faultRetries > 1)
              v.push({ check: "one-fix", message: "fixed twice", step: 0 });
          }
          return v;
        },
        classify: () => null,
      };
    });
    expect(r.violation).toBeNull();
    expect(r.exhausted).toBe(true);
    expect(schedules).toBeGreaterThan(10);
  });
});

describe("the explorer", () => {
  it("exhausts the shared-table race with the kernel's cmpxchg, and the reduction skips branches", () => {
    const r = exploreScenario(parseScenarioText(RACE, "race.yaml"), { backend: bareBackend });
    expect(r.violation).toBeNull();
    expect(r.exhausted).toBe(true);
    expect(r.schedules).toBeGreaterThan(50);
    expect(r.skippedByReduction).toBeGreaterThan(0);
  });

  it("finds the lost update of a non-atomic set: a table linked over another and leaked", () => {
    const r = exploreScenario(parseScenarioText(RACE, "race.yaml"), {
      backend: bareBackend,
      mmu: { unsafeNonAtomicSet: true },
    });
    expect(r.violation).not.toBeNull();
    const checks = r.violation!.violations.map((v) => v.check);
    expect(checks).toContain("no-leaked-table");
  });

  it("the compare of a non-atomic set records its read of the entry, whichever way it goes", () => {
    const vm = makeVm();
    run(guestAccessPage(vm, vm.vcpus[0]!, 0x0, true, false));
    (vm.mmu.options as { unsafeNonAtomicSet?: boolean }).unsafeNonAtomicSet = true;
    const ctx = new ExecCtx("t", true);
    run(vm.mmu.lock.readLock(ctx));
    const it = new TdpIter(vm.host.pool);
    it.start(vm.mmu.roots[0]!, 4, 0, 0);
    const id = it.tableSlot * 512;
    for (const snapshot of ["current", "stale"]) {
      // The compare is the set's first step; a stale snapshot fails it, a current one passes.
      if (snapshot === "stale") it.oldLo ^= 1;
      const rec = new FootprintRecorder();
      vm.host.pool.fp = rec;
      const op = vm.mmu.setSpteAtomicOp(ctx, it, it.oldLo, it.oldHi);
      op.next();
      vm.host.pool.fp = null;
      expect(rec.kindOf(id) & KIND_READ, snapshot).toBe(KIND_READ);
    }
  });

  it("two readers queueing behind a writer commute; the contention check depends on each", () => {
    const clock = new Clock();
    const lock = new RwLock(clock);
    const writer = new ExecCtx("w", true);
    run(lock.writeLock(writer));
    const store = new FootprintStore();
    const rec = new FootprintRecorder();
    clock.setRecorder(rec);
    const step = (f: () => void) => {
      rec.reset();
      f();
      return rec.saveTo(store);
    };
    const a = step(() => expect(lock.tryReadLock(new ExecCtx("a", true))).toBe(false));
    const b = step(() => expect(lock.tryReadLock(new ExecCtx("b", true))).toBe(false));
    const needbreak = step(() => expect(lock.contended()).toBe(true));
    clock.setRecorder(null);
    expect(store.dependsOn(a, b)).toBe(false);
    expect(store.dependsOn(a, needbreak)).toBe(true);
    expect(store.dependsOn(b, needbreak)).toBe(true);
  });

  it("a preemption bound of 0 explores only the schedules that run each vCPU to the end", () => {
    const r = exploreScenario(parseScenarioText(RACE, "race.yaml"), {
      backend: bareBackend,
      preemptionBound: 0,
    });
    expect(r.schedules).toBe(2);
    expect(r.exhausted).toBe(true);
  });

  it("a preemption bound of 1 explores fewer schedules than no bound", () => {
    const scn = parseScenarioText(RACE, "race.yaml");
    const unbounded = exploreScenario(scn, { backend: bareBackend });
    const bounded = exploreScenario(scn, { backend: bareBackend, preemptionBound: 1 });
    expect(bounded.schedules).toBeLessThan(unbounded.schedules);
    expect(bounded.exhausted).toBe(true);
  });

  it("the reduction loses no outcome: with and without sleep sets the same final states are reached (within 3 preemptions; explore-traces.test.ts compares whole trace sets unbounded)", () => {
    const scn = parseScenarioText(RACE, "race.yaml");
    const outcomes = (reduction: boolean) => {
      const seen = new Set<string>();
      const r = explore(
        () => {
          const built = buildRun(scn, { backend: bareBackend(), interleave: true });
          return {
            tasks: built.tasks,
            clock: built.clock,
            setRecorder: (fp) => {
              built.host.pool.fp = fp;
            },
            check: (final) => {
              if (final) {
                // The final tables, as the PFNs each GFN maps and the table count.
                const s = built.vm.mmu.stats;
                const it = new TdpIter(built.host.pool);
                const leaves: string[] = [];
                for (
                  it.start(built.vm.mmu.roots[0]!, 1, 0, 0);
                  it.valid && it.gfn < 1024;
                  it.next()
                ) {
                  if (it.level === 1 && it.oldLo & 0x800)
                    leaves.push(`${it.gfn}:${it.oldLo >>> 12}`);
                }
                seen.add(
                  `${leaves.join(",")}|tables ${s.tablePages}|faults ${s.faults}|retries ${s.faultRetries}|spurious ${s.spuriousFaults}`,
                );
              }
              return built.check(final).violations;
            },
            classify: () => null,
          };
        },
        { reduction, checkEveryStep: false, preemptionBound: 3 },
      );
      return { seen, r };
    };
    const full = outcomes(false);
    const reduced = outcomes(true);
    expect(reduced.r.schedules).toBeLessThan(full.r.schedules);
    expect([...reduced.seen].sort()).toEqual([...full.seen].sort());
    expect(full.seen.size).toBeGreaterThan(1);
  });
});

describe("replay", () => {
  function trace(
    scn: ReturnType<typeof parseScenarioText>,
    opts: Parameters<typeof runScenario>[1],
  ): string {
    const lines: string[] = [];
    runScenario(scn, { ...opts, onEvent: (e: TdpEvent) => lines.push(JSON.stringify(e)) });
    return lines.join("\n");
  }

  it("a recorded random run replays to the same trace, byte for byte", () => {
    const scn = parseScenarioText(RACE.replace("seed: 1", "seed: 99"), "race.yaml");
    const first = runScenario(scn, { backend: bareBackend() });
    const a = trace(scn, { backend: bareBackend() });
    const b = trace(scn, { backend: bareBackend(), replay: first.choices });
    expect(b).toBe(a);
    expect(a.length).toBeGreaterThan(1000);
  });

  it("the explorer's violating schedule replays to the same violation, with the same trace each time", () => {
    const scn = parseScenarioText(RACE, "race.yaml");
    const mmu = { unsafeNonAtomicSet: true };
    const r = exploreScenario(scn, { backend: bareBackend, mmu });
    const choices = r.violation!.choices;
    const rep = runScenario(scn, {
      backend: bareBackend(),
      replay: choices,
      interleave: true,
      mmu,
    });
    expect(rep.report.complete).toBe(false);
    expect(rep.report.invariants.violations.map((v) => v.message)).toEqual(
      r.violation!.violations.map((v) => v.message),
    );
    const t1 = trace(scn, { backend: bareBackend(), replay: choices, interleave: true, mmu });
    const t2 = trace(scn, { backend: bareBackend(), replay: choices, interleave: true, mmu });
    expect(t2).toBe(t1);
  });

  it("a schedule that names a task that cannot run is reported, not followed", () => {
    const scn = parseScenarioText(RACE, "race.yaml");
    expect(() => runScenario(scn, { backend: bareBackend(), replay: [0, 5] })).toThrow(
      /cannot run there/,
    );
  });

  it("RCU: a reader that entered before a table was unlinked keeps it alive until it leaves", () => {
    const vm = makeVm({ hostPageLevel: 2 });
    run(guestAccessPage(vm, vm.vcpus[0]!, 0, true, false));
    run(hostOps.split(vm, vm.hostCtx, 0, 512));
    const early = new ExecCtx("early", false);
    vm.mmu.rcu.readLock(early);
    run(hostOps.recover(vm, vm.hostCtx, 0, vm.npages));
    const late = new ExecCtx("late", false);
    vm.mmu.rcu.readLock(late); // entered after the unlink: does not hold the table
    expect(vm.mmu.deferredFrees).toBe(1);
    vm.mmu.rcu.readUnlock(early);
    expect(vm.mmu.deferredFrees).toBe(0);
    vm.mmu.rcu.readUnlock(late);
  });
});

describe("dirty logging on against a racing fault (kvm->srcu)", () => {
  // One write fault racing KVM_MEM_LOG_DIRTY_PAGES on a slot backed by 2 MiB pages.
  const text = (seed: number) => `
name: dirty-log-race
vm: { memory: 64MiB, gpaw: 48, vcpus: 1, hugepages: 2MiB }
backend: plain
schedule: { mode: random, seed: ${seed} }
vcpus:
  - - { op: access, gpa: 0x0, count: 1, write: true }
host:
  - { op: dirty-log, action: start }
`;

  it("no interleaving leaves a huge leaf in the logged slot: a fault that read the old flags finishes before the split", () => {
    let raced = 0;
    for (let seed = 1; seed <= 60; seed++) {
      const r = runScenario(parseScenarioText(text(seed), "dirty-log-race.yaml"), {
        backend: bareBackend(),
        interleave: true,
      });
      expect(r.report.invariants.violations).toEqual([]);
      expect(r.report.stats.pages["2m"], `seed ${seed}`).toBe(0);
      // The fault mapped 2M before the flag and the start split it: the race this is about.
      if (r.report.stats.pages["4k"] === 512) raced++;
    }
    expect(raced).toBeGreaterThan(0);
  });
});

describe("memslot deletion against a racing fault (KVM_MEMSLOT_INVALID, kvm->srcu)", () => {
  it("no interleaving leaves a mapping to the memory the deletion gave back", () => {
    const scn = parseScenarioText(
      `
name: delete-race
vm: { memory: 4MiB, gpaw: 48, vcpus: 1, hugepages: false }
backend: plain
schedule: { mode: round-robin, interleave: true }
vcpus:
  - - { op: access, gpa: 0x0, write: true }
    - { op: access, gpa: 0x0, write: true }
host:
  - { op: delete-memslot, slot: 0 }
`,
      "delete-race.yaml",
    );
    const r = exploreScenario(scn, { backend: bareBackend });
    expect(r.violation?.violations ?? []).toEqual([]);
    expect(r.exhausted).toBe(true);
    expect(r.schedules).toBeGreaterThan(20);
  });
});
