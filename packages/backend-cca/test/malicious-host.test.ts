/**
 * An untrusted host against the RMM model: RMI calls KVM would never make, on the realm's own
 * granules, IPAs and RECs. Each is checked to the exact status the RMM specification gives it
 * (with the RTT level in the index where it has one), and the realm to keep its memory, or, where
 * the RMM lets the host take something away, to see it as the specification says (RIPAS
 * DESTROYED, a granule protection fault) rather than to read the host's data.
 */
import { describe, expect, it } from "vitest";
import { checkInvariants, type Vm } from "@tdpemu/core/testing";
import { GRANULE_DATA, GRANULE_DELEGATED, type CcaBackend } from "../src/testing.js";
import { MiB, access, gmemPfn, makeRealm, rtte } from "./cca-helpers.js";

const SHARED = 2 ** 47;

/** A running realm that wrote pages 0-3 and a shared page at 8 MiB. */
function running(): { vm: Vm; be: CcaBackend } {
  const { vm, be } = makeRealm();
  for (let p = 0; p < 4; p++) expect(access(vm, p * 4096)).toBe("ok");
  expect(access(vm, 8 * MiB, true, true)).toBe("ok");
  expect(checks(vm)).toEqual([]);
  return { vm, be };
}

function checks(vm: Vm): string[] {
  return checkInvariants(vm, { final: false }).violations.map((v) => `${v.check}: ${v.message}`);
}

const raw = (vm: Vm, be: CcaBackend, call: string, args: Record<string, unknown> = {}) =>
  be.rawCall(vm, call, args).status;

