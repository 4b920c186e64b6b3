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

/**
 * Where a realm's and a REC's fields record their accesses (`RmmState`): one resource per realm,
 * one per REC.
 */
export interface RealmRecorder {
  readRealm(r: Realm): void;
  writeRealm(r: Realm): void;
  readRec(c: Rec): void;
  writeRec(c: Rec): void;
  /** A reader that records nothing was called: it fails inside a step (`Clock.assertBetweenSteps`). */
  assertBetweenSteps(what: string): void;
}

/**
 * The Realm Descriptor's fields that change (state, REC count, measurement) are private: the
 * accessors record the read or the write of the realm as they do it, and the checks, the UI and
 * the audit read `peek()`, which records nothing. The rest never changes while the realm lives.
 */
export class Realm {
  private st = REALM_NEW;
  /** RECs created so far: the next REC's MPIDR index must equal it. */
  private recs = 0;
  /**
   * Extensions of the Realm Initial Measurement by DATA_CREATE (content hashed or not) and
   * RTT_INIT_RIPAS (one per entry); REALM_CREATE's and REC_CREATE's are not counted.
   */
  private measured = 0;

  /** 2^(IPA bits - 1), where the unprotected half starts, and 2^(IPA bits). */
  readonly parEnd: number;
  readonly ipaEnd: number;

  constructor(
    private readonly rec: RealmRecorder,
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

  get state(): number {
    this.rec.readRealm(this);
    return this.st;
  }

  set state(v: number) {
    this.rec.writeRealm(this);
    this.st = v;
  }

  get recCount(): number {
    this.rec.readRealm(this);
    return this.recs;
  }

  set recCount(v: number) {
    this.rec.writeRealm(this);
    this.recs = v;
  }

  get measurements(): number {
    this.rec.readRealm(this);
    return this.measured;
  }

  set measurements(v: number) {
    this.rec.writeRealm(this);
    this.measured = v;
  }

  /** `state`, recording nothing (the checks ask it per leaf). */
  peekState(): number {
    this.rec.assertBetweenSteps("a realm descriptor");
    return this.st;
  }

  /** The fields that change, recording nothing: for the checks, the UI and the audit. */
  peek(): { state: number; recCount: number; measurements: number } {
    this.rec.assertBetweenSteps("a realm descriptor");
    return { state: this.st, recCount: this.recs, measurements: this.measured };
  }

  /** `addr_in_par`: below the top IPA bit. */
  inPar(addr: number): boolean {
    return addr < this.parEnd;
  }
}

/** The RMI_EXIT_* reasons the model raises. */
export const RMI_EXIT_SYNC = 0;
export const RMI_EXIT_RIPAS_CHANGE = 4;

/** What a REC keeps that changes, for `Rec`'s accessors and `peek`. */
export interface RecFields {
  /** True while the REC runs (REC_ENTER until its exit): REC_DESTROY and RTT_SET_RIPAS then fail with RMI_ERROR_REC. */
  running: boolean;
  /** The pending RSI_IPA_STATE_SET: [base, top) to `value`, done up to `addr`. */
  ripasBase: number;
  ripasTop: number;
  ripasAddr: number;
  ripasValue: number;
  ripasChangeDestroyed: boolean;
  ripasPending: boolean;
}

/** A REC: its fields that change are private, behind accessors that record as `Realm`'s do. */
export class Rec {
  private readonly f: RecFields = {
    running: false,
    ripasBase: 0,
    ripasTop: 0,
    ripasAddr: 0,
    ripasValue: 0,
    ripasChangeDestroyed: false,
    ripasPending: false,
  };

  constructor(
    private readonly rec: RealmRecorder,
    readonly granule: number,
    readonly realm: Realm,
    readonly index: number,
    readonly aux: readonly number[],
  ) {}

  private get read(): RecFields {
    this.rec.readRec(this);
    return this.f;
  }

  private get write(): RecFields {
    this.rec.writeRec(this);
    return this.f;
  }

  get running(): boolean {
    return this.read.running;
  }
  set running(v: boolean) {
    this.write.running = v;
  }
  get ripasBase(): number {
    return this.read.ripasBase;
  }
  set ripasBase(v: number) {
    this.write.ripasBase = v;
  }
  get ripasTop(): number {
    return this.read.ripasTop;
  }
  set ripasTop(v: number) {
    this.write.ripasTop = v;
  }
  get ripasAddr(): number {
    return this.read.ripasAddr;
  }
  set ripasAddr(v: number) {
    this.write.ripasAddr = v;
  }
  get ripasValue(): number {
    return this.read.ripasValue;
  }
  set ripasValue(v: number) {
    this.write.ripasValue = v;
  }
  get ripasChangeDestroyed(): boolean {
    return this.read.ripasChangeDestroyed;
  }
  set ripasChangeDestroyed(v: boolean) {
    this.write.ripasChangeDestroyed = v;
  }
  get ripasPending(): boolean {
    return this.read.ripasPending;
  }
  set ripasPending(v: boolean) {
    this.write.ripasPending = v;
  }

  /** The fields, recording nothing: for the checks, the UI and the audit. */
  peek(): Readonly<RecFields> {
    this.rec.assertBetweenSteps("a REC");
    return { ...this.f };
  }
}
