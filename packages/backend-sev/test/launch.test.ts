/**
 * An SEV-SNP launch as KVM runs it (`snp_launch_update` → `kvm_gmem_populate` →
 * `sev_gmem_post_populate`, then `snp_launch_finish`), with its failure paths: a frame already
 * assigned, an RMPUPDATE refused, a firmware error on SNP_LAUNCH_UPDATE (reclaim, make shared,
 * -EIO), a reclaim that fails too (KVM_BUG, `snp_leak_pages`), and SNP_LAUNCH_FINISH refused.
 * Each asserts the errno, the RMP entry left behind, and what was leaked, with the kernel
 * function it follows.
 */
import { describe, expect, it } from "vitest";
import {
  guestRmpAdjustPage,
  hostOps,
  parseScenarioText,
  runScenario,
  runToEnd,
  type TdpEvent,
} from "@tdpemu/core/testing";
import {
  FW_STATUS,
  INITIAL_VMSA_GFN,
  RMP_CALLS,
  RMP_SUCCESS,
  SEV_RET_SUCCESS,
  snpPageReclaim,
  type SevBackend,
} from "../src/testing.js";
import { accept, gmemPfn, makeSevVm, sev } from "./sev-helpers.js";

const EIO = -5;

/** A scenario that populates four pages from GPA 0, finalizes and has the guest touch page 1. */
function launch(inject: string): string {
  return `
name: launch
vm: { memory: 8MiB, gpaw: 48, vcpus: 1 }
backend: sev
schedule: { mode: round-robin, interleave: false }
inject:
${inject}
host:
  - { op: populate, gpa: 0x0, size: 16KiB }
  - { op: finalize }
vcpus:
  - - { op: access, gpa: 0x1000, write: true }
`;
}

function runLaunch(inject: string) {
  const events: TdpEvent[] = [];
  const r = runScenario(parseScenarioText(launch(inject), "launch.yaml"), {
    backend: sev,
    onEvent: (e) => events.push(e),
  });
  return { r, be: r.vm.backend as SevBackend, events };
}