describe("a malicious host's RMI calls", () => {
  it("cannot undelegate a granule the realm's data is in: RMI_ERROR_INPUT, the page stays the realm's", () => {
    const { vm, be } = running();
    expect(raw(vm, be, "RMI_GRANULE_UNDELEGATE", { gpa: 0, page: "mapped" })).toBe(
      "RMI_ERROR_INPUT",
    );
    expect(be.rmm.granuleState(gmemPfn(vm, 0))).toBe(GRANULE_DATA);
    expect(raw(vm, be, "NS.WRITE", { gpa: 0, page: "mapped" })).toBe("GPF");
    expect(access(vm, 0)).toBe("ok");
  });

  it("the starting RTT's count of live entries is checked as every other RTT's (REALM_DESTROY goes by it)", () => {
    const { vm, be } = running();
    const root = be.rmm.rtts.granuleOf(be.realm.rootSlot);
    const refs = be.rmm.granules.refcount[root]!;
    expect(refs).toBeGreaterThan(0);
    be.rmm.granules.refcount[root] = refs + 1;
    expect(checks(vm)).toEqual([
      `granule-state: RTT at 0x0 level ${be.realm.startLevel} counts ${refs + 1} live entries, holds ${refs}`,
    ]);
    be.rmm.granules.refcount[root] = refs;
    expect(checks(vm)).toEqual([]);
  });

  it("cannot delegate a granule twice: RMI_ERROR_INPUT", () => {
    const { vm, be } = running();
    expect(raw(vm, be, "RMI_GRANULE_DELEGATE", { gpa: 0, page: "mapped" })).toBe("RMI_ERROR_INPUT");
  });

  it("cannot map a second granule over an assigned IPA: RMI_ERROR_RTT (level 3)", () => {
    const { vm, be } = running();
    const page = vm.host.frames.allocBlocks(1, 1, vm.owner, "test") * 512;
    expect(raw(vm, be, "RMI_GRANULE_DELEGATE", { page })).toBe("RMI_SUCCESS");
    expect(raw(vm, be, "RMI_DATA_CREATE_UNKNOWN", { gpa: 0x1000, page })).toBe(
      "RMI_ERROR_RTT (level 3)",
    );
    expect(be.rmm.granuleState(page)).toBe(GRANULE_DELEGATED);
    expect(rtte(be, 0x1000)).toBe(`L3 ASSIGNED RAM pa 0x${(gmemPfn(vm, 1) * 4096).toString(16)}`);
  });

  it("cannot map an undelegated page into the realm: RMI_ERROR_INPUT", () => {
    const { vm, be } = running();
    expect(raw(vm, be, "RMI_DATA_CREATE_UNKNOWN", { gpa: 0x10000, page: "fresh" })).toBe(
      "RMI_ERROR_INPUT",
    );
  });

  it("cannot add measured content once the realm is active: RMI_ERROR_REALM", () => {
    const { vm, be } = running();
    const page = vm.host.frames.allocBlocks(1, 1, vm.owner, "test") * 512;
    raw(vm, be, "RMI_GRANULE_DELEGATE", { page });
    expect(raw(vm, be, "RMI_DATA_CREATE", { gpa: 0x10000, page })).toBe("RMI_ERROR_REALM");
  });

  it("cannot put protected data in the unprotected half: RMI_ERROR_INPUT", () => {
    const { vm, be } = running();
    const page = vm.host.frames.allocBlocks(1, 1, vm.owner, "test") * 512;
    raw(vm, be, "RMI_GRANULE_DELEGATE", { page });
    expect(raw(vm, be, "RMI_DATA_CREATE_UNKNOWN", { gpa: SHARED + 0x10000, page })).toBe(
      "RMI_ERROR_INPUT",
    );
  });

  it("mapping data where no level-3 RTT is: RMI_ERROR_RTT at the level the walk stopped (2)", () => {
    const { vm, be } = running();
    const page = vm.host.frames.allocBlocks(1, 1, vm.owner, "test") * 512;
    raw(vm, be, "RMI_GRANULE_DELEGATE", { page });
    expect(raw(vm, be, "RMI_DATA_CREATE_UNKNOWN", { gpa: 32 * MiB, page })).toBe(
      "RMI_ERROR_RTT (level 2)",
    );
  });

  it("cannot destroy an RTT that maps the realm's pages: RMI_ERROR_RTT (level 3), the table's own level", () => {
    const { vm, be } = running();
    expect(raw(vm, be, "RMI_RTT_DESTROY", { gpa: 0, level: 3 })).toBe("RMI_ERROR_RTT (level 3)");
    expect(access(vm, 0)).toBe("ok");
  });

  it("cannot create an RTT over one that exists: RMI_ERROR_RTT at the parent's level (2)", () => {
    const { vm, be } = running();
    const page = vm.host.frames.allocBlocks(1, 1, vm.owner, "test") * 512;
    raw(vm, be, "RMI_GRANULE_DELEGATE", { page });
    expect(raw(vm, be, "RMI_RTT_CREATE", { gpa: 0, level: 3, page })).toBe(
      "RMI_ERROR_RTT (level 2)",
    );
  });

  it("cannot create an RTT at the starting level: RMI_ERROR_INPUT", () => {
    const { vm, be } = running();
    const page = vm.host.frames.allocBlocks(1, 1, vm.owner, "test") * 512;
    raw(vm, be, "RMI_GRANULE_DELEGATE", { page });
    expect(raw(vm, be, "RMI_RTT_CREATE", { gpa: 0, level: 0, page })).toBe("RMI_ERROR_INPUT");
  });

  it("cannot map non-secure memory into the protected half: RMI_ERROR_INPUT", () => {
    const { vm, be } = running();
    expect(raw(vm, be, "RMI_RTT_MAP_UNPROTECTED", { gpa: 0x10000, level: 3, page: "fresh" })).toBe(
      "RMI_ERROR_INPUT",
    );
    expect(raw(vm, be, "RMI_RTT_UNMAP_UNPROTECTED", { gpa: 0x0, level: 3 })).toBe(
      "RMI_ERROR_INPUT",
    );
  });

  it("may map a delegated granule unprotected (the RMM does not look), but the realm's access faults in the GPT", () => {
    const { vm, be } = running();
    // The realm's own data page, mapped at an unprotected IPA: the realm would read its own
    // ciphertext-free page through a non-secure alias if the GPT let it.
    expect(
      raw(vm, be, "RMI_RTT_MAP_UNPROTECTED", {
        gpa: SHARED + 8 * MiB + 0x1000,
        level: 3,
        page: gmemPfn(vm, 0),
      }),
    ).toBe("RMI_SUCCESS");
    expect(checks(vm).some((c) => c.startsWith("ns-access:"))).toBe(true);
    expect(access(vm, 8 * MiB + 0x1000, false, true)).toBe("exception");
    expect(be.stats().calls["#GPF"]).toBe(1);
  });

  it("cannot destroy the realm while it has RECs: RMI_ERROR_REALM", () => {
    const { vm, be } = running();
    expect(raw(vm, be, "RMI_REALM_DESTROY")).toBe("RMI_ERROR_REALM");
    expect(access(vm, 0)).toBe("ok");
  });

  it("cannot activate the realm twice: RMI_ERROR_REALM", () => {
    const { vm, be } = running();
    expect(raw(vm, be, "RMI_REALM_ACTIVATE")).toBe("RMI_ERROR_REALM");
  });

  it("cannot destroy a REC while it runs: RMI_ERROR_REC", () => {
    const { vm, be } = running();
    // The vCPU's last access left it in the realm: its REC runs.
    expect(raw(vm, be, "RMI_REC_DESTROY", { vcpu: 0 })).toBe("RMI_ERROR_REC");
    expect(raw(vm, be, "RMI_REC_ENTER", { vcpu: 0 })).toBe("RMI_ERROR_REC");
  });

  it("its own RMI_REC_ENTER returns with the REC idle (a blocking call): the REC can then be destroyed", () => {
    const { vm, be } = running();
    be.kickVcpu(vm, 0);
    expect(raw(vm, be, "RMI_REC_ENTER", { vcpu: 0 })).toBe("RMI_SUCCESS");
    expect(raw(vm, be, "RMI_REC_ENTER", { vcpu: 0 })).toBe("RMI_SUCCESS");
    expect(raw(vm, be, "RMI_REC_DESTROY", { vcpu: 0 })).toBe("RMI_SUCCESS");
  });

  it("cannot change the realm's RIPAS unasked: RMI_RTT_SET_RIPAS without a request is RMI_ERROR_INPUT, INIT_RIPAS after activation RMI_ERROR_REALM", () => {
    const { vm, be } = running();
    be.kickVcpu(vm, 0);
    expect(raw(vm, be, "RMI_RTT_SET_RIPAS", { vcpu: 0, gpa: 0x10000, level: 3 })).toBe(
      "RMI_ERROR_INPUT",
    );
    expect(raw(vm, be, "RMI_RTT_INIT_RIPAS", { gpa: 32 * MiB, level: 2 })).toBe("RMI_ERROR_REALM");
  });

  it("cannot fold a table of unlike entries: RMI_ERROR_RTT (level 3)", () => {
    const { vm, be } = running();
    expect(raw(vm, be, "RMI_RTT_FOLD", { gpa: 0, level: 3 })).toBe("RMI_ERROR_RTT (level 3)");
  });

  it("cannot undelegate the realm's RD: RMI_ERROR_INPUT", () => {
    const { vm, be } = running();
    expect(raw(vm, be, "RMI_GRANULE_UNDELEGATE", { page: be.rd / 4096 })).toBe("RMI_ERROR_INPUT");
  });

  it("may destroy a page's data (RMI_DATA_DESTROY), and the realm then sees RIPAS DESTROYED, never the host's page", () => {
    const { vm, be } = running();
    const pfn = gmemPfn(vm, 2);
    expect(raw(vm, be, "RMI_DATA_DESTROY", { gpa: 0x2000 })).toBe("RMI_SUCCESS");
    expect(rtte(be, 0x2000)).toBe("L3 UNASSIGNED DESTROYED");
    expect(be.rmm.granuleState(pfn)).toBe(GRANULE_DELEGATED);
    // KVM's mirror still maps it: the model's invariant names the difference.
    expect(checks(vm).some((c) => c.startsWith("rtt-mirror:"))).toBe(true);
    expect(access(vm, 0x2000)).toBe("exception");
    expect(be.stats().calls["REC exit (DESTROYED)"]).toBe(1);
  });

  it("a failed RMI_DATA_DESTROY or RMI_RTT_DESTROY reports no granule (X1 is an output of a success only)", () => {
    const { vm, be } = running();
    // The success before it set X1; the failures after must not show it.
    expect(be.rawCall(vm, "RMI_DATA_DESTROY", { gpa: 0x2000 }).detail).toBe(
      `pa 0x${(gmemPfn(vm, 2) * 4096).toString(16)} top 0x3000`,
    );
    expect(be.rmm.x1).not.toBe(0);
    const d = be.rawCall(vm, "RMI_DATA_DESTROY", { gpa: 0x400000 });
    expect(d.status).toMatch(/^RMI_ERROR_RTT/);
    expect(d.detail).toMatch(/^top 0x/);
    expect(be.rmm.x1).toBe(0);
    expect(raw(vm, be, "RMI_DATA_DESTROY", { gpa: 0x3000 })).toBe("RMI_SUCCESS");
    const t = be.rawCall(vm, "RMI_RTT_DESTROY", { gpa: 0, level: 3 });
    expect(t.status).toBe("RMI_ERROR_RTT (level 3)");
    expect(t.detail).toMatch(/^top 0x/);
    expect(be.rmm.x1).toBe(0);
  });

  it("reads an entry with RMI_RTT_READ_ENTRY: the PA of an assigned page, the level the walk reached", () => {
    const { vm, be } = running();
    expect(be.rawCall(vm, "RMI_RTT_READ_ENTRY", { gpa: 0x1000, level: 3 }).detail).toBe(
      `level 3 ASSIGNED pa 0x${(gmemPfn(vm, 1) * 4096).toString(16)} ripas RAM`,
    );
    expect(be.rawCall(vm, "RMI_RTT_READ_ENTRY", { gpa: 32 * MiB, level: 3 }).detail).toBe(
      "level 2 UNASSIGNED pa 0x0 ripas RAM",
    );
    expect(raw(vm, be, "RMI_RTT_READ_ENTRY", { gpa: 0x1001, level: 3 })).toBe("RMI_ERROR_INPUT");
  });

  it("names the calls it knows when given another", () => {
    const { vm, be } = running();
    expect(() => be.rawCall(vm, "RMI_NOPE", {})).toThrow(
      /raw call 'RMI_NOPE' is not one the CCA backend knows \(RMI_GRANULE_DELEGATE, /,
    );
  });
});
