/**
 * The commutation audit over every shipped scenario on every backend that accepts it, and over
 * small races that each take one path (an access against a zap, aging, dirty logging, a memslot
 * deleted, conversions, SEV's PSC and RMPADJUST, CCA, huge pages): no two steps whose footprints
 * are independent behave differently in the other order. The footprint audit sees an unrecorded
 * write; this is what sees an unrecorded read (removing the SPTE read of the hardware walk, the
 * attributes read of `kvm_mem_is_private`, or the RMP's reads each fails it).
 */
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import {
  FootprintAudit,
  R_DIRTY,
  auditCommutation,
  buildRun,
  classifyRunError,
  loadScenario,
  parseScenarioText,
  scenarioSystem,
  type Op,
  type Scenario,
} from "@tdpemu/core/testing";
import { builtinRegistry } from "../src/registry.js";
import { shippedScenarioFiles, shrunk, unlessRefused } from "./shrunk-scenario.js";

const registry = builtinRegistry();

/** The audit's findings for `scn` on `backend`, or null if the backend refuses the scenario. */
function audit(scn: Scenario, backend: string, walks: number) {
  return unlessRefused(() =>
    auditCommutation(scenarioSystem(scn, { backend: registry.source(backend), audit: true }), {
      walks,
      seed: 7,
    }),
  );
}

const files = shippedScenarioFiles;

/** Small races, one path each, where random walks meet the pairs that matter often. */
const RACES: Record<string, { backends: string[]; yaml: string }> = {
  "an access against a 4K zap": {
    backends: ["plain", "sev", "tdx", "cca"],
    yaml: `
vm: { memory: 4MiB, gpaw: 48, vcpus: 1 }
vcpus:
  - - { op: access, gpa: 0x0, write: true }
    - { op: access, gpa: 0x0 }
host:
  - { op: zap, gpa: 0x0, size: 4KiB }
`,
  },
  "accesses against aging": {
    backends: ["plain", "sev"],
    yaml: `
vm: { memory: 4MiB, vcpus: 1 }
vcpus:
  - - { op: access, gpa: 0x0, write: true }
    - { op: access, gpa: 0x1000 }
host:
  - { op: age, gpa: 0x0, size: 8KiB }
`,
  },
  "writes against dirty logging": {
    backends: ["plain"],
    yaml: `
vm: { memory: 4MiB, vcpus: 1 }
vcpus:
  - - { op: access, gpa: 0x0, write: true }
    - { op: access, gpa: 0x1000, write: true }
host:
  - { op: dirty-log, action: start, slot: 0 }
  - { op: dirty-log, action: collect, slot: 0 }
`,
  },
  "an access against a memslot deleted": {
    backends: ["plain"],
    yaml: `
vm: { memory: 4MiB, vcpus: 1 }
vcpus:
  - - { op: access, gpa: 0x0, write: true }
host:
  - { op: delete-memslot, slot: 0 }
`,
  },
  "accept and access against a conversion": {
    backends: ["sev", "tdx", "cca"],
    yaml: `
vm: { memory: 4MiB, gpaw: 48, vcpus: 1 }
vcpus:
  - - { op: accept, gpa: 0x0 }
    - { op: access, gpa: 0x0, write: true }
host:
  - { op: convert, gpa: 0x0, size: 4KiB, to: shared }
`,
  },
  "PSC and RMPADJUST against a conversion": {
    backends: ["sev"],
    yaml: `
vm: { memory: 4MiB, vcpus: 2 }
vcpus:
  - - { op: accept, gpa: 0x0 }
    - { op: rmpadjust, gpa: 0x0, target: 1, perms: rw }
    - { op: psc, gpa: 0x1000, size: 4KiB, to: shared }
  - - { op: access, gpa: 0x0, write: true }
    - { op: access, gpa: 0x1000 }
host:
  - { op: convert, gpa: 0x0, size: 8KiB, to: shared }
`,
  },
  "faults against a split, a recovery and aging of a 2 MiB region": {
    backends: ["plain", "sev"],
    yaml: `
vm: { memory: 4MiB, vcpus: 2 }
vcpus:
  - - { op: access, gpa: 0x0, write: true }
  - - { op: access, gpa: 0x101000 }
host:
  - { op: split, gpa: 0x0, size: 2MiB }
  - { op: recover, gpa: 0x0, size: 2MiB }
  - { op: age, gpa: 0x0, size: 2MiB }
`,
  },
  "a realm's accesses against the untrusted host's own RMI calls": {
    // The host goes around KVM (op raw), so nothing but the RTT entry's and the REC's own
    // records order its commands against the data granule KVM's fault maps there and against
    // the realm's RSI_IPA_STATE_SET.
    backends: ["cca"],
    yaml: `
vm: { memory: 4MiB, gpaw: 48, vcpus: 1 }
vcpus:
  - - { op: accept, gpa: 0x0 }
    - { op: access, gpa: 0x0, write: true }
    - { op: psc, gpa: 0x1000, size: 4KiB, to: shared }
host:
  - { op: raw, call: RMI_RTT_READ_ENTRY, gpa: 0x0, level: 3 }
  - { op: raw, call: RMI_DATA_DESTROY, gpa: 0x0 }
  - { op: raw, call: RMI_RTT_SET_RIPAS, gpa: 0x1000, level: 3, vcpu: 0 }
`,
  },
  "a realm's vCPUs against its SYSTEM_OFF and the host destroying a REC": {
    // The realm's state and each REC's fields are read by REC_ENTER and RMI_REC_DESTROY.
    backends: ["cca"],
    yaml: `
vm: { memory: 4MiB, gpaw: 48, vcpus: 2 }
vcpus:
  - - { op: access, gpa: 0x0, write: true }
    - { op: access, gpa: 0x1000 }
  - - { op: access, gpa: 0x2000 }
host:
  - { op: cca.system-off, vcpu: 0 }
  - { op: raw, call: RMI_REC_DESTROY, vcpu: 1 }
`,
  },
  "2M and 4K accepts against a zap, with TDX huge pages": {
    backends: ["tdx"],
    yaml: `
vm: { memory: 4MiB, gpaw: 48, vcpus: 2 }
options: { tdxHugePages: true }
vcpus:
  - - { op: accept, gpa: 0x0, size: 2MiB }
  - - { op: accept, gpa: 0x1000 }
host:
  - { op: zap, gpa: 0x0, size: 4KiB }
`,
  },
};

