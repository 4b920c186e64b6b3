/**
 * The RMM's state and the only ways to it that a command takes: each read and write recorded for
 * the explorer, at the grain of what can change apart:
 *
 * - a granule's state and reference count: one resource per granule (an RTT's count goes up and
 *   down as updates, which commute);
 * - an RTT entry: one resource each, read by every walk through it (a new or freed table's 512
 *   entries are all written);
 * - a realm's descriptor fields (state, REC count, measurement): one per realm;
 * - a REC's fields (running, its pending RIPAS change): one per REC;
 * - the RTT store's slots and the VMIDs in use: one resource.
 *
 * Writes go through the clock (`touch`), so the invariant checks see a new state version even
 * when nothing records. RTT entries record themselves in their store's accessors (`RttStore`);
 * the checks, the UI and the audit read them through its `peek*` readers, recording nothing. `auditState` lists every piece under its resource id, for the footprint
 * audit to catch a change that no accessor recorded.
 */
import { resourceId, type Clock, type FootprintRecorder } from "@tdpemu/backend-sdk";
import { GRANULE_NS, Granules } from "./granules.js";
import type { Realm, RealmRecorder, Rec } from "./realm.js";
import { RttStore, type RttRecorder } from "./rtt.js";

export class RmmState implements RttRecorder, RealmRecorder {
  readonly granules: Granules;
  readonly rtts = new RttStore(this);
  readonly realms = new Map<number, Realm>();
  readonly recs = new Map<number, Rec>();
  private readonly vmids = new Set<number>();
  /** The explorer's recorder (the clock shares it: `attach`); null when nothing records. */
  fp: FootprintRecorder | null = null;
  private clock: Clock | null = null;
  private gSpace = 0;
  private tSpace = 0;
  private rSpace = 0;
  private cSpace = 0;
  private oSpace = 0;

  constructor(totalFrames: number) {
    // RTT entries keep frame numbers in 32-bit slots.
    if (totalFrames > 2 ** 31)
      throw new Error(
        `the CCA model's RMM covers hosts of up to 8 TiB (2^31 granules), this one has ${totalFrames} granules`,
      );
    this.granules = new Granules(totalFrames);
  }

  /** The run's clock: every realm on the host is made on it, and its recorder is shared here. */
  attach(clock: Clock): void {
    if (this.clock === clock) return;
    this.clock = clock;
    this.gSpace = clock.newResourceSpace();
    this.tSpace = clock.newResourceSpace();
    this.rSpace = clock.newResourceSpace();
    this.cSpace = clock.newResourceSpace();
    this.oSpace = clock.newResourceSpace();
    clock.shareRecorder(this);
  }

  private write(id: number): void {
    this.clock?.touch(id);
  }

  // ---------------------------------------------------------------- granules

  /** `find_lock_granule(addr, expected)`: the granule if it is in state `expected`, else -1. */
  findIn(addr: number, expected: number): number {
    const g = this.granules.find(addr);
    if (g < 0) return -1;
    this.fp?.read(resourceId(this.gSpace, g));
    return this.granules.state[g] === expected ? g : -1;
  }

  granuleState(g: number): number {
    this.fp?.read(resourceId(this.gSpace, g));
    return this.granules.state[g]!;
  }

  setGranuleState(g: number, state: number): void {
    this.write(resourceId(this.gSpace, g));
    this.granules.state[g] = state;
  }

  refs(g: number): number {
    this.fp?.read(resourceId(this.gSpace, g));
    return this.granules.refcount[g]!;
  }

  setRefs(g: number, n: number): void {
    this.write(resourceId(this.gSpace, g));
    this.granules.refcount[g] = n;
  }

  /**
   * An RTT's count of live entries (or an RD's of RECs) goes up or down: increments commute with
   * each other (two pages mapped in one table in either order leave the same count), so they
   * are recorded as updates, which conflict only with reads and writes of the granule.
   */
  addRefs(g: number, d: number): void {
    this.clock?.update(resourceId(this.gSpace, g));
    this.granules.refcount[g]! += d;
  }

  // ---------------------------------------------------------------- RTTs

  /** For the RTT store's accessors only (`RttRecorder`): commands read entries through them. */
  readEntry(e: number): void {
    this.fp?.read(resourceId(this.tSpace, e));
  }

  writeEntry(e: number): void {
    this.write(resourceId(this.tSpace, e));
  }

