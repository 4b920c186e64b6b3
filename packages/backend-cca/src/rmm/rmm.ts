/**
 * The Realm Management Monitor: the RMI commands a host issues, with the checks, their order and
 * the statuses of RMM specification 1.0 as TF-RMM implements them at its `rmm-spec-v1.0-rel0`
 * tag (`runtime/rmi/granule.c`, `realm.c`, `rec.c`, `rtt.c`). One per machine, shared by every
 * realm on it. The RTT commands are in `rtt-commands.ts`, the realm's own calls (RSI) and its
 * stage-2 checks in `realm-side.ts`.
 *
 * A command returns X0 (`packReturn`: status and index) and leaves its other outputs in `x1`,
 * `x2` (registers, not objects: the fault path makes no allocation per call).
 *
 * Departures: a command is one atomic point (the RMM takes granule locks, so commands on
 * different granules may really overlap; the model never runs two at once). Parameter pages
 * (REALM_CREATE's, REC_CREATE's) are passed as objects, not read from NS memory, so the checks
 * of their content are the ones the model has fields for. FEAT_LPA2's "address >= 2^48" checks
 * are left out: the model's hosts have less memory than that.
 */
import {
  GRANULE_DATA,
  GRANULE_DELEGATED,
  GRANULE_NS,
  GRANULE_RD,
  GRANULE_REC,
  GRANULE_REC_AUX,
  GRANULE_RTT,
} from "./granules.js";
import {
  RMI_ERROR_INPUT,
  RMI_ERROR_REALM,
  RMI_ERROR_REC,
  RMI_SUCCESS,
  packReturn,
} from "./rmi-status.js";
import {
  REALM_ACTIVE,
  REALM_NEW,
  REC_AUX_GRANULES,
  Realm,
  Rec,
  type RealmParams,
} from "./realm.js";
import { RmmState } from "./rmm-state.js";
import { RIPAS_EMPTY, RTTE_UNASSIGNED, RTTE_UNASSIGNED_NS } from "./rtt.js";

const INPUT = packReturn(RMI_ERROR_INPUT);
/** TF-RMM's granule reference counts are 10 bits wide: a realm has at most 1,023 RECs. */
const REFCOUNT_MAX = 2 ** 10 - 1;

export class Rmm extends RmmState {
  /** Output registers of the last command (scratch of one atomic point, not shared state). */
  x1 = 0;
  x2 = 0;

  /** The realm whose RD is at `addr`, or null (the caller's RMI_ERROR_INPUT). */
  realmAt(addr: number): Realm | null {
    const g = this.findIn(addr, GRANULE_RD);
    const r = g < 0 ? undefined : this.realms.get(g);
    return r ?? null;
  }

  /** A realm's state, read as a command or KVM reads it. */
  realmState(r: Realm): number {
    return r.state;
  }

  // ---------------------------------------------------------------- granules

  /** RMI_GRANULE_DELEGATE: NS → DELEGATED (moved to the Realm PAS, zeroed). */
  granuleDelegate(addr: number): number {
    const g = this.findIn(addr, GRANULE_NS);
    if (g < 0) return INPUT;
    this.setGranuleState(g, GRANULE_DELEGATED);
    return RMI_SUCCESS;
  }

  /** RMI_GRANULE_UNDELEGATE: DELEGATED → NS (scrubbed, back to the Non-secure PAS). */
  granuleUndelegate(addr: number): number {
    const g = this.findIn(addr, GRANULE_DELEGATED);
    if (g < 0) return INPUT;
    this.setGranuleState(g, GRANULE_NS);
    return RMI_SUCCESS;
  }

  // ---------------------------------------------------------------- realms

  /**
   * RMI_REALM_CREATE: every failure is RMI_ERROR_INPUT (a bad parameter, a VMID in use, the RD
   * among the RTT granules, the RD or the starting RTT not DELEGATED). The starting RTT's
   * protected entries start UNASSIGNED with RIPAS EMPTY, the others UNASSIGNED_NS.
   */
  realmCreate(rdAddr: number, p: RealmParams): number {
    const levels = Math.ceil((p.ipaBits - 12) / 9);
    if (!Number.isInteger(p.ipaBits) || p.ipaBits < 32 || p.ipaBits > 52) return INPUT;
    if (p.rttLevelStart !== 4 - levels) return INPUT;
    if (this.vmidInUse(p.vmid)) return INPUT;
    if (rdAddr === p.rttBase) return INPUT;
    const rd = this.findIn(rdAddr, GRANULE_DELEGATED);
    const root = this.findIn(p.rttBase, GRANULE_DELEGATED);
    if (rd < 0 || root < 0) return INPUT;
    const slot = this.allocTable(root, p.rttLevelStart, RTTE_UNASSIGNED_NS, RIPAS_EMPTY);
    // The protected half: the lower entries of the starting table.
    const parEntries = Math.min(512, 2 ** (p.ipaBits - 1) / (4096 * 512 ** (3 - p.rttLevelStart)));
    for (let e = slot * 512; e < slot * 512 + parEntries; e++)
      this.rtts.setState(e, RTTE_UNASSIGNED);
    this.setGranuleState(rd, GRANULE_RD);
    this.setGranuleState(root, GRANULE_RTT);
    this.setRefs(rd, 0);
    this.setRefs(root, 0);
    this.takeVmid(p.vmid);
    this.addRealm(new Realm(this, rd, p.ipaBits, p.rttLevelStart, root, slot, p.vmid));
    return RMI_SUCCESS;
  }

