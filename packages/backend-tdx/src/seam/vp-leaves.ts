/**
 * TDH.VP.*: a vCPU's leaves (create, add its TDCX pages, init, flush, enter), and the TD exit
 * that undoes an entry's count in its epoch's parity.
 */
import { PT_TDCX, PT_TDVPR } from "./pamt.js";
import {
  OPS_INITIALIZED,
  checkNewPage,
  lock,
  lockExplicitPage,
  lockPage,
  tdPrologue,
} from "./leaf-checks.js";
import type { SeamCore } from "./seam-core.js";
import { type SeamResult, check, fail, ok } from "./seam-result.js";
import {
  OPERAND_RCX,
  OPERAND_RDX,
  OPERAND_TD_EPOCH,
  OPERAND_TDR,
  TDX_OPERAND_BUSY,
  TDX_OP_STATE_INCORRECT,
  TDX_TD_FATAL,
  TDX_TD_KEYS_NOT_CONFIGURED,
  TDX_TDCX_NUM_INCORRECT,
  TDX_VCPU_ASSOCIATED,
  TDX_VCPU_NOT_ASSOCIATED,
  TDX_VCPU_STATE_INCORRECT,
} from "./status.js";
import { LC_KEYS_CONFIGURED, OP_RUNNABLE, TdVcpu, type Td } from "./td.js";

/**
 * `MIN_TDVPS_PAGES` (tdx_tdvps.h): a TDVPS with no L2 VM is the TDVPR and 5 TDCX pages;
 * `MAX_TDVPS_PAGES` bounds what VP.ADDCX takes (each L2 VM would add 3; the model has none).
 */
export const MIN_TDVPS_PAGES = 6;
export const MAX_TDVPS_PAGES = 15;

/**
 * TDH.VP.CREATE: the body of `SeamModule.vpCreate`. The new TDVPS has its TDVPR only
 * (`num_tdvps_pages` 1) and is UNINITIALIZED until TDH.VP.INIT.
 */
export function vpCreateLeaf(m: SeamCore, tdr: number, tdvpr: number): SeamResult {
  const td = tdPrologue(m, tdr, OPERAND_RDX, OPS_INITIALIZED);
  checkNewPage(m, tdvpr, OPERAND_RCX);
  m.pamt.setTypeOwner(tdvpr, PT_TDVPR, tdr);
  td.addChildren(1);
  td.addVcpu(new TdVcpu(tdvpr, m.fp));
  m.tdsVersion++;
  return ok();
}

/**
 * The start of every leaf on one vCPU: its TDVPR (`operand`) locked (`exclusive` or shared)
 * before its type is read, then its TD's TDR (implicit, shared) and the TD's checks, its op state
 * one of `opStates`. Returns the TD and the vCPU.
 */
export function vcpuPrologue(
  m: SeamCore,
  tdvpr: number,
  exclusive: boolean,
  operand: bigint,
  opStates: number,
): { td: Td; v: TdVcpu } {
  lockExplicitPage(m, tdvpr, exclusive, operand, PT_TDVPR);
  const owner = m.pamt.owner(tdvpr);
  m.tdOfVcpu(tdvpr);
  const v = m.foundVcpu!;
  return { td: tdPrologue(m, owner, OPERAND_TDR, opStates), v };
}

/**
 * TDH.VP.ADDCX (`tdh_vp_addcx.c`): the TDVPR (RDX) locked exclusively before its type is read,
 * its TD's TDR (implicit) shared, the TD's state and op state (INITIALIZED), the vCPU still
 * UNINITIALIZED (VCPU_STATE_INCORRECT) with room for a page (TDCX_NUM_INCORRECT, no operand),
 * then the new page (RCX) locked exclusively and free. It becomes a TDCX page of the TD.
 */
export function vpAddcxLeaf(m: SeamCore, _tdr: number, tdvpr: number, tdcx: number): SeamResult {
  const { td, v } = vcpuPrologue(m, tdvpr, true, OPERAND_RDX, OPS_INITIALIZED);
  check(!v.initialized, TDX_VCPU_STATE_INCORRECT);
  check(v.tdvpsPages < MAX_TDVPS_PAGES, TDX_TDCX_NUM_INCORRECT);
  // The TDVPR is held exclusively for the whole leaf (tdh_vp_addcx.c): named as the new page
  // too, its PAMT lock cannot be taken again.
  check(tdcx !== tdvpr, TDX_OPERAND_BUSY, OPERAND_RCX);
  checkNewPage(m, tdcx, OPERAND_RCX);
  m.pamt.setTypeOwner(tdcx, PT_TDCX, td.tdr);
  td.addChildren(1);
  v.addTdvpsPage();
  return ok();
}

