/**
 * An untrusted host against the SEV-SNP model (docs/sev-snp.md §1.2-§1.3): it rewrites the NPT behind
 * KVM's back, writes guest frames through its direct map, plays a second guest, and issues RMP
 * instructions KVM never would. Every refusal is checked to the exact fault and error code the
 * backend records (`SevBackend.exceptions`), and the guest is checked never to complete an access
 * through the bad mapping.
 */
import { describe, expect, it } from "vitest";
import {
  GuestLivelock,
  OWNER_FREE,
  checkInvariants,
  hostOps,
  runToEnd,
  type Vm,
} from "@tdpemu/core/testing";
import {
  FAIL_BADADDR,
  FAIL_INPUT,
  FAIL_INUSE,
  FAIL_NOUPDATE,
  FAIL_OVERLAP,
  FAIL_PERMISSION,
  FAIL_SIZEMISMATCH,
  PFERR_ENC,
  PFERR_GUEST_FINAL,
  PFERR_GUEST_PAGE,
  PFERR_PRESENT,
  PFERR_RMP,
  PFERR_SIZEM,
  PFERR_USER,
  PFERR_WRITE,
  RMP_SUCCESS,
  Rmp,
  SVM_EXIT_PAGE_NOT_VALIDATED,
  psmash,
  pvalidate,
  RMP,
  rmpupdate,
  type SevBackend,
  type SevException,
} from "../src/testing.js";
import {
  MiB,
  accept,
  access,
  gmemPfn,
  makeSevVm,
  nptLeaf,
  sharedPfn,
  writeNptLeaf,
} from "./sev-helpers.js";

/** What every #NPF of a private (C=1) guest access carries before its cause bits. */
const NPF_PRIVATE = PFERR_GUEST_FINAL | PFERR_PRESENT | PFERR_USER | PFERR_ENC;
const never = () => false;

function invariantChecks(vm: Vm): string[] {
  return checkInvariants(vm, { final: false }).violations.map((v) => v.check);
}

/** The exceptions the backend raises while `fn` runs. */
function raisedBy(be: SevBackend, fn: () => void): SevException[] {
  const n = be.raisedTotal;
  fn();
  return be.exceptionsSince(n);
}

describe("the error bits", () => {
  it("are docs/sev-snp.md §1.3's: 31 RMP, 32 GUEST_FINAL, 33 GUEST_PAGE, 34 ENC, 35 SIZEM; #VC code 0x404", () => {
    expect([PFERR_RMP, PFERR_GUEST_FINAL, PFERR_GUEST_PAGE, PFERR_ENC, PFERR_SIZEM]).toEqual([
      1n << 31n,
      1n << 32n,
      1n << 33n,
      1n << 34n,
      1n << 35n,
    ]);
    expect([PFERR_PRESENT, PFERR_WRITE, PFERR_USER]).toEqual([1n, 2n, 4n]);
    expect(SVM_EXIT_PAGE_NOT_VALIDATED).toBe(0x404);
  });
});

