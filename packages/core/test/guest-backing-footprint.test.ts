/**
 * Guest memory's host pages record what a step learns of them: a release or a list of the
 * populated pages reads the pages still unpopulated too (a fault populating one first would
 * change what the step does), and the frame allocator records its own R_BACKING.
 */
import { describe, expect, it } from "vitest";
import {
  Clock,
  FootprintRecorder,
  GuestBacking,
  Host,
  KIND_READ,
  KIND_WRITE,
  R_BACKING,
} from "../src/testing.js";

const MiB = 2 ** 20;

/** A guest_memfd of four host pages (2 MiB each) with page 0 populated, and a recorder. */
function backing() {
  const host = new Host({ memory: 64 * MiB });
  const clock = new Clock();
  const rec = new FootprintRecorder();
  clock.shareRecorder(host.frames);
  const gmem = new GuestBacking(host.frames, 9, "gmem", 4 * 512, 1, clock);
  gmem.getPfn(0);
  clock.setRecorder(rec);
  rec.reset();
  return { host, gmem, rec };
}

/** The recorded accesses, as [kind, count] of each kind. */
function kinds(rec: FootprintRecorder): Map<number, number> {
  const out = new Map<number, number>();
  for (const id of rec.touched()) out.set(rec.kindOf(id), (out.get(rec.kindOf(id)) ?? 0) + 1);
  return out;
}

describe("guest memory's host pages in a step's footprint", () => {
  it("populating a host page writes it and the frame allocator", () => {
    const { gmem, rec } = backing();
    gmem.getPfn(512);
    expect(rec.kindOf(R_BACKING)).toBe(KIND_WRITE);
    expect(kinds(rec)).toEqual(new Map([[KIND_WRITE, 2]]));
    rec.reset();
    gmem.getPfn(513);
    expect(kinds(rec)).toEqual(new Map([[KIND_READ, 1]]));
  });

  it("listing the populated pages reads every host page, populated or not", () => {
    const { gmem, rec } = backing();
    expect([...gmem.populated()].length).toBe(1);
    expect(kinds(rec)).toEqual(new Map([[KIND_READ, 4]]));
  });

  it("a release writes what it frees and reads the host pages it leaves alone", () => {
    const { gmem, rec } = backing();
    gmem.release();
    expect(rec.kindOf(R_BACKING)).toBe(KIND_WRITE);
    // Page 0 and the allocator written; pages 1-3, unpopulated, read.
    expect(kinds(rec)).toEqual(
      new Map([
        [KIND_WRITE, 2],
        [KIND_READ, 3],
      ]),
    );
  });
});
