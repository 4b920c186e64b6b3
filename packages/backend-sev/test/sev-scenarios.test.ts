/**
 * The example scenarios run on the SEV backend (what `tdpemu run --backend sev` does): the TDX
 * ones are backend-neutral programs of accepts, accesses, conversions, populate and teardown, and
 * sev-hugepages is SEV's own. Each must end without a violation, and the RMP instructions it cost
 * are counted in the report's backend stats.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import {
  OpError,
  R_ATTR,
  R_LPAGE_MIXED,
  R_BACKEND,
  R_INVALIDATE,
  R_LOCK_READERS,
  R_SLOTS,
  Vm,
  buildRun,
  checkInvariants,
  explore,
  exploreScenario,
  guestAcceptPage,
  hostOps,
  parseScenarioText,
  runScenario,
  runToEnd,
  KIND_ADD,
  recordedStep,
  type FootprintRecorder,
  R_INJECTED,
  Scheduler,
  type Op,
  type RunResult,
} from "@tdpemu/core/testing";
import { PFERR_RMP, PFERR_SIZEM, RMP, type SevBackend } from "../src/testing.js";
import { access, makeSevVm, nptLeaf, sev } from "./sev-helpers.js";

const SCENARIOS = fileURLToPath(new URL("../../../scenarios/", import.meta.url));

function run(name: string): { r: RunResult; be: SevBackend } {
  const path = `${SCENARIOS}${name}.yaml`;
  const r = runScenario(parseScenarioText(readFileSync(path, "utf8"), path), { backend: sev });
  return { r, be: r.vm.backend as SevBackend };
}

/** Frames the RMP still assigns to this backend's ASID. */
function assignedToAsid(r: RunResult, be: SevBackend): number {
  return [...r.host.container.resolve(RMP).assigned()].filter((e) => e.asid === be.asid).length;
}

function expectClean(r: RunResult): void {
  expect(r.report.backend).toBe("sev");
  expect(r.report.complete).toBe(true);
  expect(r.report.invariants.violations).toEqual([]);
  expect(r.report.invariants.checked).toBeGreaterThan(0);
  expect(r.report.stats.leakedPages).toBe(0);
  expect(r.report.backendStats.errors).toEqual({});
  expect(r.report.backendStats.busy).toBe(0);
}