describe("the commutation audit", () => {
  for (const file of files) {
    it(`finds that independent steps commute in ${file}, on every backend that takes it`, () => {
      const scn = shrunk(loadScenario(resolve("scenarios", file)));
      let ran = 0;
      for (const backend of ["plain", "sev", "tdx", "cca"]) {
        const r = audit(scn, backend, 8);
        if (r === null) continue;
        ran++;
        expect(r.findings.map((f) => `${backend}: ${f}`)).toEqual([]);
        // A scenario whose tasks run side by side has pairs to check, and checks some.
        if (r.pairs > 0) expect(r.independent).toBeGreaterThan(0);
      }
      expect(ran).toBeGreaterThan(0);
    }, 300_000);
  }

  for (const [what, { backends, yaml }] of Object.entries(RACES)) {
    it(`finds that independent steps commute in a race of ${what}`, () => {
      const scn = parseScenarioText(`name: race\n${yaml}`, "race.yaml");
      for (const backend of backends) {
        const r = audit(scn, backend, 24);
        expect(r, backend).not.toBeNull();
        expect(r!.findings.map((f) => `${backend}: ${f}`)).toEqual([]);
        expect(r!.independent, backend).toBeGreaterThan(0);
      }
    }, 300_000);
  }

  /**
   * The scenario with one more task, `name`, that reads `seq` at each of its steps (through what
   * the caller gives it) and records a write of the dirty bitmaps once it has moved: a zap by
   * the host moves mmu_invalidate_seq.
   */
  function withReader(name: string, seq: (built: ReturnType<typeof buildRun>) => number) {
    const scn = parseScenarioText(
      `
name: reader
vm: { memory: 4MiB, vcpus: 1 }
backend: plain
vcpus:
  - - { op: access, gpa: 0x0, write: true }
host:
  - { op: zap, gpa: 0x0, size: 4KiB }
`,
      "reader.yaml",
    );
    return auditCommutation(
      () => {
        const built = buildRun(scn, { backend: registry.source("plain"), interleave: true });
        const seq0 = seq(built);
        function* reader(): Op {
          for (let i = 0; i < 40; i++) {
            yield;
            if (seq(built) !== seq0) built.clock.touch(R_DIRTY);
          }
        }
        const tasks = [...built.tasks, { name, op: reader(), done: false }];
        return {
          tasks,
          clock: built.clock,
          setRecorder: () => {},
          check: (final) => built.check(final).violations,
          classify: (e) => classifyRunError(e, scn, built)?.[0] ?? null,
          release: () => built.host.release(),
          audit: new FootprintAudit(built.vm, tasks, built.results, [built.finalized]),
        };
      },
      { walks: 8, seed: 1 },
    );
  }

  it("finds a step that reads shared state without recording it, naming both steps and the difference", () => {
    // The sequence read behind its accessor's back: the reader's step alone and after the
    // host's zap record different footprints, though each footprint says they are independent.
    const r = withReader("sneaky", (built) => (built.vm.mmu as unknown as { seq: number }).seq);
    expect(r.findings.length).toBeGreaterThan(0);
    expect(r.findings[0]).toMatch(
      /the steps of (host and sneaky|sneaky and host) record independent footprints but do not commute: sneaky's step records another footprint after host's: \+write dirty bitmaps \(.*host's .*writes? .*mmu_invalidate/,
    );
  });

  it("finds nothing when the same read is recorded", () => {
    const r = withReader("honest", (built) => built.vm.mmu.invalidateSeq);
    expect(r.findings).toEqual([]);
    expect(r.independent).toBeGreaterThan(0);
  });

  it("reports a step that reads through a reader that records nothing, rather than skip it", () => {
    // peekRoots fails inside a step (UnrecordedAccess): the step's footprint would say less
    // than it read, which is this audit's business even though the step never ends.
    const r = withReader("peeker", (built) => built.vm.mmu.peekRoots().length);
    expect(r.findings.length).toBeGreaterThan(0);
    expect(r.findings[0]).toMatch(
      /a step failed the footprint audit: peeker's step \d+ read .* through a reader that records nothing/,
    );
  });
});
