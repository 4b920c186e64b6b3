/**
 * VMPLs and RMPADJUST: RMPUPDATE leaves VMPLs 1-3 without rights, a more privileged level grants
 * them with RMPADJUST (never more than its own, never to itself or above), and the hardware
 * checks each access at a level against its rights, last among the RMP checks, with a #NPF
 * that carries the VMPL bit (36). Upstream KVM defines the bit and never looks at it: the fault
 * is handled as spurious and the guest faults again, which the model reports as a livelock.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import {
  GuestLivelock,
  guestAccessPage,
  guestRmpAdjustPage,
  parseScenarioText,
  runScenario,
  runToEnd,
  type AccessOutcome,
  type Vm,
} from "@tdpemu/core/testing";
import {
  FAIL_INPUT,
  FAIL_PERMISSION,
  FAIL_SIZEMISMATCH,
  PFERR_ENC,
  PFERR_GUEST_FINAL,
  PFERR_PRESENT,
  PFERR_RMP,
  PFERR_SIZEM,
  PFERR_USER,
  PFERR_VMPL,
  PFERR_WRITE,
  RMP_SUCCESS,
  VMPL_ALL,
  VMPL_R,
  VMPL_W,
  psmash,
  rmpadjust,
  type SevBackend,
} from "../src/testing.js";
import { accept, gmemPfn, makeSevVm, sev } from "./sev-helpers.js";

const NPF_PRIVATE = PFERR_GUEST_FINAL | PFERR_PRESENT | PFERR_USER | PFERR_ENC;
const npfArgs = [NPF_PRIVATE, PFERR_RMP, PFERR_SIZEM] as const;

function at(vm: Vm, be: SevBackend, vmpl: number, f: () => AccessOutcome): AccessOutcome {
  be.enterVmpl(vm, 0, vmpl);
  try {
    return f();
  } finally {
    be.enterVmpl(vm, 0, 0);
  }
}
const read = (vm: Vm, gpa: number) =>
  runToEnd(guestAccessPage(vm, vm.vcpus[0]!, gpa, false, false));
const write = (vm: Vm, gpa: number) =>
  runToEnd(guestAccessPage(vm, vm.vcpus[0]!, gpa, true, false));
const adjust = (vm: Vm, gpa: number, target: number, perms: number, vmsa = false) =>
  runToEnd(guestRmpAdjustPage(vm, vm.vcpus[0]!, gpa, 1, target, perms, vmsa));

describe("VMPL permissions", () => {
  it("a page RMPUPDATE assigned gives VMPL1 nothing: its read is a #NPF with RMP and VMPL, which KVM never resolves", () => {
    const { vm, be } = makeSevVm();
    expect(accept(vm, 0x100000)).toBe("ok");
    expect(read(vm, 0x100000)).toBe("ok"); // VMPL0 has every right
    const before = be.raisedTotal;
    expect(() => at(vm, be, 1, () => read(vm, 0x100000))).toThrow(GuestLivelock);
    const raised = be.exceptionsSince(before);
    expect(raised.length).toBeGreaterThan(1);
    for (const ex of raised)
      expect(ex).toEqual({
        kind: "#NPF",
        gpa: 0x100000,
        errorCode: NPF_PRIVATE | PFERR_RMP | PFERR_VMPL,
      });
    expect(NPF_PRIVATE | PFERR_RMP | PFERR_VMPL).toBe(0x15_8000_0005n);
    // KVM's only RMP-fault handling, sev_handle_rmp_fault, finds a 4K entry: nothing to split.
    expect(be.stats().calls.PSMASH).toBeUndefined();
  });

  it("RMPADJUST from VMPL0 grants VMPL1 read-write or read-only, and the hardware holds VMPL1 to it", () => {
    const { vm, be } = makeSevVm();
    for (const gpa of [0x100000, 0x101000]) expect(accept(vm, gpa)).toBe("ok");
    expect(adjust(vm, 0x100000, 1, VMPL_R | VMPL_W)).toBe("ok");
    expect(adjust(vm, 0x101000, 1, VMPL_R)).toBe("ok");
    expect(at(vm, be, 1, () => write(vm, 0x100000))).toBe("ok");
    expect(at(vm, be, 1, () => read(vm, 0x101000))).toBe("ok");
    const before = be.raisedTotal;
    expect(() => at(vm, be, 1, () => write(vm, 0x101000))).toThrow(GuestLivelock);
    expect(be.exceptionsSince(before)[0]).toEqual({
      kind: "#NPF",
      gpa: 0x101000,
      errorCode: NPF_PRIVATE | PFERR_RMP | PFERR_VMPL | PFERR_WRITE,
    });
    // VMPL2 got nothing from anyone.
    expect(be.rmp.vmplPerms(gmemPfn(vm, 0x100), 2)).toBe(0);
    expect(be.stats().calls.RMPADJUST).toBe(2);
  });

  it("RMPADJUST's codes: a target not below the caller is FAIL_PERMISSION, past VMPL3 FAIL_INPUT, rights beyond the caller's FAIL_PERMISSION", () => {
    const { vm, be } = makeSevVm();
    expect(accept(vm, 0x100000)).toBe("ok");
    const pfn = gmemPfn(vm, 0x100);
    const adj = (vmpl: number, target: number, perms: number, vmsa = false) =>
      rmpadjust(be.rmp, be.asid, 0x100, pfn, false, vmpl, target, perms, vmsa, ...npfArgs);
    expect(adj(0, 0, VMPL_R)).toEqual({ kind: "status", status: FAIL_PERMISSION });
    expect(adj(1, 1, VMPL_R)).toEqual({ kind: "status", status: FAIL_PERMISSION });
    expect(adj(2, 1, VMPL_R)).toEqual({ kind: "status", status: FAIL_PERMISSION });
    expect(adj(0, 4, VMPL_R)).toEqual({ kind: "status", status: FAIL_INPUT });
    expect(adj(0, 1, VMPL_R)).toEqual({ kind: "ok" });
    // VMPL1 holds R only: it may pass R on to VMPL2, not W.
    expect(adj(1, 2, VMPL_R | VMPL_W)).toEqual({ kind: "status", status: FAIL_PERMISSION });
    expect(adj(1, 2, VMPL_R)).toEqual({ kind: "ok" });
    expect(be.rmp.vmplPerms(pfn, 2)).toBe(VMPL_R);
    expect(be.rmp.vmplPerms(pfn, 0)).toBe(VMPL_ALL);
    // Another ASID's or another GPA's page: #NPF with the RMP bit.
    expect(
      rmpadjust(be.rmp, be.asid + 1, 0x100, pfn, false, 0, 1, VMPL_R, false, ...npfArgs),
    ).toEqual({ kind: "npf", errorCode: NPF_PRIVATE | PFERR_RMP });
    expect(rmpadjust(be.rmp, be.asid, 0x101, pfn, false, 0, 1, VMPL_R, false, ...npfArgs)).toEqual({
      kind: "npf",
      errorCode: NPF_PRIVATE | PFERR_RMP,
    });
    // A 2M request over a 4K entry.
    expect(rmpadjust(be.rmp, be.asid, 0x100, pfn, true, 0, 1, VMPL_R, false, ...npfArgs)).toEqual({
      kind: "status",
      status: FAIL_SIZEMISMATCH,
    });
  });

  it("only VMPL0 sets the VMSA bit; a lower level's request for it is ignored", () => {
    const { vm, be } = makeSevVm();
    expect(accept(vm, 0x100000)).toBe("ok");
    const pfn = gmemPfn(vm, 0x100);
    expect(rmpadjust(be.rmp, be.asid, 0x100, pfn, false, 0, 1, VMPL_R, true, ...npfArgs)).toEqual({
      kind: "ok",
    });
    expect(be.rmp.raw(pfn).vmsa).toBe(true);
    expect(rmpadjust(be.rmp, be.asid, 0x100, pfn, false, 1, 2, VMPL_R, false, ...npfArgs)).toEqual({
      kind: "ok",
    });
    expect(be.rmp.raw(pfn).vmsa).toBe(true);
    // Cleared by VMPL0, then asked for by VMPL1: nothing.
    expect(rmpadjust(be.rmp, be.asid, 0x100, pfn, false, 0, 1, VMPL_R, false, ...npfArgs)).toEqual({
      kind: "ok",
    });
    expect(rmpadjust(be.rmp, be.asid, 0x100, pfn, false, 1, 2, VMPL_R, true, ...npfArgs)).toEqual({
      kind: "ok",
    });
    expect(be.rmp.raw(pfn).vmsa).toBe(false);
    expect(rmpadjust(be.rmp, be.asid, 0x100, pfn, false, 0, 1, VMPL_R, true, ...npfArgs)).toEqual({
      kind: "ok",
    });
    expect(be.rmp.raw(pfn).vmsa).toBe(true);
    expect(rmpadjust(be.rmp, be.asid, 0x100, pfn, false, 0, 1, VMPL_R, false, ...npfArgs)).toEqual({
      kind: "ok",
    });
    expect(be.rmp.raw(pfn).vmsa).toBe(false);
  });

  it("RMPUPDATE takes every VMPL's rights away; PSMASH keeps them on all 512 pages", () => {
    const { vm, be } = makeSevVm({ hostPageLevel: 2 });
    // A 2M RMP entry from the first private use of the range (sev_gmem_prepare).
    expect(read(vm, 0x200000)).toBe("exception"); // not validated: #VC
    const head = gmemPfn(vm, 0x200);
    expect(be.rmp.raw(head).size2m).toBe(true);
    expect(
      rmpadjust(be.rmp, be.asid, 0x200, head, true, 0, 1, VMPL_R | VMPL_W, false, ...npfArgs),
    ).toEqual({ kind: "ok" });
    expect(psmash(be.rmp, head)).toBe(RMP_SUCCESS);
    for (const i of [0, 1, 511]) expect(be.rmp.vmplPerms(head + i, 1)).toBe(VMPL_R | VMPL_W);
    expect(
      be.rmpUpdate(head + 1, {
        assigned: true,
        size2m: false,
        immutable: false,
        asid: be.asid,
        gfn: 0x201,
      }),
    ).toBe(RMP_SUCCESS);
    expect(be.rmp.vmplPerms(head + 1, 1)).toBe(0);
    expect(be.rmp.vmplPerms(head + 2, 1)).toBe(VMPL_R | VMPL_W);
  });

  it("scenarios/sev-vmpl.yaml: VMPL1 uses what VMPL0 granted, no exception and no violation", () => {
    const path = fileURLToPath(new URL("../../../scenarios/sev-vmpl.yaml", import.meta.url));
    const r = runScenario(parseScenarioText(readFileSync(path, "utf8"), path), { backend: sev });
    expect(r.report.invariants.violations).toEqual([]);
    expect(r.report.ops.map((o) => o.result)).toEqual([
      { ok: 4, exceptions: 0 },
      { ok: 2, exceptions: 0 },
      { ok: 1, exceptions: 0 },
      { ok: 2, exceptions: 0, mmio: 0 },
      { ok: 1, exceptions: 0, mmio: 0 },
    ]);
    expect(r.report.backendStats.calls).toMatchObject({ RMPADJUST: 3, PVALIDATE: 4 });
  });
});
