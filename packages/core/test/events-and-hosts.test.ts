import { describe, expect, it } from "vitest";
import {
  GuestBacking,
  Host,
  MemAttributes,
  Vm,
  checkInvariants,
  guestAccessPage,
  hostOps,
  parseScenarioText,
  runScenario,
  spteToPfn,
  type TdpEvent,
} from "../src/testing.js";
import { FakeMirrorBackend, MiB, bareBackend, makeVm, run } from "./helpers.js";

describe("the event stream", () => {
  it("replaying the SPTE events of a run rebuilds every table exactly", () => {
    const scn = parseScenarioText(
      `
name: replay-events
vm: { memory: 16MiB, vcpus: 2, hugepages: true }
schedule: { mode: round-robin, interleave: false }
vcpus:
  - - { op: access, gpa: 0x0, count: 600, write: true }
    - { op: access, gpa: 0x400000, count: 3 }
    - { op: access, gpa: 0x0, count: 4 }
  - - { op: access, gpa: 0x200000, count: 1 }
host:
  - { op: split, gpa: 0x0, size: 4MiB }
  - { op: age, gpa: 0x0, size: 16MiB }
  - { op: zap, gpa: 0x100000, size: 1MiB }
`,
      "replay-events.yaml",
    );
    const events: TdpEvent[] = [];
    const { vm } = runScenario(scn, { backend: bareBackend(), onEvent: (e) => events.push(e) });
    // Rebuild from the events alone: a new page starts empty, then the last value written to
    // each (table, index) is what it holds.
    const last = new Map<string, [number, number]>();
    for (const e of events) {
      if (e.type === "spte") last.set(`${e.table}:${e.index}`, [e.newLo, e.newHi]);
      if (e.type === "table" && e.action === "alloc")
        for (let i = 0; i < 512; i++) last.set(`${e.slot}:${i}`, [0, 0x80000000]);
      if (e.type === "root" && e.action === "alloc")
        for (let i = 0; i < 512; i++) last.set(`${e.root}:${i}`, [0, 0x80000000]);
    }
    const pool = vm.host.pool;
    let compared = 0;
    for (const [key, [lo, hi]] of last) {
      const [table, index] = key.split(":").map(Number) as [number, number];
      if (!pool.isLive(table)) continue; // freed pages keep their last (FROZEN) contents
      const mem = pool.tableMem(table);
      const off = pool.tableOff(table) + 2 * index;
      expect([mem[off], mem[off + 1]], key).toEqual([lo, hi]);
      compared++;
    }
    expect(compared).toBeGreaterThan(500);
    // Steps never go backwards, and every kind of table change shows up.
    for (let i = 1; i < events.length; i++)
      expect(events[i]!.step).toBeGreaterThanOrEqual(events[i - 1]!.step);
    const kinds = new Set(events.map((e) => (e.type === "spte" ? `spte:${e.by}` : e.type)));
    for (const k of [
      "spte:cmpxchg",
      "spte:split",
      "spte:store",
      "spte:age",
      "spte:cpu-a/d",
      "table",
      "root",
      "fault",
      "flush",
      "op",
    ]) {
      expect(kinds, k).toContain(k);
    }
  });
});