describe("example scenarios with the sev backend", () => {
  it("tdx-terminate: SEV has no KVM_TDX_TERMINATE_VM (-ENOTTY); the teardown gives every page back", () => {
    const { r, be } = run("tdx-terminate");
    expectClean(r);
    expect(r.report.ops.find((o) => o.op === "terminate")!.result).toEqual({ status: -25 });
    expect(assignedToAsid(r, be)).toBe(0);
  });

  it("tdx-sequential-2m: exactly 512 RMPUPDATE and 512 PVALIDATE (and the VMSA's launch), no fault or exception", () => {
    const { r, be } = run("tdx-sequential-2m");
    expectClean(r);
    const calls = r.report.backendStats.calls;
    // The two firmware pages (the guest-request response page, the guest context), 512 pages
    // prepared, and the vCPU's VMSA made private at launch (snp_launch_update_vmsa).
    expect(calls.RMPUPDATE).toBe(515);
    expect(calls.SNP_LAUNCH_UPDATE).toBe(1);
    expect(calls.PVALIDATE).toBe(512);
    expect(calls.SNP_LAUNCH_FINISH).toBe(1);
    expect(calls.PSMASH).toBeUndefined();
    expect(calls["#NPF"]).toBeUndefined();
    expect(calls["#VC"]).toBeUndefined();
    expect(be.exceptions).toEqual([]);
    expect(assignedToAsid(r, be)).toBe(513);
    // 512 accepts and 512 accesses, each page faulted in once at 4K.
    expect(r.report.stats.pages["4k"]).toBe(512);
    expect(r.vm.vcpus[0]!.exceptions).toBe(0);
  });

  it("tdx-convert: 16 + 4 pages assigned, 4 given back on the way to shared; 20 PVALIDATE", () => {
    const { r, be } = run("tdx-convert");
    expectClean(r);
    const calls = r.report.backendStats.calls;
    // The two firmware pages, 16 first uses (sev_gmem_prepare), 4 hole punches
    // (sev_gmem_invalidate), 4 re-prepares.
    expect(calls.RMPUPDATE).toBe(26);
    expect(calls.PVALIDATE).toBe(20);
    expect(calls.PSMASH).toBeUndefined();
    expect(be.exceptions).toEqual([]);
    expect(assignedToAsid(r, be)).toBe(16);
  });

  it("tdx-populate-teardown: 16 launch pages, 16 accepted pages, teardown gives all 32 back (the TDX-only inject is skipped)", () => {
    const { r, be } = run("tdx-populate-teardown");
    expectClean(r);
    const calls = r.report.backendStats.calls;
    // 16 launch pages and the vCPU's VMSA.
    expect(calls.SNP_LAUNCH_UPDATE).toBe(17);
    expect(calls.SNP_LAUNCH_FINISH).toBe(1);
    // The two firmware pages, 16 launch pages, the VMSA, 16 prepared on accept; then 32 made
    // shared at teardown, the VMSA by sev_free_vcpu, the response page (snp_guest_req_cleanup)
    // and the guest context after SNP_DECOMMISSION.
    expect(calls.RMPUPDATE).toBe(70);
    expect(calls).toMatchObject({ SNP_GCTX_CREATE: 1, SNP_DECOMMISSION: 1, SNP_PAGE_RECLAIM: 2 });
    expect(calls.PVALIDATE).toBe(16);
    expect(be.exceptions).toEqual([]);
    expect(r.vm.dead).toBe(true);
    expect(assignedToAsid(r, be)).toBe(0);
  });

  it("tdx-race-2m-4k: two vCPUs each PVALIDATE one page: 2 RMPUPDATE, 2 PVALIDATE", () => {
    const { r, be } = run("tdx-race-2m-4k");
    expectClean(r);
    const calls = r.report.backendStats.calls;
    expect(calls.RMPUPDATE).toBe(4); // and the two firmware pages'
    expect(calls.PVALIDATE).toBe(2);
    expect(be.exceptions).toEqual([]);
  });

  it("sev-hugepages: one 2M RMPUPDATE, one #VC 0x404, one #NPF with SIZEM, exactly one PSMASH, 5 PVALIDATE", () => {
    const { r, be } = run("sev-hugepages");
    expectClean(r);
    const calls = r.report.backendStats.calls;
    expect(calls.RMPUPDATE).toBe(3); // one 2M, and the two firmware pages' 4K
    expect(calls.PSMASH).toBe(1);
    expect(calls["#VC"]).toBe(1);
    expect(calls["#NPF"]).toBe(1);
    // The first 4K PVALIDATE meets the 2M entry (#NPF SIZEM), is retried after the PSMASH, then 3 more.
    expect(calls.PVALIDATE).toBe(5);
    const npf = be.exceptions.filter((e) => e.kind === "#NPF");
    expect(npf).toHaveLength(1);
    expect(npf[0]!.gpa).toBe(0x200000);
    expect(npf[0]!.errorCode & PFERR_SIZEM).toBe(PFERR_SIZEM);
    expect(npf[0]!.errorCode & PFERR_RMP).toBe(PFERR_RMP);
    expect(be.exceptions.filter((e) => e.kind === "#VC")).toEqual([
      { kind: "#VC", gpa: 0x200000, errorCode: 0x404n },
    ]);
    // After the PSMASH the 2 MiB range is 512 4K entries; 4 of them validated.
    const entries = [...r.host.container.resolve(RMP).assigned()].filter((e) => e.asid === be.asid);
    expect(entries).toHaveLength(512);
    expect(entries.every((e) => !e.size2m)).toBe(true);
    expect(entries.filter((e) => e.validated).map((e) => e.gfn)).toEqual([
      0x200, 0x201, 0x202, 0x203,
    ]);
  });
});

/**
 * `sev_handle_rmp_fault` PSMASHes the 2M RMP entry first and zaps the 2M NPT leaf after, so for
 * a few steps the NPT maps 2M over 4K RMP entries, in the kernel as here; and a racing fault can
 * leave such a leaf behind for good (the zap starts at the faulting GFN). The hardware refuses
 * access through it and the next fault there maps 4K: the invariant allows it while the 512
 * entries are this guest's, at the leaf's GFNs.
 */