  /** RMI_REALM_ACTIVATE: NEW → ACTIVE; in any other state RMI_ERROR_REALM. */
  realmActivate(rdAddr: number): number {
    const r = this.realmAt(rdAddr);
    if (r === null) return INPUT;
    if (r.state !== REALM_NEW) return packReturn(RMI_ERROR_REALM);
    r.state = REALM_ACTIVE;
    return RMI_SUCCESS;
  }

  /**
   * RMI_REALM_DESTROY: refused (RMI_ERROR_REALM) while a REC exists or the starting RTT has a
   * live entry; then the RD and the starting RTT are DELEGATED again.
   */
  realmDestroy(rdAddr: number): number {
    const r = this.realmAt(rdAddr);
    if (r === null) return INPUT;
    if (this.refs(r.rd) !== 0) return packReturn(RMI_ERROR_REALM);
    if (this.refs(r.rootGranule) !== 0) return packReturn(RMI_ERROR_REALM);
    this.freeTable(r.rootSlot);
    this.setGranuleState(r.rd, GRANULE_DELEGATED);
    this.setGranuleState(r.rootGranule, GRANULE_DELEGATED);
    this.releaseVmid(r.vmid);
    this.removeRealm(r);
    return RMI_SUCCESS;
  }

  // ---------------------------------------------------------------- RECs

  /** RMI_REC_AUX_COUNT: how many auxiliary granules a REC of the realm takes (in X1). */
  recAuxCount(rdAddr: number): number {
    if (this.realmAt(rdAddr) === null) return INPUT;
    this.x1 = REC_AUX_GRANULES;
    return RMI_SUCCESS;
  }

  /** RMI_REC_CREATE, with TF-RMM's order of checks. `mpidrIndex` stands for the MPIDR. */
  recCreate(rdAddr: number, recAddr: number, mpidrIndex: number, aux: readonly number[]): number {
    if (aux.length > REC_AUX_GRANULES) return INPUT;
    const auxG: number[] = [];
    for (const a of aux) {
      const g = this.findIn(a, GRANULE_DELEGATED);
      if (g < 0 || auxG.includes(g)) return INPUT;
      auxG.push(g);
    }
    if (recAddr === rdAddr) return INPUT;
    const rec = this.findIn(recAddr, GRANULE_DELEGATED);
    const r = this.realmAt(rdAddr);
    if (rec < 0 || r === null || auxG.includes(rec)) return INPUT;
    if (this.refs(r.rd) === REFCOUNT_MAX) return packReturn(RMI_ERROR_REALM);
    if (r.state !== REALM_NEW) return packReturn(RMI_ERROR_REALM);
    if (!Number.isInteger(mpidrIndex) || mpidrIndex !== r.recCount) return INPUT;
    if (aux.length !== REC_AUX_GRANULES) return INPUT;
    this.setGranuleState(rec, GRANULE_REC);
    for (const g of auxG) this.setGranuleState(g, GRANULE_REC_AUX);
    this.addRefs(r.rd, 1);
    r.recCount++;
    this.addRec(new Rec(this, rec, r, mpidrIndex, auxG));
    return RMI_SUCCESS;
  }

  /** RMI_REC_DESTROY: not a REC → RMI_ERROR_INPUT; running → RMI_ERROR_REC. */
  recDestroy(recAddr: number): number {
    const rec = this.recAt(recAddr);
    if (rec === null) return INPUT;
    if (rec.running) return packReturn(RMI_ERROR_REC);
    this.setGranuleState(rec.granule, GRANULE_DELEGATED);
    for (const a of rec.aux) this.setGranuleState(a, GRANULE_DELEGATED);
    this.addRefs(rec.realm.rd, -1);
    this.removeRec(rec);
    return RMI_SUCCESS;
  }

  /** The REC at `addr`, or null: found by its granule's state (read); its fields record their own reads. */
  recAt(addr: number): Rec | null {
    const g = this.findIn(addr, GRANULE_REC);
    const rec = g < 0 ? undefined : this.recs.get(g);
    return rec ?? null;
  }

  /** The data granule's new state (DATA) and the RTT's count of live entries, after a data command mapped it. */
  takeData(g: number, rttGranule: number): void {
    this.setGranuleState(g, GRANULE_DATA);
    this.addRefs(rttGranule, 1);
  }

  /** A data command unmapped granule `g` from the RTT in `rttGranule`. */
  dropData(g: number, rttGranule: number): void {
    this.setGranuleState(g, GRANULE_DELEGATED);
    this.addRefs(rttGranule, -1);
  }
}
