/** As explore-traces.test.ts: race-shared-table on SEV, unbounded (1.3 million schedules without the reduction). */
import { describe, it } from "vitest";
import { expectSameTraces } from "./trace-sets.js";

describe("the reduced searches reach exactly the traces of the full one", () => {
  it("race-shared-table on SEV", () => {
    expectSameTraces("race-shared-table.yaml", "sev");
  }, 600_000);
});
