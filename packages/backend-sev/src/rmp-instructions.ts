/**
 * The instructions that change the RMP (docs/sev-snp.md §1.2), with Linux's return codes
 * (`asm/sev.h`): RMPUPDATE and PSMASH for the host, PVALIDATE for the guest.
 */
import { StatusNames } from "@tdpemu/backend-sdk";
import {
  RMP_ASSIGNED,
  RMP_IMMUTABLE,
  RMP_PAGE_2M,
  RMP_VALIDATED,
  RMP_VMSA,
  type Rmp,
} from "./rmp.js";

export const RMP_SUCCESS = 0;
export const FAIL_INPUT = 1;
export const FAIL_PERMISSION = 2;
export const FAIL_INUSE = 3;
export const FAIL_OVERLAP = 4;
export const FAIL_SIZEMISMATCH = 6;
/** PSMASH of an entry that is no assigned 2M page: nothing to split (the APM's PSMASH codes; upstream Linux names only FAIL_INUSE). */
export const FAIL_BADADDR = 7;
/** PVALIDATE with CF=1: the Validated bit was already as requested (Linux's PVALIDATE_FAIL_NOUPDATE). */
export const FAIL_NOUPDATE = 255;

export const RMP_STATUS = new StatusNames<number>("RMP status", [
  [RMP_SUCCESS, "SUCCESS"],
  [FAIL_INPUT, "FAIL_INPUT"],
  [FAIL_PERMISSION, "FAIL_PERMISSION"],
  [FAIL_INUSE, "FAIL_INUSE"],
  [FAIL_OVERLAP, "FAIL_OVERLAP"],
  [FAIL_SIZEMISMATCH, "FAIL_SIZEMISMATCH"],
  [FAIL_BADADDR, "FAIL_BADADDR"],
  [FAIL_NOUPDATE, "FAIL_NOUPDATE"],
]);

export interface RmpUpdate {
  assigned: boolean;
  size2m: boolean;
  immutable: boolean;
  asid: number;
  gfn: number;
}

/**
 * RMPUPDATE: write an entry; Validated is always cleared. A 2M entry needs a 2M-aligned frame and
 * every other frame of the range hypervisor-owned (FAIL_OVERLAP); a 4K update inside an assigned
 * 2M entry needs a PSMASH first (FAIL_OVERLAP). An immutable page takes no update from the host
 * (FAIL_PERMISSION) until firmware reclaims it; pages in use by VMRUN give FAIL_INUSE.
 */
export function rmpupdate(
  rmp: Rmp,
  pfn: number,
  u: RmpUpdate,
  inUse: (pfn: number) => boolean,
): number {
  const flags =
    (u.assigned ? RMP_ASSIGNED : 0) |
    (u.size2m ? RMP_PAGE_2M : 0) |
    (u.immutable ? RMP_IMMUTABLE : 0);
  return rmpupdateEntry(rmp, pfn, flags, u.asid, u.gfn, inUse);
}

/**
 * RMPUPDATE with the new entry as its RMP bits (`RMP_ASSIGNED | RMP_PAGE_2M | RMP_IMMUTABLE`),
 * ASID and GFN, as the instruction takes them in its operand (no object per call).
 */
