/**
 * What the SEV backend's fast path must keep exactly as it was: which exceptions are kept (the
 * latest 1,000 to 1,999, the older 1,000 dropped at once at 2,000) and how `exceptionsSince`
 * reads them, the RMPUPDATE of an entry given as bits against the one given as an object, the
 * field readers against `lookup`, and PVALIDATE's shared results.
 */
import { describe, expect, it } from "vitest";
import {
  FAIL_NOUPDATE,
  FAIL_SIZEMISMATCH,
  NOTHING_IN_USE,
  PFERR_ENC,
  PFERR_GUEST_FINAL,
  PFERR_PRESENT,
  PFERR_RMP,
  PFERR_SIZEM,
  PFERR_USER,
  RMP_ASSIGNED,
  RMP_IMMUTABLE,
  RMP_PAGE_2M,
  Rmp,
  pvalidate,
  rmpupdate,
  rmpupdateEntry,
} from "../src/testing.js";
import { access, makeSevVm, MiB } from "./sev-helpers.js";

describe("the exceptions the backend keeps", () => {
  it("keeps the latest 1,000 to 1,999 in order, and exceptionsSince reads past the ones dropped", () => {
    const { vm, be } = makeSevVm({ memory: 16 * MiB });
    const raiseOne = (gfn: number) => expect(access(vm, gfn * 4096, false)).toBe("exception");
    const gpasOf = (list: { gpa: number }[]) => list.map((e) => e.gpa / 4096);
    const range = (from: number, to: number) =>
      Array.from({ length: to - from }, (_, i) => from + i);
    // Each first access faults the page in (no exception), then the retry raises one #VC.
    for (let g = 0; g < 1999; g++) raiseOne(g);
    expect(be.raisedTotal).toBe(1999);
    expect(gpasOf(be.exceptions)).toEqual(range(0, 1999));
    raiseOne(1999);
    expect(be.exceptions).toHaveLength(2000);
    raiseOne(2000);
    expect(be.raisedTotal).toBe(2001);
    expect(gpasOf(be.exceptions)).toEqual(range(1000, 2001));
    expect(gpasOf(be.exceptionsSince(5))).toEqual(range(1000, 2001));
    expect(gpasOf(be.exceptionsSince(1990))).toEqual(range(1990, 2001));
    expect(be.exceptionsSince(2001)).toEqual([]);
    expect(be.exceptionsSince(3000)).toEqual([]);
    for (let g = 2001; g < 3500; g++) raiseOne(g);
    expect(gpasOf(be.exceptions)).toEqual(range(2000, 3500));
    expect(be.exceptions.at(-1)).toEqual({ kind: "#VC", gpa: 3499 * 4096, errorCode: 0x404n });
    expect(be.stats().calls["#VC"]).toBe(3500);
  });

  it("a #NPF keeps its full error code (bits past 32)", () => {
    const { vm, be } = makeSevVm();
    expect(access(vm, 0x5000, true)).toBe("exception");
    const frame = be.rmp.governing(vm.memslots.find(5)!.gmem!.peekPfn(5));
    be.rawCall(vm, "RMPUPDATE.SHARED", { page: frame });
    const mark = be.raisedTotal;
    // The frame is no longer the guest's: every retry meets the same #NPF (a livelock).
    expect(() => access(vm, 0x5000, true)).toThrow(/no progress/);
    const code = PFERR_GUEST_FINAL | PFERR_PRESENT | PFERR_USER | 2n | PFERR_ENC | PFERR_RMP;
    expect(be.exceptionsSince(mark)[0]).toEqual({ kind: "#NPF", gpa: 0x5000, errorCode: code });
  });
});

