/**
 * Random operation sequences on a SEV VM, with 4 KiB and 2 MiB backing: private reads and writes,
 * PVALIDATE, shared accesses, conversions private↔shared, zaps, eager splits, huge-page recovery
 * and aging. After every op the core's and the SEV backend's invariants hold (a private NPT leaf
 * is covered by an RMP entry of this ASID, at this GPA, no smaller than the leaf; no 2M entry
 * overlaps assigned 4K entries; no freed frame stays assigned); at the end they hold with
 * `final: true`, and after teardown no frame of the VM's ASID is assigned.
 *
 * A small model predicts each guest access: a private access completes iff the page was
 * validated since it last became private (conversions to shared punch the page out of
 * guest_memfd, whose RMPUPDATE clears Validated; PSMASH keeps it), otherwise it is #VC 0x404.
 * A shared access always completes; it converts a private page to shared unless it is a read
 * through a present private leaf (C=0 reads are not RMP-checked).
 *
 * On 4 KiB backing nothing is ever mapped huge, so split and recover find nothing to do there;
 * on 2 MiB backing recover is left out because of the known core bug tested at the end.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  Host,
  Vm,
  checkInvariants,
  hostOps,
  runToEnd,
  type AccessOutcome,
} from "@tdpemu/core/testing";
import {
  PFERR_GUEST_FINAL,
  PFERR_PRESENT,
  PFERR_RMP,
  PFERR_USER,
  PFERR_WRITE,
  type SevBackend,
} from "../src/testing.js";
import { MiB, accept, access, gmemPfn, newSev, nptLeaf } from "./sev-helpers.js";

const NPAGES = 2048; // 8 MiB: four 2 MiB ranges
const SEED = 0x5e5;
const RUNS = 80;

type Op =
  | { k: "access"; gfn: number; write: boolean; shared: boolean }
  | { k: "accept"; gfn: number }
  | { k: "convert"; gfn: number; n: number; toPrivate: boolean }
  | { k: "zap"; gfn: number; n: number }
  | { k: "split"; gfn: number; n: number }
  | { k: "recover"; gfn: number; n: number }
  | { k: "age"; gfn: number; n: number };

/** GFNs biased to 2 MiB edges, where 2M and 4K entries meet. */
const gfnArb = fc.oneof(
  { arbitrary: fc.integer({ min: 0, max: NPAGES - 1 }), weight: 3 },
  {
    arbitrary: fc.constantFrom(0, 1, 2, 0x1ff, 0x200, 0x201, 0x3ff, 0x400, 0x5ff, 0x600, 0x7ff),
    weight: 2,
  },
);
const countArb = fc.oneof(
  fc.integer({ min: 1, max: 8 }),
  fc.constant(512),
  fc.integer({ min: 1, max: 1100 }),
);

function opArb(withRecover: boolean): fc.Arbitrary<Op> {
  const range = <K extends "zap" | "split" | "recover" | "age">(k: K) =>
    fc.record({ k: fc.constant(k), gfn: gfnArb, n: countArb });
  const arbs: { arbitrary: fc.Arbitrary<Op>; weight: number }[] = [
    {
      arbitrary: fc.record({
        k: fc.constant("access" as const),
        gfn: gfnArb,
        write: fc.boolean(),
        shared: fc.constant(false),
      }),
      weight: 6,
    },
    {
      arbitrary: fc.record({
        k: fc.constant("access" as const),
        gfn: gfnArb,
        write: fc.boolean(),
        shared: fc.constant(true),
      }),
      weight: 2,
    },
    { arbitrary: fc.record({ k: fc.constant("accept" as const), gfn: gfnArb }), weight: 5 },
    {
      arbitrary: fc.record({
        k: fc.constant("convert" as const),
        gfn: gfnArb,
        n: countArb,
        toPrivate: fc.boolean(),
      }),
      weight: 3,
    },
    { arbitrary: range("zap"), weight: 2 },
    { arbitrary: range("split"), weight: 1 },
    { arbitrary: range("age"), weight: 1 },
  ];
  if (withRecover) arbs.push({ arbitrary: range("recover"), weight: 1 });
  return fc.oneof(...arbs);
}

let opsRun = 0;

function newVm(hostPageLevel: 1 | 2): { vm: Vm; be: SevBackend } {
  const host = new Host({ memory: 64 * MiB });
  const be = newSev(host);
  const vm = new Vm(host, { memory: NPAGES * 4096, gpaw: 48, vcpus: 1, hostPageLevel }, be);
  return { vm, be };
}