describe("a 2M NPT leaf over a PSMASHed RMP entry", () => {
  it("occurs inside the fixup, and every step of it passes the invariants", () => {
    const { vm } = makeSevVm({ hostPageLevel: 2 });
    expect(access(vm, 0x200000, true)).toBe("exception"); // 2M RMP entry, 2M NPT leaf, #VC: not validated
    expect(nptLeaf(vm, 0x200)).toMatchObject({ level: 2 });
    vm.setInterleave(true);
    const op = guestAcceptPage(vm, vm.vcpus[0]!, 0x200000); // 4K PVALIDATE over 2M: #NPF with SIZEM
    let sawLeaf2mOver4k = false;
    for (let r = op.next(); !r.done; r = op.next()) {
      const leaf = nptLeaf(vm, 0x200);
      if (leaf?.level === 2 && !(vm.backend as SevBackend).rmp.lookup(leaf.pfn).size2m)
        sawLeaf2mOver4k = true;
      expect(checkInvariants(vm, { final: false }).violations).toEqual([]);
    }
    expect(sawLeaf2mOver4k).toBe(true);
    expect(nptLeaf(vm, 0x200)).toMatchObject({ level: 1 });
  });

  it("left behind, it is harmless: the next access faults and maps 4K", () => {
    const { vm, be } = makeSevVm({ hostPageLevel: 2 });
    expect(access(vm, 0x200000, true)).toBe("exception");
    // PSMASH by hand, with no fault fixup under way: nothing zaps the 2M leaf.
    const g = be.rmp.governing(nptLeaf(vm, 0x200)!.pfn);
    expect(be.psmash(g)).toBe(0);
    expect(nptLeaf(vm, 0x200)).toMatchObject({ level: 2 });
    expect(checkInvariants(vm, { final: false }).violations).toEqual([]);
    expect(access(vm, 0x205000, true)).toBe("exception"); // not validated: #VC, through a 4K leaf now
    expect(nptLeaf(vm, 0x205)).toMatchObject({ level: 1 });
    expect(checkInvariants(vm, { final: false }).violations).toEqual([]);
  });

  it("a racing fault below the zapped range leaves one behind, as the kernel would, and the run is clean", () => {
    // What `tdpemu fuzz --seed 9` found: vCPU 1's 4K PVALIDATE at 0x1b7000 PSMASHes the 2M
    // entry and zaps [0x1b7, 0x3b7); vCPU 0's fault at 0x14b000, sized 2M before the PSMASH,
    // maps the 2M leaf at GFN 0 again while that zap yields.
    const scn = parseScenarioText(
      `
name: fuzz-sev-found
vm: { memory: 4MiB, vcpus: 2, hugepages: 2MiB }
backend: sev
schedule: { mode: random, seed: 202, interleave: true }
vcpus:
  - - { op: access, gpa: 0x32f000, count: 1, write: false }
    - { op: accept, gpa: 0x14b000, count: 4 }
  - - { op: accept, gpa: 0x1b7000, count: 1 }
host:
  - { op: age, gpa: 0x0, size: 2MiB }
  - { op: split, gpa: 0x0, size: 2MiB }
  - { op: age, gpa: 0x0, size: 2MiB }
`,
      "found.yaml",
    );
    const r = runScenario(scn, { backend: sev, check: "op" });
    expect(r.report.invariants.violations).toEqual([]);
    const leaf = nptLeaf(r.vm, 0)!;
    expect(leaf.level).toBe(2);
    expect((r.vm.backend as SevBackend).rmp.lookup(leaf.pfn).size2m).toBe(false);
  });

  it("over an entry that is not this guest's at the leaf's GFN, it is a violation", () => {
    const { vm, be } = makeSevVm({ hostPageLevel: 2 });
    expect(access(vm, 0x200000, true)).toBe("exception");
    const leaf = nptLeaf(vm, 0x200)!;
    expect(be.psmash(be.rmp.governing(leaf.pfn))).toBe(0);
    be.rmp.set(leaf.pfn + 5, 0, 0, 0); // one frame back to the hypervisor
    const v = checkInvariants(vm, { final: false }).violations;
    expect(v.map((x) => x.message)).toContain(
      `2M private leaf at gfn 0x200 over 4K RMP entries, of which frame 0x${(leaf.pfn + 5).toString(16)} is no guest's`,
    );
  });

  it("tdpemu explore on scenarios/sev-hugepages.yaml exhausts its one schedule without a violation", () => {
    const path = `${SCENARIOS}sev-hugepages.yaml`;
    const r = exploreScenario(parseScenarioText(readFileSync(path, "utf8"), path), {
      backend: sev,
    });
    expect(r.violation).toBeNull();
    expect(r.exhausted).toBe(true);
  });

  it("two vCPUs PVALIDATE and write in one 2M range: every interleaving within a preemption bound of 2 is clean", () => {
    const scn = parseScenarioText(
      `
name: sev-hugepages-two-vcpus
vm: { memory: 64MiB, gpaw: 48, vcpus: 2, hugepages: 2MiB }
backend: sev
schedule: { mode: round-robin, interleave: true }
vcpus:
  - - { op: access, gpa: 0x200000, write: true }
    - { op: accept, gpa: 0x200000, count: 2 }
  - - { op: accept, gpa: 0x201000 }
    - { op: access, gpa: 0x201000, write: true }
`,
      "two-vcpus.yaml",
    );
    const r = exploreScenario(scn, { backend: sev, preemptionBound: 2 });
    expect(r.violation).toBeNull();
    expect(r.exhausted).toBe(true);
    expect(r.schedules).toBeGreaterThan(100);
  });
});

