/**
 * Fault injection on the RMI: any command KVM issues can be made to fail on its nth call, with
 * any status and index. KVM's answer is the arm64 realm support's: a command that fails where
 * KVM cannot go on is a KVM bug (the run's violation), a page the RMM will not give back is
 * leaked and counted, a populate fails to the VMM, an "already made" RTT is retried.
 */
import { spawnSync } from "node:child_process";
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import {
  KIND_ADD,
  recordedStep,
  R_INJECTED,
  Scheduler,
  buildRun,
  parseScenarioText,
  runScenario,
  type RunResult,
  type TdpEvent,
} from "@tdpemu/core/testing";
import { BUILD_ONLY, RMI_NAMES } from "../src/testing.js";
import { cca } from "./cca-helpers.js";

/** A realm's whole life in one scenario: populate, activation, faults, shared pages, a conversion, teardown. */
function life(inject: string): string {
  return `
name: cca-injected
vm: { memory: 16MiB, gpaw: 48, vcpus: 1 }
backend: cca
schedule: { mode: round-robin, interleave: false }
inject:
${inject}
host:
  - { op: populate, gpa: 0x0, size: 16KiB }
  - { op: finalize }
  - { op: teardown }
vcpus:
  - - { op: access, gpa: 0x4000, count: 4, write: true }
    - { op: access, gpa: 0x100000, count: 2, write: true, shared: true }
    - { op: psc, gpa: 0x4000, size: 8KiB, to: shared }
    - { op: accept, gpa: 0x8000 }
`;
}

function run(inject: string): { r: RunResult; events: TdpEvent[] } {
  const events: TdpEvent[] = [];
  const r = runScenario(parseScenarioText(life(inject), "cca-injected.yaml"), {
    backend: cca,
    onEvent: (e) => events.push(e),
  });
  return { r, events };
}

/** As `run`, for a failure the VMM may see: its report, or the error that stopped the run. */
function tryRun(inject: string): { r: RunResult | null; error: string; events: TdpEvent[] } {
  const events: TdpEvent[] = [];
  try {
    const r = runScenario(parseScenarioText(life(inject), "cca-injected.yaml"), {
      backend: cca,
      onEvent: (e) => events.push(e),
    });
    return { r, error: "", events };
  } catch (e) {
    return { r: null, error: (e as Error).message, events };
  }
}

