/**
 * Realm Translation Tables: a realm's stage-2 tables, owned by the RMM (RMM specification 1.0,
 * "RTT entry" and "RIPAS"; TF-RMM's `lib/s2tt`). Each table is a granule in state RTT of 512
 * entries; each entry is UNASSIGNED, ASSIGNED or TABLE in the protected half of the IPA space
 * (below the top IPA bit, the realm's Protected Address Range) and carries the realm's view of
 * it, its RIPAS (EMPTY, RAM, DESTROYED); in the unprotected half it is UNASSIGNED_NS or
 * ASSIGNED_NS (the specification's ASSIGNED with an NS descriptor; TF-RMM marks them with
 * bit 55 of the s2tte) and has no RIPAS.
 *
 * Kept in typed arrays, 512 entries per table slot; a TABLE entry holds its child's slot beside
 * the child's granule, so a walk follows slots and never looks a granule up.
 */
export const RTTE_UNASSIGNED = 0;
export const RTTE_ASSIGNED = 1;
export const RTTE_TABLE = 2;
export const RTTE_UNASSIGNED_NS = 3;
export const RTTE_ASSIGNED_NS = 4;

/** The state RMI_RTT_READ_ENTRY reports (RMI_UNASSIGNED 0, RMI_ASSIGNED 1, RMI_TABLE 2). */
export const RMI_RTTE_STATE: readonly number[] = [0, 1, 2, 0, 1];
export const RTTE_STATE_NAMES: readonly string[] = [
  "UNASSIGNED",
  "ASSIGNED",
  "TABLE",
  "UNASSIGNED_NS",
  "ASSIGNED_NS",
];

export const RIPAS_EMPTY = 0;
export const RIPAS_RAM = 1;
export const RIPAS_DESTROYED = 2;
export const RIPAS_NAMES: readonly string[] = ["EMPTY", "RAM", "DESTROYED"];

/** The lowest level a block may be mapped at (TF-RMM's S2TT_MIN_BLOCK_LEVEL) and the page level. */
export const RTT_MIN_BLOCK_LEVEL = 1;
export const RTT_PAGE_LEVEL = 3;

/** Bytes one entry at RTT level -1 to 3 covers, indexed by level + 1. */
const LEVEL_SIZE = [2 ** 48, 2 ** 39, 2 ** 30, 2 ** 21, 2 ** 12];

/** Bytes one entry at RTT `level` covers (level 3: 4 KiB; level -1 with LPA2: 256 TiB). */
export function levelSize(level: number): number {
  return LEVEL_SIZE[level + 1]!;
}

/** `addr` is a valid address of an entry at `level`: inside the IPA space and aligned to the entry. */
export function addrValidAt(addr: number, level: number, ipaBits: number): boolean {
  return (
    Number.isInteger(addr) && addr >= 0 && addr < 2 ** ipaBits && addr % levelSize(level) === 0
  );
}

const ENTRIES = 512;

/** Where an RTT store records the accesses to its entries (`RmmState`: the explorer's recorder). */
export interface RttRecorder {
  /** Entry `e` (`slot * 512 + index`) is read: a walk passes through it, or a command looks at it. */
  readEntry(e: number): void;
  /** Entry `e` changes. */
  writeEntry(e: number): void;
  /** A reader that records nothing was called: it fails inside a step (`Clock.assertBetweenSteps`). */
  assertBetweenSteps(what: string): void;
}

/**
 * The RTTs: 512 entries per table slot, each field in its own typed array, private. A command
 * reaches an entry only through the accessors below, which record the read or the write of
 * that entry as they do it (`state`, `setState`, ...); the checks, the UI and the audit read
 * through the `peek*` ones, which record nothing. A table's granule and level are set when its
 * slot is allocated and cleared when it is freed, both of which write every entry, so reading
 * them records nothing: whoever asks reached the table through an entry it read.
 */
export class RttStore {
  private st = new Uint8Array(0);
  private rip = new Uint8Array(0);
  /**
   * ASSIGNED: the data granule; ASSIGNED_NS: the frame the host mapped; TABLE: the child's
   * granule. A frame number (the model's hosts stay below 2^31 frames, 8 TiB).
   */
  private pa = new Int32Array(0);
  /** ASSIGNED_NS: the host's MemAttr and S2AP bits of its descriptor (bits [7:2]). */
  private at = new Uint8Array(0);
  /** TABLE: the child's slot. */
  private ch = new Int32Array(0);
  /** Per slot: the table's level, its granule (-1: the slot is free). */
  private lvl = new Int8Array(0);
  private gran = new Float64Array(0);
  private readonly freeSlots: number[] = [];
  private slots = 0;

  constructor(private readonly rec: RttRecorder) {}

  state(e: number): number {
    this.rec.readEntry(e);
    return this.st[e]!;
  }

