/**
 * TDX's own invariants catch a PAMT that disagrees with the S-EPT (a page the S-EPT uses twice,
 * a page the TD owns that its S-EPT does not use) and a mirror that disagrees with the S-EPT
 * (an entry on one side only, a different page, an entry the module's walk does not reach). The
 * check runs after every explorer step and keeps its "used" map and its copy of the S-EPT's
 * entries between runs, so a clean state checked again stays clean.
 */
import { describe, expect, it } from "vitest";
import {
  FootprintRecorder,
  Host,
  Vm,
  checkInvariants,
  hostOps,
  guestAcceptPage,
  mirrorView,
  runToEnd,
  type MirrorView,
} from "@tdpemu/core/testing";
import {
  PT_NDA,
  PT_REG,
  SEPT_FREE,
  SEPT_MAPPED,
  SEPT_NL_BLOCKED,
  SEPT_NL_MAPPED,
  SEPT_STATE_NAMES,
  septPfn,
} from "../src/testing.js";
import { checkTdxInvariants } from "../src/tdx-invariants.js";
import { newTdx } from "./tdx-source.js";

const MiB = 2 ** 20;

function tdWithPages(pages: number) {
  const host = new Host({ memory: 96 * MiB });
  const be = newTdx(host);
  const vm = new Vm(host, { memory: 16 * MiB, gpaw: 48, vcpus: 1, hostPageLevel: 1 }, be);
  for (let p = 0; p < pages; p++)
    expect(runToEnd(guestAcceptPage(vm, vm.vcpus[0]!, p * 4096))).toBe("ok");
  return { vm, be };
}

/**
 * Writes the S-EPT entry over `gfn` at TDX `level` behind the module's back (its state and the
 * page it points to), as a bug in a SEAMCALL would leave it.
 */
function setSept(
  be: ReturnType<typeof newTdx>,
  gfn: number,
  level: number,
  state: number,
  pfn: number,
): void {
  const m = be.module;
  m.walk(be.td, gfn, level);
  m.sept.setEntry(m.walkTable, m.walkOff, state, pfn, level);
}

const messages = (vm: Vm) =>
  checkInvariants(vm, { final: false }).violations.map((v) => `${v.check}: ${v.message}`);

describe("TDX invariants: the PAMT against the S-EPT", () => {
  it("a clean TD stays clean when checked again and again", () => {
    const { vm } = tdWithPages(3);
    for (let i = 0; i < 3; i++) expect(messages(vm)).toEqual([]);
  });

  it("names a page the S-EPT maps twice", () => {
    const { vm, be } = tdWithPages(2);
    const page0 = vm.memslots.find(0)!.gmem!.peekPfn(0);
    setSept(be, 1, 0, SEPT_MAPPED, page0);
    expect(messages(vm)).toContainEqual(
      `pamt-consistent: page 0x${page0.toString(16)} is used twice in the S-EPT`,
    );
  });

  it("names a page the TD owns that its S-EPT does not use", () => {
    const { vm, be } = tdWithPages(1);
    const stray = vm.memslots.find(5)!.gmem!.peekPfn(5);
    expect(stray).toBeGreaterThan(0);
    expect(messages(vm)).toEqual([]);
    be.module.pamt.set(stray, PT_REG, be.tdr);
    expect(messages(vm)).toContainEqual(
      `pamt-consistent: REG page 0x${stray.toString(16)} owned by the TD is not in its S-EPT`,
    );
  });

  it("a 2 MiB page: its 4K PAMT entries assigned under its 2M entry, and a 4K leaf on one of its frames, are named", () => {
    const { vm, be } = tdWithPages(1);
    const m = be.module;
    const big = vm.host.frames.allocBlocks(1, 1, vm.host.newOwnerId(), "a 2 MiB page") * 512;
    // AUG at 2M over GPA 2 MiB, behind KVM's back, as the raw host call would.
    expect(be.rawCall(vm, "TDH.MEM.PAGE.AUG", { gpa: 0x200000, level: 1, page: big }).status).toBe(
      "SUCCESS",
    );
    const pamtOnly = () => messages(vm).filter((x) => x.startsWith("pamt-consistent"));
    expect(pamtOnly()).toEqual([]);
    m.pamt.set(big + 7, PT_REG, be.tdr);
    expect(pamtOnly()).toContainEqual(
      `pamt-consistent: the 2 MiB page at 0x${big.toString(16)} has 4K PAMT entries assigned under its 2M entry`,
    );
    m.pamt.set(big + 7, PT_NDA, -1);
    setSept(be, 0, 0, SEPT_MAPPED, big + 9);
    expect(pamtOnly()).toContainEqual(
      `pamt-consistent: page 0x${(big + 9).toString(16)} is used twice in the S-EPT`,
    );
  });
});