/** Runs one op, checks its outcome against the model, and updates the model. */
function step(vm: Vm, op: Op, validated: Set<number>): void {
  const ctx = vm.hostCtx;
  const end = (o: { gfn: number; n: number }) => Math.min(o.gfn + o.n, NPAGES);
  switch (op.k) {
    case "access": {
      const readThroughPrivateLeaf =
        op.shared && !op.write && vm.attributes.isPrivate(op.gfn) && nptLeaf(vm, op.gfn) !== null;
      const got: AccessOutcome = access(vm, op.gfn * 4096, op.write, op.shared);
      if (readThroughPrivateLeaf) {
        // A C=0 read is not checked against the RMP (docs/sev-snp.md §1.3, check 2): through the
        // present private leaf it completes (the guest reads ciphertext) and nothing exits.
        expect(got).toBe("ok");
        expect(vm.attributes.isPrivate(op.gfn)).toBe(true);
      } else if (op.shared) {
        // Otherwise a shared access to a private page exits (an EPT violation, or an #NPF with
        // the RMP bit for a C=0 write to an assigned frame) to KVM_EXIT_MEMORY_FAULT, and the
        // VMM converts the page to shared, punching it out of guest_memfd.
        expect(got).toBe("ok");
        validated.delete(op.gfn);
        expect(vm.attributes.isPrivate(op.gfn)).toBe(false);
      } else {
        expect(got).toBe(validated.has(op.gfn) ? "ok" : "exception");
        expect(vm.attributes.isPrivate(op.gfn)).toBe(true);
      }
      break;
    }
    case "accept":
      // A page validated already: PVALIDATE gives FAIL_NOUPDATE, which the guest takes as fatal.
      expect(accept(vm, op.gfn * 4096)).toBe(validated.has(op.gfn) ? "exception" : "ok");
      validated.add(op.gfn);
      expect(vm.attributes.isPrivate(op.gfn)).toBe(true);
      break;
    case "convert":
      runToEnd(hostOps.convertMemory(vm, ctx, op.gfn, end(op), op.toPrivate));
      if (!op.toPrivate) for (let g = op.gfn; g < end(op); g++) validated.delete(g);
      break;
    case "zap":
      runToEnd(hostOps.zapGfnRange(vm, ctx, op.gfn, end(op)));
      break;
    case "split":
      runToEnd(hostOps.split(vm, ctx, op.gfn, end(op)));
      break;
    case "recover":
      runToEnd(hostOps.recover(vm, ctx, op.gfn, end(op)));
      break;
    case "age":
      runToEnd(hostOps.age(vm, ctx, op.gfn, end(op)));
      break;
  }
}

/** The RMP agrees with the model: every validated page's frame is assigned to the VM, validated, at its GFN. */
function checkValidated(vm: Vm, be: SevBackend, validated: Set<number>): void {
  for (const gfn of validated) {
    const pfn = gmemPfn(vm, gfn);
    const e = be.rmp.lookup(pfn);
    const at = e.size2m ? e.gfn + (pfn - e.pfn) : e.gfn;
    expect({
      gfn,
      private: vm.attributes.isPrivate(gfn),
      assigned: e.assigned,
      validated: e.validated,
      asid: e.asid,
      at,
    }).toEqual({ gfn, private: true, assigned: true, validated: true, asid: be.asid, at: gfn });
  }
}

function runSequence(hostPageLevel: 1 | 2, ops: Op[], teardown: boolean): void {
  const { vm, be } = newVm(hostPageLevel);
  const validated = new Set<number>();
  for (const op of ops) {
    step(vm, op, validated);
    opsRun++;
    const v = checkInvariants(vm, { final: false }).violations;
    if (v.length > 0)
      throw new Error(
        `after ${JSON.stringify(op)}: ${v.map((x) => `${x.check}: ${x.message}`).join("; ")}`,
      );
  }
  checkValidated(vm, be, validated);
  expect(checkInvariants(vm, { final: true }).violations).toEqual([]);
  if (teardown) {
    runToEnd(hostOps.teardown(vm, vm.hostCtx));
    expect(checkInvariants(vm, { final: true }).violations).toEqual([]);
    expect([...be.rmp.assigned()].filter((e) => e.asid === be.asid)).toEqual([]);
  }
}

