/**
 * What the RMM keeps of a realm (its Realm Descriptor, in the RD granule) and of each of its
 * RECs (Realm Execution Contexts, one per vCPU), as RMM specification 1.0 defines them.
 */
export const REALM_NEW = 0;
export const REALM_ACTIVE = 1;
export const REALM_SYSTEM_OFF = 2;
export const REALM_STATE_NAMES: readonly string[] = ["NEW", "ACTIVE", "SYSTEM_OFF"];

/** What RMI_REC_AUX_COUNT answers: the auxiliary granules each REC takes (TF-RMM at 1.0-rel0: 16). */
export const REC_AUX_GRANULES = 16;

/** RMI_REALM_CREATE's parameters the model reads (the rest of the 4 KiB parameter page is left out). */
export interface RealmParams {
  /** IPA width: the protected half is below bit `ipaBits - 1`. */
  ipaBits: number;
  /** The level of the starting RTT (0 for 48 bits with 4K granules, -1 with LPA2 for 52). */
  rttLevelStart: number;
  /** The starting RTT's granule (one: the model does not concatenate starting tables). */
  rttBase: number;
  vmid: number;
}

export class Realm {
  state = REALM_NEW;
  /** RECs created so far: the next REC's MPIDR index must equal it. */
  recCount = 0;
  /**
   * Extensions of the Realm Initial Measurement by DATA_CREATE (content hashed or not) and
   * RTT_INIT_RIPAS (one per entry); REALM_CREATE's and REC_CREATE's are not counted.
   */
  measurements = 0;

  /** 2^(IPA bits - 1), where the unprotected half starts, and 2^(IPA bits). */
  readonly parEnd: number;
  readonly ipaEnd: number;

  constructor(
    readonly rd: number,
    readonly ipaBits: number,
    readonly startLevel: number,
    readonly rootGranule: number,
    readonly rootSlot: number,
    readonly vmid: number,
  ) {
    this.parEnd = 2 ** (ipaBits - 1);
    this.ipaEnd = 2 ** ipaBits;
  }

  /** `addr_in_par`: below the top IPA bit. */
  inPar(addr: number): boolean {
    return addr < this.parEnd;
  }
}

/** The RMI_EXIT_* reasons the model raises. */
export const RMI_EXIT_SYNC = 0;
export const RMI_EXIT_RIPAS_CHANGE = 4;

export class Rec {
  /** 1 while the REC runs (REC_ENTER until its exit): REC_DESTROY and RTT_SET_RIPAS then fail with RMI_ERROR_REC. */
  running = false;
  /** The pending RSI_IPA_STATE_SET: [base, top) to `value`, done up to `addr`. */
  ripasBase = 0;
  ripasTop = 0;
  ripasAddr = 0;
  ripasValue = 0;
  ripasChangeDestroyed = false;
  ripasPending = false;

  constructor(
    readonly granule: number,
    readonly realm: Realm,
    readonly index: number,
    readonly aux: readonly number[],
  ) {}
}
