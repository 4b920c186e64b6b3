/**
 * The explorer checks less than everything after every step: it skips the check after a step
 * that left the check version alone (`Clock.checkVersion`: changes of what no check reads do
 * not move it), and at the end of a schedule whose last state it has just
 * found clean it runs only the end-of-run checks (`checkEndOfRun`). These tests show that this
 * finds what checking everything after every step finds: a corruption made at an arbitrary step
 * of an arbitrary schedule is reported in the same schedule, at the same step, with the same
 * messages, and the search explores the same schedules. The walk that rescans only the tables
 * stored to since its last pass finds what a scan of every table finds.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  FROZEN_SPTE_HI,
  FROZEN_SPTE_LO,
  SHADOW_NONPRESENT_HI,
  U32_PER_TABLE,
  buildRun,
  classifyRunError,
  explore,
  isLastSpte,
  isShadowPresent,
  spteToPfn,
  guestAccessPage,
  hostOps,
  parseScenarioText,
  type ExploreOptions,
  type ExploreResult,
  type BuiltRun,
  type ExploreSystem,
  type Scenario,
  type Op,
  type Vm,
  Clock,
  FootprintRecorder,
  resourceId,
} from "../src/testing.js";
import {
  R_ATTR,
  R_BACKEND,
  R_INVALIDATE,
  R_LOCK_WRITER,
  R_ROOTS,
  R_SRCU,
  taskDoneId,
} from "../src/exec/footprint.js";
import { checkEndOfRun, checkInvariants, mirrorView } from "../src/check/invariants.js";
import type { Backend, MirrorView } from "../src/backend/backend.js";
import type { BackendVm } from "../src/backend/backend-vm.js";
import { FakeMirrorBackend, MiB, RACE, bareBackend, makeVm, run } from "./helpers.js";

/** The race, and the host zapping under it. */
const RACE_AND_ZAP = `${RACE}host:
  - { op: zap, gpa: 0x0, size: 2MiB }
`;

/** What a buggy step may leave behind: caught only at the end, at once, or by the recount. */
type Corruption = "frozen" | "malformed" | "stats";

/** Breaks the VM as a buggy step would, through the MMU's own store (so the clock sees it). */
function corrupt(vm: Vm, kind: Corruption): boolean {
  const root = vm.mmu.roots[0];
  if (root === undefined) return false;
  const mem = vm.host.pool.tableMem(root.slot);
  const off = vm.host.pool.tableOff(root.slot) + U32_PER_TABLE - 2; // entry 511: never used here
  if (kind === "stats") {
    vm.mmu.stats.pages[1]!++;
    vm.mmu.writeSpte(mem, off, mem[off]!, mem[off + 1]!, root.slot, root.level, 0, "test");
  } else {
    const lo = kind === "frozen" ? FROZEN_SPTE_LO : 1; // 1: not present, yet not the empty value
    vm.mmu.writeSpte(
      mem,
      off,
      lo,
      kind === "frozen" ? FROZEN_SPTE_HI : SHADOW_NONPRESENT_HI,
      root.slot,
      root.level,
      0,
      "test",
    );
  }
  return true;
}

/**
 * The race scenario, where the first step at or after `atStep` (counted from the start of each
 * schedule, so replays repeat it) also corrupts the VM. `full`: no versions and no end-only
 * check, so the explorer checks everything after every step.
 */
function system(
  atStep: number,
  kind: Corruption,
  full: boolean,
  unsafe: boolean,
): () => ExploreSystem {
  const scn = parseScenarioText(RACE_AND_ZAP, "race.yaml");
  return () => {
    const built = buildRun(scn, {
      backend: bareBackend(),
      interleave: true,
      mmu: { unsafeNonAtomicSet: unsafe },
    });
    corruptingAt(built, atStep, () => corrupt(built.vm, kind));
    return explored(built, scn, full);
  };
}

/**
 * Makes the first step at or after `atStep` (counted from the start of each schedule, over
 * every task, so replays repeat it) also run `f`, and the steps after it until `f` says it did.
 */
function corruptingAt(built: BuiltRun, atStep: number, f: () => boolean): void {
  let steps = 0;
  let done = false;
  function* corrupting(inner: Op<unknown>): Op<unknown> {
    for (;;) {
      const r = inner.next();
      if (!done && steps++ >= atStep) done = f();
      if (r.done) return r.value;
      yield r.value;
    }
  }
  for (const t of built.tasks) (t as { op: Op<unknown> }).op = corrupting(t.op);
}

