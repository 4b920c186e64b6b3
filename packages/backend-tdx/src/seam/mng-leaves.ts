/**
 * TDH.MNG.*: a TD's management leaves (create, key configuration, TDCS pages, initialization,
 * the VP flush barrier, freeing the key). Each is a leaf body the dispatcher (`SeamCore.call`)
 * runs with the TD's TDR and the call's numeric operands.
 */
import { NO_TD, PT_TDCX, PT_TDR } from "./pamt.js";
import {
  MIN_NUM_TDCS_PAGES,
  OPS_UNINITIALIZED,
  checkNewPage,
  lockExplicitPage,
  tdPrologue,
} from "./leaf-checks.js";
import type { SeamCore } from "./seam-core.js";
import { type SeamResult, check, ok } from "./seam-result.js";
import {
  OPERAND_RCX,
  OPERAND_RDX,
  TDX_FLUSHVP_NOT_DONE,
  TDX_LIFECYCLE_STATE_INCORRECT,
  TDX_OPERAND_INVALID,
  TDX_PAGE_METADATA_INCORRECT,
  TDX_WBCACHE_NOT_COMPLETE,
} from "./status.js";
import {
  LC_BLOCKED,
  LC_HKID_ASSIGNED,
  LC_KEYS_CONFIGURED,
  LC_TEARDOWN,
  OP_INITIALIZED,
  OP_UNINITIALIZED,
  Td,
} from "./td.js";

/** TDH.MNG.CREATE: the body of `SeamModule.mngCreate`. */
export function mngCreateLeaf(m: SeamCore, tdr: number, hkid: number): SeamResult {
  checkNewPage(m, tdr, OPERAND_RCX);
  // tdh_mng_create.c: a TDR has no owner (PAMT owner 0; NO_TD here, since a TDR may sit at PFN 0).
  m.pamt.setTypeOwner(tdr, PT_TDR, NO_TD);
  m.addTd(new Td(tdr, hkid, m.fp));
  return ok();
}

/** TDH.MNG.KEY.CONFIG: the body of `SeamModule.mngKeyConfig`. */
export function mngKeyConfigLeaf(m: SeamCore, tdr: number): SeamResult {
  const td = m.tds.get(tdr);
  check(td !== undefined, TDX_PAGE_METADATA_INCORRECT, OPERAND_RCX);
  check(td!.lifecycle === LC_HKID_ASSIGNED, TDX_LIFECYCLE_STATE_INCORRECT);
  td!.lifecycle = LC_KEYS_CONFIGURED;
  return ok();
}

/** TDH.MNG.ADDCX: the body of `SeamModule.mngAddcx`. */
export function mngAddcxLeaf(m: SeamCore, tdr: number, page: number): SeamResult {
  const td = tdPrologue(m, tdr, OPERAND_RDX, OPS_UNINITIALIZED, true, false);
  checkNewPage(m, page, OPERAND_RCX);
  m.pamt.setTypeOwner(page, PT_TDCX, tdr);
  td.addTdcx(page);
  td.addChildren(1);
  return ok();
}

/** TDH.MNG.INIT: the body of `SeamModule.mngInit`. */
export function mngInitLeaf(
  m: SeamCore,
  tdr: number,
  gpaw: number,
  septVeDisable: number,
): SeamResult {
  const td = tdPrologue(m, tdr, OPERAND_RCX, OPS_UNINITIALIZED, true);
  check(gpaw === 48 || gpaw === 52, TDX_OPERAND_INVALID, OPERAND_RDX);
  td.gpaw = gpaw;
  td.rootLevel = gpaw > 48 ? 4 : 3;
  td.septVeDisable = septVeDisable === 1;
  td.septRoot = td.tdcx[0]!;
  m.sept.init(td.septRoot);
  td.opState = OP_INITIALIZED;
  return ok();
}

/** TDH.MNG.VPFLUSHDONE: the body of `SeamModule.mngVpflushdone`. */
export function mngVpflushdoneLeaf(m: SeamCore, tdr: number): SeamResult {
  // tdh_mng_vpflushdone.c takes no TD prologue: the TDR, locked exclusively (a vCPU in guest
  // mode holds it shared: busy), then the lifecycle, KEYS_CONFIGURED or still HKID_ASSIGNED;
  // neither a fatal TD nor its op state matters. A second VPFLUSHDONE finds it BLOCKED.
  lockExplicitPage(m, tdr, true, OPERAND_RCX, PT_TDR);
  const td = m.tds.get(tdr);
  m.lockedTdr = tdr;
  const lc = td!.lifecycle;
  check(lc === LC_KEYS_CONFIGURED || lc === LC_HKID_ASSIGNED, TDX_LIFECYCLE_STATE_INCORRECT);
  // No new association can start now (the TDR is held exclusively): every vCPU must have been
  // flushed from its LP (TDH.VP.FLUSH). The count lives in the TDCS, so only a TD with its TDCS
  // pages and an initialized op state has one.
  if (td!.tdcx.length >= MIN_NUM_TDCS_PAGES && td!.opState !== OP_UNINITIALIZED)
    check(td!.associatedVcpus === 0, TDX_FLUSHVP_NOT_DONE);
  td!.lifecycle = LC_BLOCKED;
  // KOT_STATE_HKID_FLUSHED: every package must write back its caches for the HKID first.
  td!.wbcachePending = true;
  return ok();
}

/** TDH.MNG.KEY.FREEID: the body of `SeamModule.mngKeyFreeid`. */
export function mngKeyFreeidLeaf(m: SeamCore, tdr: number): SeamResult {
  // tdh_mng_key_freeid.c: the TDR locked exclusively (busy while a vCPU is in guest mode).
  lockExplicitPage(m, tdr, true, OPERAND_RCX, PT_TDR);
  const td = m.tds.get(tdr);
  check(td!.lifecycle === LC_BLOCKED, TDX_LIFECYCLE_STATE_INCORRECT);
  check(!td!.wbcachePending, TDX_WBCACHE_NOT_COMPLETE);
  td!.lifecycle = LC_TEARDOWN;
  return ok();
}
