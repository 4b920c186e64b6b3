/** TDH.MR.*: the TD's measurement (extending MRTD, finalizing it). */
import { OPS_INITIALIZED, failOnEntry, tdPrologue } from "./leaf-checks.js";
import type { SeamCore } from "./seam-core.js";
import { type SeamResult, check, ok } from "./seam-result.js";
import { SEPT_FREE, SEPT_MAPPED, septState } from "./sept.js";
import {
  OPERAND_RCX,
  OPERAND_RDX,
  TDX_EPT_ENTRY_NOT_PRESENT,
  TDX_OPERAND_INVALID,
} from "./status.js";

/** S-EPT state encodings of a non-leaf entry (NL_MAPPED, NL_BLOCKED) have this bit. */
const SEPT_NON_LEAF = 0x80;
import { OP_RUNNABLE } from "./td.js";

/** TDH.MR.FINALIZE: the body of `SeamModule.mrFinalize`. */
export function mrFinalizeLeaf(m: SeamCore, tdr: number): SeamResult {
  const td = tdPrologue(m, tdr, OPERAND_RCX, OPS_INITIALIZED, true);
  td.opState = OP_RUNNABLE;
  return ok();
}

/**
 * TDH.MR.EXTEND (`tdh_mr_extend.c`): the TDR locked exclusively, which holds the S-EPT tree
 * implicitly (no tree lock is taken), a 256-byte aligned private GPA, a walk that stops at the
 * first leaf (a 2M one too), and that leaf MAPPED. A walk that meets no leaf is
 * EPT_ENTRY_NOT_PRESENT with RCX and the entry it stopped at; a leaf in another state is
 * EPT_ENTRY_NOT_PRESENT with no operand (`sept_state_is_seamcall_leaf_allowed`: MAPPED only).
 */
export function mrExtendLeaf(m: SeamCore, tdr: number, gpa: number): SeamResult {
  const td = tdPrologue(m, tdr, OPERAND_RDX, OPS_INITIALIZED, true);
  check(gpa % 256 === 0, TDX_OPERAND_INVALID, OPERAND_RCX);
  // check_and_walk_private_gpa_to_leaf: a GPA below the shared bit.
  check(
    Number.isSafeInteger(gpa) && gpa >= 0 && gpa < td.sharedBitGpa,
    TDX_OPERAND_INVALID,
    OPERAND_RCX,
  );
  const gfn = Math.floor(gpa / 4096);
  let st: number;
  if (m.tryWalk(td, gfn, 0)) {
    st = septState(
      m.sept.entryLo(m.walkTable, m.walkOff),
      m.sept.entryHi(m.walkTable, m.walkOff),
      0,
    );
  } else {
    st = m.walkStopState;
    if (st === SEPT_FREE || (st & SEPT_NON_LEAF) !== 0)
      failOnEntry(
        TDX_EPT_ENTRY_NOT_PRESENT + OPERAND_RCX,
        m.walkStopLo,
        m.walkStopHi,
        m.walkStopLevel,
      );
  }
  check(st === SEPT_MAPPED, TDX_EPT_ENTRY_NOT_PRESENT);
  td.mrtd = (Math.imul(td.mrtd ^ 0x9e3779b9, 31) + gpa) >>> 0;
  return ok();
}
