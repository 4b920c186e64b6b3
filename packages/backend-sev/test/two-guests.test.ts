/**
 * Two SEV guests on one host share one RMP and one frame allocator but get distinct ASIDs. Each
 * validates and writes its own private memory; a host that points either guest's NPT at the
 * other's frames gets a #NPF (docs/sev-snp.md §1.3: ASID check) on every private access, and a shared
 * write to such a frame is refused as well (check 2). Tearing one guest down gives its frames
 * back to the host unassigned and leaves the other guest untouched.
 */
import { describe, expect, it } from "vitest";
import {
  GuestLivelock,
  Host,
  OWNER_FREE,
  checkInvariants,
  hostOps,
  runToEnd,
  type Vm,
} from "@tdpemu/core/testing";
import {
  PFERR_ENC,
  PFERR_GUEST_FINAL,
  PFERR_PRESENT,
  PFERR_RMP,
  PFERR_USER,
  PFERR_WRITE,
  type SevBackend,
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
  type SevFixture,
} from "./sev-helpers.js";

/** GFNs each guest validates and writes: two 2 MiB ranges, edges included. */
const PAGES = [0x0, 0x1, 0x2, 0x1ff, 0x200, 0x201, 0x3ff];
const NPF_BASE = PFERR_GUEST_FINAL | PFERR_PRESENT | PFERR_USER;

function violations(vm: Vm, final = false): string[] {
  return checkInvariants(vm, { final }).violations.map((v) => `${v.check}: ${v.message}`);
}

function twoGuests(hostPageLevel: 1 | 2): { host: Host; one: SevFixture; two: SevFixture } {
  const host = new Host({ memory: 256 * MiB });
  const one = makeSevVm({ host, hostPageLevel, memory: 16 * MiB });
  const two = makeSevVm({ host, hostPageLevel, memory: 16 * MiB });
  for (const g of [one, two]) {
    for (const gfn of PAGES) {
      expect(accept(g.vm, gfn * 4096)).toBe("ok");
      expect(access(g.vm, gfn * 4096, true)).toBe("ok");
    }
  }
  return { host, one, two };
}

/** Every frame that backs one of the guest's private pages, and the ones the RMP gives its ASID. */
function framesOf(g: SevFixture): Set<number> {
  const out = new Set<number>();
  for (const gfn of PAGES) out.add(gmemPfn(g.vm, gfn));
  for (const e of g.be.rmp.assigned())
    if (e.asid === g.be.asid) for (let i = 0; i < (e.size2m ? 512 : 1); i++) out.add(e.pfn + i);
  return out;
}

function raisedBy(be: SevBackend, fn: () => void) {
  const n = be.raisedTotal;
  fn();
  return be.exceptionsSince(n);
}

