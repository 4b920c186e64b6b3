/**
 * Properties of any realm program: whatever a realm and its VMM do (faults, shared pages,
 * conversions the realm asks for, zaps and conversions the VMM makes on its own, accepts), in
 * any interleaving, the RTTs stay the mirror and the direct root, every granule's state agrees
 * with what maps it, and after the teardown every granule the run delegated is back with the
 * host.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseScenarioText, runScenario } from "@tdpemu/core/testing";
import { GRANULE_NS, type CcaBackend } from "../src/testing.js";
import { cca } from "./cca-helpers.js";

const page = fc.integer({ min: 0, max: 255 }).map((p) => p * 4096);
const vcpuOp = fc.oneof(
  fc
    .record({ gpa: page, count: fc.integer({ min: 1, max: 8 }), shared: fc.boolean() })
    .map(
      (o) =>
        `{ op: access, gpa: 0x${o.gpa.toString(16)}, count: ${o.count}, write: true${o.shared ? ", shared: true" : ""} }`,
    ),
  fc
    .record({
      gpa: page,
      to: fc.constantFrom("shared", "private"),
      pages: fc.integer({ min: 1, max: 4 }),
    })
    .map((o) => `{ op: psc, gpa: 0x${o.gpa.toString(16)}, size: ${o.pages * 4}KiB, to: ${o.to} }`),
  page.map((gpa) => `{ op: accept, gpa: 0x${gpa.toString(16)} }`),
);
const hostOp = fc.oneof(
  fc
    .record({ gpa: page, pages: fc.integer({ min: 1, max: 16 }) })
    .map((o) => `{ op: zap, gpa: 0x${o.gpa.toString(16)}, size: ${o.pages * 4}KiB }`),
  fc
    .record({ gpa: page, to: fc.constantFrom("shared", "private") })
    .map((o) => `{ op: convert, gpa: 0x${o.gpa.toString(16)}, size: 8KiB, to: ${o.to} }`),
);

describe("any realm program", () => {
  it("keeps the RTTs, the granules and the roots in agreement, and gives every granule back", () => {
    fc.assert(
      fc.property(
        fc.array(fc.array(vcpuOp, { minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 2 }),
        fc.array(hostOp, { maxLength: 3 }),
        fc.integer({ min: 1, max: 1000 }),
        (vcpus, host, seed) => {
          const text = `
name: realm-property
vm: { memory: 2MiB, gpaw: 48, vcpus: ${vcpus.length} }
backend: cca
schedule: { mode: random, seed: ${seed} }
vcpus:
${vcpus.map((ops) => `  - [${ops.join(", ")}]`).join("\n")}
host:
${[...host, "{ op: teardown }"].map((o) => `  - ${o}`).join("\n")}
`;
          const r = runScenario(parseScenarioText(text, "realm-property.yaml"), {
            backend: cca,
            check: "op",
          });
          expect(r.report.invariants.violations).toEqual([]);
          expect(r.report.stats.leakedPages).toBe(0);
          const be = r.vm.backend as CcaBackend;
          const c = r.report.backendStats.calls;
          expect(c.RMI_GRANULE_DELEGATE).toBe(c.RMI_GRANULE_UNDELEGATE);
          expect(be.rmm.granules.state.every((s) => s === GRANULE_NS)).toBe(true);
          expect(be.rmm.realms.size).toBe(0);
        },
      ),
      { numRuns: 60 },
    );
  });
});
