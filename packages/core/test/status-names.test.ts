/** StatusNames names a code both ways, shows an unnamed code as itself, and refuses unknown names in one line. */
import { describe, expect, it } from "vitest";
import { StatusNames } from "../src/testing.js";

describe("StatusNames", () => {
  const rmp = new StatusNames<number>("RMP status", [
    [0, "SUCCESS"],
    [3, "FAIL_INUSE"],
  ]);
  const tdx = new StatusNames<bigint>(
    "TDX status",
    new Map([[0x8000020000000000n, "OPERAND_BUSY"]]),
  );

  it("names codes, and shows one without a name as decimal (numbers) or hex (bigints)", () => {
    expect(rmp.name(3)).toBe("FAIL_INUSE");
    expect(rmp.name(7)).toBe("7");
    expect(tdx.name(0x8000020000000000n)).toBe("OPERAND_BUSY");
    expect(tdx.name(0xc000010000000000n)).toBe("0xc000010000000000");
  });

  it("reads names back, and an unknown one is one line listing the known", () => {
    expect(rmp.code("FAIL_INUSE")).toBe(3);
    expect(tdx.code("OPERAND_BUSY")).toBe(0x8000020000000000n);
    expect(() => rmp.code("BUSY")).toThrow(
      /^unknown RMP status 'BUSY' \(known: SUCCESS, FAIL_INUSE\)$/,
    );
  });

  it("refuses a name given to two codes", () => {
    expect(
      () =>
        new StatusNames<number>("x", [
          [1, "A"],
          [2, "A"],
        ]),
    ).toThrow("x: the name A is given twice");
  });
});