describe("the host remaps a guest's private frame at another GPA in the NPT", () => {
  const A = 0x10;
  const B = 0x20;

  /** Guest pages A and B validated and written; then B's NPT leaf is pointed at A's frame. */
  function remapped() {
    const f = makeSevVm();
    for (const gfn of [A, B]) {
      expect(accept(f.vm, gfn * 4096)).toBe("ok");
      expect(access(f.vm, gfn * 4096, true)).toBe("ok");
    }
    expect(invariantChecks(f.vm)).toEqual([]);
    const frameA = gmemPfn(f.vm, A);
    const frameB = gmemPfn(f.vm, B);
    expect(frameA).not.toBe(frameB);
    expect(f.be.rmp.raw(frameA)).toEqual({
      assigned: true,
      size2m: false,
      immutable: false,
      validated: true,
      vmsa: false,
      asid: f.be.asid,
      gfn: A,
      pfn: frameA,
    });
    expect(nptLeaf(f.vm, B)).toMatchObject({ level: 1, pfn: frameB });
    const w = writeNptLeaf(f.vm, B, 1, frameA);
    expect(nptLeaf(f.vm, B)).toMatchObject({ level: 1, pfn: frameA });
    return { ...f, frameA, frameB, w };
  }

  for (const write of [false, true]) {
    it(`a private ${write ? "write" : "read"} at B: #NPF RMP|ENC|GUEST_FINAL|PRESENT|USER${write ? "|WRITE" : ""} (reverse-map check), never completed`, () => {
      const { vm, be, frameA, frameB, w } = remapped();
      const code = NPF_PRIVATE | PFERR_RMP | (write ? PFERR_WRITE : 0n);
      expect(code).toBe(write ? 0x5_8000_0007n : 0x5_8000_0005n);
      expect(code & PFERR_RMP).toBe(PFERR_RMP);
      expect(code & PFERR_ENC).toBe(PFERR_ENC);
      expect(code & PFERR_SIZEM).toBe(0n);

      // KVM finds a present leaf each time (a spurious fault), the RMP fixup has nothing to split
      // (A's entry is 4K), so the guest re-faults until it is declared livelocked: no access
      // through the bad mapping ever completes.
      let outcome: string | undefined;
      const raised = raisedBy(be, () => {
        expect(() => {
          outcome = access(vm, B * 4096, write);
        }).toThrow(GuestLivelock);
      });
      expect(outcome).toBeUndefined();
      expect(raised.length).toBeGreaterThan(1);
      for (const ex of raised) expect(ex).toEqual({ kind: "#NPF", gpa: B * 4096, errorCode: code });
      expect(vm.vcpus[0]!.exceptions).toBe(0);

      // Nothing changed hands: A's entry is intact (still validated, still at GPA A), B's too.
      expect(be.rmp.raw(frameA)).toMatchObject({
        assigned: true,
        validated: true,
        asid: be.asid,
        gfn: A,
      });
      expect(be.rmp.raw(frameB)).toMatchObject({
        assigned: true,
        validated: true,
        asid: be.asid,
        gfn: B,
      });
      expect(be.stats().calls.PSMASH).toBeUndefined();
      // The invariants see the forged leaf.
      expect(invariantChecks(vm)).toEqual(
        expect.arrayContaining(["leaf-maps-backing", "rmp-covers-private-leaf"]),
      );

      // Once the host puts the leaf back, B works again.
      w.restore();
      expect(invariantChecks(vm)).toEqual([]);
      expect(access(vm, B * 4096, write)).toBe("ok");
    });
  }

  it("a PVALIDATE at B through the forged leaf: the same #NPF (no WRITE bit), A's Validated bit untouched", () => {
    const { vm, be, frameA } = remapped();
    const raised = raisedBy(be, () => expect(() => accept(vm, B * 4096)).toThrow(GuestLivelock));
    expect(raised.length).toBeGreaterThan(1);
    for (const ex of raised)
      expect(ex).toEqual({ kind: "#NPF", gpa: B * 4096, errorCode: NPF_PRIVATE | PFERR_RMP });
    expect(be.rmp.raw(frameA).validated).toBe(true);
  });
});

describe("a 2M NPT leaf over frames the RMP assigns at 4K", () => {
  for (const write of [false, true]) {
    it(`a private ${write ? "write" : "read"}: #NPF with RMP but not SIZEM, then KVM splits the leaf and the retry goes through a 4K leaf`, () => {
      const { vm, be } = makeSevVm({ hostPageLevel: 1 });
      for (const gfn of [0x200, 0x201]) {
        expect(accept(vm, gfn * 4096)).toBe("ok");
        expect(access(vm, gfn * 4096, true)).toBe("ok");
      }
      const head = gmemPfn(vm, 0x200);
      expect(head % 512).toBe(0);
      expect(gmemPfn(vm, 0x201)).toBe(head + 1);
      // The RMP entries are 4K, assigned to this guest at the right GPAs, validated.
      expect(be.rmp.lookup(head + 1)).toMatchObject({
        assigned: true,
        size2m: false,
        validated: true,
        asid: be.asid,
        gfn: 0x201,
      });

      // The host replaces the level-2 entry (a table today) by a 2M leaf over the same frames.
      writeNptLeaf(vm, 0x200, 2, head);
      expect(nptLeaf(vm, 0x201)).toMatchObject({ level: 2, gfn: 0x200, pfn: head });
      const before = checkInvariants(vm, { final: false }).violations;
      expect(
        before.some(
          (v) =>
            v.check === "rmp-covers-private-leaf" &&
            /2M private leaf at gfn 0x200 over 4K RMP entries, of which frame 0x[0-9a-f]+ is no guest's/.test(
              v.message,
            ),
        ),
      ).toBe(true);

      const raised = raisedBy(be, () => expect(access(vm, 0x201000, write)).toBe("ok"));
      // SIZEM is set only when a PVALIDATE or RMPADJUST size mismatches the RMP (AMD APM vol. 2,
      // the #NPF error code); an access whose NPT leaf size mismatches is an RMP fault without
      // it (sev_handle_rmp_fault: "Guest access via NPT can trigger an #NPF if the NPT mapping
      // is smaller than ..." the RMP entry, and the same check refuses a leaf that is bigger).
      const code = NPF_PRIVATE | PFERR_RMP | (write ? PFERR_WRITE : 0n);
      expect(code).toBe(write ? 0x5_8000_0007n : 0x5_8000_0005n);
      // Exactly one refusal: the access through the 2M leaf. ASID, GPA and Validated all match,
      // so only the size check fails.
      expect(raised).toEqual([{ kind: "#NPF", gpa: 0x201000, errorCode: code }]);
      // It completed through a 4K leaf KVM made (tdp_mmu_split_huge_page on the fault path), not the 2M one.
      expect(nptLeaf(vm, 0x201)).toMatchObject({ level: 1, gfn: 0x201, pfn: head + 1 });
      // The RMP fixup had nothing to PSMASH: the entries were 4K already.
      expect(be.stats().calls.PSMASH).toBeUndefined();
    });
  }
});