describe("random operation sequences on a SEV VM keep every invariant", () => {
  it("4 KiB backing (recover included)", () => {
    const before = opsRun;
    fc.assert(
      fc.property(
        fc.array(opArb(true), { minLength: 20, maxLength: 60 }),
        fc.boolean(),
        (ops, teardown) => runSequence(1, ops, teardown),
      ),
      { seed: SEED, numRuns: RUNS },
    );
    // Each op was followed by a full invariant check.
    expect(opsRun - before).toBeGreaterThan(1000);
  });

  // hostOps.recover is left out here: on 2 MiB backing it can map private memory huge over 4K RMP
  // entries (the known-bug test below).
  it("2 MiB backing", () => {
    const before = opsRun;
    fc.assert(
      fc.property(
        fc.array(opArb(false), { minLength: 20, maxLength: 60 }),
        fc.boolean(),
        (ops, teardown) => runSequence(2, ops, teardown),
      ),
      { seed: SEED, numRuns: RUNS },
    );
    expect(opsRun - before).toBeGreaterThan(1000);
  });
});

describe("core bugs the SEV tests found, now fixed (regression tests)", () => {
  /**
   * host-ops.ts `recover()` used to compute the level with `maxMappingLevel(vm, vm.backend, slot, gfn,
   * false, slot.shared.peekPfn(...))`: always as if the GFN were shared, so SEV's level cap
   * (`maxMappingLevel` = the RMP entry's size, docs/sev-snp.md §2, item 4) was never consulted. Once the
   * shared backing of a 2 MiB range is populated (the range was shared once), recovering a range
   * of private 4K leaves over PSMASHed (4K) RMP entries built a 2M private leaf over 4K entries,
   * which breaks the §3 invariant "a private NPT leaf implies an RMP entry of the same size".
   */
  it("huge-page recovery: recover over private 4K leaves backed by 4K RMP entries keeps them 4K", () => {
    const { vm, be } = newVm(2);
    expect(accept(vm, 0x200000)).toBe("ok"); // 2M entry, SIZEM, PSMASH: 4K RMP entries
    expect(access(vm, 0x200000, true)).toBe("ok");
    expect(be.rmp.lookup(gmemPfn(vm, 0x200)).size2m).toBe(false);
    runToEnd(hostOps.convertMemory(vm, vm.hostCtx, 0x201, 0x202, false));
    expect(access(vm, 0x201000, true, true)).toBe("ok"); // populates the shared backing's 2 MiB page
    runToEnd(hostOps.convertMemory(vm, vm.hostCtx, 0x201, 0x202, true));
    expect(checkInvariants(vm, { final: false }).violations).toEqual([]);
    expect(nptLeaf(vm, 0x200)).toMatchObject({ level: 1 });

    runToEnd(hostOps.recover(vm, vm.hostCtx, 0x200, 0x400));

    // The bug installed a 2M leaf here ("2M private leaf at gfn 0x200 over a 4K RMP entry").
    expect(nptLeaf(vm, 0x200)).toMatchObject({ level: 1 });
    expect(checkInvariants(vm, { final: false }).violations).toEqual([]);
  });

  /**
   * guest-access.ts used to run the backend's RMP fault fixup after every fault with the RMP bit,
   * even when the fault handler returned RET_PF_MEMORY_FAULT_EXIT (the exit to userspace for an
   * implicit conversion). KVM calls `sev_handle_rmp_fault` only after a handled fault
   * (`arch/x86/kvm/svm/svm.c`: `npf_interception()`: `if (rc > 0 && error_code &
   * PFERR_GUEST_RMP_MASK)`; rc == 0 means "a userspace exit is needed ... do that first before
   * updating the RMP table"). So a C=0 write to a never-used page of a 2M RMP entry PSMASHed the
   * guest's 2M entry for nothing.
   */
  it("memory-fault exit: a C=0 write that exits to userspace does not PSMASH the 2M RMP entry", () => {
    const { vm, be } = newVm(2);
    expect(access(vm, 0x200000, false)).toBe("exception"); // 2M RMP entry, 2M NPT leaf, not validated
    const head = gmemPfn(vm, 0x200);
    expect(be.rmp.raw(head)).toMatchObject({ assigned: true, size2m: true });
    const n = be.raisedTotal;
    // GFN 0x201 was never used privately: its conversion to shared punches nothing.
    expect(access(vm, 0x201000, true, true)).toBe("ok");
    expect(be.exceptionsSince(n)).toEqual([
      {
        kind: "#NPF",
        gpa: 0x201000,
        errorCode: PFERR_GUEST_FINAL | PFERR_RMP | PFERR_USER | PFERR_WRITE | PFERR_PRESENT,
      },
    ]);
    expect(vm.attributes.isPrivate(0x201)).toBe(false);
    expect(checkInvariants(vm, { final: false }).violations).toEqual([]);
    // The bug ran PSMASH after the memory-fault exit, which left the entry 4K.
    expect(be.stats().calls.PSMASH).toBeUndefined();
    expect(be.rmp.raw(head)).toMatchObject({ assigned: true, size2m: true });
  });
});