for (const hostPageLevel of [1, 2] as const) {
  describe(`two SEV guests on one host (${hostPageLevel === 1 ? "4 KiB" : "2 MiB"} backing)`, () => {
    it("each guest's pages are its own: distinct ASIDs and frames, validated at its own GPAs; invariants hold for both", () => {
      const { host, one, two } = twoGuests(hostPageLevel);
      expect(one.be.rmp).toBe(two.be.rmp);
      expect(one.be.asid).toBeGreaterThan(0);
      expect(two.be.asid).toBeGreaterThan(0);
      expect(two.be.asid).not.toBe(one.be.asid);
      for (const gfn of PAGES) {
        const f1 = gmemPfn(one.vm, gfn);
        const f2 = gmemPfn(two.vm, gfn);
        expect(f1).not.toBe(f2);
        expect(one.be.rmp.lookup(f1)).toMatchObject({
          assigned: true,
          size2m: false,
          validated: true,
          asid: one.be.asid,
        });
        expect(two.be.rmp.lookup(f2)).toMatchObject({
          assigned: true,
          size2m: false,
          validated: true,
          asid: two.be.asid,
        });
        expect(one.be.rmp.lookup(f1).gfn).toBe(gfn);
        expect(two.be.rmp.lookup(f2).gfn).toBe(gfn);
        expect(host.frames.ownerOfPfn(f1)).toBe(one.vm.owner);
        expect(host.frames.ownerOfPfn(f2)).toBe(two.vm.owner);
      }
      const s1 = framesOf(one);
      const s2 = framesOf(two);
      for (const pfn of s1) expect(s2.has(pfn)).toBe(false);
      // Every frame the RMP gives an ASID belongs to that ASID's VM.
      for (const e of one.be.rmp.assigned()) {
        // ASID 0: a firmware page (a guest context, a guest-request response page), the VM's that
        // made it.
        const firmware = (be: typeof one.be) =>
          e.pfn === be.contextPage || e.pfn === be.responsePage;
        const owner =
          e.asid === one.be.asid || firmware(one.be)
            ? one.vm.owner
            : e.asid === two.be.asid || firmware(two.be)
              ? two.vm.owner
              : -1;
        expect(host.frames.ownerOfPfn(e.pfn)).toBe(owner);
      }
      expect(violations(one.vm)).toEqual([]);
      expect(violations(two.vm)).toEqual([]);
      expect(violations(one.vm, true)).toEqual([]);
      expect(violations(two.vm, true)).toEqual([]);
    });

    for (const dir of ["2 → 1", "1 → 2"] as const) {
      it(`guest ${dir}: a forged NPT leaf to the other guest's frame gives #NPF RMP (ASID) on private reads, writes and PVALIDATE`, () => {
        const { one, two } = twoGuests(hostPageLevel);
        const [attacker, victim] = dir === "2 → 1" ? [two, one] : [one, two];
        const victimRaised = victim.be.raisedTotal;
        for (const gfn of [0x1, 0x201]) {
          const target = gmemPfn(victim.vm, gfn);
          const entry = victim.be.rmp.lookup(target);
          expect(nptLeaf(attacker.vm, gfn)).toMatchObject({
            level: 1,
            pfn: gmemPfn(attacker.vm, gfn),
          });
          const w = writeNptLeaf(attacker.vm, gfn, 1, target);
          for (const op of ["read", "write", "pvalidate"] as const) {
            const raised = raisedBy(attacker.be, () => {
              expect(() =>
                op === "pvalidate"
                  ? accept(attacker.vm, gfn * 4096)
                  : access(attacker.vm, gfn * 4096, op === "write"),
              ).toThrow(GuestLivelock);
            });
            const code = NPF_BASE | PFERR_ENC | PFERR_RMP | (op === "write" ? PFERR_WRITE : 0n);
            expect(raised.length).toBeGreaterThan(1);
            for (const ex of raised)
              expect(ex).toEqual({ kind: "#NPF", gpa: gfn * 4096, errorCode: code });
          }
          // The victim's entry is as it was (same GFN in both guests: only the ASID differs).
          expect(victim.be.rmp.lookup(target)).toEqual(entry);
          expect(entry.asid).toBe(victim.be.asid);
          expect(violations(attacker.vm).some((v) => v.startsWith("leaf-frame-owned-by-vm"))).toBe(
            true,
          );
          w.restore();
        }
        expect(victim.be.raisedTotal).toBe(victimRaised);
        expect(violations(one.vm)).toEqual([]);
        expect(violations(two.vm)).toEqual([]);
        for (const g of [one, two])
          for (const gfn of PAGES) expect(access(g.vm, gfn * 4096, true)).toBe("ok");
      });
    }

    it("a shared (C=0) mapping of the other guest's frame: writes take #NPF RMP without ENC; reads are not RMP-checked (ciphertext)", () => {
      const { one, two } = twoGuests(hostPageLevel);
      const gfn = 0x10;
      // Guest 2 uses gfn 0x10 as shared memory; the host then points that leaf at guest 1's frame.
      expect(access(two.vm, gfn * 4096, true, true)).toBe("ok");
      expect(nptLeaf(two.vm, gfn)).toMatchObject({ level: 1, pfn: sharedPfn(two.vm, gfn) });
      const target = gmemPfn(one.vm, 0x2);
      const w = writeNptLeaf(two.vm, gfn, 1, target);
      const raised = raisedBy(two.be, () =>
        expect(() => access(two.vm, gfn * 4096, true, true)).toThrow(GuestLivelock),
      );
      expect(raised.length).toBeGreaterThan(1);
      for (const ex of raised)
        expect(ex).toEqual({
          kind: "#NPF",
          gpa: gfn * 4096,
          errorCode: NPF_BASE | PFERR_RMP | PFERR_WRITE,
        });
      // docs/sev-snp.md §1.3, check 2: shared reads are not checked; they see guest 1's
      // ciphertext.
      expect(access(two.vm, gfn * 4096, false, true)).toBe("ok");
      expect(two.be.rawCall(two.vm, "HOST.READ", { page: target }).detail).toBe("ciphertext");
      w.restore();
      expect(one.be.rmp.lookup(target)).toMatchObject({
        assigned: true,
        validated: true,
        asid: one.be.asid,
        gfn: 0x2,
      });
      expect(violations(two.vm)).toEqual([]);
    });

    it("tearing one guest down frees its frames unassigned and leaves the other intact", () => {
      const { host, one, two } = twoGuests(hostPageLevel);
      const frames1 = framesOf(one);
      const frames2 = framesOf(two);
      const rmp2Before = [...frames2].map((pfn) => one.be.rmp.lookup(pfn));
      const raised2 = two.be.raisedTotal;
      expect(frames1.size).toBeGreaterThan(0);

      runToEnd(hostOps.teardown(one.vm, one.vm.hostCtx));

      for (const pfn of frames1) {
        expect(one.be.rmp.lookup(pfn).assigned).toBe(false);
        expect(host.frames.ownerOfPfn(pfn)).toBe(OWNER_FREE);
      }
      expect([...one.be.rmp.assigned()].filter((e) => e.asid === one.be.asid)).toEqual([]);
      expect(violations(one.vm, true)).toEqual([]);

      // Guest 2: the same RMP entries, the same frames, and it keeps working.
      expect([...frames2].map((pfn) => two.be.rmp.lookup(pfn))).toEqual(rmp2Before);
      for (const pfn of frames2) expect(host.frames.ownerOfPfn(pfn)).toBe(two.vm.owner);
      for (const gfn of PAGES) {
        expect(access(two.vm, gfn * 4096, false)).toBe("ok");
        expect(access(two.vm, gfn * 4096, true)).toBe("ok");
      }
      expect(two.be.raisedTotal).toBe(raised2);
      expect(violations(two.vm)).toEqual([]);
      expect(violations(two.vm, true)).toEqual([]);

      // A third guest may get the freed frames; it has a new ASID and guest 2 is still unaffected.
      const three = makeSevVm({ host, hostPageLevel, memory: 16 * MiB });
      expect(three.be.asid).not.toBe(one.be.asid);
      expect(three.be.asid).not.toBe(two.be.asid);
      for (const gfn of PAGES) {
        expect(accept(three.vm, gfn * 4096)).toBe("ok");
        expect(three.be.rmp.lookup(gmemPfn(three.vm, gfn))).toMatchObject({
          assigned: true,
          validated: true,
          asid: three.be.asid,
          gfn,
        });
      }
      for (const gfn of PAGES) expect(access(two.vm, gfn * 4096, true)).toBe("ok");
      expect([...frames2].map((pfn) => two.be.rmp.lookup(pfn))).toEqual(rmp2Before);
      expect(violations(two.vm, true)).toEqual([]);
      expect(violations(three.vm, true)).toEqual([]);
    });
  });
}
