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

export class RttStore {
  state = new Uint8Array(0);
  ripas = new Uint8Array(0);
  /**
   * ASSIGNED: the data granule; ASSIGNED_NS: the frame the host mapped; TABLE: the child's
   * granule. A frame number (the model's hosts stay below 2^31 frames, 8 TiB).
   */
  addr = new Int32Array(0);
  /** ASSIGNED_NS: the host's MemAttr and S2AP bits of its descriptor (bits [7:2]). */
  attr = new Uint8Array(0);
  /** TABLE: the child's slot. */
  child = new Int32Array(0);
  /** Per slot: the table's level, its granule, and whether it is in use. */
  level = new Int8Array(0);
  granule = new Float64Array(0);
  private readonly freeSlots: number[] = [];
  private slots = 0;

  /** A new table at `level` in granule `g`, its 512 entries as `state`/`ripas`. */
  alloc(g: number, level: number, state: number, ripas: number): number {
    let s = this.freeSlots.pop();
    if (s === undefined) {
      s = this.slots++;
      if (s >= this.level.length) this.grow(Math.max(16, this.level.length * 2));
    }
    this.level[s] = level;
    this.granule[s] = g;
    const base = s * ENTRIES;
    this.state.fill(state, base, base + ENTRIES);
    this.ripas.fill(ripas, base, base + ENTRIES);
    this.addr.fill(0, base, base + ENTRIES);
    this.attr.fill(0, base, base + ENTRIES);
    this.child.fill(-1, base, base + ENTRIES);
    return s;
  }

  free(slot: number): void {
    this.granule[slot] = -1;
    this.freeSlots.push(slot);
  }

  private grow(n: number): void {
    const g8 = (a: Uint8Array, k: number) => {
      const b = new Uint8Array(k);
      b.set(a);
      return b;
    };
    this.state = g8(this.state, n * ENTRIES);
    this.ripas = g8(this.ripas, n * ENTRIES);
    this.attr = g8(this.attr, n * ENTRIES);
    const addr = new Int32Array(n * ENTRIES);
    addr.set(this.addr);
    this.addr = addr;
    const child = new Int32Array(n * ENTRIES);
    child.set(this.child);
    this.child = child;
    const level = new Int8Array(n);
    level.set(this.level);
    this.level = level;
    const granule = new Float64Array(n).fill(-1);
    granule.set(this.granule);
    this.granule = granule;
  }

  /** The free slots and how many were ever made, for the footprint audit. */
  auditState(): string {
    return `${this.freeSlots.join(",")}/${this.slots}`;
  }

  /** The index of `addr`'s entry in a table at `level`. */
  static index(addr: number, level: number): number {
    return Math.floor(addr / levelSize(level)) % ENTRIES;
  }
}