describe("TDX invariants: the mirror against the S-EPT", () => {
  const hex = (n: number) => `0x${n.toString(16)}`;
  const mirrorOnly = (vm: Vm) => messages(vm).filter((x) => x.startsWith("mirror-equals-sept"));

  it("names a mirror leaf whose S-EPT leaf is gone, and an S-EPT leaf the mirror lacks", () => {
    const { vm, be } = tdWithPages(3);
    const page1 = vm.memslots.find(1)!.gmem!.peekPfn(1);
    const stray = vm.memslots.find(5)!.gmem!.peekPfn(5);
    setSept(be, 1, 0, SEPT_FREE, 0);
    setSept(be, 5, 0, SEPT_MAPPED, stray);
    expect(mirrorOnly(vm)).toEqual([
      `mirror-equals-sept: mirror leaf at gfn 0x1 (page ${hex(page1)}) has no S-EPT leaf`,
      `mirror-equals-sept: S-EPT ${SEPT_STATE_NAMES[SEPT_MAPPED]} at gfn 0x5 TDX level 0 (page ${hex(stray)}) is not in the mirror`,
    ]);
  });

  it("names a GFN the two map to different pages", () => {
    const { vm, be } = tdWithPages(3);
    const page2 = vm.memslots.find(2)!.gmem!.peekPfn(2);
    const other = vm.memslots.find(7)!.gmem!.peekPfn(7);
    setSept(be, 2, 0, SEPT_MAPPED, other);
    expect(mirrorOnly(vm)).toEqual([
      `mirror-equals-sept: gfn 0x2: mirror maps page ${hex(page2)}, the S-EPT ${hex(other)}`,
    ]);
  });

  it("finds no S-EPT leaf under a blocked table, where the module's walk stops", () => {
    const { vm, be } = tdWithPages(2);
    const m = be.module;
    // The 2 MiB table over GFNs 0-511, blocked behind KVM's back: its leaves are still in the
    // S-EPT (and the mirror), but no walk of the module reaches them.
    m.walk(be.td, 0, 1);
    const lo = m.sept.entryLo(m.walkTable, m.walkOff);
    const hi = m.sept.entryHi(m.walkTable, m.walkOff);
    const table = septPfn(lo, hi);
    expect(m.sept.get(table)).toBeDefined();
    setSept(be, 0, 1, SEPT_NL_BLOCKED, table);
    const pages = [0, 1].map((g) => vm.memslots.find(g)!.gmem!.peekPfn(g));
    expect(mirrorOnly(vm)).toEqual([
      `mirror-equals-sept: gfn 0x0 level 2: mirror table over page ${hex(table)}, S-EPT ${SEPT_STATE_NAMES[SEPT_NL_BLOCKED]} over ${hex(table)}`,
      ...pages.map(
        (p, g) =>
          `mirror-equals-sept: mirror leaf at gfn ${hex(g)} (page ${hex(p)}) has no S-EPT leaf`,
      ),
    ]);
    setSept(be, 0, 1, SEPT_NL_MAPPED, table);
    expect(mirrorOnly(vm)).toEqual([]);
  });

  it("finds the same when the mirror's entries come out of the walks' order (two valid roots)", () => {
    const { vm, be } = tdWithPages(4);
    setSept(be, 1, 0, SEPT_FREE, 0);
    setSept(be, 6, 0, SEPT_MAPPED, vm.memslots.find(6)!.gmem!.peekPfn(6));
    const view = mirrorView(vm);
    // The same entries, backwards: the check must notice and look each one up instead.
    const backwards: MirrorView = {
      forEach(cb) {
        const all: Parameters<typeof cb>[] = [];
        view.forEach((...e) => all.push(e));
        for (const e of all.reverse()) cb(...e);
      },
      forEachDirect: (cb) => view.forEachDirect(cb),
      inFlight: (gfn, level) => view.inFlight(gfn, level),
      forEachInFlight: (cb) => view.forEachInFlight(cb),
      lookup: (gfn, level) => view.lookup(gfn, level),
    };
    const inOrder = checkTdxInvariants(be, view).map((f) => f.message);
    expect(inOrder).toHaveLength(4);
    expect(
      checkTdxInvariants(be, backwards)
        .map((f) => f.message)
        .sort(),
    ).toEqual(inOrder.sort());
  });
});

describe("what TDX's checks read", () => {
  it("is no guest memory state, as the backend declares (checkIgnoresGuestMemory)", () => {
    const { vm, be } = tdWithPages(4);
    // A page converted to shared as well: the attributes have changed.
    runToEnd(hostOps.convertMemory(vm, vm.hostCtx, 8, 9, false));
    expect(be.checkIgnoresGuestMemory).toBe(true);
    expect(vm.clock.backendIgnoresGuestMemory).toBe(true);
    const rec = new FootprintRecorder();
    vm.clock.setRecorder(rec);
    try {
      expect(checkTdxInvariants(be, mirrorView(vm))).toEqual([]);
    } finally {
      vm.clock.setRecorder(null);
    }
    const read = rec.touched();
    // It reads the module's state (so the recorder works here), none of guest memory.
    expect(read.length).toBeGreaterThan(0);
    expect(read.filter((id) => vm.clock.isGuestMemory(id))).toEqual([]);
    // The recorder sees guest memory reads where they happen.
    vm.clock.setRecorder(rec);
    try {
      vm.attributes.isPrivate(0);
    } finally {
      vm.clock.setRecorder(null);
    }
    expect(rec.touched().some((id) => vm.clock.isGuestMemory(id))).toBe(true);
  });
});
