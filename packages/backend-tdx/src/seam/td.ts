/**
 * A trust domain as the module keeps it (TDR + TDCS): lifecycle, op state, HKID, the TLB epoch
 * with its two per-parity counters of vCPUs in guest mode, the locks, and the number of pages
 * the TD owns besides its TDR (the child count that keeps the TDR from being reclaimed).
 */
import { SharexLock } from "./locks.js";

// TDR lifecycle (reference §4)
export const LC_HKID_ASSIGNED = 0;
export const LC_KEYS_CONFIGURED = 1;
export const LC_BLOCKED = 2;
export const LC_TEARDOWN = 3;
export const LIFECYCLE_NAMES = ["HKID_ASSIGNED", "KEYS_CONFIGURED", "BLOCKED", "TEARDOWN"];

// TDCS op state (migration states not modelled)
export const OP_UNINITIALIZED = 0;
export const OP_INITIALIZED = 1;
export const OP_RUNNABLE = 2;
export const OP_STATE_NAMES = ["UNINITIALIZED", "INITIALIZED", "RUNNABLE"];

export class TdVcpu {
  /** The TD epoch at this vCPU's last TDH.VP.ENTER. */
  epoch = 0;
  inGuest = false;
  initialized = false;

  constructor(readonly tdvpr: number) {}
}

export class Td {
  lifecycle = LC_HKID_ASSIGNED;
  opState = OP_UNINITIALIZED;
  fatal = false;
  /** TD_EPOCH, and the number of vCPUs in guest mode that entered in an even / odd epoch. */
  epoch = 1;
  readonly refcount = [0, 0];
  readonly treeLock = new SharexLock();
  readonly opStateLock = new SharexLock();
  readonly epochLock = new SharexLock();
  /** Pages owned by the TD other than its TDR: TDCX, TDVPR, S-EPT and private pages. */
  childCount = 0;
  /**
   * The HKID's KOT entry still waits for TDH.PHYMEM.CACHE.WB (its WBINVD bitmap; the model's
   * platform has one package): set by VPFLUSHDONE, cleared by CACHE.WB, checked by KEY.FREEID.
   */
  wbcachePending = false;
  readonly tdcx: number[] = [];
  /** The S-EPT root (a TDCX page) and its TDX level (3 for 4-level, 4 for 5-level). */
  septRoot = -1;
  rootLevel = 3;
  private gpawBits = 48;
  /** 2^(GPAW-1), kept with GPAW: every GPA a leaf takes is checked against it. */
  private sharedBit = 2 ** 47;
  /** TD attribute SEPT_VE_DISABLE: a PENDING access exits to the VMM instead of a #VE. */
  septVeDisable = false;
  readonly vcpus = new Map<number, TdVcpu>();
  /** MRTD as a running digest of what was measured. */
  mrtd = 0;

  constructor(
    readonly tdr: number,
    readonly hkid: number,
  ) {}

  /** Guest physical address width (TDH.MNG.INIT's GPAW: 48 or 52). */
  get gpaw(): number {
    return this.gpawBits;
  }

  set gpaw(bits: number) {
    this.gpawBits = bits;
    this.sharedBit = 2 ** (bits - 1);
  }

  get sharedBitGpa(): number {
    return this.sharedBit;
  }
}