describe("sev_gmem_post_populate", () => {
  it("a frame the RMP already assigns is refused (sev_gmem_post_populate's -EEXIST, the ioctl's -EIO) before any RMPUPDATE or firmware call", () => {
    const { vm, be } = makeSevVm();
    const slot = vm.memslots.find(0)!;
    // Another path (a racing prepare the folio does not show, a host playing tricks) assigned
    // the frame guest_memfd will hand out for GFN 0: "initial shared state" fails.
    const pfn = slot.gmem!.getPfn(0);
    expect(
      be.rmpUpdate(pfn, { assigned: true, size2m: false, immutable: false, asid: be.asid, gfn: 0 }),
    ).toBe(RMP_SUCCESS);
    const before = be.rmp.raw(pfn);
    // Why, in this call's own words (not what an earlier failure left behind).
    expect(runToEnd(hostOps.populate(vm, vm.hostVcpu, 0, 1))).toEqual({
      mapped: 0,
      status: EIO,
      detail: `gfn 0x0: frame 0x${pfn.toString(16)} is assigned in the RMP already (not in the initial shared state)`,
    });
    expect(be.rmp.raw(pfn)).toEqual(before);
    // The RMPUPDATEs are the two firmware pages' (the guest-request response page at
    // KVM_SEV_INIT2, the guest context at launch start), and the test's own.
    expect(be.stats().calls).toEqual({ RMPUPDATE: 3, SNP_GCTX_CREATE: 1 });
    expect(slot.gmem!.isPrepared(0)).toBe(false);
  });

  it("a firmware error on SNP_LAUNCH_UPDATE: the page is reclaimed and made shared, the ioctl fails with -EIO, nothing leaks", () => {
    const { r, be, events } = runLaunch(
      "  - { call: SNP_LAUNCH_UPDATE, nth: 2, status: INVALID_PARAM }",
    );
    expect(r.report.ops.find((o) => o.op === "populate")!.result).toMatchObject({
      mapped: 1,
      status: EIO,
    });
    // Page 1: Pre-Guest (RMPUPDATE immutable), refused, SNP_PAGE_RECLAIM, RMPUPDATE to shared.
    const calls = events
      .filter((e) => e.type === "call")
      .map((e) => `${e.name} ${e.status}${e.injected ? " (injected)" : ""}`);
    expect(calls).toEqual([
      // KVM_SEV_INIT2: the guest-request response page; KVM_SEV_SNP_LAUNCH_START: the guest
      // context. Firmware pages both.
      "RMPUPDATE SUCCESS",
      "RMPUPDATE SUCCESS",
      "SNP_GCTX_CREATE SUCCESS",
      "RMPUPDATE SUCCESS",
      "SNP_LAUNCH_UPDATE SUCCESS",
      "RMPUPDATE SUCCESS",
      "SNP_LAUNCH_UPDATE INVALID_PARAM (injected)",
      "SNP_PAGE_RECLAIM SUCCESS",
      "RMPUPDATE SUCCESS",
      // snp_launch_finish: the vCPU's VMSA first (snp_launch_update_vmsa), then the finish.
      "RMPUPDATE SUCCESS",
      "SNP_LAUNCH_UPDATE SUCCESS",
      "SNP_LAUNCH_FINISH SUCCESS",
      // The guest's write to page 1: its first fault (no NPT leaf yet) prepares it
      // (sev_gmem_prepare), and the access then needs a PVALIDATE the guest never made (#VC 0x404).
      "RMPUPDATE SUCCESS",
      "#VC raised",
    ]);
    expect(r.report.stats.leakedPages).toBe(0);
    expect(be.stats().errors).toEqual({ INVALID_PARAM: 1 });
    expect(be.bugged).toBe(false);
    expect(r.report.invariants.violations).toEqual([]);
  });

  it("a reclaim that fails as well: KVM_BUG, the page leaked with its cause, left Pre-Guest in the RMP", () => {
    const { r, be } = runLaunch(`  - { call: SNP_LAUNCH_UPDATE, nth: 1, status: INVALID_PARAM }
  - { call: SNP_PAGE_RECLAIM, nth: 1, status: INVALID_PAGE_STATE }`);
    const pfn = gmemPfn(r.vm, 0);
    expect(r.report.invariants.violations).toEqual([
      expect.objectContaining({
        check: "kvm-bug",
        message: expect.stringMatching(
          /SNP_PAGE_RECLAIM of page 0x[0-9a-f]+ failed: INVALID_PAGE_STATE.*leaked \(snp_leak_pages\)/,
        ) as string,
      }),
    ]);
    expect(r.report.stats.leakedPages).toBe(1);
    expect(Object.keys(r.report.stats.leakCauses)).toEqual([
      `SNP_PAGE_RECLAIM of page 0x${pfn.toString(16)} failed: INVALID_PAGE_STATE`,
    ]);
    expect(be.bugged).toBe(true);
    expect(be.rmp.raw(pfn)).toMatchObject({
      assigned: true,
      immutable: true,
      validated: false,
      asid: be.asid,
      gfn: 0,
    });
  });

  it("SNP_PAGE_RECLAIM clears only the immutable bit (Pre-Guest to Guest-Invalid); a page that is not immutable succeeds as it is", () => {
    const { be } = makeSevVm();
    const pfn = 0x1234;
    // A hypervisor page and a Guest-Valid one: nothing to do, SUCCESS (snp_mcmd_page_reclaim).
    expect(snpPageReclaim(be.rmp, pfn)).toBe(SEV_RET_SUCCESS);
    expect(be.rmp.raw(pfn).assigned).toBe(false);
    expect(
      be.rmpUpdate(pfn, { assigned: true, size2m: false, immutable: false, asid: be.asid, gfn: 5 }),
    ).toBe(RMP_SUCCESS);
    const guest = be.rmp.raw(pfn);
    expect(snpPageReclaim(be.rmp, pfn)).toBe(SEV_RET_SUCCESS);
    expect(be.rmp.raw(pfn)).toEqual(guest);
    // Pre-Guest: no RMPUPDATE can change it; reclaim can, and then RMPUPDATE makes it shared.
    be.rmp.set(pfn, 0, 0, 0);
    expect(
      be.rmpUpdate(pfn, { assigned: true, size2m: false, immutable: true, asid: be.asid, gfn: 5 }),
    ).toBe(RMP_SUCCESS);
    expect(
      be.rmpUpdate(pfn, { assigned: false, size2m: false, immutable: false, asid: 0, gfn: 0 }),
    ).not.toBe(RMP_SUCCESS);
    expect(snpPageReclaim(be.rmp, pfn)).toBe(SEV_RET_SUCCESS);
    // Guest-Invalid: still the guest's, at its GPA, not validated, no longer immutable.
    expect(be.rmp.raw(pfn)).toMatchObject({
      assigned: true,
      immutable: false,
      validated: false,
      asid: be.asid,
      gfn: 5,
    });
    expect(
      be.rmpUpdate(pfn, { assigned: false, size2m: false, immutable: false, asid: 0, gfn: 0 }),
    ).toBe(RMP_SUCCESS);
    expect(be.rmp.raw(pfn).assigned).toBe(false);
  });

  it("an RMPUPDATE refused while making the page private ends the ioctl with -EIO (snp_launch_update; rmpupdate()'s -EFAULT inside), and no firmware call follows", () => {
    const { r, be } = runLaunch("  - { call: RMPUPDATE, nth: 3, status: FAIL_PERMISSION }");
    expect(r.report.ops.find((o) => o.op === "populate")!.result).toMatchObject({
      mapped: 2,
      status: EIO,
      detail: "RMPUPDATE failed: FAIL_PERMISSION",
    });
    // Two launch pages, then the VMSA's at finalize.
    expect(be.stats().calls).toMatchObject({ SNP_LAUNCH_UPDATE: 3 });
    expect(be.stats().calls.SNP_PAGE_RECLAIM).toBeUndefined();
  });
});

