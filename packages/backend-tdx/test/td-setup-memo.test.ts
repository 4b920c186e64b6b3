/**
 * A TD's set-up made once through the leaves and then restored (`td-setup-memo.ts`) leaves what
 * the leaves leave: every piece of the module's state the footprint audit knows (PAMT and S-EPT
 * entries, the TD and its vCPUs, locks), the module's and KVM's call counts, and KVM's own view.
 * Whole runs and explorations report the same with and without it; it is used only where the
 * calls cannot be seen.
 */
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  FootprintRecorder,
  Host,
  buildRun,
  exploreScenario,
  parseScenarioText,
  runScenario,
  type BuiltRun,
  type Scenario,
} from "@tdpemu/core/testing";
import { SEAM_MODULE, SeamModule, TdxBackend, rememberTdSetups } from "../src/testing.js";
import { tdx } from "./tdx-source.js";

const SCENARIOS = join(__dirname, "../../../scenarios");

/** The TDX scenarios of `scenarios/`, and set-ups of other shapes (one vCPU, four, GPAW 52). */
function scenarios(): Scenario[] {
  const out: Scenario[] = [];
  for (const f of readdirSync(SCENARIOS)
    .filter((n) => n.endsWith(".yaml"))
    .sort()) {
    const scn = parseScenarioText(readFileSync(join(SCENARIOS, f), "utf8"), f);
    if (scn.backend === "tdx") out.push(scn);
  }
  for (const vm of ["vcpus: 1, gpaw: 48", "vcpus: 4, gpaw: 48", "vcpus: 2, gpaw: 52"])
    out.push(
      parseScenarioText(
        `name: shape\nvm: { memory: 8MiB, ${vm} }\nbackend: tdx\nvcpus:\n  - - { op: accept, gpa: 0x0 }\n`,
        `shape ${vm}`,
      ),
    );
  return out;
}

/** Everything the set-up leaves that anything can read. */
function setUpState(built: BuiltRun) {
  const be = built.vm.backend as unknown as TdxBackend;
  const audit = new Map<number, string | number>();
  be.module.auditState(audit);
  return {
    audit: [...audit].sort((a, b) => a[0] - b[0]),
    module: be.module.stats,
    kvm: be.stats(),
    // The counts an injected fault's nth is taken against, and the counts' first-call order.
    tdCalls: be.module.tdCalls(be.tdr),
    moduleOrder: Object.keys(be.module.stats.calls),
    kvmOrder: Object.keys(be.stats().calls ?? {}),
    td: be.td.saveState(),
    tdr: be.tdr,
    hkid: be.hkid,
    septPages: be.module.sept.count,
    pamtPages: [...be.module.pamt.pagesOf(be.tdr)],
    tds: [...be.module.peekTds().keys()],
  };
}

function build(scn: Scenario): BuiltRun {
  return buildRun(scn, { backend: tdx, interleave: true });
}

afterEach(() => {
  rememberTdSetups(true);
  vi.restoreAllMocks();
});