  /** A new table in granule `g` at `level`, its entries as `state`/`ripas`. */
  allocTable(g: number, level: number, state: number, ripas: number): number {
    this.write(resourceId(this.oSpace, 0));
    return this.rtts.alloc(g, level, state, ripas);
  }

  freeTable(slot: number): void {
    this.write(resourceId(this.oSpace, 0));
    this.rtts.free(slot);
  }

  // ---------------------------------------------------------------- realms, RECs, VMIDs

  /** A realm is made (REALM_CREATE) or destroyed: its descriptor is written. */
  protected addRealm(r: Realm): void {
    this.writeRealm(r);
    this.realms.set(r.rd, r);
  }

  protected removeRealm(r: Realm): void {
    this.writeRealm(r);
    this.realms.delete(r.rd);
  }

  protected addRec(c: Rec): void {
    this.writeRec(c);
    this.recs.set(c.granule, c);
  }

  protected removeRec(c: Rec): void {
    this.writeRec(c);
    this.recs.delete(c.granule);
  }

  assertBetweenSteps(what: string): void {
    this.clock?.assertBetweenSteps(what);
  }

  /** For the accessors of `Realm` and `Rec` only (`RealmRecorder`). */
  readRealm(r: Realm): void {
    this.fp?.read(resourceId(this.rSpace, r.rd));
  }

  writeRealm(r: Realm): void {
    this.write(resourceId(this.rSpace, r.rd));
  }

  readRec(rec: Rec): void {
    this.fp?.read(resourceId(this.cSpace, rec.granule));
  }

  writeRec(rec: Rec): void {
    this.write(resourceId(this.cSpace, rec.granule));
  }

  /** Whether VMID `v` is in use: a read of the VMIDs (one resource with the RTT store's slots). */
  vmidInUse(v: number): boolean {
    this.fp?.read(resourceId(this.oSpace, 0));
    return this.vmids.has(v);
  }

  /** VMID `v` is taken (REALM_CREATE) or given back (REALM_DESTROY). */
  takeVmid(v: number): void {
    this.write(resourceId(this.oSpace, 0));
    this.vmids.add(v);
  }

  releaseVmid(v: number): void {
    this.write(resourceId(this.oSpace, 0));
    this.vmids.delete(v);
  }

  /** Every piece of the RMM's state under its resource id (the footprint audit), recording nothing. */
  auditState(out: Map<number, string | number>): void {
    const { state, refcount } = this.granules;
    // A host of N frames has N granules, nearly all NS with no references: skip them 4 at a time
    // (the audit snapshots every step; a byte at a time over 147,456 granules was most of it).
    const words = new Uint32Array(state.buffer, state.byteOffset, state.length >>> 2);
    for (let w = 0; w <= words.length; w++) {
      const from = w * 4;
      const to = Math.min(from + 4, state.length);
      if (
        w < words.length &&
        words[w] === 0 &&
        (refcount[from]! | refcount[from + 1]! | refcount[from + 2]! | refcount[from + 3]!) === 0
      )
        continue;
      for (let g = from; g < to; g++) {
        if (state[g] !== GRANULE_NS || refcount[g] !== 0)
          out.set(resourceId(this.gSpace, g), state[g]! * 65536 + refcount[g]!);
      }
    }
    const rtts = this.rtts;
    for (let slot = 0; slot < rtts.slotCount; slot++) {
      if (!(rtts.granuleOf(slot) >= 0)) continue;
      // A number per entry, no string (the audit snapshots every step). The table's granule and
      // level change only at its birth and death, which write every entry.
      for (let e = slot * 512; e < slot * 512 + 512; e++)
        out.set(resourceId(this.tSpace, e), rtts.auditEntry(e));
    }
    for (const r of this.realms.values()) {
      const f = r.peek();
      out.set(resourceId(this.rSpace, r.rd), `${f.state}/${f.recCount}/${f.measurements}`);
    }
    for (const c of this.recs.values()) {
      const f = c.peek();
      out.set(
        resourceId(this.cSpace, c.granule),
        `${f.running}/${f.ripasPending}/${f.ripasBase}/${f.ripasTop}/${f.ripasAddr}/${f.ripasValue}/${f.ripasChangeDestroyed}`,
      );
    }
    out.set(resourceId(this.oSpace, 0), `${[...this.vmids].join(",")}|${rtts.auditState()}`);
  }
}
