/**
 * A host that keeps issuing SEAMCALLs after teardown, naming "the page mapped at this GPA": the
 * S-EPT pages are reclaimed by then, and looking for the page must find none rather than walk
 * into pages that are no S-EPT pages any more.
 */
import { describe, expect, it } from "vitest";
import { parseScenarioText, runScenario } from "@tdpemu/core/testing";
import { tdx } from "./tdx-source.js";

const SCENARIO = `
name: raw-after-teardown
vm: { memory: 16MiB, gpaw: 48, vcpus: 1, hugepages: false }
backend: tdx
schedule: { mode: round-robin, interleave: false }
vcpus:
  - - { op: accept, gpa: 0x3000 }
host:
  - { op: teardown }
  - { op: raw, call: TDH.PHYMEM.PAGE.RECLAIM, page: mapped, gpa: 0x3000 }
  - { op: raw, call: TDH.MEM.PAGE.REMOVE, gpa: 0x3000, level: 0 }
`;

describe("raw SEAMCALLs after teardown", () => {
  it("`page: mapped` finds no page once the S-EPT is reclaimed; each call reports a status, nothing throws", () => {
    const r = runScenario(parseScenarioText(SCENARIO, "raw-after-teardown.yaml"), { backend: tdx });
    expect(r.report.invariants.violations).toEqual([]);
    const raws = r.report.ops.filter((o) => o.op === "raw").map((o) => o.result.status);
    expect(raws).toHaveLength(2);
    // There is no page to name: RECLAIM is handed -1 (all ones in RCX), an address above MAX_PA,
    // which the module refuses before it looks for a TDMR (hpa_check_with_pwr_2_alignment).
    expect(raws[0]).toBe("OPERAND_INVALID");
    expect(typeof raws[1]).toBe("string");
    expect(raws[1]).not.toBe("SUCCESS");
  });
});
