/**
 * TDH.VP.*: a vCPU's leaves (create, flush, enter), and the TD exit that undoes an entry's
 * count in its epoch's parity.
 */
import { PT_TDVPR } from "./pamt.js";
import { OPS_INITIALIZED, checkNewPage, lock, tdPrologue } from "./leaf-checks.js";
import type { SeamCore } from "./seam-core.js";
import { type SeamResult, check, fail, ok } from "./seam-result.js";
import { OPERAND_RCX, OPERAND_RDX, OPERAND_TD_EPOCH, TDX_OPERAND_BUSY, TDX_OP_STATE_INCORRECT, TDX_TD_FATAL, TDX_TD_KEYS_NOT_CONFIGURED } from "./status.js";
import { OP_RUNNABLE, TdVcpu } from "./td.js";

/** TDH.VP.CREATE: the body of `SeamModule.vpCreate`. */
export function vpCreateLeaf(m: SeamCore, tdr: number, tdvpr: number): SeamResult {
  const td = tdPrologue(m, tdr, OPERAND_RDX, OPS_INITIALIZED);
  checkNewPage(m, tdvpr, OPERAND_RCX);
  m.pamt.set(tdvpr, PT_TDVPR, tdr);
  td.addChildren(1);
  const v = new TdVcpu(tdvpr, m.fp);
  v.initialized = true;
  td.addVcpu(v);
  m.tdsVersion++;
  return ok();
}

/** TDH.VP.FLUSH: the body of `SeamModule.vpFlush`. */
export function vpFlushLeaf(m: SeamCore, _tdr: number, tdvpr: number): SeamResult {
  m.tdOfVcpu(tdvpr);
  check(!m.foundVcpu!.inGuest, TDX_OPERAND_BUSY, OPERAND_RCX);
  return ok();
}

/** TDH.VP.ENTER: the body of `SeamModule.vpEnter`. */
export function vpEnterLeaf(m: SeamCore, _tdr: number, tdvpr: number): SeamResult {
  const td = m.tdOfVcpu(tdvpr);
  const v = m.foundVcpu!;
  const alive = td.aliveStatus(TDX_TD_FATAL, TDX_TD_KEYS_NOT_CONFIGURED);
  if (alive !== 0n) return fail(alive);
  check(td.opState === OP_RUNNABLE, TDX_OP_STATE_INCORRECT);
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
