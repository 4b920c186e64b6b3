/**
 * A trust domain as the module keeps it (TDR + TDCS): lifecycle, op state, HKID, the TLB epoch
 * with its two per-parity counters of vCPUs in guest mode, the locks, and the number of pages
 * the TD owns besides its TDR (the child count that keeps the TDR from being reclaimed).
 *
 * A TD's state is several resources for the explorer (`SeamFootprint`): its state proper
 * (lifecycle, op state, fatal, configuration, TDCX pages, vCPUs), its epoch, each parity's count
 * of vCPUs in guest mode, its child count (updated commutatively), MRTD and each lock; a vCPU's
 * TDVPR state is one more. Every field is private to an accessor that records its access;
 * `auditState` reads them all without recording, for the footprint audit.
 */
import { SharexLock } from "./locks.js";
import {
  TD_CHILDREN,
  TD_EPOCH,
  TD_EPOCH_LOCK,
  TD_MRTD,
  TD_OPSTATE_LOCK,
  TD_REFCOUNT,
  TD_STATE,
  TD_TREE_LOCK,
  UNATTACHED_FOOTPRINT,
  type SeamFootprint,
} from "./seam-footprint.js";

// TDR lifecycle (docs/tdx-module.md §4)
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

/** The TD's resources besides its locks: its state proper, epoch, refcounts, children and MRTD. */
const TD_PARTS = [TD_STATE, TD_EPOCH, TD_REFCOUNT, TD_REFCOUNT + 1, TD_CHILDREN, TD_MRTD];

export class TdVcpu {
  /** The TD epoch at this vCPU's last TDH.VP.ENTER. */
  private entryEpoch = 0;
  private guest = false;
  private init = false;
  /** TDVPS `num_tdvps_pages`: the TDVPR (VP.CREATE) and each TDCX page VP.ADDCX added. */
  private pages = 1;
  /** TDVPS `assoc_lpid`: the logical processor the vCPU is associated with, -1 for none. */
  private lp = -1;
  private readonly id: number;
  /** `fp`, or a footprint that never records: "recording?" is one load (`noteRead`). */
  private readonly rec: SeamFootprint;

  constructor(
    readonly tdvpr: number,
    private readonly fp: SeamFootprint | null = null,
  ) {
    this.id = fp ? fp.vcpuId(tdvpr) : 0;
    this.rec = fp ?? UNATTACHED_FOOTPRINT;
  }

  /** Small enough for V8 to inline everywhere: the recording itself is apart. */
  private noteRead(): void {
    if (this.rec.fp !== null) this.recordRead();
  }

  private recordRead(): void {
    this.fp!.fp!.read(this.id);
  }

  get epoch(): number {
    this.noteRead();
    return this.entryEpoch;
  }

  set epoch(e: number) {
    this.fp?.write(this.id);
    this.entryEpoch = e;
  }

  get inGuest(): boolean {
    this.noteRead();
    return this.guest;
  }

  set inGuest(g: boolean) {
    this.fp?.write(this.id);
    this.guest = g;
  }

  get initialized(): boolean {
    this.noteRead();
    return this.init;
  }

  set initialized(i: boolean) {
    this.fp?.write(this.id);
    this.init = i;
  }

  /** The vCPU's metadata fields the host reaches (TDH.VP.RD/WR), by class and field code; unset fields are 0. */
  private readonly md = new Map<number, bigint>();

  metadata(key: number): bigint {
    this.noteRead();
    return this.md.get(key) ?? 0n;
  }

  /** Whether the field was ever written (a VMCS field the module must see initialized). */
  metadataWritten(key: number): boolean {
    this.noteRead();
    return this.md.has(key);
  }

  setMetadata(key: number, value: bigint): void {
    this.fp?.write(this.id);
    this.md.set(key, value);
  }

  get tdvpsPages(): number {
    this.noteRead();
    return this.pages;
  }

  /** VP.ADDCX added a TDCX page. */
  addTdvpsPage(): void {
    this.fp?.write(this.id);
    this.pages++;
  }

  get associatedLp(): number {
    this.noteRead();
    return this.lp;
  }

  set associatedLp(lp: number) {
    this.fp?.write(this.id);
    this.lp = lp;
  }

  /**
   * TDH.VP.ENTER's change: the vCPU enters guest mode in TD epoch `epoch`; false (and no change)
   * if it is in guest mode already. One read and, on entry, one write of the TDVPR state.
   */
  enterGuest(epoch: number): boolean {
    this.noteRead();
    if (this.guest) return false;
    this.fp?.write(this.id);
    this.entryEpoch = epoch;
    this.guest = true;
    return true;
  }

  /** A TD exit: the epoch the vCPU had entered in, or -1 if it was not in guest mode. */
  exitGuest(): number {
    this.noteRead();
    if (!this.guest) return -1;
    this.fp?.write(this.id);
    this.guest = false;
    return this.entryEpoch;
  }