/** sev-hugepages.yaml with faults injected (`inject:`), run to the end. */
function runHugepages(inject: string[]): { r: RunResult; be: SevBackend } {
  const path = `${SCENARIOS}sev-hugepages.yaml`;
  const text = readFileSync(path, "utf8").replace(
    "vcpus:\n",
    `inject:\n${inject.map((f) => `  - ${f}\n`).join("")}vcpus:\n`,
  );
  const r = runScenario(parseScenarioText(text, path), { backend: sev });
  return { r, be: r.vm.backend as SevBackend };
}

// The explorer's wait for a retry asks whether the task's own step advanced an injected fault's
// counter (R_INJECTED). No step reads it: a write would make any two counted instructions or
// commands conflict, of different kinds and tasks too, where only their counters may.
describe("R_INJECTED", () => {
  it("every counted RMP instruction and firmware command updates it commutatively, never writes it", () => {
    const path = `${SCENARIOS}sev-hugepages.yaml`;
    const text = readFileSync(path, "utf8").replace(
      "vcpus:\n",
      "inject:\n  - { call: RMPUPDATE, nth: 100000, status: FAIL_INUSE }\nvcpus:\n",
    );
    const built = buildRun(parseScenarioText(text, path), { backend: sev });
    const rec = recordedStep(built.clock, () =>
      new Scheduler("round-robin", 0).run(built.tasks, built.clock),
    );
    expect(rec.kindOf(R_INJECTED)).toBe(KIND_ADD);
  });
});