describe("host writes through the direct map (docs/sev-snp.md §1.3, check 4)", () => {
  const HOST_PF = PFERR_RMP | PFERR_WRITE | PFERR_PRESENT;

  it("to an assigned frame: #PF with the RMP bit (hostWrite and rawCall HOST.WRITE); reads see ciphertext", () => {
    const { vm, be } = makeSevVm();
    expect(accept(vm, 0x3000)).toBe("ok");
    const pfn = gmemPfn(vm, 3);
    expect(HOST_PF).toBe(0x8000_0003n);

    const ex = be.hostWrite(pfn);
    expect(ex).toEqual({ kind: "#PF", gpa: -1, errorCode: HOST_PF });
    expect(be.exceptions.at(-1)).toEqual(ex);

    expect(be.rawCall(vm, "HOST.WRITE", { gpa: 0x3000, page: "mapped" })).toEqual({
      status: "#PF",
      detail: "error 0x80000003",
    });
    expect(be.rawCall(vm, "HOST.WRITE", { page: pfn })).toEqual({
      status: "#PF",
      detail: "error 0x80000003",
    });
    expect(be.exceptions.filter((e) => e.kind === "#PF")).toEqual([ex, ex, ex]);
    expect(be.stats().calls["#PF"]).toBe(3);
    expect(be.rawCall(vm, "HOST.READ", { page: pfn })).toEqual({
      status: "OK",
      detail: "ciphertext",
    });
    // The guest's page is still its own.
    expect(be.rmp.raw(pfn)).toMatchObject({
      assigned: true,
      validated: true,
      asid: be.asid,
      gfn: 3,
    });
    expect(access(vm, 0x3000, true)).toBe("ok");
  });

  it("to a frame under an assigned 2M entry: #PF as well", () => {
    const { vm, be } = makeSevVm({ hostPageLevel: 2 });
    expect(access(vm, 0x200000, false)).toBe("exception");
    const head = gmemPfn(vm, 0x200);
    expect(be.rmp.raw(head)).toMatchObject({ assigned: true, size2m: true });
    expect(be.rmp.raw(head + 77).assigned).toBe(false);
    expect(be.hostWrite(head + 77)).toEqual({ kind: "#PF", gpa: -1, errorCode: HOST_PF });
  });

  it("to hypervisor-owned frames: succeeds (shared memory, a guest frame given back, a fresh page)", () => {
    const { vm, be } = makeSevVm();
    // Shared memory of the guest.
    expect(access(vm, 0x8000, true, true)).toBe("ok");
    const shared = sharedPfn(vm, 8);
    expect(shared).toBeGreaterThanOrEqual(0);
    expect(be.hostWrite(shared)).toBeNull();
    expect(be.rawCall(vm, "HOST.WRITE", { page: shared })).toEqual({
      status: "OK",
      detail: "written",
    });
    expect(be.rawCall(vm, "HOST.READ", { page: shared })).toEqual({
      status: "OK",
      detail: "plaintext",
    });

    // A private page converted to shared: guest_memfd's hole punch gives the frame back.
    expect(accept(vm, 0x9000)).toBe("ok");
    const frame = gmemPfn(vm, 9);
    expect(be.hostWrite(frame)).not.toBeNull();
    runToEnd(hostOps.convertMemory(vm, vm.hostCtx, 9, 10, false));
    expect(be.rmp.raw(frame).assigned).toBe(false);
    expect(be.hostWrite(frame)).toBeNull();

    // A page the host never gave any guest.
    expect(be.rawCall(vm, "HOST.WRITE", { page: "fresh" }).status).toBe("OK");
    expect(be.exceptions.filter((e) => e.kind === "#PF")).toHaveLength(1);
  });
});