describe("snp_launch_finish", () => {
  it("a firmware error fails the ioctl with -EIO, and the run stops there as bad input", () => {
    expect(() =>
      runLaunch("  - { call: SNP_LAUNCH_FINISH, nth: 1, status: INVALID_GUEST_STATE }"),
    ).toThrow(/finalize failed \(-5\): SNP_LAUNCH_FINISH failed: INVALID_GUEST_STATE/);
  });

  it("allows KVM_PRE_FAULT_MEMORY: a shared GFN's pre-fault is -EOPNOTSUPP before it, mapped after", () => {
    const { vm } = makeSevVm();
    runToEnd(hostOps.convertMemory(vm, vm.hostCtx, 1, 2, false));
    expect(runToEnd(hostOps.populate(vm, vm.hostVcpu, 1, 2))).toEqual({
      mapped: 0,
      status: -95,
      detail: "KVM_PRE_FAULT_MEMORY at GFN 0x1 before the VM is finalized (pre_fault_allowed)",
    });
    expect(vm.mmu.stats.faults).toBe(0);
    expect(hostOps.finalize(vm)).toBe(0);
    expect(runToEnd(hostOps.populate(vm, vm.hostVcpu, 1, 2))).toEqual({
      mapped: 1,
      status: 0,
      detail: "",
    });
    expect(vm.mmu.stats.faults).toBe(1);
  });

  it("a second LAUNCH_FINISH is -EINVAL before any firmware call (sev_es_sync_vmsa: state protected)", () => {
    const { vm, be } = makeSevVm();
    expect(hostOps.finalize(vm)).toBe(0);
    const calls = { ...be.stats().calls };
    expect(() => hostOps.finalize(vm)).toThrow(
      /finalize failed \(-22\): KVM_SEV_SNP_LAUNCH_FINISH: the vCPUs' state is protected already/,
    );
    expect(be.stats().calls).toEqual(calls);
  });

  it("a LAUNCH_FINISH retried after a VMSA was converted is -EINVAL there, before any firmware call: the launch cannot finish", () => {
    // vCPU 0's VMSA converted, vCPU 1's refused: the retry meets vCPU 0 first.
    const { vm, be } = makeSevVm({ vcpus: 2 });
    be.injectFault(vm, { call: "SNP_LAUNCH_UPDATE", nth: 2, status: "INVALID_PARAM", times: 1 });
    expect(() => hostOps.finalize(vm)).toThrow(/finalize failed \(-5\)/);
    const calls = { ...be.stats().calls };
    expect(() => hostOps.finalize(vm)).toThrow(
      /finalize failed \(-22\): KVM_SEV_SNP_LAUNCH_FINISH: the vCPUs' state is protected already/,
    );
    expect(be.stats().calls).toEqual(calls);
    expect(be.preFaultAllowed()).toBe(false);
    // Every VMSA converted and SNP_LAUNCH_FINISH itself refused: the same.
    const f = makeSevVm();
    f.be.injectFault(f.vm, {
      call: "SNP_LAUNCH_FINISH",
      nth: 1,
      status: "INVALID_PARAM",
      times: 1,
    });
    expect(() => hostOps.finalize(f.vm)).toThrow(/finalize failed \(-5\)/);
    expect(() => hostOps.finalize(f.vm)).toThrow(/finalize failed \(-22\)/);
    expect(f.be.stats().calls.SNP_LAUNCH_FINISH).toBe(1);
  });

  it("KVM_SEV_SNP_LAUNCH_UPDATE after the launch finished: the firmware refuses the Pre-Guest page (INVALID_GUEST_STATE), it is reclaimed and made shared, -EIO", () => {
    const { vm, be } = makeSevVm();
    expect(hostOps.finalize(vm)).toBe(0);
    const calls = { ...be.stats().calls };
    expect(runToEnd(hostOps.populate(vm, vm.hostVcpu, 0, 1))).toMatchObject({
      mapped: 0,
      status: EIO,
    });
    const pfn = vm.memslots.find(0)!.gmem!.getPfn(0);
    expect(be.rmp.raw(pfn)).toMatchObject({ assigned: false, immutable: false });
    expect(be.stats().errors).toEqual({ INVALID_GUEST_STATE: 1 });
    expect(be.stats().calls).toEqual({
      ...calls,
      RMPUPDATE: calls.RMPUPDATE! + 2,
      SNP_LAUNCH_UPDATE: calls.SNP_LAUNCH_UPDATE! + 1,
      SNP_PAGE_RECLAIM: 1,
    });
    expect(be.bugged).toBe(false);
  });

  it("RMPUPDATE's FAIL_INUSE is an error, not retried contention (rmpupdate() retries FAIL_OVERLAP only)", () => {
    const { vm, be } = makeSevVm();
    be.injectFault(vm, { call: "RMPUPDATE", nth: 1, status: "FAIL_INUSE", times: 1 });
    expect(runToEnd(hostOps.populate(vm, vm.hostVcpu, 0, 1)).status).toBe(EIO);
    expect(be.stats().busy).toBe(0);
    expect(be.stats().errors).toEqual({ FAIL_INUSE: 1 });
  });

  it("a success is not a fault to inject: the command would be skipped and KVM would go on", () => {
    expect(() => runLaunch("  - { call: SNP_LAUNCH_FINISH, nth: 1, status: SUCCESS }")).toThrow(
      /status SUCCESS cannot be injected.*inject an error status/,
    );
    expect(() => runLaunch("  - { call: RMPUPDATE, nth: 1, status: SUCCESS }")).toThrow(
      /status SUCCESS cannot be injected/,
    );
  });
});

