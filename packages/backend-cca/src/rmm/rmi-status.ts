/**
 * The RMI's return values (RMM specification 1.0, as TF-RMM's `smc-rmi.h` and `status.h` at the
 * `rmm-spec-v1.0-rel0` tag define them): a status in bits [7:0] of X0 and an index above it,
 * which is the RTT level an RMI_ERROR_RTT stopped at (the walk's last level, or the level of
 * the entry found in the wrong state). REC_ENTER's RMI_ERROR_REALM carries 0 for a NEW realm,
 * 1 for one in SYSTEM_OFF.
 */
import { StatusNames } from "@tdpemu/backend-sdk";

export const RMI_SUCCESS = 0;
export const RMI_ERROR_INPUT = 1;
export const RMI_ERROR_REALM = 2;
export const RMI_ERROR_REC = 3;
export const RMI_ERROR_RTT = 4;

export const RMI_STATUS = new StatusNames<number>("RMI status", [
  [RMI_SUCCESS, "RMI_SUCCESS"],
  [RMI_ERROR_INPUT, "RMI_ERROR_INPUT"],
  [RMI_ERROR_REALM, "RMI_ERROR_REALM"],
  [RMI_ERROR_REC, "RMI_ERROR_REC"],
  [RMI_ERROR_RTT, "RMI_ERROR_RTT"],
]);

/** X0 as the RMM returns it: `index` above the status's 8 bits. The RTT level may be -1 (LPA2): kept as a signed byte. */
export function packReturn(status: number, index = 0): number {
  return ((index & 0xff) << 8) | status;
}

/** RMI_RETURN_STATUS. */
export function returnStatus(x0: number): number {
  return x0 & 0xff;
}

/** RMI_RETURN_INDEX, read back as a signed level. */
export function returnIndex(x0: number): number {
  return ((x0 >> 8) << 24) >> 24;
}

/** "RMI_ERROR_RTT (level 2)", "RMI_SUCCESS". */
export function formatReturn(x0: number): string {
  const s = returnStatus(x0);
  const name = RMI_STATUS.name(s);
  if (s === RMI_ERROR_RTT) return `${name} (level ${returnIndex(x0)})`;
  if (s === RMI_ERROR_REALM && returnIndex(x0) !== 0) return `${name} (index ${returnIndex(x0)})`;
  return name;
}

/**
 * Reads a status a user wrote for fault injection: a name, or a name with its index in
 * parentheses ("RMI_ERROR_RTT(2)": the RTT level; a colon would clash with --inject CALL:N:STATUS).
 */
export function parseReturn(text: string): number {
  const m = /^([A-Z_]+)(?:\((-?\d+)\))?$/.exec(text);
  if (m === null) return packReturn(RMI_STATUS.code(text));
  return packReturn(RMI_STATUS.code(m[1]!), m[2] === undefined ? 0 : Number(m[2]));
}

/**
 * The RMI commands the model implements, by their specification names, with their function
 * IDs (SMC64 standard-service fast calls, 0xC4000150 + n).
 */
export const RMI_FIDS: Readonly<Record<string, number>> = {
  RMI_VERSION: 0xc4000150,
  RMI_GRANULE_DELEGATE: 0xc4000151,
  RMI_GRANULE_UNDELEGATE: 0xc4000152,
  RMI_DATA_CREATE: 0xc4000153,
  RMI_DATA_CREATE_UNKNOWN: 0xc4000154,
  RMI_DATA_DESTROY: 0xc4000155,
  RMI_REALM_ACTIVATE: 0xc4000157,
  RMI_REALM_CREATE: 0xc4000158,
  RMI_REALM_DESTROY: 0xc4000159,
  RMI_REC_CREATE: 0xc400015a,
  RMI_REC_DESTROY: 0xc400015b,
  RMI_REC_ENTER: 0xc400015c,
  RMI_RTT_CREATE: 0xc400015d,
  RMI_RTT_DESTROY: 0xc400015e,
  RMI_RTT_MAP_UNPROTECTED: 0xc400015f,
  RMI_RTT_READ_ENTRY: 0xc4000161,
  RMI_RTT_UNMAP_UNPROTECTED: 0xc4000162,
  RMI_RTT_FOLD: 0xc4000166,
  RMI_REC_AUX_COUNT: 0xc4000167,
  RMI_RTT_INIT_RIPAS: 0xc4000168,
  RMI_RTT_SET_RIPAS: 0xc4000169,
};

/** The names, in the order of their function IDs: the index of each is its call number in the counts. */
export const RMI_NAMES: readonly string[] = Object.keys(RMI_FIDS);