/**
 * `built` as the explorer gets it from `exploreScenario` (stamped stores, so the walk rescans
 * only tables stored to, and versions that skip checks), or with `full` as a system with no
 * versions, so that every check runs in full after every step. `onCheck` hears whether each
 * check left the backend's out.
 */
function explored(
  built: BuiltRun,
  scn: Scenario,
  full: boolean,
  onCheck?: (skipBackend: boolean) => void,
): ExploreSystem {
  const sys: ExploreSystem = {
    tasks: built.tasks,
    clock: built.clock,
    setRecorder: (fp) => {
      built.host.pool.fp = fp;
    },
    check: (final, skip) => {
      onCheck?.(skip === true);
      return built.check(final, skip).violations;
    },
    classify: (e) => classifyRunError(e, scn, built)?.[0] ?? null,
  };
  if (!full) {
    built.host.pool.trackWrites(built.clock);
    sys.stateVersion = built.checkVersion;
    sys.backendCheckVersion = built.backendCheckVersion;
    sys.checkEnd = () => checkEndOfRun(built.vm).violations;
    sys.release = () => built.host.release();
  }
  return sys;
}

const withoutTime = (r: ExploreResult) => ({ ...r, seconds: 0 });

describe("the explorer's incremental checks", () => {
  it("report a corruption made at any step exactly as checking everything after every step does", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 120 }),
        fc.constantFrom<Corruption>("frozen", "malformed", "stats"),
        fc.boolean(),
        fc.constantFrom<number | undefined>(undefined, 1),
        (atStep, kind, unsafe, bound) => {
          const opts: ExploreOptions = { maxSchedules: 300, preemptionBound: bound };
          const fast = explore(system(atStep, kind, false, unsafe), opts);
          const full = explore(system(atStep, kind, true, unsafe), opts);
          expect(withoutTime(fast)).toEqual(withoutTime(full));
        },
      ),
      { numRuns: 60 },
    );
  });

  it("find the corruption: a FROZEN entry at the end, a malformed entry or a wrong counter at once", () => {
    for (const kind of ["frozen", "malformed", "stats"] as const) {
      const r = explore(system(3, kind, false, false), { maxSchedules: 50 });
      const want =
        kind === "frozen"
          ? "no-frozen-spte"
          : kind === "malformed"
            ? "spte-well-formed"
            : "stats-match-tables";
      expect(r.violation?.violations.map((v) => v.check)).toContain(want);
    }
  });
});

/**
 * Freezes the first present leaf below the root, as a bug that leaves a FROZEN_SPTE behind
 * would, and takes it off the counts (so only the end of a run can tell); false if none.
 */
function freezeALeaf(vm: Vm): boolean {
  const root = vm.mmu.roots[0];
  if (root === undefined) return false;
  const pool = vm.host.pool;
  let slot = root.slot;
  for (let level = root.level; level >= 1; level--) {
    const mem = pool.tableMem(slot);
    const base = pool.tableOff(slot);
    let i = 0;
    while (i < 512 && !isShadowPresent(mem[base + 2 * i]!)) i++;
    if (i === 512) return false;
    const off = base + 2 * i;
    if (isLastSpte(mem[off]!, level)) {
      vm.mmu.writeSpte(mem, off, FROZEN_SPTE_LO, FROZEN_SPTE_HI, slot, level, 0, "test");
      vm.mmu.stats.pages[level]!--;
      return true;
    }
    slot = pool.pfnToSlot(spteToPfn(mem[off]!, mem[off + 1]!));
  }
  return false;
}

describe("checkEndOfRun", () => {
  it("on a state the step check found clean, says what the full end-of-run check says", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            gfn: fc.integer({ min: 0, max: 4095 }),
            n: fc.integer({ min: 1, max: 600 }),
            zap: fc.boolean(),
          }),
          { minLength: 1, maxLength: 8 },
        ),
        fc.boolean(),
        fc.constantFrom("none", "root", "leaf"),
        (ops, mirror, freeze) => {
          const vm = makeVm({
            memory: 16 * MiB,
            backend: mirror ? new FakeMirrorBackend() : undefined,
          });
          for (const o of ops) {
            const end = Math.min(4096, o.gfn + o.n);
            if (o.zap) run(hostOps.zapGfnRange(vm, vm.hostCtx, o.gfn, end));
            else
              for (let g = o.gfn; g < end; g += 97)
                run(guestAccessPage(vm, vm.vcpus[0]!, g * 4096, true, false));
          }
          if (freeze === "root") corrupt(vm, "frozen");
          if (freeze === "leaf") freezeALeaf(vm);
          if (checkInvariants(vm, { final: false }).violations.length > 0) return;
          expect(checkEndOfRun(vm)).toEqual(checkInvariants(vm, { final: true }));
        },
      ),
      { numRuns: 60 },
    );
  });
});