export function rmpupdateEntry(
  rmp: Rmp,
  pfn: number,
  flags: number,
  asid: number,
  gfn: number,
  inUse: (pfn: number) => boolean,
): number {
  const assigned = (flags & RMP_ASSIGNED) !== 0;
  const size2m = (flags & RMP_PAGE_2M) !== 0;
  if (!rmp.covers(pfn) || (size2m && pfn % 512 !== 0)) return FAIL_INPUT;
  if (inUse(pfn)) return FAIL_INUSE;
  const governing = rmp.readGoverning(pfn);
  if ((governing & RMP_IMMUTABLE) !== 0) return FAIL_PERMISSION;
  if (size2m) {
    // Every 4K entry of the range must be hypervisor-owned; the head may only be the 2M entry itself.
    const head = rmp.flagsOf(pfn);
    if ((head & RMP_ASSIGNED) !== 0 && (head & RMP_PAGE_2M) === 0) return FAIL_OVERLAP;
    for (let i = 1; i < 512; i++) if (rmp.flagsOf(pfn + i) & RMP_ASSIGNED) return FAIL_OVERLAP;
  } else if ((governing & RMP_ASSIGNED) !== 0 && (governing & RMP_PAGE_2M) !== 0) {
    return FAIL_OVERLAP;
  }
  // A shared entry keeps the page size it was written with (arch/x86/virt/svm/sev.c:
  // `rmp_make_shared(pfn, PG_LEVEL_2M)` writes a 2M hypervisor entry, and `snp_lookup_rmpentry`
  // reads the size of the 2M-aligned entry whether or not it is assigned); nothing assigned is
  // governed by it.
  rmp.set(
    pfn,
    assigned ? flags & (RMP_ASSIGNED | RMP_PAGE_2M | RMP_IMMUTABLE) : flags & RMP_PAGE_2M,
    assigned ? asid : 0,
    assigned ? gfn : 0,
  );
  return RMP_SUCCESS;
}

/** For callers with no VMRUN in flight: no page is in use. */
export const NOTHING_IN_USE = (_pfn: number): boolean => false;

/**
 * PSMASH: an assigned 2M entry becomes 512 4K entries with consecutive GPAs; Validated is kept.
 * A frame that is not 2M-aligned (or outside the RMP) is FAIL_INPUT; an entry that is not an
 * assigned 2M page cannot be split, FAIL_BADADDR (7).
 */
export function psmash(rmp: Rmp, pfn: number): number {
  if (!rmp.covers(pfn) || pfn % 512 !== 0) return FAIL_INPUT;
  const e = rmp.raw(pfn);
  if (!e.assigned || !e.size2m) return FAIL_BADADDR;
  const flags = rmp.flagsOf(pfn) & ~RMP_PAGE_2M;
  // The VMPL permissions go with the split, as Validated does.
  const perms = [1, 2, 3].map((v) => rmp.vmplPerms(pfn, v));
  for (let i = 0; i < 512; i++) {
    rmp.set(pfn + i, flags, e.asid, e.gfn + i);
    for (let v = 1; v <= 3; v++)
      if (perms[v - 1] !== 0) rmp.setVmplPerms(pfn + i, v, perms[v - 1]!);
  }
  return RMP_SUCCESS;
}

export type PvalidateResult =
  { kind: "ok" } | { kind: "status"; status: number } | { kind: "npf"; errorCode: bigint };

/**
 * The checks PVALIDATE and RMPADJUST make alike on the entry that governs `pfn`: it is the
 * guest's (its ASID, at `gfn`) and mutable, else a #NPF with the RMP bit; a 4K request over a
 * 2M entry adds SIZEM; a 2M request over 4K entries is FAIL_SIZEMISMATCH. The failure, or the
 * governing frame and its flags.
 */
function guestEntry(
  rmp: Rmp,
  asid: number,
  gfn: number,
  pfn: number,
  size2m: boolean,
  npfBase: bigint,
  rmpBit: bigint,
  sizemBit: bigint,
): PvalidateResult | { g: number; f: number } {
  const g = rmp.governing(pfn);
  const f = rmp.flagsOf(g);
  const entry2m = (f & RMP_PAGE_2M) !== 0;
  const expectGfn = entry2m ? rmp.gfnOf(g) + (pfn - g) : rmp.gfnOf(g);
  if (
    (f & RMP_ASSIGNED) === 0 ||
    rmp.asidOf(g) !== asid ||
    expectGfn !== gfn ||
    (f & RMP_IMMUTABLE) !== 0
  )
    return { kind: "npf", errorCode: npfBase | rmpBit };
  if (!size2m && entry2m) return { kind: "npf", errorCode: npfBase | rmpBit | sizemBit };
  if (size2m && !entry2m) return PVALIDATE_SIZEMISMATCH;
  return { g, f };
}