describe("one host, several VMs", () => {
  it("two VMs share the host's frames and table pool without touching each other's", () => {
    const host = new Host({ memory: 256 * MiB });
    const cfg = { memory: 32 * MiB, gpaw: 48, vcpus: 1, hostPageLevel: 1 as const };
    const a = new Vm(host, cfg, bareBackend());
    const b = new Vm(host, cfg, new FakeMirrorBackend());
    for (let g = 0; g < 700; g++) {
      run(guestAccessPage(a, a.vcpus[0]!, g * 4096, true, false));
      run(guestAccessPage(b, b.vcpus[0]!, g * 4096, true, false));
    }
    expect(a.owner).not.toBe(b.owner);
    expect(checkInvariants(a, { final: true }).violations).toEqual([]);
    expect(checkInvariants(b, { final: true }).violations).toEqual([]);
    // The same GFN is backed by different frames, each owned by its VM.
    const pa = a.memslots.find(5)!.shared.peekPfn(5);
    const pb = b.memslots.find(5)!.gmem!.peekPfn(5);
    expect(pa).not.toBe(pb);
    expect(host.frames.ownerOfPfn(pa)).toBe(a.owner);
    expect(host.frames.ownerOfPfn(pb)).toBe(b.owner);
    // Tearing one down leaves the other intact.
    run(hostOps.teardown(a, a.hostCtx));
    expect(checkInvariants(b, { final: true }).violations).toEqual([]);
    expect(b.mmu.stats.pages[1]).toBe(700);
  });

  it("a leaf that points at another VM's frame is caught", () => {
    const host = new Host({ memory: 256 * MiB });
    const cfg = { memory: 8 * MiB, gpaw: 48, vcpus: 1, hostPageLevel: 1 as const };
    const a = new Vm(host, cfg, bareBackend());
    const b = new Vm(host, cfg, bareBackend());
    run(guestAccessPage(a, a.vcpus[0]!, 0, true, false));
    run(guestAccessPage(b, b.vcpus[0]!, 0, true, false));
    // Corrupt A's leaf for GFN 0 to point at B's frame.
    const pool = host.pool;
    const foreign = b.memslots.find(0)!.shared.peekPfn(0);
    let slot = a.vcpus[0]!.root!.slot;
    for (let level = 4; level > 1; level--) {
      const m = pool.tableMem(slot);
      slot = pool.pfnToSlot(spteToPfn(m[pool.tableOff(slot)]!, m[pool.tableOff(slot) + 1]!));
    }
    const m = pool.tableMem(slot);
    const off = pool.tableOff(slot);
    m[off] = ((m[off]! & 0xfff) | ((foreign & 0xfffff) << 12)) >>> 0;
    const checks = checkInvariants(a, { final: true }).violations.map((v) => v.check);
    expect(checks).toContain("leaf-frame-owned-by-vm");
  });
});

describe("5-level tables", () => {
  it("a 52-bit GPA space gets a level-5 root; faults link one table per level", () => {
    const vm = makeVm({ gpaw: 52, memory: 8 * MiB });
    expect(vm.rootLevel).toBe(5);
    run(guestAccessPage(vm, vm.vcpus[0]!, 0x3000, true, false));
    expect(vm.mmu.stats.tablePages).toBe(4);
    expect(checkInvariants(vm, { final: true }).violations).toEqual([]);
  });

  it("the shared alias of a TDX-like VM with GPAW 52 uses bit 51", () => {
    const be = new FakeMirrorBackend();
    const vm = makeVm({ gpaw: 52, memory: 8 * MiB, backend: be });
    expect(vm.mmu.gfnDirectBits).toBe(2 ** 39);
    run(hostOps.convertMemory(vm, vm.hostCtx, 0, 1, false));
    expect(run(guestAccessPage(vm, vm.vcpus[0]!, 0, true, true))).toBe("ok");
    expect(checkInvariants(vm, { final: true }).violations).toEqual([]);
  });
});

describe("Host.release", () => {
  it("a host made after a released one starts as a new one: every block free, no pool page", () => {
    const a = new Host({ memory: 64 * MiB });
    a.frames.allocBlocks(3, 1, 7, "test");
    a.pool.alloc(2, 1, 0, 0);
    const pfn = a.pool.slotToPfn(0);
    a.release();
    const b = new Host({ memory: 64 * MiB });
    expect([...b.frames.blockOwner].every((o) => o === 0)).toBe(true);
    expect(b.frames.usedFrames).toBe(0);
    expect(b.pool.pfnToSlot(pfn)).toBe(-1);
    expect(b.pool.liveTables).toBe(0);
  });
});

describe("per-VM bitmaps handed on when the host is released", () => {
  it("memory attributes and prepared pages of a VM made afterwards start as new ones", () => {
    const host = new Host({ memory: 64 * MiB });
    const attrs = new MemAttributes(2048);
    attrs.set(0, 2048, true);
    const gmem = new GuestBacking(host.frames, 9, "gmem", 2048, 1);
    expect(gmem.testAndSetPrepared(3)).toBe(true);
    attrs.discardStorage();
    gmem.discardStorage();
    const attrs2 = new MemAttributes(2048);
    attrs2.set(5, 6, true);
    expect([attrs2.isPrivate(0), attrs2.isPrivate(5), attrs2.isPrivate(2047)]).toEqual([
      false,
      true,
      false,
    ]);
    const gmem2 = new GuestBacking(host.frames, 9, "gmem", 2048, 1);
    expect(gmem2.testAndSetPrepared(3)).toBe(true);
    expect(gmem2.testAndSetPrepared(3)).toBe(false);
  });
});