describe("VMSA pages (snp_launch_update_vmsa, sev_free_vcpu)", () => {
  it("each vCPU's VMSA, never 2M-aligned, is private at INITIAL_VMSA_GPA after finalize: a VMSA, validated, not immutable", () => {
    const { vm, be } = makeSevVm();
    expect(be.vmsaPages).toHaveLength(1);
    const [pfn] = be.vmsaPages as [number];
    expect(pfn % 512).not.toBe(0);
    expect(be.rmp.raw(pfn).assigned).toBe(false);
    hostOps.finalize(vm);
    expect(INITIAL_VMSA_GFN * 4096).toBe(0xfffffffff000);
    expect(be.rmp.raw(pfn)).toEqual({
      assigned: true,
      size2m: false,
      immutable: false,
      validated: true,
      vmsa: true,
      asid: be.asid,
      gfn: INITIAL_VMSA_GFN,
      pfn,
    });
    expect(be.stats().calls).toEqual({
      RMPUPDATE: 3,
      SNP_GCTX_CREATE: 1,
      SNP_LAUNCH_UPDATE: 1,
      SNP_LAUNCH_FINISH: 1,
    });
  });

  it("a refused launch update of a VMSA: reclaimed, made shared, and finalize fails with -EIO", () => {
    const { vm, be } = makeSevVm();
    be.injectFault(vm, { call: "SNP_LAUNCH_UPDATE", nth: 1, status: "INVALID_PARAM", times: 1 });
    expect(() => hostOps.finalize(vm)).toThrow(
      /finalize failed \(-5\): SNP_LAUNCH_UPDATE failed: INVALID_PARAM/,
    );
    const [pfn] = be.vmsaPages as [number];
    expect(be.rmp.raw(pfn)).toMatchObject({ assigned: false, vmsa: false });
    expect(be.stats().calls).toEqual({
      RMPUPDATE: 4,
      SNP_GCTX_CREATE: 1,
      SNP_LAUNCH_UPDATE: 1,
      SNP_PAGE_RECLAIM: 1,
    });
  });

  it("teardown gives each VMSA back with a plain RMPUPDATE; one that fails is a KVM_BUG_ON and the page is leaked", () => {
    const ok = makeSevVm({ vcpus: 2 });
    hostOps.finalize(ok.vm);
    const pages = [...ok.be.vmsaPages];
    expect(pages).toHaveLength(2);
    runToEnd(hostOps.teardown(ok.vm, ok.vm.hostCtx));
    for (const pfn of pages) expect(ok.be.rmp.raw(pfn).assigned).toBe(false);
    expect(ok.vm.mmu.stats.leakedPages).toBe(0);

    const bad = makeSevVm({ vcpus: 2 });
    hostOps.finalize(bad.vm);
    const [pfn, other] = bad.be.vmsaPages as [number, number];
    // The first entry turned immutable behind KVM's back: its RMPUPDATE to shared is FAIL_PERMISSION.
    expect(
      bad.be.rmpUpdate(pfn, {
        assigned: true,
        size2m: false,
        immutable: true,
        asid: bad.be.asid,
        gfn: INITIAL_VMSA_GFN,
      }),
    ).toBe(RMP_SUCCESS);
    expect(() => runToEnd(hostOps.teardown(bad.vm, bad.vm.hostCtx))).toThrow(
      /rmp_make_shared of VMSA page 0x[0-9a-f]+ failed: FAIL_PERMISSION.*snp_leak_pages/,
    );
    expect(bad.vm.mmu.stats.leakedPages).toBe(1);
    expect(bad.be.bugged).toBe(true);
    expect(bad.be.rmp.raw(pfn)).toMatchObject({ assigned: true, immutable: true });
    // The other vCPU's VMSA went back all the same: each vCPU is freed on its own.
    expect(bad.be.rmp.raw(other).assigned).toBe(false);
  });
});