/**
 * PVALIDATE (guest): set or clear Validated for the frame that `gfn` maps to at `size2m`. The
 * frame must be assigned to the guest's ASID at this GPA, else a #NPF with the RMP bit; a 4K
 * request over a 2M entry is a #NPF with SIZEM (the host PSMASHes); a 2M request over 4K entries
 * is FAIL_SIZEMISMATCH; no change is FAIL_NOUPDATE (CF=1).
 */
export function pvalidate(
  rmp: Rmp,
  asid: number,
  gfn: number,
  pfn: number,
  size2m: boolean,
  validate: boolean,
  npfBase: bigint,
  rmpBit: bigint,
  sizemBit: bigint,
): PvalidateResult {
  const e = guestEntry(rmp, asid, gfn, pfn, size2m, npfBase, rmpBit, sizemBit);
  if ("kind" in e) return e;
  const { g, f } = e;
  if (((f & RMP_VALIDATED) !== 0) === validate) return PVALIDATE_NOUPDATE;
  rmp.setFlags(g, validate ? f | RMP_VALIDATED : f & ~RMP_VALIDATED);
  return PVALIDATE_OK;
}

/**
 * RMPADJUST (guest, running at VMPL `vmpl`): gives VMPL `target` the permissions `perms`
 * (VMPL_*) on the frame `gfn` maps to, at 4K or 2M (`size2m`); at VMPL0 it also sets or clears
 * the VMSA bit (elsewhere that bit is ignored). In the order the checks are known to run: a
 * target that is not less privileged than the caller is FAIL_PERMISSION (one past VMPL3 is
 * FAIL_INPUT); the entry must be this guest's at this GPA and mutable, else a #NPF with the RMP
 * bit (a 4K request over a 2M entry adds SIZEM, and the host PSMASHes); a 2M request over 4K
 * entries is FAIL_SIZEMISMATCH; permissions beyond the caller's own are FAIL_PERMISSION.
 * Whether the page must be validated is not known from a public source; the model does not ask.
 */
export function rmpadjust(
  rmp: Rmp,
  asid: number,
  gfn: number,
  pfn: number,
  size2m: boolean,
  vmpl: number,
  target: number,
  perms: number,
  vmsa: boolean,
  npfBase: bigint,
  rmpBit: bigint,
  sizemBit: bigint,
): PvalidateResult {
  if (target > 3) return { kind: "status", status: FAIL_INPUT };
  if (target <= vmpl) return { kind: "status", status: FAIL_PERMISSION };
  const e = guestEntry(rmp, asid, gfn, pfn, size2m, npfBase, rmpBit, sizemBit);
  if ("kind" in e) return e;
  const { g, f } = e;
  if ((perms & ~rmp.vmplPerms(g, vmpl)) !== 0) return { kind: "status", status: FAIL_PERMISSION };
  rmp.setVmplPerms(g, target, perms);
  if (vmpl === 0 && ((f & RMP_VMSA) !== 0) !== vmsa)
    rmp.setFlags(g, vmsa ? f | RMP_VMSA : f & ~RMP_VMSA);
  return PVALIDATE_OK;
}

/** The results PVALIDATE gives without an error code: shared, so never changed. */
const PVALIDATE_OK: PvalidateResult = Object.freeze({ kind: "ok" });
const PVALIDATE_SIZEMISMATCH: PvalidateResult = Object.freeze({
  kind: "status",
  status: FAIL_SIZEMISMATCH,
});
const PVALIDATE_NOUPDATE: PvalidateResult = Object.freeze({
  kind: "status",
  status: FAIL_NOUPDATE,
});

export { RMP_IMMUTABLE, RMP_VALIDATED };