  auditState(out: Map<number, string | number>): void {
    if (this.fp)
      out.set(
        this.id,
        `${this.entryEpoch}/${this.guest}/${this.init}/${this.lp}/${this.pages}/${[...this.md].join(",")}`,
      );
  }

  /** The vCPU's state goes with its TD (the RECLAIM of the TDR): a write of it. */
  noteGone(): void {
    this.fp?.write(this.id);
  }

  /** The state as plain data, recording nothing (`TdSetupRecord`). */
  saveState(): TdVcpuState {
    return {
      tdvpr: this.tdvpr,
      entryEpoch: this.entryEpoch,
      guest: this.guest,
      init: this.init,
      pages: this.pages,
      lp: this.lp,
      md: [...this.md],
    };
  }

  /** A vCPU of `fp`'s module in the state `s` saved, as if the leaves had made it (one write). */
  static restored(s: TdVcpuState, fp: SeamFootprint | null): TdVcpu {
    const v = new TdVcpu(s.tdvpr, fp);
    fp?.write(v.id);
    v.entryEpoch = s.entryEpoch;
    v.guest = s.guest;
    v.init = s.init;
    v.pages = s.pages;
    v.lp = s.lp;
    for (const [k, x] of s.md) v.md.set(k, x);
    return v;
  }
}

/** A vCPU's state as plain data (`TdVcpu.saveState`). */
export interface TdVcpuState {
  readonly tdvpr: number;
  readonly entryEpoch: number;
  readonly guest: boolean;
  readonly init: boolean;
  readonly pages: number;
  readonly lp: number;
  readonly md: readonly (readonly [number, bigint])[];
}

/**
 * A TD's state as plain data (`Td.saveState`), its locks left out: a TD is saved only with
 * every lock free, as a leaf leaves them.
 */
export interface TdState {
  readonly tdr: number;
  readonly hkid: number;
  readonly lc: number;
  readonly ops: number;
  readonly isFatal: boolean;
  readonly tdEpoch: number;
  readonly counts: readonly number[];
  readonly children: number;
  readonly wbcache: boolean;
  readonly tdcxPages: readonly number[];
  readonly root: number;
  readonly levels: number;
  readonly gpawBits: number;
  readonly veDisable: boolean;
  readonly vcpus: readonly TdVcpuState[];
  readonly assocVcpus: number;
  readonly measurement: number;
}

export class Td {
  private lc = LC_HKID_ASSIGNED;
  private ops = OP_UNINITIALIZED;
  private isFatal = false;
  /** TD_EPOCH, and the number of vCPUs in guest mode that entered in an even / odd epoch. */
  private tdEpoch = 1;
  private readonly counts = [0, 0];
  readonly treeLock: SharexLock;
  readonly opStateLock: SharexLock;
  readonly epochLock: SharexLock;
  /** Pages owned by the TD other than its TDR: TDCX, TDVPR, S-EPT and private pages. */
  private children = 0;
  /**
   * The HKID's KOT entry still waits for TDH.PHYMEM.CACHE.WB (its WBINVD bitmap; the model's
   * platform has one package): set by VPFLUSHDONE, cleared by CACHE.WB, checked by KEY.FREEID.
   */
  private wbcache = false;
  private readonly tdcxPages: number[] = [];
  /** The S-EPT root (a TDCX page) and its TDX level (3 for 4-level, 4 for 5-level). */
  private root = -1;
  private levels = 3;
  private gpawBits = 48;
  /** 2^(GPAW-1), kept with GPAW: every GPA a leaf takes is checked against it. */
  private sharedBit = 2 ** 47;
  /** TD attribute SEPT_VE_DISABLE: a PENDING access exits to the VMM instead of a #VE. */
  private veDisable = false;
  private readonly vcpuMap = new Map<number, TdVcpu>();
  /** TDCS `num_assoc_vcpus`: vCPUs associated with a logical processor (VPFLUSHDONE needs 0). */
  private assocVcpus = 0;
  /** MRTD as a running digest of what was measured. */
  private measurement = 0;
  /** `fp`, or a footprint that never records: "recording?" is one load (`noteRead`). */
  private readonly rec: SeamFootprint;

  constructor(
    readonly tdr: number,
    readonly hkid: number,
    private readonly fp: SeamFootprint | null = null,
  ) {
    this.rec = fp ?? UNATTACHED_FOOTPRINT;
    this.treeLock = new SharexLock(fp, fp ? fp.tdId(tdr, TD_TREE_LOCK) : 0);
    this.opStateLock = new SharexLock(fp, fp ? fp.tdId(tdr, TD_OPSTATE_LOCK) : 0);
    this.epochLock = new SharexLock(fp, fp ? fp.tdId(tdr, TD_EPOCH_LOCK) : 0);
  }

