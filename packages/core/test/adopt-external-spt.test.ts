/**
 * `adoptExternalSpt`: a backend that made secure tables itself hands them to the mirror, which
 * takes their pages instead of linking new ones; a mirror table that loses the race to link
 * leaves the page with the backend, in every interleaving.
 */
import { describe, expect, it } from "vitest";
import {
  exploreScenario,
  parseScenarioText,
  runScenario,
  type BackendVm,
  type Level,
  type TdpEvent,
} from "../src/testing.js";
import { FakeMirrorBackend } from "./helpers.js";

/** The fake mirror with the tables above GFN 0 made at VM creation, as a realm's first RTTs are. */
class Prebuilt extends FakeMirrorBackend {
  /** `${level}:${gfn}` of the entry → the page of the secure table it points to. */
  readonly prebuilt = new Map([
    ["4:0", 1000],
    ["3:0", 1001],
    ["2:0", 1002],
  ]);
  readonly adopted: string[] = [];
  readonly freed: number[] = [];
  readonly released: number[] = [];

  init(_vm: BackendVm): void {
    for (const [k, page] of this.prebuilt) {
      this.tables.add(k);
      this.liveExternal.add(page);
    }
  }

  adoptExternalSpt(_vm: BackendVm, gfn: number, level: Level): number {
    const page = this.prebuilt.get(`${level}:${gfn}`) ?? -1;
    if (page >= 0) this.adopted.push(`${level}:${gfn}`);
    return page;
  }

  override freeExternalSpt(_vm?: BackendVm, _gfn?: number, _level?: Level, ext?: number): number {
    this.freed.push(ext!);
    return super.freeExternalSpt();
  }

  override releaseExternalSpt(vm: BackendVm, h: number): void {
    // A prebuilt page comes back only after the mirror table that adopted it was freed.
    if ([...this.prebuilt.values()].includes(h) && !this.freed.includes(h))
      throw new Error(`secure table ${h} released while the backend still has it`);
    this.released.push(h);
    super.releaseExternalSpt(vm, h);
  }
}

describe("adoptExternalSpt", () => {
  it("the mirror takes the backend's tables: no link for them, their pages freed and given back with the tables", () => {
    const be = new Prebuilt();
    const events: TdpEvent[] = [];
    const r = runScenario(
      parseScenarioText(
        `
name: adopt
vm: { memory: 16MiB, gpaw: 48, vcpus: 1 }
schedule: { mode: round-robin, interleave: false }
vcpus:
  - - { op: access, gpa: 0x0, write: true }
    - { op: access, gpa: 0x200000, write: true }
host:
  - { op: teardown }
`,
        "adopt.yaml",
      ),
      { backend: be, onEvent: (e) => events.push(e) },
    );
    expect(r.report.invariants.violations).toEqual([]);
    expect(be.adopted).toEqual(["4:0", "3:0", "2:0"]);
    // Only the level-1 table under the second 2 MiB was new.
    const hooks = events
      .filter((e) => e.type === "hook")
      .map((e) => (e.type === "hook" ? `${e.hook} ${e.level}:${e.gfn}` : ""));
    expect(hooks.filter((h) => h.startsWith("linkExternalSpt"))).toEqual(["linkExternalSpt 2:512"]);
    expect(hooks.filter((h) => h.startsWith("adoptExternalSpt"))).toEqual([
      "adoptExternalSpt 4:0",
      "adoptExternalSpt 3:0",
      "adoptExternalSpt 2:0",
    ]);
    expect(be.freed).toEqual(expect.arrayContaining([1000, 1001, 1002]));
    expect(be.released).toEqual(expect.arrayContaining([1000, 1001, 1002]));
    expect(be.liveExternal.size).toBe(0);
  });

  it("two vCPUs adopt the same tables: the loser's mirror table leaves the page with the backend, in every interleaving", () => {
    const r = exploreScenario(
      parseScenarioText(
        `
name: adopt-race
vm: { memory: 4MiB, gpaw: 48, vcpus: 2 }
vcpus:
  - - { op: access, gpa: 0x0, write: true }
  - - { op: access, gpa: 0x1000, write: true }
`,
        "adopt-race.yaml",
      ),
      { backend: () => new Prebuilt(), preemptionBound: 2 },
    );
    expect(r.violation).toBeNull();
    expect(r.exhausted).toBe(true);
    expect(r.schedules).toBeGreaterThan(10);
  });
});
