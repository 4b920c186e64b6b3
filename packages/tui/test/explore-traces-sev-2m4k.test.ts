/** As explore-traces.test.ts: tdx-race-2m-4k on SEV, unbounded (1.3 million schedules without the reduction). */
import { describe, it } from "vitest";
import { expectSameTraces } from "./trace-sets.js";

describe("the reduced searches reach exactly the traces of the full one", () => {
  it("tdx-race-2m-4k on SEV", () => {
    expectSameTraces("tdx-race-2m-4k.yaml", "sev");
  }, 600_000);
});