/**
 * TDH.VP.INIT on logical processor `lp` (`tdh_vp_init.c`): the TDVPR (RCX) locked exclusively,
 * the TDR shared, the TD INITIALIZED, every TDCX page added (`map_tdvps`: TDCX_NUM_INCORRECT),
 * the vCPU UNINITIALIZED (VCPU_STATE_INCORRECT). It becomes READY and is associated with `lp`
 * (`associate_vcpu_initial`), the TD counting one more associated vCPU.
 */
export function vpInitLeaf(m: SeamCore, _tdr: number, tdvpr: number, lp: number): SeamResult {
  const { td, v } = vcpuPrologue(m, tdvpr, true, OPERAND_RCX, OPS_INITIALIZED);
  check(v.tdvpsPages >= MIN_TDVPS_PAGES, TDX_TDCX_NUM_INCORRECT);
  check(!v.initialized, TDX_VCPU_STATE_INCORRECT);
  v.initialized = true;
  v.associatedLp = lp;
  td.addAssociatedVcpus(1);
  return ok();
}

/**
 * TDH.VP.FLUSH on logical processor `lp` (`tdh_vp_flush.c`): the TDVPR locked exclusively (a
 * vCPU in guest mode holds it: busy), the TD must have its keys, the vCPU's TDVPS must be mapped
 * whole (`map_tdvps` fails on a vCPU short of TDCX pages: TDCX_NUM_INCORRECT), and the vCPU must
 * be associated with this very LP; then it is associated with none, and the TD counts one fewer.
 */
export function vpFlushLeaf(m: SeamCore, _tdr: number, tdvpr: number, lp: number): SeamResult {
  lockExplicitPage(m, tdvpr, true, OPERAND_RCX, PT_TDVPR);
  const td = m.tdOfVcpu(tdvpr);
  const v = m.foundVcpu!;
  lockPage(m, m.pamt.owner(tdvpr), false, OPERAND_TDR);
  check(td.lifecycle === LC_KEYS_CONFIGURED, TDX_TD_KEYS_NOT_CONFIGURED);
  check(v.tdvpsPages >= MIN_TDVPS_PAGES, TDX_TDCX_NUM_INCORRECT);
  check(v.associatedLp === lp, TDX_VCPU_NOT_ASSOCIATED);
  v.associatedLp = -1;
  td.addAssociatedVcpus(-1);
  return ok();
}

/**
 * `check_and_associate_vcpu` on logical processor `lp`: a vCPU associated with another LP is
 * refused (VCPU_ASSOCIATED); one associated with none becomes this LP's, counted by the TD.
 */
function associate(td: Td, v: TdVcpu, lp: number): void {
  const now = v.associatedLp;
  if (now === lp) return;
  check(now === -1, TDX_VCPU_ASSOCIATED);
  v.associatedLp = lp;
  td.addAssociatedVcpus(1);
}

/** TDH.VP.ENTER on logical processor `lp`: the body of `SeamModule.vpEnter`. */
export function vpEnterLeaf(m: SeamCore, _tdr: number, tdvpr: number, lp: number): SeamResult {
  const td = m.tdOfVcpu(tdvpr);
  const v = m.foundVcpu!;
  const alive = td.aliveStatus(TDX_TD_FATAL, TDX_TD_KEYS_NOT_CONFIGURED);
  if (alive !== 0n) return fail(alive);
  check(td.opState === OP_RUNNABLE, TDX_OP_STATE_INCORRECT);
  // map_tdvps, then check_and_associate_vcpu: a vCPU never VP.INITed is VCPU_STATE_INCORRECT.
  check(v.tdvpsPages >= MIN_TDVPS_PAGES, TDX_TDCX_NUM_INCORRECT);
  check(v.initialized, TDX_VCPU_STATE_INCORRECT);
  associate(td, v, lp);
  lock(td.epochLock, false, OPERAND_TD_EPOCH);
  if (v.inGuest) return ok();
  const epoch = td.epoch;
  v.enterGuest(epoch);
  td.refcountAdd(epoch & 1, 1);
  return ok();
}

/** A TD exit (EPT violation, IPI, ...): the vCPU leaves the count of its epoch's parity. */
export function tdExit(m: SeamCore, tdvpr: number): void {
  const v = m.vcpuAt(tdvpr);
  const td = m.cachedVcpuTd;
  if (!td || !v) return;
  const epoch = v.exitGuest();
  if (epoch >= 0) td.refcountAdd(epoch & 1, -1);
}
