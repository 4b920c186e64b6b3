/**
 * The module's resource ids: each piece of state its own resource wherever its page lies on a
 * host of up to 16 TiB (PFNs below 2^32), and each marked as read by the invariant checks or not
 * as its kind is. Two pieces sharing an id only make the explorer coarser, but a piece the checks
 * read landing in a space said to be unread would let a changed state go unchecked.
 */
import { describe, expect, it } from "vitest";
import { Clock } from "@tdpemu/core";
import { SeamFootprint, TD_CHILDREN, TD_PART_COUNT, TD_STATE } from "../src/testing.js";

/** A TD's parts (state, epoch, refcounts, children, MRTD, its three locks) are 0 to TD_PART_COUNT - 1. */
const PARTS = Array.from({ length: TD_PART_COUNT }, (_, part) => part);
/** PFNs from 0 to the last of a 16 TiB host, across the old 2^28 and 2^31 limits. */
const PFNS = [0, 1, 2 ** 28 - 1, 2 ** 28, 2 ** 28 + 1, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1];

function attached(): { fp: SeamFootprint; clock: Clock } {
  const clock = new Clock();
  const fp = new SeamFootprint();
  fp.attach(clock);
  return { fp, clock };
}

describe("the TDX module's resource ids", () => {
  it("a TD's parts are apart from each other, from other TDs' and from vCPU, PAMT and page ids, for TDRs anywhere below 2^32", () => {
    const { fp } = attached();
    const seen = new Map<number, string>();
    const add = (id: number, what: string): void => {
      expect(seen.get(id), `${what} shares its id`).toBeUndefined();
      seen.set(id, what);
    };
    for (const pfn of PFNS) {
      for (const part of PARTS) add(fp.tdId(pfn, part), `TD ${pfn} part ${part}`);
      add(fp.vcpuId(pfn), `TDVPR ${pfn}`);
      add(fp.pamtId(pfn), `PAMT ${pfn}`);
      add(fp.plainId(pfn), `plaintext ${pfn}`);
      if (pfn % 512 === 0) add(fp.pamt2mId(pfn), `2M PAMT ${pfn}`);
    }
  });

  it("the checks read a TD's state and child count, wherever its TDR lies, and none of its other parts", () => {
    const { fp, clock } = attached();
    for (const pfn of PFNS) {
      for (const part of PARTS) {
        expect(clock.isChecked(fp.tdId(pfn, part)), `TD ${pfn} part ${part}`).toBe(
          part === TD_STATE || part === TD_CHILDREN,
        );
      }
      expect(clock.isChecked(fp.pamtId(pfn))).toBe(true);
      expect(clock.isChecked(fp.vcpuId(pfn))).toBe(false);
    }
  });
});
