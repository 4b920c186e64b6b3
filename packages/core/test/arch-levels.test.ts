import { describe, expect, it } from "vitest";
import {
  gfnHasBit,
  gfnRoundForLevel,
  gpaToGfn,
  maxGfnExclusive,
  rootLevelForGpaw,
  sharedBitForGpaw,
  sharedGfnBit,
  sptIndex,
} from "../src/testing.js";

describe("levels and index math", () => {
  it("SPTE_INDEX takes 9 bits per level above the 12-bit page offset", () => {
    const gpa = 0x0000_7f12_3456_7000; // bits 47..12 spread over all four levels
    const gfn = gpaToGfn(gpa);
    expect(sptIndex(gfn, 1)).toBe((gpa / 2 ** 12) % 512);
    expect(sptIndex(gfn, 2)).toBe(Math.floor(gpa / 2 ** 21) % 512);
    expect(sptIndex(gfn, 3)).toBe(Math.floor(gpa / 2 ** 30) % 512);
    expect(sptIndex(gfn, 4)).toBe(Math.floor(gpa / 2 ** 39) % 512);
    expect(sptIndex(gfn, 4)).toBe(0xfe);
  });

  it("works above 32-bit GFNs (52-bit GPAs, 5-level tables)", () => {
    const gfn = 2 ** 39 + 2 ** 36 + 5; // GPA bit 51 and bit 48 set
    // GPA bit 51 is GFN bit 39, bit 3 of the level-5 index; GPA bit 48 is bit 0 of it.
    expect(sptIndex(gfn, 5)).toBe(9);
    expect(sptIndex(gfn, 4)).toBe(0);
    expect(sptIndex(gfn, 1)).toBe(5);
    expect(gfnRoundForLevel(gfn, 2)).toBe(gfn - 5);
  });

  it("gfn_round_for_level aligns down to the span of one entry", () => {
    expect(gfnRoundForLevel(1000, 1)).toBe(1000);
    expect(gfnRoundForLevel(1000, 2)).toBe(512);
    expect(gfnRoundForLevel(512 * 512 + 3, 3)).toBe(512 * 512);
  });

  it("the shared bit: GPAW 48 → bit 47 (4-level), GPAW 52 → bit 51 (5-level)", () => {
    expect(sharedBitForGpaw(48)).toBe(47);
    expect(sharedBitForGpaw(52)).toBe(51);
    expect(rootLevelForGpaw(48)).toBe(4);
    expect(rootLevelForGpaw(52)).toBe(5);
    expect(sharedGfnBit(48)).toBe(2 ** 35);
    expect(gfnHasBit(2 ** 35 + 7, sharedGfnBit(48))).toBe(true);
    expect(gfnHasBit(7, sharedGfnBit(48))).toBe(false);
    // On a 4-level root the shared half starts at index 256 of the root table.
    expect(sptIndex(sharedGfnBit(48), 4)).toBe(256);
    expect(maxGfnExclusive(4)).toBe(2 ** 36);
  });
});