describe("the invariant walk over a pool whose stores are stamped", () => {
  it("finds what a full scan of every table finds, after any ops and corruptions", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            gfn: fc.integer({ min: 0, max: 4095 }),
            n: fc.integer({ min: 1, max: 600 }),
            zap: fc.boolean(),
            shared: fc.boolean(),
            corrupt: fc.constantFrom<Corruption | null>(
              null,
              null,
              null,
              "frozen",
              "malformed",
              "stats",
            ),
          }),
          { minLength: 1, maxLength: 8 },
        ),
        fc.boolean(),
        fc.nat(),
        (ops, mirror, trackAt) => {
          const vm = makeVm({
            memory: 16 * MiB,
            backend: mirror ? new FakeMirrorBackend() : undefined,
          });
          const pool = vm.host.pool;
          const both = (final: boolean) => {
            const tracked = pool.tracksWrites;
            const indexed = checkInvariants(vm, { final });
            pool.tracksWrites = false;
            const scanned = checkInvariants(vm, { final });
            pool.tracksWrites = tracked;
            expect(indexed).toEqual(scanned);
          };
          for (const [k, o] of ops.entries()) {
            // Tracking may start with tables already in use: their bits come from what they hold.
            if (k === trackAt % ops.length) pool.trackWrites(vm.clock);
            const end = Math.min(4096, o.gfn + o.n);
            if (o.zap) run(hostOps.zapGfnRange(vm, vm.hostCtx, o.gfn, end));
            else
              for (let g = o.gfn; g < end; g += 97)
                run(guestAccessPage(vm, vm.vcpus[0]!, g * 4096, true, o.shared));
            both(false);
            if (o.corrupt) corrupt(vm, o.corrupt);
            both(false);
            both(true);
          }
        },
      ),
      { numRuns: 60 },
    );
  });
});

/** Every entry a backend's check sees through the view, direct roots then mirror roots. */
function seen(view: MirrorView): string[] {
  const out: string[] = [];
  view.forEachDirect((gfn, level, kind, pfn) => out.push(`direct ${gfn} ${level} ${kind} ${pfn}`));
  view.forEach((gfn, level, kind, pfn, ext) =>
    out.push(`mirror ${gfn} ${level} ${kind} ${pfn} ${ext}`),
  );
  return out;
}

describe("the view a backend's checks get", () => {
  it("answers from the invariant walk's log what its own walks find", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            gfn: fc.integer({ min: 0, max: 4095 }),
            n: fc.integer({ min: 1, max: 600 }),
            zap: fc.boolean(),
            shared: fc.boolean(),
          }),
          { minLength: 1, maxLength: 8 },
        ),
        fc.boolean(),
        (ops, mirror) => {
          const be: Backend = mirror ? new FakeMirrorBackend() : bareBackend();
          let inCheck: string[] | null = null;
          const own = be.checkInvariants?.bind(be);
          be.checkInvariants = (vm, view) => {
            inCheck = seen(view);
            return own ? own(vm, view) : [];
          };
          const vm = makeVm({ memory: 16 * MiB, backend: be });
          for (const o of ops) {
            const end = Math.min(4096, o.gfn + o.n);
            if (o.zap) run(hostOps.zapGfnRange(vm, vm.hostCtx, o.gfn, end));
            else
              for (let g = o.gfn; g < end; g += 97)
                run(guestAccessPage(vm, vm.vcpus[0]!, g * 4096, true, o.shared));
            inCheck = null;
            const r = checkInvariants(vm, { final: false });
            expect(r.violations).toEqual([]);
            expect(inCheck).toEqual(seen(mirrorView(vm)));
          }
        },
      ),
      { numRuns: 60 },
    );
  });
});