describe("sev_handle_rmp_fault and Linux's RMP instruction wrappers", () => {
  it("zaps the 512 GFNs from the faulting one, not the aligned 2 MiB: the huge leaf of the next 2 MiB goes too", () => {
    const { vm } = makeSevVm({ hostPageLevel: 2 });
    // Two 2M RMP entries mapped by two 2M NPT leaves (the guest has not validated them: #VC).
    expect(access(vm, 0x400000, true)).toBe("exception");
    expect(access(vm, 0x200000, true)).toBe("exception");
    expect(nptLeaf(vm, 0x400)).toMatchObject({ level: 2 });
    const zapped = vm.mmu.stats.zappedLeaves;
    // PVALIDATE at 0x201000, 4K over the 2M entry: #NPF (SIZEM), PSMASH, zap [0x201, 0x401).
    expect(runToEnd(guestAcceptPage(vm, vm.vcpus[0]!, 0x201000))).toBe("ok");
    expect(vm.mmu.stats.zappedLeaves - zapped).toBe(2);
    expect(nptLeaf(vm, 0x400)).toBeNull();
    expect(nptLeaf(vm, 0x201)).toMatchObject({ level: 1 });
    expect(checkInvariants(vm, { final: false }).violations).toEqual([]);
  });

  it("a PSMASH that returns FAIL_INUSE is issued again (snp_rmptable_psmash); the run ends as without it", () => {
    const { r } = runHugepages(["{ call: PSMASH, nth: 1, status: FAIL_INUSE }"]);
    expect(r.report.invariants.violations).toEqual([]);
    expect(r.report.backendStats.calls.PSMASH).toBe(2);
    expect(r.report.backendStats.calls["#NPF"]).toBe(1);
    expect(r.report.backendStats.calls.PVALIDATE).toBe(5);
  });

  it("a PSMASH that fails otherwise, with the entry still 2M: the kernel warns and zaps anyway, the fault comes back and splits it", () => {
    const { r } = runHugepages(["{ call: PSMASH, nth: 1, status: FAIL_INPUT }"]);
    expect(r.report.invariants.violations).toEqual([]);
    // The zap went ahead: the range re-faults at 2M (the entry is still 2M), the next 4K
    // PVALIDATE meets it again (a second #NPF), and this PSMASH works.
    expect(r.report.backendStats.calls.PSMASH).toBe(2);
    expect(r.report.backendStats.calls["#NPF"]).toBe(2);
    expect(r.report.stats.zappedLeaves).toBe(2);
  });

  it("an RMPUPDATE that returns FAIL_OVERLAP is issued again (Linux's rmpupdate), so the fault is not retried", () => {
    const clean = runHugepages([]).r.report;
    const { r } = runHugepages(["{ call: RMPUPDATE, nth: 1, status: FAIL_OVERLAP }"]);
    expect(r.report.invariants.violations).toEqual([]);
    expect(r.report.backendStats.calls.RMPUPDATE).toBe(clean.backendStats.calls.RMPUPDATE! + 1);
    expect(r.report.stats.faultRetries).toBe(clean.stats.faultRetries);
  });

  it("an overlap that never clears would spin the kernel forever: the model stops with a KVM bug that says so", () => {
    const { r } = runHugepages([
      "{ call: RMPUPDATE, nth: 1, status: FAIL_OVERLAP, times: 100000 }",
    ]);
    expect(r.report.invariants.violations.map((v) => v.check)).toEqual(["kvm-bug"]);
    expect(r.report.invariants.violations[0]!.message).toMatch(
      /RMPUPDATE of frame 0x[0-9a-f]+ returned FAIL_OVERLAP 1000 times in a row: Linux's rmpupdate\(\) would spin here forever/,
    );
  });
});

describe("what the explorer sees a SEV fault read", () => {
  /** Runs a fault machine step by step under a recorder standing in for the explorer's: each step's reads and writes. */
  function stepFootprints(vm: Vm, gpa: number): { read: Set<number>; written: Set<number> }[] {
    vm.setInterleave(true);
    runToEnd(vm.reloadRoots(vm.vcpus[0]!, false));
    const steps: { read: Set<number>; written: Set<number> }[] = [];
    let cur = { read: new Set<number>(), written: new Set<number>() };
    const rec = {
      read: (id: number) => cur.read.add(id),
      write: (id: number) => cur.written.add(id),
      add: (id: number) => cur.written.add(id),
    };
    vm.clock.fp = rec as unknown as FootprintRecorder;
    const pf = vm.vcpus[0]!.pf.begin(gpa, true, true, false, false);
    for (let r = pf.step(); ; r = pf.step()) {
      steps.push(cur);
      cur = { read: new Set<number>(), written: new Set<number>() };
      if (r >= 0) break;
    }
    vm.clock.fp = null;
    return steps;
  }

  /** The resources of the RMP: entry ids of the VM's RMP. */
  function rmpIds(vm: Vm, ids: Set<number>): number[] {
    const rmp = vm.host.container.resolve(RMP);
    const head = gmemPfn(vm, 0x200) - (gmemPfn(vm, 0x200) % 512);
    return [...ids].filter(
      (id) => id === rmp.entryId(head) || id === rmp.entryId(gmemPfn(vm, 0x200)),
    );
  }

  function gmemPfn(vm: Vm, gfn: number): number {
    const slot = vm.memslots.find(gfn)!;
    return slot.gmem!.peekPfn(gfn - slot.baseGfn);
  }

  it("the step that picks the level reads the RMP entry (its size), so a PSMASH of it is not taken as independent", () => {
    const { vm } = makeSevVm({ hostPageLevel: 2 });
    expect(access(vm, 0x200000, true)).toBe("exception"); // prepared: a 2M RMP entry, a 2M leaf
    runToEnd(hostOps.zapGfnRange(vm, vm.hostCtx, 0x200, 0x400));
    // The faultin step (the page is prepared already, so no RMP entry is written there) reads it.
    // The first step that reads the invalidation sequence is faultin's.
    const faultin = stepFootprints(vm, 0x200000).find((s) => s.read.has(R_INVALIDATE))!;
    expect(faultin).toBeDefined();
    expect(rmpIds(vm, faultin.written)).toEqual([]);
    expect(rmpIds(vm, faultin.read)).toContain(
      vm.host.container.resolve(RMP).entryId(gmemPfn(vm, 0x200)),
    );
    expect(faultin.read.has(R_BACKEND)).toBe(false);
  });

  it("the gmem prepare step writes the RMP entry; the level is picked under mmu_lock, reading the memslot flags and lpage_info (the mixed bits)", () => {
    const { vm } = makeSevVm({ hostPageLevel: 2 });
    const steps = stepFootprints(vm, 0x200000);
    const faultin = steps.findIndex((s) => s.read.has(R_INVALIDATE));
    const prepare = steps[faultin + 1]!;
    // One 2M RMPUPDATE: the head's entry is written.
    expect(rmpIds(vm, prepare.written)).toEqual([
      vm.host.container.resolve(RMP).entryId(gmemPfn(vm, 0x200)),
    ]);
    expect(prepare.read.has(R_SLOTS)).toBe(false);
    expect(prepare.read.has(R_ATTR)).toBe(false);
    expect(prepare.read.has(R_LPAGE_MIXED)).toBe(false);
    // kvm_mmu_hugepage_adjust runs in kvm_tdp_mmu_map, in the step that takes the read lock; it
    // reads KVM_LPAGE_MIXED_FLAG, not the attributes.
    const locked = steps.findIndex((s, i) => i > faultin + 1 && s.read.has(R_LPAGE_MIXED));
    expect(locked).toBeGreaterThan(faultin + 1);
    expect(steps[locked]!.written.has(R_LOCK_READERS)).toBe(true);
    expect(steps[locked]!.read.has(R_SLOTS)).toBe(true);
  });
});

