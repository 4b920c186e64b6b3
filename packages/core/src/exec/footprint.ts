/**
 * What one step touched: the shared resources it read, wrote, or updated commutatively (a
 * counter increment), recorded while the explorer runs. Two steps are *independent* when no
 * resource is written by one and touched by the other, and no resource is read by one and
 * updated by the other; independent steps commute, so an interleaving that only swaps them is
 * the same run and the explorer can skip it (sleep sets).
 *
 * Resources are numbers: an SPTE is `table slot * 512 + index` (>= 0); the rest of the shared
 * state has a negative id of its own below. Recording costs nothing when no recorder is set
 * (`clock.fp === null`, the normal case).
 */
export const R_LOCK_WRITER = -1; // mmu_lock: writer and waiting writers
export const R_LOCK_READERS = -2; // mmu_lock: reader count
export const R_LOCK_WAITERS = -3; // mmu_lock: contention (rwlock_needbreak)
export const R_RCU = -4; // grace periods and deferred callbacks
export const R_POOL = -5; // the page-table pool's free list
export const R_BACKING = -6; // host frames given to guest memory
export const R_ATTR = -7; // memory attributes
export const R_INVALIDATE = -8; // mmu_invalidate_seq / in_progress
export const R_BACKEND = -9; // the backend's own state (SEAM module, RMP)
export const R_ROOTS = -10; // the root list and root validity
export const R_SLOTS = -11; // memslots
export const R_DIRTY = -12; // dirty bitmaps
export const R_TASKS = -13; // which tasks have finished

const KIND_READ = 1;
const KIND_ADD = 2;
const KIND_WRITE = 4;

/** An immutable record of one step's accesses. */
export class StepFootprint {
  constructor(
    readonly ids: Float64Array,
    readonly kinds: Uint8Array,
    /** The step touched the lock (blocked tasks may proceed after it). */
    readonly touchedLock: boolean,
  ) {}

  /** Whether this step and `o` do not commute. */
  dependsOn(o: StepFootprint): boolean {
    const a = this.ids.length <= o.ids.length ? this : o;
    const b = a === this ? o : this;
    for (let i = 0; i < a.ids.length; i++) {
      const id = a.ids[i]!;
      const ka = a.kinds[i]!;
      for (let j = 0; j < b.ids.length; j++) {
        if (b.ids[j] !== id) continue;
        const kb = b.kinds[j]!;
        if ((ka | kb) & KIND_WRITE) return true;
        if ((ka & KIND_READ && kb & KIND_ADD) || (ka & KIND_ADD && kb & KIND_READ)) return true;
      }
    }
    return false;
  }
}

/**
 * Collects the accesses of the step in progress. A step touches a handful of resources, so the
 * ids sit in a typed array found by a linear scan (no Map, nothing allocated per access); a
 * step that touches many (a zap of a whole table in one step) switches to a hashed index.
 */
const LINEAR_MAX = 32;

export class FootprintRecorder {
  private ids = new Float64Array(64);
  private kinds = new Uint8Array(64);
  private n = 0;
  /** id → position, only once the step has touched more than `LINEAR_MAX` resources. */
  private index: Map<number, number> | null = null;

  reset(): void {
    this.n = 0;
    this.index = null;
  }

  private find(id: number): number {
    if (this.index !== null) return this.index.get(id) ?? -1;
    const ids = this.ids;
    for (let i = 0; i < this.n; i++) if (ids[i] === id) return i;
    return -1;
  }

  private note(id: number, kind: number): void {
    const i = this.find(id);
    if (i >= 0) {
      this.kinds[i]! |= kind;
      return;
    }
    if (this.n === this.ids.length) {
      const ids = new Float64Array(this.n * 2);
      ids.set(this.ids);
      this.ids = ids;
      const kinds = new Uint8Array(this.n * 2);
      kinds.set(this.kinds);
      this.kinds = kinds;
    }
    this.ids[this.n] = id;
    this.kinds[this.n] = kind;
    if (this.index !== null) this.index.set(id, this.n);
    else if (this.n === LINEAR_MAX) {
      this.index = new Map();
      for (let j = 0; j <= this.n; j++) this.index.set(this.ids[j]!, j);
    }
    this.n++;
  }

  read(id: number): void {
    this.note(id, KIND_READ);
  }

  write(id: number): void {
    this.note(id, KIND_WRITE);
  }

  add(id: number): void {
    this.note(id, KIND_ADD);
  }

  snapshot(): StepFootprint {
    const touchedLock = this.find(R_LOCK_WRITER) >= 0 || this.find(R_LOCK_READERS) >= 0;
    return new StepFootprint(this.ids.slice(0, this.n), this.kinds.slice(0, this.n), touchedLock);
  }
}