describe("fault injection on the RMI", () => {
  it("the scenario without injection runs clean", () => {
    const { r } = run("  []");
    expect(r.report.invariants.violations).toEqual([]);
    expect(r.report.stats.leakedPages).toBe(0);
  });

  for (const call of RMI_NAMES.filter((n) => !BUILD_ONLY.includes(n))) {
    it(`${call}: an injected failure is the call's status, and the run ends in a defined way`, () => {
      const { r, error, events } = tryRun(`  - { call: ${call}, nth: 1, status: RMI_ERROR_INPUT }`);
      const made = events.filter((e) => e.type === "call" && e.name === call);
      // The first call after the realm was made, and only it.
      const injected = made.filter((e) => e.type === "call" && e.injected === true);
      if (call === "RMI_RTT_FOLD" || call === "RMI_RTT_READ_ENTRY") {
        expect(injected).toEqual([]); // KVM's realm life never issues them: nothing to fail
        return;
      }
      expect(injected).toHaveLength(1);
      expect(injected[0]).toMatchObject({ status: "RMI_ERROR_INPUT" });
      if (r === null) {
        // A populate that failed leaves its page premapped, and activation refuses (-EINVAL), as
        // KVM_TDX_FINALIZE_VM does: the VMM's error, which stops the run.
        expect(error).toMatch(/finalize failed \(-(22|5)\)/);
        return;
      }
      expect(r.report.backendStats.errors.RMI_ERROR_INPUT).toBeGreaterThanOrEqual(1);
      // A failure KVM cannot go on from is its bug; any other leaves the realm's state sound.
      for (const v of r.report.invariants.violations) expect(v.check).toBe("kvm-bug");
    });
  }

  it("refuses to inject into commands issued only while the realm is made, naming the ones it can", () => {
    expect(() => run("  - { call: RMI_REALM_CREATE, nth: 1, status: RMI_ERROR_INPUT }")).toThrow(
      /RMI_REALM_CREATE is issued only while the realm is made.*injectable: RMI_GRANULE_DELEGATE/,
    );
    expect(() => run("  - { call: RMI_NOPE, nth: 1, status: RMI_ERROR_INPUT }")).toThrow(
      /unknown RMI command 'RMI_NOPE'/,
    );
    expect(() => run("  - { call: RMI_DATA_DESTROY, nth: 1, status: RMI_BAD }")).toThrow(
      /unknown RMI status 'RMI_BAD' \(known: RMI_SUCCESS, RMI_ERROR_INPUT/,
    );
    // A success would skip the command and leave its outputs (X1: the granule to undelegate)
    // as an earlier call set them.
    expect(() => run("  - { call: RMI_DATA_DESTROY, nth: 1, status: RMI_SUCCESS }")).toThrow(
      /status RMI_SUCCESS cannot be injected.*inject an error status/,
    );
  });

  it("DATA_CREATE_UNKNOWN failing on a fault is a KVM bug that names the status with its level", () => {
    const { r } = run('  - { call: RMI_DATA_CREATE_UNKNOWN, nth: 1, status: "RMI_ERROR_RTT(3)" }');
    expect(r.report.invariants.violations.map((v) => v.message)).toEqual([
      expect.stringMatching(
        /cca: RMI_DATA_CREATE_UNKNOWN of ipa 0x4000 failed: RMI_ERROR_RTT \(level 3\)/,
      ),
    ]);
  });

  it("an RTT_CREATE told the table is there already (RMI_ERROR_RTT at the parent's level) retries the fault, and it succeeds", () => {
    const { r } = run('  - { call: RMI_RTT_CREATE, nth: 1, status: "RMI_ERROR_RTT(2)" }');
    expect(r.report.invariants.violations).toEqual([]);
    expect(r.report.stats.faultRetries).toBeGreaterThan(0);
    expect(r.report.stats.leakedPages).toBe(0);
  });

  it("an undelegation the RMM refuses leaks the page, counted with its cause", () => {
    const { r } = run("  - { call: RMI_GRANULE_UNDELEGATE, nth: 1, status: RMI_ERROR_INPUT }");
    expect(r.report.invariants.violations).toEqual([]);
    expect(r.report.stats.leakedPages).toBe(1);
    expect(Object.keys(r.report.stats.leakCauses)).toEqual([
      expect.stringMatching(
        /kept by the RMM: RMI_GRANULE_UNDELEGATE pa 0x[0-9a-f]+: RMI_ERROR_INPUT/,
      ),
    ]);
  });

  it("DATA_CREATE failing in populate fails the ioctl, the page is undelegated, and activation then refuses", () => {
    const { r, error, events } = tryRun(
      "  - { call: RMI_DATA_CREATE, nth: 2, status: RMI_ERROR_INPUT }",
    );
    expect(r).toBeNull();
    expect(error).toMatch(
      /finalize failed \(-22\): activation: 1 premapped page\(s\) never got their RMI_DATA_CREATE/,
    );
    const names = events
      .filter((e) => e.type === "call")
      .map((e) => (e.type === "call" ? `${e.name} ${e.status}` : ""));
    const i = names.indexOf("RMI_DATA_CREATE RMI_ERROR_INPUT");
    expect(names[i + 1]).toBe("RMI_GRANULE_UNDELEGATE RMI_SUCCESS");
  });

  it("SET_RIPAS failing stops KVM's completion: the realm finds its accept incomplete", () => {
    const { r } = run("  - { call: RMI_RTT_SET_RIPAS, nth: 2, status: RMI_ERROR_INPUT }");
    expect(r.report.ops.find((o) => o.op === "accept")!.result.exceptions).toBe(1);
    expect(r.report.invariants.violations).toEqual([]);
  });

  it("REC_ENTER failing leaves the realm's access unexecuted: the vCPU takes it as an exception", () => {
    const { r } = run("  - { call: RMI_REC_ENTER, nth: 1, status: RMI_ERROR_REC }");
    expect(r.report.ops.find((o) => o.op === "access")!.result.exceptions).toBe(1);
  });

  it("--inject takes a status with its RTT level on the command line", () => {
    const p = spawnSync(
      process.execPath,
      [
        resolve("packages/tui/dist/tdpemu.mjs"),
        "run",
        "scenarios/cca-realm-life.yaml",
        "--inject",
        "RMI_DATA_DESTROY:1:RMI_ERROR_RTT(2)",
      ],
      { encoding: "utf8" },
    );
    expect(p.status).toBe(1);
    expect(p.stdout).toMatch(
      /\[kvm-bug\] step \d+: KVM_BUG: cca: RMI_DATA_DESTROY of ipa 0x[0-9a-f]+ failed: RMI_ERROR_RTT \(level 2\)/,
    );
  });
});

// The explorer's wait for a retry asks whether the task's own step advanced an injected fault's
// counter (R_INJECTED). No step reads it: a write would make any two counted commands conflict,
// of different kinds and vCPUs too, where only their counters may (each its own resource).
describe("R_INJECTED", () => {
  it("every counted command updates it commutatively, never writes it", () => {
    const built = buildRun(
      parseScenarioText(
        life("  - { call: RMI_DATA_CREATE_UNKNOWN, nth: 1000, status: RMI_ERROR_INPUT }"),
        "cca-injected.yaml",
      ),
      { backend: cca },
    );
    const rec = recordedStep(built.clock, () =>
      new Scheduler("round-robin", 0).run(built.tasks, built.clock),
    );
    expect(rec.kindOf(R_INJECTED)).toBe(KIND_ADD);
  });
});
