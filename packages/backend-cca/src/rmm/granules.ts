/**
 * The state the RMM keeps of every 4 KiB granule of the machine (RMM specification 1.0, the
 * granule lifecycle; TF-RMM's `granule_types.h`): NS until the host delegates it (which also
 * moves it to the Realm PA space in the Granule Protection Table, so that a non-secure access
 * to it faults), then DELEGATED, then what a realm makes of it (RD, REC, REC_AUX, DATA, RTT),
 * and back. One table per machine, shared by every realm on it, as the hardware's GPT is.
 *
 * A reference count per granule, as the RMM's: an RD counts its RECs, an RTT its live entries
 * (tables and protected ASSIGNED entries; ASSIGNED_NS entries are not counted), a REC 1 while it
 * runs.
 */
export const GRANULE_NS = 0;
export const GRANULE_DELEGATED = 1;
export const GRANULE_RD = 2;
export const GRANULE_REC = 3;
export const GRANULE_REC_AUX = 4;
export const GRANULE_DATA = 5;
export const GRANULE_RTT = 6;

export const GRANULE_STATE_NAMES: readonly string[] = [
  "NS",
  "DELEGATED",
  "RD",
  "REC",
  "REC_AUX",
  "DATA",
  "RTT",
];

export const GRANULE_SIZE = 4096;

export class Granules {
  readonly state: Uint8Array;
  readonly refcount: Uint16Array;

  constructor(readonly total: number) {
    this.state = new Uint8Array(total);
    this.refcount = new Uint16Array(total);
  }

  /**
   * `find_granule`: the granule at physical address `addr`, or -1 when the address is not
   * granule-aligned or beyond the machine's memory (the caller's RMI_ERROR_INPUT).
   */
  find(addr: number): number {
    if (!Number.isInteger(addr) || addr < 0 || addr % GRANULE_SIZE !== 0) return -1;
    const g = addr / GRANULE_SIZE;
    return g < this.total ? g : -1;
  }

  /** `find_lock_granule(addr, expected)`: the granule if it is in state `expected`, else -1. */
  findIn(addr: number, expected: number): number {
    const g = this.find(addr);
    return g >= 0 && this.state[g] === expected ? g : -1;
  }
}
