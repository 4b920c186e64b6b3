/**
 * `directSpteChanged`: a backend that follows the direct roots' stores (as a technology whose
 * secure side holds the unprotected mappings would) sees every change of what an entry maps,
 * and nothing else: the state it folds from the hook equals the direct roots, and each call
 * matches one store that changed the PFN, leafness or write permission.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  DIRECT_NEW_LEAF,
  DIRECT_NEW_WRITABLE,
  DIRECT_OLD_LEAF,
  DIRECT_OLD_WRITABLE,
  isLastSpte,
  isShadowPresent,
  isWritable,
  mirrorView,
  parseScenarioText,
  runScenario,
  spteToPfn,
  type Backend,
  type BackendVm,
  type Level,
  type TdpEvent,
} from "../src/testing.js";
import { FakeMirrorBackend, bareBackend } from "./helpers.js";

interface Entry {
  pfn: number;
  leaf: boolean;
  writable: boolean;
}
const key = (gfn: number, level: number) => `${level}:${gfn}`;

/** Folds calls into the state they describe, checking each call's old half against it. */
class Follower {
  readonly state = new Map<string, Entry>();
  calls = 0;
  readonly problems: string[] = [];

  hook = (
    _vm: BackendVm,
    gfn: number,
    level: Level,
    oldPfn: number,
    newPfn: number,
    flags: number,
  ): void => {
    this.calls++;
    const k = key(gfn, level);
    const had = this.state.get(k);
    const old: Entry | undefined =
      oldPfn < 0
        ? undefined
        : {
            pfn: oldPfn,
            leaf: (flags & DIRECT_OLD_LEAF) !== 0,
            writable: (flags & DIRECT_OLD_WRITABLE) !== 0,
          };
    if (JSON.stringify(had) !== JSON.stringify(old))
      this.problems.push(
        `${k}: told the old entry was ${JSON.stringify(old)}, it was ${JSON.stringify(had)}`,
      );
    if (newPfn < 0) {
      if ((flags & (DIRECT_NEW_LEAF | DIRECT_NEW_WRITABLE)) !== 0)
        this.problems.push(`${k}: new-entry flags without a new entry`);
      this.state.delete(k);
    } else {
      this.state.set(k, {
        pfn: newPfn,
        leaf: (flags & DIRECT_NEW_LEAF) !== 0,
        writable: (flags & DIRECT_NEW_WRITABLE) !== 0,
      });
    }
  };
}

/** The stores to direct tables that changed what the entry maps, from the event stream. */
function meaningfulDirectStores(events: TdpEvent[]): number {
  let n = 0;
  const view = (lo: number, hi: number, level: number) =>
    isShadowPresent(lo)
      ? `${spteToPfn(lo, hi)}/${isLastSpte(lo, level)}/${isWritable(lo)}`
      : "none";
  for (const e of events) {
    if (
      e.type === "spte" &&
      !e.mirror &&
      view(e.oldLo, e.oldHi, e.level) !== view(e.newLo, e.newHi, e.level)
    )
      n++;
  }
  return n;
}

function following(base: Backend, f: Follower): Backend {
  return Object.assign(base, { directSpteChanged: f.hook });
}