describe("a TD's set-up, remembered", () => {
  it("restores what the leaves leave, on every TDX scenario and shape", () => {
    const all = scenarios();
    expect(all.length).toBeGreaterThan(10);
    const create = vi.spyOn(SeamModule.prototype, "mngCreate");
    for (const scn of all) {
      rememberTdSetups(false);
      const fresh = setUpState(build(scn));
      rememberTdSetups(true);
      build(scn); // made through the leaves, and remembered
      create.mockClear();
      const restored = build(scn);
      expect(create, scn.source).not.toHaveBeenCalled();
      expect(setUpState(restored), scn.source).toEqual(fresh);
    }
  });

  it("leaves runs reporting the same, on every TDX scenario", () => {
    for (const scn of scenarios()) {
      const report = () =>
        JSON.stringify(runScenario(scn, { backend: tdx, onStep: () => {} }).report);
      rememberTdSetups(false);
      const fresh = report();
      rememberTdSetups(true);
      report();
      expect(report(), scn.source).toBe(fresh);
    }
  });

  it("leaves an exhaustive exploration the same", () => {
    const scn = parseScenarioText(
      readFileSync(join(SCENARIOS, "tdx-race-2m-4k.yaml"), "utf8"),
      "tdx-race-2m-4k.yaml",
    );
    const explored = () => {
      const r = exploreScenario(scn, { backend: tdx, countTraces: true, preemptionBound: 2 });
      return { ...r, seconds: 0, schedulesPerSecond: 0 };
    };
    rememberTdSetups(false);
    const fresh = explored();
    rememberTdSetups(true);
    const create = vi.spyOn(SeamModule.prototype, "mngCreate");
    expect(explored()).toEqual(fresh);
    expect(create).toHaveBeenCalledTimes(1);
    expect(fresh.exhausted).toBe(true);
  });

  it("is not used where the calls are seen: events, or a module that made a call", () => {
    const scn = scenarios()[0]!;
    build(scn);
    const create = vi.spyOn(SeamModule.prototype, "mngCreate");
    const events: string[] = [];
    buildRun(scn, { backend: tdx, onEvent: (e) => events.push(e.type) });
    expect(create).toHaveBeenCalledTimes(1);
    expect(events.length).toBeGreaterThan(0);
  });

  it("is not used while a recorder is set: every call's footprint is recorded", () => {
    const scn = scenarios()[0]!;
    // The method itself, called below with the backend as `this`.
    // eslint-disable-next-line @typescript-eslint/unbound-method
    const init = TdxBackend.prototype.init;
    const recorded: number[] = [];
    vi.spyOn(TdxBackend.prototype, "init").mockImplementation(function (this: TdxBackend, vm) {
      const rec = new FootprintRecorder();
      rec.reset();
      vm.clock.setRecorder(rec);
      try {
        init.call(this, vm);
      } finally {
        vm.clock.setRecorder(null);
      }
      recorded.push(rec.touched().length);
    });
    const create = vi.spyOn(SeamModule.prototype, "mngCreate");
    // The same set-up, under a recorder each time: none is remembered or restored. (A host of
    // a size this process has not brought up yet is brought up through the leaves, and its
    // PAMT's version then differs from the later hosts', restored: the third build is the
    // first that could take the second's set-up.)
    for (let i = 0; i < 3; i++) build(scn);
    expect(create).toHaveBeenCalledTimes(3);
    expect(recorded).toHaveLength(3);
    expect(recorded[2]).toBe(recorded[1]);
    expect(recorded[0]).toBeGreaterThan(0);
  });

  it("is not used in a module that made a call or took a fault since its bring-up, or where the leaves would refuse a page", () => {
    const scn = scenarios()[0]!;
    const module = () => {
      const host = new Host({ memory: 64 * 2 ** 20 });
      tdx.prepareHost(host);
      return host.container.resolve<SeamModule>(SEAM_MODULE);
    };
    const called = module();
    expect(called.pristinePlatform).not.toBe("");
    called.sysLpInit(0);
    expect(called.pristinePlatform).toBe("");
    const injected = module();
    injected.inject(1, { call: "TDH.MNG.CREATE", nth: 1, status: 0n, times: 1 });
    expect(injected.pristinePlatform).toBe("");
    // A page the leaves would refuse (held by a concurrent caller, outside the TDMRs): no restore.
    rememberTdSetups(false);
    const made = build(scn);
    const be = made.vm.backend as unknown as TdxBackend;
    const record = be.module.saveTdSetup(be.tdr)!;
    expect(record).not.toBeNull();
    const same = () => {
      const host = new Host({ memory: made.host.frames.totalFrames * 4096 });
      tdx.prepareHost(host);
      return host.container.resolve<SeamModule>(SEAM_MODULE);
    };
    const [page] = record.pamt[record.pamt.length - 1]!;
    const locked = same();
    const lock = locked.pamt.lock(page);
    lock.tryShared();
    expect(locked.restoreTdSetup(record)).toBeNull();
    expect(locked.peekTds().size).toBe(0);
    lock.release();
    expect(locked.restoreTdSetup(record)?.tdr).toBe(be.tdr);
    const shrunk = same();
    shrunk.pamt.setUsableFrames(page);
    expect(shrunk.restoreTdSetup(record)).toBeNull();
    rememberTdSetups(true);
    // A restored set-up is a call like any other: the module is not pristine after it.
    build(scn);
    const restored = build(scn).vm.backend as unknown as TdxBackend;
    expect(restored.module.pristinePlatform).toBe("");
  });
});