describe("the explorer with reduction reaches what it reaches without", () => {
  /** The calls of every final state the explorer reaches (as event traces), with or without reduction. */
  function finalTraces(text: string, reduction: boolean): Set<string> {
    const scn = parseScenarioText(text, "race.yaml");
    const traces = new Set<string>();
    const r = explore(
      () => {
        const built = buildRun(scn, { backend: sev, interleave: true });
        const calls: string[] = [];
        // An op the kernel refuses ends its program, as the VMM that got the error would stop.
        function* refusedEnds(op: Op<unknown>): Op<unknown> {
          try {
            return yield* op;
          } catch (e) {
            if (!OpError.is(e)) throw e;
            calls.push(`refused: ${e.message}`);
          }
        }
        for (const t of built.tasks) (t as { op: Op<unknown> }).op = refusedEnds(t.op);
        built.vm.events.subscribe((e) => {
          if (e.type === "call") calls.push(e.name);
          if (e.type === "hook") calls.push(e.hook);
        });
        return {
          tasks: built.tasks,
          clock: built.clock,
          setRecorder: (fp) => {
            built.host.pool.fp = fp;
          },
          check: (final) => {
            if (final) {
              // A populate the kernel refused says so in its status (-EIO, as the VMM gets it).
              const refused = built.results
                .filter((o) => o.op === "populate" && o.result.status !== undefined)
                .map((o) => `refused: populate ${o.result.status}: ${o.result.detail}`);
              traces.add([...calls, ...refused].sort().join(","));
            }
            return built.check(final).violations;
          },
          classify: () => null,
          release: () => built.host.release(),
        };
      },
      { reduction },
    );
    expect(r.violation).toBeNull();
    expect(r.exhausted).toBe(true);
    return traces;
  }

  it("SEV launch populate racing the guest's first write: populate first means no gmem prepare at all", () => {
    const text = `
name: populate-race
vm: { memory: 4MiB, gpaw: 48, vcpus: 1, hugepages: false }
backend: sev
schedule: { mode: round-robin, interleave: true }
vcpus:
  - - { op: access, gpa: 0x0, write: true }
host:
  - { op: populate, gpa: 0x0, size: 4KiB }
`;
    const reduced = finalTraces(text, true);
    expect(reduced).toEqual(finalTraces(text, false));
    // The populate step fills guest_memfd as a fault's faultin step does: the explorer orders them.
    // Populate first: the page is prepared, the fault finds it so. The fault first: the page is
    // the guest's, and kvm_gmem_populate refuses it (-EEXIST, which snp_launch_update returns
    // as -EIO) before any firmware call.
    expect(
      [...reduced].some((t) => !t.includes("gmemPrepare") && t.includes("SNP_LAUNCH_UPDATE")),
    ).toBe(true);
    expect(
      [...reduced].some(
        (t) =>
          t.includes("gmemPrepare") &&
          t.includes("refused: populate -5: GFN 0x0 is already populated") &&
          !t.includes("SNP_LAUNCH_UPDATE"),
      ),
    ).toBe(true);
  });
});