  /** Small enough for V8 to inline everywhere: the recording itself is apart. */
  private noteRead(part: number): void {
    if (this.rec.fp !== null) this.recordRead(part);
  }

  private recordRead(part: number): void {
    const fp = this.fp!;
    fp.fp!.read(fp.tdId(this.tdr, part));
  }

  private noteWrite(part: number): void {
    this.fp?.writeTd(this.tdr, part);
  }

  /**
   * The TD checks every TD leaf makes first, as one read of the TD's state: 0 if it is neither
   * fatal nor without its keys, else the status of the first check that fails.
   */
  aliveStatus(fatalStatus: bigint, keysStatus: bigint, minTdcs = 0, tdcsStatus = 0n): bigint {
    this.noteRead(TD_STATE);
    if (this.isFatal) return fatalStatus;
    if (this.lc !== LC_KEYS_CONFIGURED) return keysStatus;
    if (this.tdcxPages.length < minTdcs) return tdcsStatus;
    return 0n;
  }

  /**
   * A TD metadata field by class and field code (TDH.MNG.RD). The model's TD execution controls
   * the host reads (ATTRIBUTES, XFAM, TSC offset and multiplier) are fixed at TDH.MNG.INIT, all 0
   * here: nothing in the model depends on their values.
   */
  metadata(_key: number): bigint {
    this.noteRead(TD_STATE);
    return 0n;
  }

  get lifecycle(): number {
    this.noteRead(TD_STATE);
    return this.lc;
  }

  set lifecycle(v: number) {
    this.noteWrite(TD_STATE);
    this.lc = v;
  }

  get opState(): number {
    this.noteRead(TD_STATE);
    return this.ops;
  }

  set opState(v: number) {
    this.noteWrite(TD_STATE);
    this.ops = v;
  }

  get fatal(): boolean {
    this.noteRead(TD_STATE);
    return this.isFatal;
  }

  set fatal(v: boolean) {
    this.noteWrite(TD_STATE);
    this.isFatal = v;
  }

  get wbcachePending(): boolean {
    this.noteRead(TD_STATE);
    return this.wbcache;
  }

  set wbcachePending(v: boolean) {
    this.noteWrite(TD_STATE);
    this.wbcache = v;
  }

  get septRoot(): number {
    this.noteRead(TD_STATE);
    return this.root;
  }

  set septRoot(v: number) {
    this.noteWrite(TD_STATE);
    this.root = v;
  }

  get rootLevel(): number {
    this.noteRead(TD_STATE);
    return this.levels;
  }

  set rootLevel(v: number) {
    this.noteWrite(TD_STATE);
    this.levels = v;
  }

  get septVeDisable(): boolean {
    this.noteRead(TD_STATE);
    return this.veDisable;
  }

  set septVeDisable(v: boolean) {
    this.noteWrite(TD_STATE);
    this.veDisable = v;
  }

  /** Guest physical address width (TDH.MNG.INIT's GPAW: 48 or 52). */
  get gpaw(): number {
    this.noteRead(TD_STATE);
    return this.gpawBits;
  }

  set gpaw(bits: number) {
    this.noteWrite(TD_STATE);
    this.gpawBits = bits;
    this.sharedBit = 2 ** (bits - 1);
  }

  get sharedBitGpa(): number {
    this.noteRead(TD_STATE);
    return this.sharedBit;
  }

  /** The TDCX pages, the S-EPT root's first. */
  get tdcx(): readonly number[] {
    this.noteRead(TD_STATE);
    return this.tdcxPages;
  }

  addTdcx(page: number): void {
    this.noteWrite(TD_STATE);
    this.tdcxPages.push(page);
  }

  /** The vCPUs by TDVPR. */
  get vcpus(): ReadonlyMap<number, TdVcpu> {
    this.noteRead(TD_STATE);
    return this.vcpuMap;
  }

  addVcpu(v: TdVcpu): void {
    this.noteWrite(TD_STATE);
    this.vcpuMap.set(v.tdvpr, v);
  }

  get associatedVcpus(): number {
    this.noteRead(TD_STATE);
    return this.assocVcpus;
  }

  /** One more or fewer vCPU associated with an LP (VP.INIT, VP.ENTER, VP.FLUSH). */
  addAssociatedVcpus(delta: number): void {
    this.noteWrite(TD_STATE);
    this.assocVcpus += delta;
  }

  get epoch(): number {
    this.noteRead(TD_EPOCH);
    return this.tdEpoch;
  }

  set epoch(v: number) {
    this.noteWrite(TD_EPOCH);
    this.tdEpoch = v;
  }

  /** vCPUs in guest mode that entered in an epoch of `parity`. */
  refcountOf(parity: number): number {
    this.noteRead(TD_REFCOUNT + parity);
    return this.counts[parity]!;
  }

