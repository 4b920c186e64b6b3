/**
 * The realm's side of the RMM: what a REC does when it runs (RMM specification 1.0; TF-RMM's
 * `runtime/core/exit.c`, `runtime/rsi/memory.c`, `runtime/rmi/run.c`): RMI_REC_ENTER and the
 * completion of a pending RIPAS change, RSI_IPA_STATE_SET, and the stage-2 outcome of a data
 * access: the hardware walks the realm's RTTs, and the RMM decides what a data abort becomes.
 */
import { GRANULE_NS } from "./granules.js";
import {
  RMI_ERROR_INPUT,
  RMI_ERROR_REALM,
  RMI_ERROR_REC,
  RMI_SUCCESS,
  packReturn,
} from "./rmi-status.js";
import { REALM_NEW, REALM_SYSTEM_OFF, type Rec } from "./realm.js";
import type { Rmm } from "./rmm.js";
import { walk, type WalkResult } from "./rtt-commands.js";
import {
  RIPAS_DESTROYED,
  RIPAS_EMPTY,
  RIPAS_RAM,
  RTT_PAGE_LEVEL,
  RTTE_ASSIGNED,
  RTTE_ASSIGNED_NS,
  levelSize,
} from "./rtt.js";
import { S2AP_W } from "./rtt-commands.js";

export const RSI_SUCCESS = 0;
export const RSI_ERROR_INPUT = 1;
export const RSI_ERROR_STATE = 2;
export const RSI_INCOMPLETE = 3;
export const RSI_ACCEPT = 0;
export const RSI_REJECT = 1;
/** RSI_IPA_STATE_SET's flag: a DESTROYED entry may change too. */
export const RSI_CHANGE_DESTROYED = 1;

/**
 * RSI_IPA_STATE_SET(base, top, ripas, flags) from a running REC: a bad request is refused at
 * once (RSI_ERROR_INPUT, no exit); a good one is kept in the REC and the REC exits to the host
 * with RMI_EXIT_RIPAS_CHANGE. Returns the RSI status, or -1 for "exited".
 */
export function rsiIpaStateSet(
  rec: Rec,
  base: number,
  top: number,
  ripas: number,
  flags: number,
): number {
  const r = rec.realm;
  if (ripas !== RIPAS_EMPTY && ripas !== RIPAS_RAM) return RSI_ERROR_INPUT;
  if (
    base % 4096 !== 0 ||
    top % 4096 !== 0 ||
    !(top > base) ||
    !r.inPar(base) ||
    !r.inPar(top - 4096)
  )
    return RSI_ERROR_INPUT;
  rec.ripasBase = base;
  rec.ripasTop = top;
  rec.ripasAddr = base;
  rec.ripasValue = ripas;
  // X4 is read as the enum it is: only the value RSI_CHANGE_DESTROYED itself means yes.
  rec.ripasChangeDestroyed = flags === RSI_CHANGE_DESTROYED;
  rec.ripasPending = true;
  rec.running = false;
  return -1;
}

/** What the realm reads back from RSI_IPA_STATE_SET when its REC is entered again. */
export interface RipasResponse {
  /** Where the change got to (X1). */
  next: number;
  /** RSI_ACCEPT, or RSI_REJECT for a RAM request the host refused to complete. */
  response: number;
}

/**
 * RMI_REC_ENTER(rec, run): the REC runs. With a RIPAS change pending, the realm's
 * RSI_IPA_STATE_SET returns (`ripasDone`): RSI_SUCCESS, the progress, and REJECT only if the
 * request was for RAM, is incomplete and the host said REJECT (REC_ENTRY_FLAG_RIPAS_RESPONSE);
 * an EMPTY request is never refused.
 */
export function recEnter(
  m: Rmm,
  recAddr: number,
  reject: boolean,
  ripasDone: RipasResponse | null,
): number {
  const rec = m.recAt(recAddr);
  if (rec === null) return packReturn(RMI_ERROR_INPUT);
  if (rec.running) return packReturn(RMI_ERROR_REC);
  const state = m.realmState(rec.realm);
  if (state === REALM_NEW) return packReturn(RMI_ERROR_REALM, 0);
  if (state === REALM_SYSTEM_OFF) return packReturn(RMI_ERROR_REALM, 1);
  if (rec.ripasPending) {
    rec.ripasPending = false;
    if (ripasDone !== null) {
      ripasDone.next = rec.ripasAddr;
      ripasDone.response =
        reject && rec.ripasValue === RIPAS_RAM && rec.ripasAddr < rec.ripasTop
          ? RSI_REJECT
          : RSI_ACCEPT;
    }
  }
  rec.running = true;
  return RMI_SUCCESS;
}

