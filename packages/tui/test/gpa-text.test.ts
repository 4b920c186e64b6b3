/**
 * The GPA typed after `g`: hex with or without 0x, sizes, the shared alias, and one-line errors
 * for what is not a GPA of the VM.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { formatBytes, formatGpa, parseGpaText, type GpaLimits } from "../src/ui/gpa-text.js";

const TDX: GpaLimits = { memory: 2 ** 30, sharedBit: 2 ** 47 };
const PLAIN: GpaLimits = { memory: 2 ** 30, sharedBit: 0 };

describe("parseGpaText", () => {
  it("reads hex with or without 0x, and sizes as offsets", () => {
    expect(parseGpaText("0x7ff000", TDX)).toEqual({ ok: true, gpa: 0x7ff000, shared: false });
    expect(parseGpaText("7ff000", TDX)).toEqual({ ok: true, gpa: 0x7ff000, shared: false });
    expect(parseGpaText(" 0X7FF000 ", TDX)).toEqual({ ok: true, gpa: 0x7ff000, shared: false });
    expect(parseGpaText("6M", TDX)).toEqual({ ok: true, gpa: 0x600000, shared: false });
    expect(parseGpaText("2MiB", TDX)).toEqual({ ok: true, gpa: 0x200000, shared: false });
    expect(parseGpaText("4K", TDX)).toEqual({ ok: true, gpa: 0x1000, shared: false });
    expect(parseGpaText("4kb", TDX)).toEqual({ ok: true, gpa: 0x1000, shared: false });
    expect(parseGpaText("1G", { ...TDX, memory: 2 ** 31 })).toEqual({
      ok: true,
      gpa: 2 ** 30,
      shared: false,
    });
    expect(parseGpaText("1M+4K", TDX)).toEqual({ ok: true, gpa: 0x101000, shared: false });
  });

  it("takes the shared bit off and says the GPA was its shared alias", () => {
    expect(parseGpaText("0x800000000000|0x7ff000", TDX)).toEqual({
      ok: true,
      gpa: 0x7ff000,
      shared: true,
    });
    expect(parseGpaText("0x8000007ff000", TDX)).toEqual({ ok: true, gpa: 0x7ff000, shared: true });
    expect(parseGpaText("800000000000 + 6M", TDX)).toEqual({
      ok: true,
      gpa: 0x600000,
      shared: true,
    });
    // On a 52-bit GPA width the shared bit is bit 51.
    expect(parseGpaText("0x8000000001000", { memory: 2 ** 30, sharedBit: 2 ** 51 })).toEqual({
      ok: true,
      gpa: 0x1000,
      shared: true,
    });
  });

  it("refuses what is not a GPA, saying what was wrong and what is expected", () => {
    for (const bad of ["", "0xzz", "6Q", "-1", "0x", "1.5G", "1M+", "g"]) {
      const r = parseGpaText(bad, TDX);
      expect(r.ok).toBe(false);
      if (r.ok) continue;
      expect(r.error).toMatch(/expected hex \(0x7ff000, 7ff000\) or a size/);
      expect(r.error).not.toContain("\n");
    }
    expect(parseGpaText("0xzz", TDX)).toMatchObject({
      error: expect.stringMatching(/^'0xzz' is not a GPA/) as unknown,
    });
  });

  it("refuses a GPA beyond the VM's memory, and a shared alias without a shared bit", () => {
    expect(parseGpaText("1G", TDX)).toEqual({
      ok: false,
      error:
        "0x40000000 is beyond the guest's 1 GiB: " +
        "expected 0x0 to 0x3fffffff (shared: | 0x800000000000)",
    });
    expect(parseGpaText("0x800000001000", PLAIN)).toEqual({
      ok: false,
      error:
        "0x800000001000 is beyond the guest's 1 GiB (this VM has no shared bit): " +
        "expected 0x0 to 0x3fffffff",
    });
    expect(parseGpaText("3fffffff", PLAIN)).toEqual({ ok: true, gpa: 0x3fffffff, shared: false });
  });

  it("formats sizes in the largest unit that divides them", () => {
    expect(formatBytes(2 ** 30)).toBe("1 GiB");
    expect(formatBytes(3 * 2 ** 20)).toBe("3 MiB");
    expect(formatBytes(12 * 1024)).toBe("12 KiB");
    expect(formatBytes(100)).toBe("100 bytes");
  });
});

describe("parseGpaText, properties", () => {
  const limits = fc.record({
    memory: fc.integer({ min: 1, max: 2 ** 40 }),
    sharedBit: fc.constantFrom(0, 2 ** 47, 2 ** 51),
  });

  it("a GPA formatted as the UI prints it (the shared alias too) parses back to itself", () => {
    fc.assert(
      fc.property(
        limits,
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.boolean(),
        (l, at, shared) => {
          const gpa = Math.min(l.memory - 1, Math.floor(at * l.memory));
          const alias = shared && l.sharedBit > 0;
          expect(parseGpaText(formatGpa(gpa, alias, l.sharedBit), l)).toEqual({
            ok: true,
            gpa,
            shared: alias,
          });
          // Without 0x, in capitals: the same.
          const bare = formatGpa(gpa, alias, l.sharedBit).slice(2).toUpperCase();
          expect(parseGpaText(bare, l)).toEqual({ ok: true, gpa, shared: alias });
        },
      ),
    );
  });

  it("n with a suffix is n times the unit: accepted within the memory, refused beyond", () => {
    const units = [
      ["K", 2 ** 10],
      ["KiB", 2 ** 10],
      ["M", 2 ** 20],
      ["MiB", 2 ** 20],
      ["G", 2 ** 30],
      ["GiB", 2 ** 30],
    ] as const;
    fc.assert(
      fc.property(
        limits,
        fc.integer({ min: 0, max: 4096 }),
        fc.constantFrom(...units),
        (l, n, [suffix, unit]) => {
          const r = parseGpaText(`${n}${suffix}`, l);
          if (n * unit < l.memory) expect(r).toEqual({ ok: true, gpa: n * unit, shared: false });
          else
            expect(r).toMatchObject({
              ok: false,
              error: expect.stringContaining("is beyond the guest's") as unknown,
            });
        },
      ),
    );
  });

  it("anything accepted is a GPA of the VM; anything refused has a one-line reason", () => {
    fc.assert(
      fc.property(limits, fc.string({ maxLength: 20 }), (l, text) => {
        const r = parseGpaText(text, l);
        if (r.ok) {
          expect(Number.isSafeInteger(r.gpa)).toBe(true);
          expect(r.gpa).toBeGreaterThanOrEqual(0);
          expect(r.gpa).toBeLessThan(l.memory);
          if (r.shared) expect(l.sharedBit).toBeGreaterThan(0);
        } else {
          expect(r.error.length).toBeGreaterThan(0);
          expect(r.error).not.toMatch(/\n/);
        }
      }),
    );
  });
});