describe("the check version", () => {
  it("moves with every change but those of what no check reads, while steps record", () => {
    const c = new Clock();
    // The explorer's steps record; unrecorded (the fault path, a replay) every change moves it.
    c.touch(R_INVALIDATE);
    expect(c.checkVersion).toBe(1);
    c.setRecorder(new FootprintRecorder());
    const checked = c.newResourceSpace();
    const unchecked = c.newResourceSpace(false);
    const some = c.newResourceSpace((i) => i % 2 === 0);
    const moves = (f: () => void) => {
      const [s, v] = [c.stateVersion, c.checkVersion];
      f();
      expect(c.stateVersion).toBe(s + 1);
      return c.checkVersion !== v;
    };
    expect(moves(() => c.touch(7))).toBe(true); // an SPTE
    expect(moves(() => c.touch(R_ROOTS))).toBe(true);
    expect(moves(() => c.touch(resourceId(checked, 3)))).toBe(true);
    expect(moves(() => c.touch(resourceId(some, 4)))).toBe(true);
    expect(moves(() => c.update(resourceId(some, 6)))).toBe(true);
    expect(moves(() => c.bump())).toBe(true);
    expect(moves(() => c.touch(R_LOCK_WRITER))).toBe(false);
    expect(moves(() => c.touch(R_SRCU))).toBe(false);
    expect(moves(() => c.touch(R_INVALIDATE))).toBe(false);
    expect(moves(() => c.touch(taskDoneId(0)))).toBe(false);
    expect(moves(() => c.touch(taskDoneId(5)))).toBe(false);
    expect(moves(() => c.touch(resourceId(unchecked, 0)))).toBe(false);
    expect(moves(() => c.touch(resourceId(some, 5)))).toBe(false);
    expect(moves(() => c.update(resourceId(unchecked, 9)))).toBe(false);
  });
});

describe("the backend check version", () => {
  it("leaves out guest memory state only while every backend's check ignores it", () => {
    const c = new Clock();
    c.addBackend(true);
    c.touch(R_ATTR); // unrecorded: every change moves both
    expect(c.backendCheckVersion).toBe(1);
    c.setRecorder(new FootprintRecorder());
    const memory = c.newResourceSpace(true, true);
    const other = c.newResourceSpace();
    const moves = (f: () => void) => {
      const [v, b] = [c.checkVersion, c.backendCheckVersion];
      f();
      return [c.checkVersion !== v, c.backendCheckVersion !== b];
    };
    expect(moves(() => c.touch(R_ATTR))).toEqual([true, false]);
    expect(moves(() => c.touch(resourceId(memory, 5)))).toEqual([true, false]);
    expect(moves(() => c.update(resourceId(memory, 6)))).toEqual([true, false]);
    expect(moves(() => c.touch(7))).toEqual([true, true]); // an SPTE
    expect(moves(() => c.touch(R_BACKEND))).toEqual([true, true]);
    expect(moves(() => c.touch(R_ROOTS))).toEqual([true, true]);
    expect(moves(() => c.touch(resourceId(other, 5)))).toEqual([true, true]);
    expect(moves(() => c.bump())).toEqual([true, true]);
    expect(moves(() => c.touch(R_LOCK_WRITER))).toEqual([false, false]);
    // A second VM on the clock whose backend's check reads guest memory.
    c.addBackend(false);
    expect(moves(() => c.touch(R_ATTR))).toEqual([true, true]);
    expect(moves(() => c.touch(resourceId(memory, 5)))).toEqual([true, true]);
    c.addBackend(true);
    expect(moves(() => c.touch(R_ATTR))).toEqual([true, true]);
  });
});

/**
 * A mirror backend whose check reads only its own leaves and the view: every leaf of its own is
 * a mirror leaf of the same page, unless that leaf's call is under way.
 */
class CheckedMirrorBackend extends FakeMirrorBackend {
  readonly checkIgnoresGuestMemory = true;
  checkInvariants(_vm: BackendVm, view: MirrorView): { check: string; message: string }[] {
    const out: { check: string; message: string }[] = [];
    for (const [gfn, pfn] of this.leaves) {
      const level = this.leafLevel.get(gfn)!;
      const m = view.lookup(gfn, level);
      if ((m === null || m.pfn !== pfn) && !view.inFlight(gfn, level))
        out.push({ check: "fake-leaves", message: `leaf ${gfn} (page ${pfn}) not in the mirror` });
    }
    return out;
  }
}

/** Two private faults under one table while the host converts a page of the same table. */
const CONVERT_RACE = `
name: convert-race
vm: { memory: 4MiB, vcpus: 2 }
backend: plain
vcpus:
  - - { op: access, gpa: 0x0, write: true }
  - - { op: access, gpa: 0x1000, write: true }
host:
  - { op: convert, gpa: 0x2000, size: 4KiB, to: shared }
  - { op: convert, gpa: 0x2000, size: 4KiB, to: private }
`;