describe("a second guest on the same host (another ASID) whose NPT maps the first guest's frame", () => {
  const GFN = 0x40;

  function twoGuests() {
    const one = makeSevVm({ memory: 16 * MiB });
    const two = makeSevVm({ host: one.host, memory: 16 * MiB });
    expect(one.host.container.resolve(RMP)).toBe(one.be.rmp);
    expect(two.be.rmp).toBe(one.be.rmp);
    expect(two.be.asid).not.toBe(one.be.asid);
    // Both guests use the same GFN, so only the ASID tells their frames apart.
    for (const g of [one, two]) {
      expect(accept(g.vm, GFN * 4096)).toBe("ok");
      expect(access(g.vm, GFN * 4096, true)).toBe("ok");
    }
    return { one, two, frameOne: gmemPfn(one.vm, GFN), frameTwo: gmemPfn(two.vm, GFN) };
  }

  for (const write of [false, true]) {
    it(`its private ${write ? "write" : "read"} takes #NPF RMP (ASID mismatch), never completed`, () => {
      const { one, two, frameOne } = twoGuests();
      expect(one.be.rmp.raw(frameOne)).toMatchObject({
        assigned: true,
        validated: true,
        asid: one.be.asid,
        gfn: GFN,
      });
      const w = writeNptLeaf(two.vm, GFN, 1, frameOne);
      const oneBefore = one.be.raisedTotal;
      const raised = raisedBy(two.be, () =>
        expect(() => access(two.vm, GFN * 4096, write)).toThrow(GuestLivelock),
      );
      const code = NPF_PRIVATE | PFERR_RMP | (write ? PFERR_WRITE : 0n);
      expect(raised.length).toBeGreaterThan(1);
      for (const ex of raised)
        expect(ex).toEqual({ kind: "#NPF", gpa: GFN * 4096, errorCode: code });
      expect(one.be.raisedTotal).toBe(oneBefore);
      expect(one.be.rmp.raw(frameOne)).toMatchObject({
        assigned: true,
        validated: true,
        asid: one.be.asid,
        gfn: GFN,
      });
      expect(invariantChecks(two.vm)).toEqual(
        expect.arrayContaining(["leaf-frame-owned-by-vm", "rmp-covers-private-leaf"]),
      );
      w.restore();
      expect(invariantChecks(two.vm)).toEqual([]);
      expect(invariantChecks(one.vm)).toEqual([]);
      expect(access(one.vm, GFN * 4096, write)).toBe("ok");
      expect(access(two.vm, GFN * 4096, write)).toBe("ok");
    });
  }

  it("its PVALIDATE through the forged leaf cannot validate the first guest's unvalidated frame", () => {
    const { one, two } = twoGuests();
    // The first guest touches a page it never validated: assigned, Validated clear.
    expect(access(one.vm, 0x41000, false)).toBe("exception");
    const target = gmemPfn(one.vm, 0x41);
    expect(one.be.rmp.raw(target)).toMatchObject({
      assigned: true,
      validated: false,
      asid: one.be.asid,
      gfn: 0x41,
    });
    expect(access(two.vm, 0x41000, false)).toBe("exception");
    writeNptLeaf(two.vm, 0x41, 1, target);
    const raised = raisedBy(two.be, () =>
      expect(() => accept(two.vm, 0x41000)).toThrow(GuestLivelock),
    );
    for (const ex of raised)
      expect(ex).toEqual({ kind: "#NPF", gpa: 0x41000, errorCode: NPF_PRIVATE | PFERR_RMP });
    expect(one.be.rmp.raw(target).validated).toBe(false);
  });
});