describe("the teardown's order (kvm_destroy_vm)", () => {
  it("each vCPU's VMSA goes back at its destruction: after guest_memfd's pages, before the roots' last zap and SNP_DECOMMISSION", () => {
    const { vm, be } = makeSevVm({ vcpus: 2 });
    hostOps.finalize(vm);
    expect(accept(vm, 0x3000)).toBe("ok");
    const page = gmemPfn(vm, 3);
    expect(be.rmp.raw(page).assigned).toBe(true);
    // The guest_memfd file released before the VM's last reference (the close order the
    // teardown takes): its folios are freed (made shared) before the VM's destruction begins;
    // kvm_destroy_vcpus comes before kvm_mmu_uninit_vm and sev_vm_destroy.
    const seen: string[] = [];
    const vcpuFree = be.vcpuFree.bind(be);
    be.vcpuFree = (v, vcpu) => {
      const gmem = be.rmp.raw(page).assigned ? "assigned" : "shared";
      const roots = vm.mmu.peekRoots().length;
      seen.push(`${vcpu}: gmem ${gmem}, ${roots} root, context ${be.contextPage >= 0}`);
      vcpuFree(v, vcpu);
    };
    runToEnd(hostOps.teardown(vm, vm.hostCtx));
    expect(seen).toEqual([
      "0: gmem shared, 1 root, context true",
      "1: gmem shared, 1 root, context true",
    ]);
    expect(be.vmsaPages).toEqual([-1, -1]);
    expect(be.contextPage).toBe(-1);
  });
});