/**
 * CONVERT_RACE on CheckedMirrorBackend, where the first step at or after `atStep` also gives
 * the backend a leaf the mirror does not have, recorded as a change of the backend's state.
 * `full`: no versions, so every check runs in full after every step; `skipped` counts the
 * checks that left the backend's out.
 */
function backendSystem(atStep: number, full: boolean, skipped: { n: number }): () => ExploreSystem {
  const scn = parseScenarioText(CONVERT_RACE, "convert-race.yaml");
  return () => {
    const be = new CheckedMirrorBackend();
    const built = buildRun(scn, { backend: be, interleave: true });
    corruptingAt(built, atStep, () => {
      be.leaves.set(900, 1);
      be.leafLevel.set(900, 1);
      built.clock.touch(R_BACKEND);
      return true;
    });
    return explored(built, scn, full, (skip) => {
      if (skip) skipped.n++;
    });
  };
}

describe("the explorer's skipping of a backend's checks", () => {
  it("reports a change of the backend's state made at any step as full checks do", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 150 }), (atStep) => {
        const opts: ExploreOptions = { maxSchedules: 200 };
        const fast = explore(backendSystem(atStep, false, { n: 0 }), opts);
        const full = explore(backendSystem(atStep, true, { n: 0 }), opts);
        expect(withoutTime(fast)).toEqual(withoutTime(full));
      }),
      { numRuns: 40 },
    );
  });

  it("skips them after steps that changed only guest memory, and only then", () => {
    const skipped = { n: 0 };
    const r = explore(backendSystem(1e9, false, skipped), { maxSchedules: 300 });
    expect(r.violation).toBeNull();
    expect(skipped.n).toBeGreaterThan(0);
    // With the audit the skipped checks run anyway and agree.
    const audited = explore(backendSystem(1e9, false, { n: 0 }), {
      maxSchedules: 300,
      audit: true,
    });
    expect(audited.violation).toBeNull();
    // A backend whose check reads guest memory is never skipped.
    const reads = { n: 0 };
    const scn = parseScenarioText(CONVERT_RACE, "convert-race.yaml");
    explore(
      () => {
        const be = new CheckedMirrorBackend();
        Object.defineProperty(be, "checkIgnoresGuestMemory", { value: false });
        const built = buildRun(scn, { backend: be, interleave: true });
        return explored(built, scn, false, (skip) => {
          if (skip) reads.n++;
        });
      },
      { maxSchedules: 300 },
    );
    expect(reads.n).toBe(0);
  });

  it("under the audit, fails a backend whose check reads guest memory though it says it does not", () => {
    // Its check reads the attributes: the page the host converts must stay private. `peek`: it
    // reads them through the accessor that records nothing, so only the audit's rerun of a
    // skipped check can tell.
    class Lying extends CheckedMirrorBackend {
      constructor(private readonly peek: boolean) {
        super();
      }
      override checkInvariants(
        vm: BackendVm,
        view: MirrorView,
      ): { check: string; message: string }[] {
        const out = super.checkInvariants(vm, view);
        const priv = this.peek ? vm.attributes.peekPrivate(2) : vm.attributes.isPrivate(2);
        if (!priv) out.push({ check: "fake-attr", message: "gfn 2 shared" });
        return out;
      }
    }
    const scn = parseScenarioText(CONVERT_RACE, "convert-race.yaml");
    const run = (peek: boolean, audit: boolean) =>
      explore(
        () => explored(buildRun(scn, { backend: new Lying(peek), interleave: true }), scn, false),
        { maxSchedules: 50, audit },
      ).violation?.violations[0];
    // Its reads, recorded apart from the core's, name the attributes at its first check.
    const read = run(false, true);
    expect(read?.check).toBe("footprint-audit");
    expect(read?.message).toContain("the backend's checks read memory attributes");
    const audited = run(true, true);
    expect(audited?.check).toBe("footprint-audit");
    expect(audited?.message).toContain("without moving the backend check version: gfn 2 shared");
    // Without the audit the lie goes unseen at the conversion's own step: the check that finds
    // it comes later, after some step that moves the backend's version.
    const plain = run(true, false);
    expect(plain?.check).toBe("fake-attr");
    expect(plain!.step).toBeGreaterThan(audited!.step);
  });
});