describe("immutable pages and launch pages", () => {
  it("populate (SNP_LAUNCH_UPDATE) leaves the page assigned and validated; the model then clears Immutable", () => {
    const { vm, be } = makeSevVm();
    expect(runToEnd(hostOps.populate(vm, vm.hostVcpu, 0, 4))).toEqual({
      mapped: 4,
      status: 0,
      detail: "",
    });
    hostOps.finalize(vm);
    // The two firmware pages (the guest-request response page, the guest context), four pages,
    // then at finalize the vCPU's VMSA (snp_launch_update_vmsa).
    expect(be.stats().calls).toMatchObject({
      RMPUPDATE: 7,
      SNP_GCTX_CREATE: 1,
      SNP_LAUNCH_UPDATE: 5,
      SNP_LAUNCH_FINISH: 1,
    });
    for (let gfn = 0; gfn < 4; gfn++) {
      const pfn = gmemPfn(vm, gfn);
      // populate() RMPUPDATEs with immutable=true, then models the firmware's LAUNCH_UPDATE,
      // which leaves the page guest-valid and no longer immutable (sev-backend.ts populate()).
      expect(be.rmp.raw(pfn)).toEqual({
        assigned: true,
        size2m: false,
        immutable: false,
        validated: true,
        vmsa: false,
        asid: be.asid,
        gfn,
        pfn,
      });
    }
    // No PVALIDATE needed for launch pages.
    expect(access(vm, 0x1000, true)).toBe("ok");
    expect(be.stats().calls.PVALIDATE).toBeUndefined();
    // So a host RMPUPDATE of a launched page is allowed, and it clears Validated: the guest
    // notices on its next access (#VC 0x404) instead of using a page taken from it.
    expect(be.rawCall(vm, "RMPUPDATE.PRIVATE", { gpa: 0x2000, page: "mapped" }).status).toBe(
      "SUCCESS",
    );
    expect(be.rmp.raw(gmemPfn(vm, 2)).validated).toBe(false);
    expect(access(vm, 0x2000, false)).toBe("exception");
    expect(be.exceptions.at(-1)).toEqual({ kind: "#VC", gpa: 0x2000, errorCode: 0x404n });
  });

  it("an entry set immutable by RMPUPDATE takes no further RMPUPDATE: FAIL_PERMISSION, entry unchanged", () => {
    const { vm, be } = makeSevVm();
    runToEnd(hostOps.populate(vm, vm.hostVcpu, 0, 2));
    hostOps.finalize(vm);
    const pfn = gmemPfn(vm, 1);
    expect(
      be.rmpUpdate(pfn, { assigned: true, size2m: false, immutable: true, asid: be.asid, gfn: 1 }),
    ).toBe(RMP_SUCCESS);
    const entry = be.rmp.raw(pfn);
    expect(entry).toEqual({
      assigned: true,
      size2m: false,
      immutable: true,
      validated: false,
      vmsa: false,
      asid: be.asid,
      gfn: 1,
      pfn,
    });

    expect(be.rawCall(vm, "RMPUPDATE.SHARED", { page: pfn })).toEqual({
      status: "FAIL_PERMISSION",
      detail: `RMPUPDATE.SHARED page 0x${pfn.toString(16)}`,
    });
    expect(be.rawCall(vm, "RMPUPDATE.PRIVATE", { gpa: 0x1000, page: "mapped" }).status).toBe(
      "FAIL_PERMISSION",
    );
    expect(
      be.rmpUpdate(pfn, { assigned: false, size2m: false, immutable: false, asid: 0, gfn: 0 }),
    ).toBe(FAIL_PERMISSION);
    expect(be.rmp.raw(pfn)).toEqual(entry);
    expect(be.stats().errors).toEqual({ FAIL_PERMISSION: 3 });
    expect(be.lastError()).toBe("RMPUPDATE failed: FAIL_PERMISSION");

    // The guest cannot use an immutable page either: #NPF with the RMP bit (docs/sev-snp.md §1.3, check 1).
    const raised = raisedBy(be, () =>
      expect(() => access(vm, 0x1000, false)).toThrow(GuestLivelock),
    );
    expect(raised.length).toBeGreaterThan(1);
    for (const ex of raised)
      expect(ex).toEqual({ kind: "#NPF", gpa: 0x1000, errorCode: NPF_PRIVATE | PFERR_RMP });
  });

  it("the bare instruction: an immutable 2M entry refuses a 4K and a 2M RMPUPDATE with FAIL_PERMISSION", () => {
    const rmp = new Rmp(4096);
    expect(
      rmpupdate(
        rmp,
        512,
        { assigned: true, size2m: true, immutable: true, asid: 3, gfn: 0x400 },
        never,
      ),
    ).toBe(RMP_SUCCESS);
    expect(
      rmpupdate(
        rmp,
        512,
        { assigned: false, size2m: true, immutable: false, asid: 0, gfn: 0 },
        never,
      ),
    ).toBe(FAIL_PERMISSION);
    expect(
      rmpupdate(
        rmp,
        600,
        { assigned: false, size2m: false, immutable: false, asid: 0, gfn: 0 },
        never,
      ),
    ).toBe(FAIL_PERMISSION);
    expect(rmp.lookup(600)).toMatchObject({
      assigned: true,
      size2m: true,
      immutable: true,
      pfn: 512,
    });
  });
});

describe("a page the guest never validated", () => {
  for (const write of [false, true]) {
    it(`a private ${write ? "write" : "read"}: #VC with error code 0x404 (SVM_EXIT_PAGE_NOT_VALIDATED), access result "exception"`, () => {
      const { vm, be } = makeSevVm();
      const raised = raisedBy(be, () => expect(access(vm, 0x5000, write)).toBe("exception"));
      expect(raised).toEqual([
        { kind: "#VC", gpa: 0x5000, errorCode: BigInt(SVM_EXIT_PAGE_NOT_VALIDATED) },
      ]);
      expect(raised[0]!.errorCode).toBe(0x404n);
      expect(vm.vcpus[0]!.exceptions).toBe(1);
      // The two firmware pages' RMPUPDATEs (the response page, the guest context), then the page's.
      expect(be.stats().calls).toMatchObject({ RMPUPDATE: 3, "#VC": 1 });
      // The page is the guest's (assigned by sev_gmem_prepare), just not validated.
      expect(be.rmp.raw(gmemPfn(vm, 5))).toMatchObject({
        assigned: true,
        validated: false,
        asid: be.asid,
        gfn: 5,
      });
      expect(accept(vm, 0x5000)).toBe("ok");
      expect(access(vm, 0x5000, write)).toBe("ok");
    });
  }

  it("a page the host re-assigned behind the guest's back (RMPUPDATE clears Validated): #VC 0x404", () => {
    const { vm, be } = makeSevVm();
    expect(accept(vm, 0x6000)).toBe("ok");
    expect(access(vm, 0x6000, true)).toBe("ok");
    expect(be.rawCall(vm, "RMPUPDATE.PRIVATE", { gpa: 0x6000, page: "mapped" }).status).toBe(
      "SUCCESS",
    );
    expect(be.rmp.raw(gmemPfn(vm, 6))).toMatchObject({
      assigned: true,
      validated: false,
      asid: be.asid,
      gfn: 6,
    });
    const raised = raisedBy(be, () => expect(access(vm, 0x6000, false)).toBe("exception"));
    expect(raised).toEqual([{ kind: "#VC", gpa: 0x6000, errorCode: 0x404n }]);
  });
});