  ripas(e: number): number {
    this.rec.readEntry(e);
    return this.rip[e]!;
  }

  addr(e: number): number {
    this.rec.readEntry(e);
    return this.pa[e]!;
  }

  attr(e: number): number {
    this.rec.readEntry(e);
    return this.at[e]!;
  }

  child(e: number): number {
    this.rec.readEntry(e);
    return this.ch[e]!;
  }

  setState(e: number, v: number): void {
    this.rec.writeEntry(e);
    this.st[e] = v;
  }

  setRipas(e: number, v: number): void {
    this.rec.writeEntry(e);
    this.rip[e] = v;
  }

  setAddr(e: number, v: number): void {
    this.rec.writeEntry(e);
    this.pa[e] = v;
  }

  setAttr(e: number, v: number): void {
    this.rec.writeEntry(e);
    this.at[e] = v;
  }

  setChild(e: number, v: number): void {
    this.rec.writeEntry(e);
    this.ch[e] = v;
  }

  /** The granule of the table in `slot` (-1 if the slot is free). */
  granuleOf(slot: number): number {
    return this.gran[slot]!;
  }

  /** The fields, recording nothing: for the checks, the UI and the audit, between steps. */
  peekState(e: number): number {
    this.rec.assertBetweenSteps("an RTT entry");
    return this.st[e]!;
  }

  peekRipas(e: number): number {
    this.rec.assertBetweenSteps("an RTT entry");
    return this.rip[e]!;
  }

  peekAddr(e: number): number {
    this.rec.assertBetweenSteps("an RTT entry");
    return this.pa[e]!;
  }

  peekAttr(e: number): number {
    this.rec.assertBetweenSteps("an RTT entry");
    return this.at[e]!;
  }

  peekChild(e: number): number {
    this.rec.assertBetweenSteps("an RTT entry");
    return this.ch[e]!;
  }

  /** Slots ever made (free or not): the bound of a scan over `granuleOf`. */
  get slotCount(): number {
    return this.lvl.length;
  }

  /**
   * A new table at `level` in granule `g`, its 512 entries as `state`/`ripas`; every entry of
   * it written.
   */
  alloc(g: number, level: number, state: number, ripas: number): number {
    let s = this.freeSlots.pop();
    if (s === undefined) {
      s = this.slots++;
      if (s >= this.lvl.length) this.grow(Math.max(16, this.lvl.length * 2));
    }
    this.lvl[s] = level;
    this.gran[s] = g;
    const base = s * ENTRIES;
    for (let e = base; e < base + ENTRIES; e++) this.rec.writeEntry(e);
    this.st.fill(state, base, base + ENTRIES);
    this.rip.fill(ripas, base, base + ENTRIES);
    this.pa.fill(0, base, base + ENTRIES);
    this.at.fill(0, base, base + ENTRIES);
    this.ch.fill(-1, base, base + ENTRIES);
    return s;
  }

  /** The table in `slot` is gone: every entry of it written. */
  free(slot: number): void {
    for (let e = slot * ENTRIES; e < slot * ENTRIES + ENTRIES; e++) this.rec.writeEntry(e);
    this.gran[slot] = -1;
    this.freeSlots.push(slot);
  }

  private grow(n: number): void {
    const g8 = (a: Uint8Array, k: number) => {
      const b = new Uint8Array(k);
      b.set(a);
      return b;
    };
    this.st = g8(this.st, n * ENTRIES);
    this.rip = g8(this.rip, n * ENTRIES);
    this.at = g8(this.at, n * ENTRIES);
    const pa = new Int32Array(n * ENTRIES);
    pa.set(this.pa);
    this.pa = pa;
    const ch = new Int32Array(n * ENTRIES);
    ch.set(this.ch);
    this.ch = ch;
    const lvl = new Int8Array(n);
    lvl.set(this.lvl);
    this.lvl = lvl;
    const gran = new Float64Array(n).fill(-1);
    gran.set(this.gran);
    this.gran = gran;
  }

  /** The free slots and how many were ever made, for the footprint audit. */
  auditState(): string {
    return `${this.freeSlots.join(",")}/${this.slots}`;
  }

  /**
   * Entry `e`, recording nothing: for the footprint audit. One number, and the child's slot
   * beside it for a table entry (the few that have one), so that no field goes unseen.
   */
  auditEntry(e: number): number | string {
    const n = this.st[e]! + 8 * this.rip[e]! + 32 * this.at[e]! + 8192 * this.pa[e]!;
    const c = this.ch[e]!;
    return c < 0 ? n : `${n}>${c}`;
  }

  /** The index of `addr`'s entry in a table at `level`. */
  static index(addr: number, level: number): number {
    return Math.floor(addr / levelSize(level)) % ENTRIES;
  }
}