describe("directSpteChanged", () => {
  for (const name of ["zap-refault", "dirty-log", "hugepages", "race-shared-table"]) {
    it(`${name}: the state folded from the hook is the direct root's, one call per store that changed a mapping`, () => {
      const path = `scenarios/${name}.yaml`;
      const f = new Follower();
      const events: TdpEvent[] = [];
      const r = runScenario(parseScenarioText(readFileSync(path, "utf8"), path), {
        backend: following(bareBackend(), f),
        onEvent: (e) => events.push(e),
      });
      expect(r.report.invariants.violations).toEqual([]);
      expect(f.problems).toEqual([]);
      expect(f.calls).toBeGreaterThan(0);
      expect(f.calls).toBe(meaningfulDirectStores(events));
      const walked = new Map<string, { pfn: number; leaf: boolean }>();
      mirrorView(r.vm).forEachDirect((gfn, level, kind, pfn) =>
        walked.set(key(gfn, level), { pfn, leaf: kind === "leaf" }),
      );
      expect(new Map([...f.state].map(([k, e]) => [k, { pfn: e.pfn, leaf: e.leaf }]))).toEqual(
        walked,
      );
    });
  }

  it("aging clears accessed bits only: nothing to tell", () => {
    const f = new Follower();
    const events: TdpEvent[] = [];
    const scn = parseScenarioText(
      `
name: age
vm: { memory: 16MiB, gpaw: 48, vcpus: 1 }
schedule: { mode: round-robin, interleave: false }
vcpus:
  - - { op: access, gpa: 0x0, count: 16, write: true }
host:
  - { op: age, gpa: 0x0, size: 64KiB }
`,
      "age.yaml",
    );
    const r = runScenario(scn, {
      backend: following(bareBackend(), f),
      onEvent: (e) => events.push(e),
    });
    expect(r.report.ops.find((o) => o.op === "age")!.result.young).toBe(16);
    expect(events.filter((e) => e.type === "spte" && e.by === "age")).toHaveLength(16);
    expect(f.problems).toEqual([]);
    expect(f.calls).toBe(meaningfulDirectStores(events));
  });

  it("dirty logging: write protection and the writes that lift it are each told, on the same PFN", () => {
    const path = "scenarios/dirty-log.yaml";
    const f = new Follower();
    const changes: string[] = [];
    const inner = f.hook;
    f.hook = (vm, gfn, level, oldPfn, newPfn, flags) => {
      if (oldPfn === newPfn) changes.push((flags & DIRECT_NEW_WRITABLE) !== 0 ? "w" : "ro");
      inner(vm, gfn, level, oldPfn, newPfn, flags);
    };
    runScenario(parseScenarioText(readFileSync(path, "utf8"), path), {
      backend: following(bareBackend(), f),
    });
    // start: 64 leaves write-protected; 16 writes; collect: 16; 4 writes; collect: 4.
    expect(changes.filter((c) => c === "ro")).toHaveLength(64 + 16 + 4);
    expect(changes.filter((c) => c === "w")).toHaveLength(16 + 4);
  });

  it("a mirror root's stores are not told: only the shared accesses' direct leaves are", () => {
    const f = new Follower();
    const scn = parseScenarioText(
      `
name: mirror-and-direct
vm: { memory: 16MiB, gpaw: 48, vcpus: 1 }
vcpus:
  - - { op: access, gpa: 0x0, count: 8, write: true }
    - { op: convert, gpa: 0x100000, size: 64KiB, to: shared }
    - { op: access, gpa: 0x100000, count: 16, write: true, shared: true }
`,
      "mirror-and-direct.yaml",
    );
    const be = new FakeMirrorBackend();
    const r = runScenario(scn, { backend: following(be, f) });
    expect(r.report.invariants.violations).toEqual([]);
    expect(be.leaves.size).toBe(8);
    expect(f.problems).toEqual([]);
    const leaves = [...f.state].filter(([, e]) => e.leaf).map(([k]) => k);
    expect(leaves).toHaveLength(16);
    expect(leaves.every((k) => k.startsWith("1:"))).toBe(true);
    const gfns = leaves.map((k) => Number(k.slice(2))).sort((a, b) => a - b);
    expect(gfns[0]).toBe(0x100);
  });

  it("a teardown's removals are told the GFN without the direct bits, as the faults' stores are", () => {
    const f = new Follower();
    const told: number[] = [];
    const inner = f.hook;
    f.hook = (vm, gfn, level, oldPfn, newPfn, flags) => {
      told.push(gfn);
      inner(vm, gfn, level, oldPfn, newPfn, flags);
    };
    const scn = parseScenarioText(
      `
name: shared-then-teardown
vm: { memory: 16MiB, gpaw: 48, vcpus: 1 }
schedule: { mode: round-robin, interleave: false }
vcpus:
  - - { op: convert, gpa: 0x100000, size: 64KiB, to: shared }
    - { op: access, gpa: 0x100000, count: 16, write: true, shared: true }
host:
  - { op: teardown }
`,
      "shared-then-teardown.yaml",
    );
    const be = new FakeMirrorBackend();
    const r = runScenario(scn, { backend: following(be, f) });
    expect(r.report.invariants.violations).toEqual([]);
    expect(f.problems).toEqual([]);
    // Every leaf made was told gone again, under the same GFN.
    expect([...f.state].filter(([, e]) => e.leaf)).toEqual([]);
    expect(told.length).toBeGreaterThan(32);
    expect(Math.max(...told)).toBeLessThan(be.gfnDirectBits(r.vm));
  });
});