describe("RMPUPDATE, PSMASH and PVALIDATE rules (docs/sev-snp.md §1.2)", () => {
  const npfArgs = [NPF_PRIVATE, PFERR_RMP, PFERR_SIZEM] as const;

  it("RMPUPDATE of a 2M entry over assigned 4K entries: FAIL_OVERLAP, nothing changes", () => {
    const { vm, be } = makeSevVm({ hostPageLevel: 1 });
    expect(accept(vm, 0x201000)).toBe("ok");
    const head = gmemPfn(vm, 0x200);
    expect(head % 512).toBe(0);
    expect(be.rmp.raw(head + 1)).toMatchObject({ assigned: true, size2m: false, validated: true });
    expect(
      be.rawCall(vm, "RMPUPDATE.PRIVATE", { gpa: 0x200000, page: head, level: 1 }).status,
    ).toBe("FAIL_OVERLAP");
    expect(be.rawCall(vm, "RMPUPDATE.SHARED", { page: head, level: 1 }).status).toBe(
      "FAIL_OVERLAP",
    );
    expect(be.rmp.raw(head).assigned).toBe(false);
    expect(be.rmp.raw(head + 1)).toMatchObject({
      assigned: true,
      size2m: false,
      validated: true,
      gfn: 0x201,
    });
    expect(be.stats().errors).toEqual({ FAIL_OVERLAP: 2 });
    // A 2M entry must start at a 2M-aligned frame.
    expect(
      be.rawCall(vm, "RMPUPDATE.PRIVATE", { gpa: 0x201000, page: head + 1, level: 1 }).status,
    ).toBe("FAIL_INPUT");
  });

  it("a 4K RMPUPDATE inside an assigned 2M entry: FAIL_OVERLAP until PSMASH", () => {
    const { vm, be } = makeSevVm({ hostPageLevel: 2 });
    expect(access(vm, 0x200000, false)).toBe("exception");
    const head = gmemPfn(vm, 0x200);
    const entry = be.rmp.raw(head);
    expect(entry).toMatchObject({
      assigned: true,
      size2m: true,
      validated: false,
      asid: be.asid,
      gfn: 0x200,
    });
    expect(be.rawCall(vm, "RMPUPDATE.SHARED", { page: head + 7 }).status).toBe("FAIL_OVERLAP");
    expect(be.rawCall(vm, "RMPUPDATE.PRIVATE", { gpa: 0x207000, page: head + 7 }).status).toBe(
      "FAIL_OVERLAP",
    );
    expect(be.rawCall(vm, "RMPUPDATE.SHARED", { page: head }).status).toBe("FAIL_OVERLAP");
    expect(be.rmp.raw(head)).toEqual(entry);
    expect(be.rmp.lookup(head + 7)).toEqual(entry);
    expect(be.rawCall(vm, "PSMASH", { page: head }).status).toBe("SUCCESS");
    expect(be.rawCall(vm, "RMPUPDATE.SHARED", { page: head + 7 }).status).toBe("SUCCESS");
    expect(be.rmp.lookup(head + 7).assigned).toBe(false);
    expect(be.rmp.lookup(head + 8)).toMatchObject({ assigned: true, size2m: false, gfn: 0x208 });
    expect(be.stats().errors).toEqual({ FAIL_OVERLAP: 3 });
  });

  it("PSMASH keeps Validated and gives consecutive GPAs; the guest keeps using the pages without re-validating", () => {
    const { vm, be } = makeSevVm({ hostPageLevel: 2 });
    expect(access(vm, 0x200000, false)).toBe("exception");
    const head = gmemPfn(vm, 0x200);
    // A 2M PVALIDATE by the guest (the backend's accept op is 4K only, so call the instruction).
    expect(pvalidate(be.rmp, be.asid, 0x200, head, true, true, ...npfArgs)).toEqual({ kind: "ok" });
    expect(be.rmp.raw(head)).toMatchObject({ assigned: true, size2m: true, validated: true });
    expect(nptLeaf(vm, 0x3ff)).toMatchObject({ level: 2, pfn: head });

    expect(be.psmash(head)).toBe(RMP_SUCCESS);
    for (let i = 0; i < 512; i++) {
      expect(be.rmp.raw(head + i)).toEqual({
        assigned: true,
        size2m: false,
        immutable: false,
        validated: true,
        vmsa: false,
        asid: be.asid,
        gfn: 0x200 + i,
        pfn: head + i,
      });
    }
    // No merge back, and a second PSMASH has no 2M entry to split: FAIL_BADADDR (7), while a
    // frame that is not 2M-aligned is FAIL_INPUT (1).
    expect(be.psmash(head)).toBe(FAIL_BADADDR);
    expect(FAIL_BADADDR).toBe(7);
    expect(be.psmash(head + 1)).toBe(FAIL_INPUT);

    // The 2M NPT leaf now sits over 4K entries: one #NPF with RMP (no SIZEM: an access, not a
    // PVALIDATE), KVM splits, the access completes without any PVALIDATE because Validated survived.
    const raised = raisedBy(be, () => expect(access(vm, 0x3ff000, true)).toBe("ok"));
    expect(raised).toEqual([
      { kind: "#NPF", gpa: 0x3ff000, errorCode: NPF_PRIVATE | PFERR_RMP | PFERR_WRITE },
    ]);
    expect(nptLeaf(vm, 0x3ff)).toMatchObject({ level: 1, pfn: head + 511 });
    expect(access(vm, 0x250000, false)).toBe("ok");
    expect(be.stats().calls.PVALIDATE).toBeUndefined();
  });

  it("PVALIDATE 2M over 4K entries: FAIL_SIZEMISMATCH; 4K over a 2M entry: #NPF with SIZEM", () => {
    const { vm, be } = makeSevVm({ hostPageLevel: 1 });
    expect(accept(vm, 0x200000)).toBe("ok");
    const head = gmemPfn(vm, 0x200);
    expect(pvalidate(be.rmp, be.asid, 0x200, head, true, true, ...npfArgs)).toEqual({
      kind: "status",
      status: FAIL_SIZEMISMATCH,
    });
    expect(pvalidate(be.rmp, be.asid, 0x200, head, true, false, ...npfArgs)).toEqual({
      kind: "status",
      status: FAIL_SIZEMISMATCH,
    });
    expect(be.rmp.raw(head).validated).toBe(true);

    const big = makeSevVm({ hostPageLevel: 2 });
    expect(access(big.vm, 0x200000, false)).toBe("exception");
    const bigHead = gmemPfn(big.vm, 0x200);
    expect(pvalidate(big.be.rmp, big.be.asid, 0x205, bigHead + 5, false, true, ...npfArgs)).toEqual(
      { kind: "npf", errorCode: NPF_PRIVATE | PFERR_RMP | PFERR_SIZEM },
    );
    expect(big.be.rmp.raw(bigHead)).toMatchObject({ size2m: true, validated: false });
    // Another ASID or the wrong GPA: #NPF without SIZEM.
    expect(
      pvalidate(big.be.rmp, big.be.asid + 1, 0x205, bigHead + 5, false, true, ...npfArgs),
    ).toEqual({ kind: "npf", errorCode: NPF_PRIVATE | PFERR_RMP });
    expect(pvalidate(big.be.rmp, big.be.asid, 0x206, bigHead + 5, false, true, ...npfArgs)).toEqual(
      { kind: "npf", errorCode: NPF_PRIVATE | PFERR_RMP },
    );
  });

  it("PVALIDATE twice: FAIL_NOUPDATE, a failure the Linux guest terminates on (pvalidate_4k_page, GHCB_TERM_PVALIDATE)", () => {
    const { vm, be } = makeSevVm();
    expect(accept(vm, 0x7000)).toBe("ok");
    expect(accept(vm, 0x7000)).toBe("exception");
    expect(be.stats().calls.PVALIDATE).toBe(2);
    expect(be.stats().errors).toEqual({ FAIL_NOUPDATE: 1 });
    expect(be.lastError()).toBe("PVALIDATE failed: FAIL_NOUPDATE");
    expect(vm.vcpus[0]!.exceptions).toBe(1);
    const pfn = gmemPfn(vm, 7);
    expect(pvalidate(be.rmp, be.asid, 7, pfn, false, true, ...npfArgs)).toEqual({
      kind: "status",
      status: FAIL_NOUPDATE,
    });
    // Rescinding works once, then is FAIL_NOUPDATE too.
    expect(pvalidate(be.rmp, be.asid, 7, pfn, false, false, ...npfArgs)).toEqual({ kind: "ok" });
    expect(pvalidate(be.rmp, be.asid, 7, pfn, false, false, ...npfArgs)).toEqual({
      kind: "status",
      status: FAIL_NOUPDATE,
    });
    expect(be.rmp.raw(pfn).validated).toBe(false);
  });

  describe("on a bare RMP", () => {
    it("a shared 2M RMPUPDATE keeps its page size (rmp_make_shared at PG_LEVEL_2M); it governs nothing, and a 4K assignment inside it is allowed", () => {
      const rmp = new Rmp(2048);
      expect(
        rmpupdate(
          rmp,
          512,
          { assigned: true, size2m: true, immutable: false, asid: 1, gfn: 0x1000 },
          never,
        ),
      ).toBe(RMP_SUCCESS);
      expect(
        rmpupdate(
          rmp,
          512,
          { assigned: false, size2m: true, immutable: false, asid: 0, gfn: 0 },
          never,
        ),
      ).toBe(RMP_SUCCESS);
      expect(rmp.raw(512)).toMatchObject({
        assigned: false,
        size2m: true,
        asid: 0,
        gfn: 0,
        validated: false,
      });
      expect(rmp.governing(512 + 7)).toBe(512 + 7);
      expect(
        rmpupdate(
          rmp,
          512 + 7,
          { assigned: true, size2m: false, immutable: false, asid: 1, gfn: 0x1007 },
          never,
        ),
      ).toBe(RMP_SUCCESS);
      expect(rmp.lookup(512 + 7)).toMatchObject({ assigned: true, size2m: false, gfn: 0x1007 });
    });

    it("2M over assigned 4K: FAIL_OVERLAP; 4K inside 2M: FAIL_OVERLAP; PSMASH then 4K works; freed frames are unassigned", () => {
      const rmp = new Rmp(2048);
      expect(
        rmpupdate(
          rmp,
          512 + 300,
          { assigned: true, size2m: false, immutable: false, asid: 1, gfn: 0x1000 + 300 },
          never,
        ),
      ).toBe(RMP_SUCCESS);
      expect(
        rmpupdate(
          rmp,
          512,
          { assigned: true, size2m: true, immutable: false, asid: 1, gfn: 0x1000 },
          never,
        ),
      ).toBe(FAIL_OVERLAP);
      expect(rmp.raw(512).assigned).toBe(false);
      // Made shared again, the 2M update goes through.
      expect(
        rmpupdate(
          rmp,
          512 + 300,
          { assigned: false, size2m: false, immutable: false, asid: 0, gfn: 0 },
          never,
        ),
      ).toBe(RMP_SUCCESS);
      expect(
        rmpupdate(
          rmp,
          512,
          { assigned: true, size2m: true, immutable: false, asid: 1, gfn: 0x1000 },
          never,
        ),
      ).toBe(RMP_SUCCESS);
      expect(rmp.lookup(512 + 300)).toMatchObject({
        assigned: true,
        size2m: true,
        pfn: 512,
        gfn: 0x1000,
      });
      expect(
        rmpupdate(
          rmp,
          512 + 300,
          { assigned: false, size2m: false, immutable: false, asid: 0, gfn: 0 },
          never,
        ),
      ).toBe(FAIL_OVERLAP);
      expect(
        rmpupdate(
          rmp,
          512 + 300,
          { assigned: true, size2m: false, immutable: false, asid: 2, gfn: 7 },
          never,
        ),
      ).toBe(FAIL_OVERLAP);
      expect(psmash(rmp, 512)).toBe(RMP_SUCCESS);
      expect(rmp.raw(512 + 300)).toMatchObject({
        assigned: true,
        size2m: false,
        asid: 1,
        gfn: 0x1000 + 300,
      });
      expect(
        rmpupdate(
          rmp,
          512 + 300,
          { assigned: false, size2m: false, immutable: false, asid: 0, gfn: 0 },
          never,
        ),
      ).toBe(RMP_SUCCESS);
      expect(rmp.raw(512 + 300)).toEqual({
        assigned: false,
        size2m: false,
        immutable: false,
        validated: false,
        vmsa: false,
        asid: 0,
        gfn: 0,
        pfn: 512 + 300,
      });
    });

    it("RMPUPDATE always clears Validated; a busy page is FAIL_INUSE; out of range is FAIL_INPUT", () => {
      const rmp = new Rmp(1024);
      const u = { assigned: true, size2m: false, immutable: false, asid: 1, gfn: 5 };
      expect(rmpupdate(rmp, 5, u, never)).toBe(RMP_SUCCESS);
      expect(pvalidate(rmp, 1, 5, 5, false, true, ...npfArgs)).toEqual({ kind: "ok" });
      expect(rmp.raw(5).validated).toBe(true);
      expect(rmpupdate(rmp, 5, u, never)).toBe(RMP_SUCCESS);
      expect(rmp.raw(5).validated).toBe(false);
      expect(rmpupdate(rmp, 5, u, (pfn) => pfn === 5)).toBe(FAIL_INUSE);
      expect(rmpupdate(rmp, 1024, u, never)).toBe(FAIL_INPUT);
    });
  });
});

describe("tearing the guest down gives every frame back unassigned", () => {
  it("teardown: no frame of the ASID stays assigned, and the frames are free", () => {
    const { host, vm, be } = makeSevVm({ hostPageLevel: 2 });
    expect(accept(vm, 0x1000)).toBe("ok");
    expect(access(vm, 0x400000, false)).toBe("exception");
    const frames = [gmemPfn(vm, 1), gmemPfn(vm, 0x400)];
    runToEnd(hostOps.teardown(vm, vm.hostCtx));
    expect([...be.rmp.assigned()].filter((e) => e.asid === be.asid)).toEqual([]);
    for (const pfn of frames) {
      expect(be.rmp.raw(pfn).assigned).toBe(false);
      expect(host.frames.ownerOfPfn(pfn)).toBe(OWNER_FREE);
    }
    expect(checkInvariants(vm, { final: true }).violations).toEqual([]);
  });
});