/**
 * PSCI SYSTEM_OFF from the realm (an SMC the RMM handles itself, `runtime/rsi/psci.c`): the realm
 * is SYSTEM_OFF for good, and the REC that made the call exits. No REC of it runs again
 * (RMI_REC_ENTER: RMI_ERROR_REALM, index 1).
 */
export function psciSystemOff(rec: Rec): void {
  rec.realm.state = REALM_SYSTEM_OFF;
  recExit(rec);
}

/** A REC's exit (to the host): it stops running. */
export function recExit(rec: Rec): void {
  rec.running = false;
}

/** Outcomes of a realm's data access (`realmAccess`). */
export const REALM_ACCESS_OK = 0;
/** A synchronous external abort injected into the realm, no exit (IPA beyond the space, RIPAS EMPTY). */
export const REALM_ACCESS_SEA = 1;
/** A stage-2 data abort the host must handle (RMI_EXIT_SYNC): unassigned RAM, DESTROYED, or an unmapped unprotected IPA. */
export const REALM_ACCESS_EXIT = 2;
/** A permission fault on a present unprotected mapping (a write to one without S2AP write). */
export const REALM_ACCESS_EXIT_PERMISSION = 3;
/** A granule protection fault: an NS mapping names a granule in the Realm PAS. */
export const REALM_ACCESS_GPF = 4;
/**
 * RIPAS DESTROYED: the RMM exits to the host (RMI_EXIT_SYNC), which can do nothing to make the
 * page usable (only the realm can, by RSI_IPA_STATE_SET with RSI_CHANGE_DESTROYED).
 */
export const REALM_ACCESS_DESTROYED = 5;

const aw: WalkResult = { slot: 0, entry: 0, level: 0 };

/**
 * The hardware's stage-2 walk of the realm's RTTs for a data access at `ipa`, and what the RMM
 * makes of an abort (TF-RMM's `handle_data_abort`): an access to a protected IPA whose RIPAS is
 * EMPTY is the realm's own mistake (SEA, the host never hears of it); unassigned RAM exits to
 * the host, which maps it; DESTROYED exits to a host that cannot help. The frame behind the leaf goes in `pfnOut[0]`.
 */
export function realmAccess(
  m: Rmm,
  rec: Rec,
  ipa: number,
  write: boolean,
  pfnOut: Float64Array,
): number {
  const r = rec.realm;
  if (!(ipa < r.ipaEnd)) return REALM_ACCESS_SEA;
  walk(m, r, ipa, RTT_PAGE_LEVEL, aw);
  const rtts = m.rtts;
  const s = rtts.state(aw.entry);
  if (r.inPar(ipa)) {
    const ripas = rtts.ripas(aw.entry);
    if (ripas === RIPAS_EMPTY) return REALM_ACCESS_SEA;
    if (ripas === RIPAS_DESTROYED) return REALM_ACCESS_DESTROYED;
    if (s === RTTE_ASSIGNED) {
      pfnOut[0] = rtts.addr(aw.entry) + Math.floor((ipa % levelSize(aw.level)) / 4096);
      return REALM_ACCESS_OK;
    }
    return REALM_ACCESS_EXIT;
  }
  if (s !== RTTE_ASSIGNED_NS) return REALM_ACCESS_EXIT;
  const pfn = rtts.addr(aw.entry) + Math.floor((ipa % levelSize(aw.level)) / 4096);
  if (m.granuleState(pfn) !== GRANULE_NS) return REALM_ACCESS_GPF;
  if (write && (rtts.attr(aw.entry) & S2AP_W) === 0) return REALM_ACCESS_EXIT_PERMISSION;
  pfnOut[0] = pfn;
  return REALM_ACCESS_OK;
}
