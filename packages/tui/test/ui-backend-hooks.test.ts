/**
 * The UI draws a backend's state through the backend's own description hooks (walk titles, each
 * walked entry, the GPA map's class, extra stats, the tone of its calls), so a plugin's state
 * shows as TDX's and SEV's do, and no UI code names a backend class.
 */
import { describe, expect, it } from "vitest";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import {
  BACKEND,
  BackendRegistry,
  loadScenario,
  type BackendVm,
  type WalkedSpte,
} from "@tdpemu/core";
import { SEAM_MODULE, TDX_KEYIDS, TdxBackend, registration as tdx } from "@tdpemu/backend-tdx";
import { PlainBackend } from "@tdpemu/backend-plain";
import { Session } from "../src/session.js";
import { builtinRegistry } from "../src/registry.js";

/** TDX with its description hooks replaced, registered under another name. */
class TaggedTdx extends TdxBackend {
  override readonly name = "tagged";
  override walkTitle(_vm: BackendVm, root: "mirror" | "direct"): string {
    return `tagged ${root}`;
  }
  override describeEntry(
    _vm: BackendVm,
    root: "mirror" | "direct",
    _gfn: number,
    level: number,
  ): string {
    return root === "mirror" ? `tag L${level}` : "";
  }
  override mapCell(): string | null {
    return "b";
  }
  extraStats(): [string, string][] {
    return [["tagged pages", "42"]];
  }
}

/** Plain EPT that describes each direct entry with what it was told, and reports its flushes as busy calls. */
class Describing extends PlainBackend {
  override readonly name = "describing";
  seen: { level: number; spte: WalkedSpte }[] = [];
  vm: BackendVm | null = null;
  init(vm: BackendVm): void {
    this.vm = vm;
  }
  describeEntry(
    _vm: BackendVm,
    root: "mirror" | "direct",
    _gfn: number,
    level: number,
    spte: WalkedSpte,
  ): string {
    this.seen.push({ level, spte });
    return root === "direct" && spte.leaf ? `leaf of ${spte.pfn}` : "";
  }
  override flushTlb(vm: BackendVm, vcpu: number): void {
    super.flushTlb(vm, vcpu);
    vm.events.emit({
      type: "call",
      vm: 0,
      name: "FLUSH.BUSY",
      detail: "",
      status: "whatever",
      tone: "busy",
    });
    vm.events.emit({ type: "call", vm: 0, name: "FLUSH.UNTONED", detail: "", status: "FAILED" });
  }
}

function registry(): BackendRegistry {
  const r = new BackendRegistry();
  // TDX's host-wide parts, handed to the subclass as the container hands them to TdxBackend.
  r.add({
    name: "tagged",
    description: "t",
    registerHost: (c) => tdx.registerHost?.(c),
    register: (c) =>
      c.register(BACKEND, {
        useFactory: (x) => new TaggedTdx(x.resolve(SEAM_MODULE), x.resolve(TDX_KEYIDS)),
      }),
  });
  r.add({
    name: "describing",
    description: "d",
    register: (c) => c.register(BACKEND, { useClass: Describing }),
  });
  return r;
}

describe("the UI's backend description hooks", () => {
  it("walk titles, entries, map cells and extra stats come from the backend", () => {
    const s = new Session(loadScenario("scenarios/tdx-sequential-2m.yaml"), registry(), "tagged");
    s.stepToEvent("fault");
    const snap = s.snapshot(64);
    expect(snap.walk.map((w) => w.title)).toEqual(["tagged mirror", "tagged direct"]);
    const mirrorRows = snap.walk[0]!.rows;
    expect(mirrorRows.map((r) => r.secure)).toEqual(mirrorRows.map((r) => `tag L${r.level}`));
    expect(snap.map.cells[0]).toBe("b");
    expect(snap.stats).toContainEqual(["tagged pages", "42"]);
  });

  it("describeEntry is told whether each walked entry is present, a leaf, and its PFN", () => {
    const s = new Session(loadScenario("scenarios/zap-refault.yaml"), registry(), "describing");
    // On to the first leaf at GPA 0, where the walk looks.
    while (s.snapshot(64).walk[0]?.rows.at(-1)?.kind !== "leaf") s.step();
    const be = s.run.vm.backend as unknown as Describing;
    be.seen = [];
    const snap = s.snapshot(64);
    expect(snap.walk.map((w) => w.title)).toEqual(["EPT"]);
    const rows = snap.walk[0]!.rows;
    const leaf = rows.at(-1)!;
    expect(leaf.kind).toBe("leaf");
    const told = be.seen.at(-1)!;
    expect(told.level).toBe(leaf.level);
    expect(told.spte.present && told.spte.leaf).toBe(true);
    expect(leaf.hex.endsWith(`${told.spte.pfn.toString(16)}${leaf.hex.slice(-3)}`)).toBe(true);
    expect(leaf.secure).toBe(`leaf of ${told.spte.pfn}`);
    expect(be.seen.slice(0, -1).every((x) => x.spte.present && !x.spte.leaf)).toBe(true);
  });

  it("a call's tone colours its event; a call without one is plain, whatever its status says", () => {
    const s = new Session(loadScenario("scenarios/zap-refault.yaml"), registry(), "describing");
    const tones = new Map<string, string>();
    while (s.step()) {
      for (const e of s.snapshot(64, 4).events)
        for (const n of ["FLUSH.BUSY", "FLUSH.UNTONED"])
          if (e.text.includes(n)) tones.set(n, e.tone);
    }
    expect(tones.get("FLUSH.BUSY")).toBe("busy");
    expect(tones.get("FLUSH.UNTONED")).toBe("plain");
  });

  it("cca: the walk shows the RTT entry behind each entry, with its RIPAS in the protected half", () => {
    const s = new Session(loadScenario("scenarios/cca-convert.yaml"), builtinRegistry(), "cca");
    while (s.snapshot(64).walk[0]?.rows.at(-1)?.kind !== "leaf") s.step();
    const snap = s.snapshot(64);
    expect(snap.walk.map((w) => w.title)).toEqual([
      "mirror root (protected) · RTT",
      "direct root (unprotected) · RTT",
    ]);
    const rows = snap.walk[0]!.rows;
    // Levels 4 to 1 of the mirror are RTT levels 0 to 3: tables down to the leaf, assigned RAM.
    expect(rows.map((r) => r.secure)).toEqual([
      "RTT L0 TABLE",
      "RTT L1 TABLE",
      "RTT L2 TABLE",
      "RTT L3 ASSIGNED RAM",
    ]);
    expect(snap.stats).toContainEqual(["realm", "ACTIVE"]);
  });

  it("no UI file imports a backend package", () => {
    const dir = "packages/tui/src";
    const files = readdirSync(dir, { recursive: true })
      .map(String)
      .filter((f) => /\.tsx?$/.test(f) && !f.startsWith("registry"));
    for (const f of files)
      expect(readFileSync(join(dir, f), "utf8"), f).not.toMatch(
        /@tdpemu\/backend-(tdx|sev|plain|cca)/,
      );
  });
});