describe("the guest context (snp_context_create, snp_decommission_context)", () => {
  it("is a firmware page from launch start: assigned to no guest, immutable; given back after SNP_DECOMMISSION", () => {
    const { vm, be } = makeSevVm();
    const pfn = be.contextPage;
    expect(be.rmp.raw(pfn)).toMatchObject({
      assigned: true,
      immutable: true,
      validated: false,
      asid: 0,
    });
    // No RMPUPDATE of the host's can change a firmware page.
    expect(be.rawCall(vm, "RMPUPDATE.SHARED", { page: pfn }).status).toBe("FAIL_PERMISSION");
    runToEnd(hostOps.teardown(vm, vm.hostCtx));
    expect(be.rmp.raw(pfn).assigned).toBe(false);
    expect(be.contextPage).toBe(-1);
    // The guest-request response page goes back first (snp_guest_req_cleanup), then the context.
    expect(be.responsePage).toBe(-1);
    expect(be.stats().calls).toMatchObject({
      SNP_GCTX_CREATE: 1,
      SNP_DECOMMISSION: 1,
      SNP_PAGE_RECLAIM: 2,
    });
    expect(vm.mmu.stats.leakedPages).toBe(0);
  });

  it("a context page the firmware will not give back is leaked, with its cause, and the VM is not bugged", () => {
    const { vm, be } = makeSevVm();
    const pfn = be.contextPage;
    // The first reclaim is the response page's, the second the context's.
    be.injectFault(vm, {
      call: "SNP_PAGE_RECLAIM",
      nth: 2,
      status: "INVALID_PAGE_STATE",
      times: 1,
    });
    runToEnd(hostOps.teardown(vm, vm.hostCtx));
    expect(vm.mmu.stats.leakedPages).toBe(1);
    expect(vm.mmu.stats.leakCauses).toEqual({
      [`SNP_PAGE_RECLAIM of the guest context page 0x${pfn.toString(16)} failed: INVALID_PAGE_STATE`]: 1,
    });
    expect(be.bugged).toBe(false);
    expect(be.rmp.raw(pfn)).toMatchObject({ assigned: true, immutable: true });
  });
});

describe("fault injection", () => {
  /** A scenario that makes each SEV call at least once (SNP_PAGE_RECLAIM only after a refused launch update). */
  const scenarios: Record<string, string> = {
    RMPUPDATE: "  - { call: RMPUPDATE, nth: 1, status: FAIL_INUSE, times: 1 }",
    SNP_LAUNCH_UPDATE: "  - { call: SNP_LAUNCH_UPDATE, nth: 1, status: INVALID_ADDRESS }",
    SNP_LAUNCH_FINISH: "  - { call: SNP_LAUNCH_FINISH, nth: 1, status: INVALID_PLATFORM_STATE }",
    SNP_PAGE_RECLAIM:
      "  - { call: SNP_LAUNCH_UPDATE, nth: 1, status: INVALID_ADDRESS }\n  - { call: SNP_PAGE_RECLAIM, nth: 1, status: INVALID_PAGE_OWNER }",
  };

  it("fires on every call the SEV backend accepts a fault for: each is consulted where it happens", () => {
    const fired = new Set<string>();
    const note = (events: TdpEvent[]) => {
      for (const e of events) if (e.type === "call" && e.injected) fired.add(e.name);
    };
    for (const inject of Object.values(scenarios)) {
      const events: TdpEvent[] = [];
      try {
        runScenario(parseScenarioText(launch(inject), "launch.yaml"), {
          backend: sev,
          onEvent: (e) => events.push(e),
        });
      } catch {
        // SNP_LAUNCH_FINISH refused ends the run; its event came first.
      }
      note(events);
    }
    // PVALIDATE (the guest's accept) and PSMASH (a raw call of the host) outside a launch.
    const { vm, be } = makeSevVm();
    be.injectFault(vm, { call: "PVALIDATE", nth: 1, status: "FAIL_INPUT", times: 1 });
    be.injectFault(vm, { call: "PSMASH", nth: 1, status: "FAIL_INUSE", times: 1 });
    be.injectFault(vm, { call: "RMPADJUST", nth: 1, status: "FAIL_PERMISSION", times: 1 });
    const events: TdpEvent[] = [];
    vm.events.subscribe((e) => events.push(e));
    expect(accept(vm, 0x3000)).toBe("exception");
    expect(be.rawCall(vm, "PSMASH", { page: 0x200 }).status).toBe("FAIL_INUSE");
    expect(runToEnd(guestRmpAdjustPage(vm, vm.vcpus[0]!, 0x3000, 1, 1, 1, false))).toBe(
      "exception",
    );
    note(events);
    expect([...fired].sort()).toEqual([...RMP_CALLS].sort());
  });

  it("names a firmware command's status from the firmware's codes, and refuses an RMP status for it", () => {
    const { vm, be } = makeSevVm();
    expect(FW_STATUS.name(0x16)).toBe("INVALID_PARAM");
    expect(() =>
      be.injectFault(vm, { call: "SNP_LAUNCH_UPDATE", nth: 1, status: "FAIL_INPUT", times: 1 }),
    ).toThrow(/SEV firmware status/);
    expect(() =>
      be.injectFault(vm, { call: "RMPUPDATE", nth: 1, status: "INVALID_PARAM", times: 1 }),
    ).toThrow(/RMP status/);
  });
});
