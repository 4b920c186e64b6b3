import { describe, expect, it } from "vitest";
import {
  FROZEN_SPTE,
  FROZEN_SPTE_HI,
  FROZEN_SPTE_LO,
  SHADOW_NONPRESENT_HI,
  SHADOW_NONPRESENT_LO,
  SHADOW_NONPRESENT_VALUE,
  decodeSpte,
  formatSpte,
  isFrozen,
  isLastSpte,
  isShadowPresent,
  makeHugeSpte,
  makeLeafHi,
  makeLeafLo,
  makeNonleafHi,
  makeNonleafLo,
  makeSmallSpteHi,
  makeSmallSpteLo,
  spteFromBigInt,
  spteToBigInt,
  spteToPfn,
} from "../src/testing.js";

const leaf = (pfn: number, level: number, writable: boolean, prefetch = false) =>
  formatSpte(makeLeafLo(pfn, level, writable, prefetch), makeLeafHi(pfn, writable));

describe("SPTE codec, against hand-computed values", () => {
  it("the empty SPTE is bit 63 (suppress #VE), not 0", () => {
    expect(formatSpte(SHADOW_NONPRESENT_LO, SHADOW_NONPRESENT_HI)).toBe("0x8000000000000000");
    expect(spteToBigInt(SHADOW_NONPRESENT_LO, SHADOW_NONPRESENT_HI)).toBe(SHADOW_NONPRESENT_VALUE);
    expect(isShadowPresent(SHADOW_NONPRESENT_LO)).toBe(false);
  });

  it("FROZEN_SPTE is 0x80000000000005a0: bits 5, 7, 8, 10 and 63, not present", () => {
    expect(formatSpte(FROZEN_SPTE_LO, FROZEN_SPTE_HI)).toBe("0x80000000000005a0");
    expect(spteToBigInt(FROZEN_SPTE_LO, FROZEN_SPTE_HI)).toBe(FROZEN_SPTE);
    expect(FROZEN_SPTE).toBe((1n << 63n) | (1n << 5n) | (1n << 7n) | (1n << 8n) | (1n << 10n));
    expect(isShadowPresent(FROZEN_SPTE_LO)).toBe(false);
    expect(isFrozen(FROZEN_SPTE_LO, FROZEN_SPTE_HI)).toBe(true);
    expect(decodeSpte(FROZEN_SPTE_LO, FROZEN_SPTE_HI, 1).kind).toBe("frozen");
    // 0x5a0 sets bits 5, 7, 8 and 10: a marker, not "LARGE A" permissions.
    expect(decodeSpte(FROZEN_SPTE_LO, FROZEN_SPTE_HI, 2).flags).toEqual([]);
  });

  it("a writable 4K leaf: RWX, WB|IPAT, A, D, MMU-present, PFN, host- and MMU-writable, bit 63", () => {
    // 0x12345 << 12 | 0x800 | 0x200 | 0x100 | 0x40 | 0x30 | 0x7 ; bits 57, 58, 63
    expect(leaf(0x12345, 1, true)).toBe("0x8600000012345b77");
  });

  it("a 2M leaf has the page-size bit 7", () => {
    expect(leaf(0x200, 2, true)).toBe("0x8600000000200bf7");
    expect(isLastSpte(makeLeafLo(0x200, 2, true, false), 2)).toBe(true);
  });

  it("a read-only leaf has neither W nor D nor the writable bits 57/58", () => {
    expect(leaf(1, 1, false)).toBe("0x8000000000001975");
  });

  it("a prefetched leaf has no Accessed bit", () => {
    expect(leaf(1, 1, true, true)).toBe("0x8600000000001a77");
  });

  it("a non-leaf: child PFN, RWX, A, MMU-present and bit 63; no page-size bit", () => {
    expect(formatSpte(makeNonleafLo(0xabcde), makeNonleafHi(0xabcde))).toBe("0x80000000abcde907");
    expect(isLastSpte(makeNonleafLo(0xabcde), 2)).toBe(false);
  });

  it("PFNs above bit 31 of the SPTE go to the high half (bits 32-51)", () => {
    const pfn = 0x123456789;
    expect(formatSpte(makeNonleafLo(pfn), makeNonleafHi(pfn))).toBe("0x8000123456789907");
    expect(spteToPfn(makeNonleafLo(pfn), makeNonleafHi(pfn))).toBe(pfn);
    const max = 2 ** 40 - 1;
    expect(spteToPfn(makeLeafLo(max, 1, true, false), makeLeafHi(max, true))).toBe(max);
  });

  it("bigint round trip", () => {
    for (const v of [
      0n,
      SHADOW_NONPRESENT_VALUE,
      FROZEN_SPTE,
      0x8600000012345b77n,
      0xffffffffffffffffn,
    ]) {
      const { lo, hi } = spteFromBigInt(v);
      expect(spteToBigInt(lo, hi)).toBe(v);
    }
  });

  it("decodes flags by name", () => {
    const d = decodeSpte(makeLeafLo(0x12345, 1, true, false), makeLeafHi(0x12345, true), 1);
    expect(d).toMatchObject({
      kind: "leaf",
      present: true,
      pfn: 0x12345,
      memtype: "WB",
      adMode: 0,
    });
    expect(d.flags).toEqual([
      "R",
      "W",
      "X",
      "IPAT",
      "A",
      "D",
      "MMU_PRESENT",
      "HOST_WRITABLE",
      "MMU_WRITABLE",
      "SUPPRESS_VE",
    ]);
    expect(decodeSpte(makeNonleafLo(5), makeNonleafHi(5), 2).kind).toBe("table");
    expect(decodeSpte(SHADOW_NONPRESENT_LO, SHADOW_NONPRESENT_HI, 1).kind).toBe("empty");
  });

  it("make_small_spte: children of a 2M leaf advance the PFN and lose the page-size bit at 4K", () => {
    const lo = makeLeafLo(0x200, 2, true, false);
    const hi = makeLeafHi(0x200, true);
    expect(formatSpte(makeSmallSpteLo(lo, 0x203, 1), makeSmallSpteHi(hi, 0x203))).toBe(
      "0x8600000000203b77",
    );
    // Children of a 1G leaf stay huge at 2M and advance by 512 pages.
    const glo = makeLeafLo(0x40000, 3, true, false);
    const ghi = makeLeafHi(0x40000, true);
    expect(formatSpte(makeSmallSpteLo(glo, 0x40200, 2), makeSmallSpteHi(ghi, 0x40200))).toBe(
      "0x8600000040200bf7",
    );
  });

  it("make_huge_spte: the PFN is aligned down to the huge page and the page-size bit set", () => {
    const small = { lo: makeLeafLo(0x205, 1, true, false), hi: makeLeafHi(0x205, true) };
    const huge = makeHugeSpte(small.lo, small.hi, 512);
    expect(formatSpte(huge.lo, huge.hi)).toBe("0x8600000000200bf7");
  });
});