describe("two faults on one gmem page (the folio lock of kvm_gmem_get_pfn)", () => {
  const text = (inject: string) => `
name: prepare-race
vm: { memory: 4MiB, gpaw: 48, vcpus: 2, hugepages: false }
backend: sev
schedule: { mode: round-robin, interleave: true }
${inject}vcpus:
  - - { op: access, gpa: 0x0, write: true }
  - - { op: access, gpa: 0x0, write: true }
`;

  it("the second waits while the first prepares: no interleaving maps the page before its RMPUPDATE", () => {
    const r = exploreScenario(parseScenarioText(text(""), "prepare-race.yaml"), { backend: sev });
    expect(r.violation?.violations ?? []).toEqual([]);
    expect(r.exhausted).toBe(true);
  });

  it("when the first prepare fails, the waiting fault prepares the page itself", () => {
    const inject = "inject:\n  - { call: RMPUPDATE, nth: 1, status: FAIL_INPUT, times: 1 }\n";
    const r = exploreScenario(parseScenarioText(text(inject), "prepare-fail-race.yaml"), {
      backend: sev,
    });
    expect(r.violation?.violations ?? []).toEqual([]);
    expect(r.exhausted).toBe(true);
  });
});

// kvm_gmem_populate marks a folio prepared only once sev_gmem_post_populate succeeded: a page
// whose launch update failed is still the guest's to prepare at its first fault.
describe("a populate the firmware refuses", () => {
  const text = `
name: launch-update-fails
vm: { memory: 8MiB, gpaw: 48, vcpus: 1 }
backend: sev
schedule: { mode: round-robin, interleave: false }
inject:
  - { call: RMPUPDATE, nth: 2, status: FAIL_INPUT }
host:
  - { op: populate, gpa: 0x0, size: 16KiB }
  - { op: finalize }
vcpus:
  - - { op: accept, gpa: 0x1000 }
`;

  it("ends the op with -EIO at that page (snp_launch_update; Linux's rmpupdate() -EFAULT inside), which stays unprepared, and the guest's fault prepares it", () => {
    const r = runScenario(parseScenarioText(text, "launch-update-fails.yaml"), { backend: sev });
    expect(r.report.ops.find((o) => o.op === "populate")!.result).toMatchObject({
      mapped: 1,
      status: -5,
    });
    const slot = r.vm.memslots.find(1)!;
    expect(slot.gmem!.isPrepared(1 - slot.baseGfn)).toBe(true);
    expect(r.report.ops.find((o) => o.op === "accept")!.result).toEqual({ ok: 1, exceptions: 0 });
    expect(r.report.invariants.violations).toEqual([]);
  });
});

// kvm_mmu_faultin_pfn snapshots mmu_invalidate_seq before it checks the access against the
// memory attributes: a conversion between a fault's start and that check is then either seen
// by the check or makes the fault stale. With the check first (the model's order until now, and
// the kernel's before "Check for private vs. shared mismatch after taking mmu_seq snapshot"), a
// private fault begun before a conversion to shared mapped the private page after it.
describe("a conversion racing a fault on the same page", () => {
  it("tdx-zap-race on sev, bound 2: no interleaving maps a private page for a shared GFN", () => {
    const path = `${SCENARIOS}tdx-zap-race.yaml`;
    const r = exploreScenario(parseScenarioText(readFileSync(path, "utf8"), path), {
      backend: sev,
      preemptionBound: 2,
    });
    expect(r.violation?.violations ?? []).toEqual([]);
    expect(r.schedules).toBeGreaterThan(50);
  });
});