describe("RMPUPDATE", () => {
  it("given as bits does what it does given as an object, on every path", () => {
    const run = (update: (rmp: Rmp) => number[]) => {
      const rmp = new Rmp(4096);
      const statuses = update(rmp);
      const entries = [0, 1, 511, 512, 513, 600, 1023, 1024].map((p) => rmp.raw(p));
      return { statuses, entries };
    };
    const steps: [number, number, number, number][] = [
      [512, RMP_ASSIGNED | RMP_PAGE_2M, 3, 0x400],
      [600, RMP_ASSIGNED, 3, 7],
      [513, RMP_PAGE_2M, 0, 0],
      [0, RMP_ASSIGNED, 4, 9],
      [0, RMP_ASSIGNED | RMP_PAGE_2M, 4, 0],
      [1, RMP_ASSIGNED | RMP_IMMUTABLE, 5, 1],
      [1, 0, 0, 0],
      [1024, RMP_ASSIGNED | RMP_PAGE_2M | RMP_IMMUTABLE, 2, 0x800],
      [1024, RMP_PAGE_2M, 0, 0],
      [4096, RMP_ASSIGNED, 1, 1],
      [512, RMP_PAGE_2M, 0, 0],
      [600, RMP_ASSIGNED, 3, 7],
    ];
    const asBits = run((rmp) =>
      steps.map(([pfn, flags, asid, gfn]) =>
        rmpupdateEntry(rmp, pfn, flags, asid, gfn, NOTHING_IN_USE),
      ),
    );
    const asObject = run((rmp) =>
      steps.map(([pfn, flags, asid, gfn]) =>
        rmpupdate(
          rmp,
          pfn,
          {
            assigned: (flags & RMP_ASSIGNED) !== 0,
            size2m: (flags & RMP_PAGE_2M) !== 0,
            immutable: (flags & RMP_IMMUTABLE) !== 0,
            asid,
            gfn,
          },
          NOTHING_IN_USE,
        ),
      ),
    );
    expect(asBits).toEqual(asObject);
    expect(asBits.statuses).toEqual([0, 4, 1, 0, 4, 0, 2, 0, 2, 1, 0, 0]);
  });

  it("the field readers agree with lookup", () => {
    const rmp = new Rmp(4096);
    rmpupdateEntry(rmp, 512, RMP_ASSIGNED | RMP_PAGE_2M, 3, 0x400, NOTHING_IN_USE);
    rmpupdateEntry(rmp, 7, RMP_ASSIGNED, 9, 0x77, NOTHING_IN_USE);
    for (const pfn of [0, 7, 8, 511, 512, 513, 1023, 1024, 2000]) {
      const e = rmp.lookup(pfn);
      const g = rmp.governing(pfn);
      expect({
        pfn: g,
        asid: rmp.asidOf(g),
        gfn: rmp.gfnOf(g),
        assigned: (rmp.flagsOf(g) & RMP_ASSIGNED) !== 0,
      }).toEqual({ pfn: e.pfn, asid: e.asid, gfn: e.gfn, assigned: e.assigned });
    }
  });

  it("readGoverning reads what the field readers read, in one lookup, for any frame number", () => {
    const rmp = new Rmp(3 * 4096);
    rmpupdateEntry(rmp, 512, RMP_ASSIGNED | RMP_PAGE_2M, 3, 0x400, NOTHING_IN_USE);
    rmpupdateEntry(
      rmp,
      4096 + 1024,
      RMP_ASSIGNED | RMP_PAGE_2M | RMP_IMMUTABLE,
      4,
      0x800,
      NOTHING_IN_USE,
    );
    rmpupdateEntry(rmp, 7, RMP_ASSIGNED, 9, 0x77, NOTHING_IN_USE);
    rmpupdateEntry(rmp, 2048, 0, 0, 0, NOTHING_IN_USE);
    // A 4K entry inside an unassigned 2M head, frames of blocks never made, and numbers no
    // frame has (the untrusted host's raw calls pass any number).
    const frames = [
      0,
      7,
      8,
      511,
      512,
      513,
      1023,
      1024,
      2048,
      4095,
      4096,
      4096 + 1024,
      4096 + 1535,
      4096 + 1536,
      9000,
      2 ** 20,
      2 ** 32 + 7,
      -1,
      -513,
      1.5,
      512.25,
      Number.NaN,
    ];
    for (const pfn of frames) {
      const g = rmp.governing(pfn);
      const flags = rmp.readGoverning(pfn);
      expect({
        flags,
        pfn: rmp.governingPfn,
        asid: rmp.governingAsid,
        gfn: rmp.governingGfn,
      }).toEqual({ flags: rmp.flagsOf(g), pfn: g, asid: rmp.asidOf(g), gfn: rmp.gfnOf(g) });
    }
  });
});

describe("PVALIDATE", () => {
  it("gives the same results as before, shared and frozen where there is no error code", () => {
    const rmp = new Rmp(4096);
    rmpupdateEntry(rmp, 10, RMP_ASSIGNED, 1, 0x10, NOTHING_IN_USE);
    rmpupdateEntry(rmp, 512, RMP_ASSIGNED | RMP_PAGE_2M, 1, 0x200, NOTHING_IN_USE);
    const v = (gfn: number, pfn: number, size2m: boolean, validate = true) =>
      pvalidate(rmp, 1, gfn, pfn, size2m, validate, 4n, PFERR_RMP, PFERR_SIZEM);
    const ok = v(0x10, 10, false);
    expect(ok).toEqual({ kind: "ok" });
    expect(Object.isFrozen(ok)).toBe(true);
    expect(v(0x10, 10, false)).toEqual({ kind: "status", status: FAIL_NOUPDATE });
    expect(v(0x10, 10, true)).toEqual({ kind: "status", status: FAIL_SIZEMISMATCH });
    expect(v(0x201, 513, false)).toEqual({ kind: "npf", errorCode: 4n | PFERR_RMP | PFERR_SIZEM });
    expect(v(0x202, 513, false)).toEqual({ kind: "npf", errorCode: 4n | PFERR_RMP });
    expect(v(0x200, 512, true)).toEqual({ kind: "ok" });
    expect(rmp.lookup(700).validated).toBe(true);
    expect(v(0x10, 10, false, false)).toEqual({ kind: "ok" });
    expect(rmp.raw(10).validated).toBe(false);
  });
});
