/**
 * TDH.VP.*: a vCPU's leaves (create, flush, enter), and the TD exit that undoes an entry's
 * count in its epoch's parity.
 */
import { PT_TDVPR } from "./pamt.js";
import { OPS_INITIALIZED, checkNewPage, lock, lockExplicitPage, lockPage, tdPrologue } from "./leaf-checks.js";
import type { SeamCore } from "./seam-core.js";
import { type SeamResult, check, fail, ok } from "./seam-result.js";
import {
  OPERAND_RCX, OPERAND_RDX, OPERAND_TD_EPOCH, OPERAND_TDR, TDX_OP_STATE_INCORRECT, TDX_TD_FATAL, TDX_TD_KEYS_NOT_CONFIGURED,
  TDX_VCPU_ASSOCIATED, TDX_VCPU_NOT_ASSOCIATED,
} from "./status.js";
import { LC_KEYS_CONFIGURED, OP_RUNNABLE, TdVcpu, type Td } from "./td.js";

/**
 * TDH.VP.CREATE with TDH.VP.INIT folded in: the body of `SeamModule.vpCreate`. VP.INIT
 * (`associate_vcpu_initial`) associates the vCPU with the logical processor `lp` that runs it,
 * and the TD counts one more associated vCPU.
 */
export function vpCreateLeaf(m: SeamCore, tdr: number, tdvpr: number, lp: number): SeamResult {
  const td = tdPrologue(m, tdr, OPERAND_RDX, OPS_INITIALIZED);
  checkNewPage(m, tdvpr, OPERAND_RCX);
  m.pamt.set(tdvpr, PT_TDVPR, tdr);
  td.addChildren(1);
  const v = new TdVcpu(tdvpr, m.fp);
  v.initialized = true;
  v.associatedLp = lp;
  td.addVcpu(v);
  td.addAssociatedVcpus(1);
  m.tdsVersion++;
  return ok();
}

/**
 * TDH.VP.FLUSH on logical processor `lp` (`tdh_vp_flush.c`): the TDVPR locked exclusively (a
 * vCPU in guest mode holds it: busy), the TD must have its keys, and the vCPU must be associated
 * with this very LP; then it is associated with none, and the TD counts one fewer.
 */
export function vpFlushLeaf(m: SeamCore, _tdr: number, tdvpr: number, lp: number): SeamResult {
  lockExplicitPage(m, tdvpr, true, OPERAND_RCX, PT_TDVPR);
  const td = m.tdOfVcpu(tdvpr);
  const v = m.foundVcpu!;
  lockPage(m, m.pamt.owner(tdvpr), false, OPERAND_TDR);
  check(td.lifecycle === LC_KEYS_CONFIGURED, TDX_TD_KEYS_NOT_CONFIGURED);
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
