/** TDH.MR.*: the TD's measurement (extending MRTD, finalizing it). */
import { ST_MAPPED, OPS_INITIALIZED, entryState, lock, tdPrologue } from "./leaf-checks.js";
import type { SeamCore } from "./seam-core.js";
import { type SeamResult, check, ok } from "./seam-result.js";
import { OPERAND_RCX, OPERAND_SEPT_TREE, OPERAND_RDX, TDX_OPERAND_INVALID } from "./status.js";
import { OP_RUNNABLE } from "./td.js";

/** TDH.MR.FINALIZE: the body of `SeamModule.mrFinalize`. */
export function mrFinalizeLeaf(m: SeamCore, tdr: number): SeamResult {
  const td = tdPrologue(m, tdr, OPERAND_RCX, OPS_INITIALIZED, true);
  td.opState = OP_RUNNABLE;
  return ok();
}

/** TDH.MR.EXTEND: the body of `SeamModule.mrExtend`. */
export function mrExtendLeaf(m: SeamCore, tdr: number, gpa: number): SeamResult {
  const td = tdPrologue(m, tdr, OPERAND_RDX, OPS_INITIALIZED);
  check(gpa % 256 === 0 && gpa < 2 ** td.gpaw, TDX_OPERAND_INVALID, OPERAND_RCX);
  lock(td.treeLock, false, OPERAND_SEPT_TREE);
  const gfn = Math.floor(gpa / 4096);
  m.walk(td, gfn, 0);
  entryState(m, m.walkTable, m.walkOff, 0, ST_MAPPED);
  td.mrtd = (Math.imul(td.mrtd ^ 0x9e3779b9, 31) + gpa) >>> 0;
  return ok();
}