  /** One more or fewer vCPU in guest mode of `parity`: a commutative update. */
  refcountAdd(parity: number, delta: number): void {
    this.fp?.updateTd(this.tdr, TD_REFCOUNT + parity);
    this.counts[parity]! += delta;
  }

  /** Both counts, as a new array (for tests and tools). */
  get refcount(): readonly number[] {
    return [this.refcountOf(0), this.refcountOf(1)];
  }

  get childCount(): number {
    this.noteRead(TD_CHILDREN);
    return this.children;
  }

  /** A page more or fewer owned by the TD: a commutative update (AUGs of different pages commute). */
  addChildren(delta: number): void {
    this.fp?.updateTd(this.tdr, TD_CHILDREN);
    this.children += delta;
  }

  get mrtd(): number {
    this.noteRead(TD_MRTD);
    return this.measurement;
  }

  set mrtd(v: number) {
    this.noteWrite(TD_MRTD);
    this.measurement = v;
  }

  /**
   * The TD is gone (the RECLAIM of its TDR): every piece of its state, its vCPUs' included, is
   * written, so that a step that read any of it conflicts with the removal.
   */
  noteGone(): void {
    for (const part of TD_PARTS) this.noteWrite(part);
    for (const part of [TD_TREE_LOCK, TD_OPSTATE_LOCK, TD_EPOCH_LOCK]) this.noteWrite(part);
    for (const v of this.vcpuMap.values()) v.noteGone();
  }

  /** The state as plain data, recording nothing; null while a lock is held (`TdState`). */
  saveState(): TdState | null {
    if (this.treeLock.held || this.opStateLock.held || this.epochLock.held) return null;
    if (this.treeLock.hostPriority || this.opStateLock.hostPriority || this.epochLock.hostPriority)
      return null;
    return {
      tdr: this.tdr,
      hkid: this.hkid,
      lc: this.lc,
      ops: this.ops,
      isFatal: this.isFatal,
      tdEpoch: this.tdEpoch,
      counts: [...this.counts],
      children: this.children,
      wbcache: this.wbcache,
      tdcxPages: [...this.tdcxPages],
      root: this.root,
      levels: this.levels,
      gpawBits: this.gpawBits,
      veDisable: this.veDisable,
      vcpus: [...this.vcpuMap.values()].map((v) => v.saveState()),
      assocVcpus: this.assocVcpus,
      measurement: this.measurement,
    };
  }

  /**
   * A TD of `fp`'s module in the state `s` saved, with free locks, as if the leaves had made it:
   * every piece of its state and each vCPU's is written once.
   */
  static restored(s: TdState, fp: SeamFootprint | null): Td {
    const td = new Td(s.tdr, s.hkid, fp);
    for (const part of TD_PARTS) td.noteWrite(part);
    td.lc = s.lc;
    td.ops = s.ops;
    td.isFatal = s.isFatal;
    td.tdEpoch = s.tdEpoch;
    td.counts[0] = s.counts[0]!;
    td.counts[1] = s.counts[1]!;
    td.children = s.children;
    td.wbcache = s.wbcache;
    td.tdcxPages.push(...s.tdcxPages);
    td.root = s.root;
    td.levels = s.levels;
    td.gpawBits = s.gpawBits;
    td.sharedBit = 2 ** (s.gpawBits - 1);
    td.veDisable = s.veDisable;
    for (const v of s.vcpus) td.vcpuMap.set(v.tdvpr, TdVcpu.restored(v, fp));
    td.assocVcpus = s.assocVcpus;
    td.measurement = s.measurement;
    return td;
  }

  /** Every piece of the TD's state under its resource id, recording nothing (the footprint audit). */
  auditState(out: Map<number, string | number>): void {
    const fp = this.fp;
    if (!fp) return;
    const id = (part: number) => fp.tdId(this.tdr, part);
    out.set(
      id(TD_STATE),
      `${this.lc}/${this.ops}/${this.isFatal}/${this.wbcache}/${this.root}/${this.levels}/${this.gpawBits}/${this.veDisable}/${this.tdcxPages.join(",")}/${[...this.vcpuMap.keys()].join(",")}/${this.assocVcpus}`,
    );
    out.set(id(TD_EPOCH), this.tdEpoch);
    out.set(id(TD_REFCOUNT), this.counts[0]!);
    out.set(id(TD_REFCOUNT + 1), this.counts[1]!);
    out.set(id(TD_CHILDREN), this.children);
    out.set(id(TD_MRTD), this.measurement);
    this.treeLock.auditState(out);
    this.opStateLock.auditState(out);
    this.epochLock.auditState(out);
    for (const v of this.vcpuMap.values()) v.auditState(out);
  }
}
