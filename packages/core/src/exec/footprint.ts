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
import { grown, lowerBound } from "../mem/typed-arrays.js";

export const R_LOCK_WRITER = -1; // mmu_lock: writer and waiting writers
export const R_LOCK_READERS = -2; // mmu_lock: reader count
export const R_LOCK_WAITERS = -3; // mmu_lock: contention (rwlock_needbreak)
export const R_RCU = -4; // grace periods and deferred callbacks
export const R_POOL = -5; // the page-table pool's free list
export const R_BACKING = -6; // the host's frame allocator (guest memory, control pages, table pages)
export const R_ATTR = -7; // memory attributes
export const R_INVALIDATE = -8; // mmu_invalidate_seq / in_progress
export const R_BACKEND = -9; // the backend's own state (SEAM module, RMP)
export const R_ROOTS = -10; // the root list and root validity
export const R_SLOTS = -11; // memslots
export const R_DIRTY = -12; // dirty bitmaps
export const R_FINALIZED = -13; // the VMM has finalized the VM (its vCPUs may start)
export const R_SRCU = -14; // kvm->srcu: which faults (and the teardown's kvm_mmu_destroy) are inside a read-side section, of which memslots generation
export const R_LPAGE = -15; // the memslots' lpage_info guest-inhibit bits (TDX huge pages)
export const R_POOL_COUNTS = -16; // the page-table pool's counts of live tables (updated commutatively)
export const R_TORN_DOWN = -17; // the VM has been torn down
export const R_SLOTS_LOCK = -18; // kvm->slots_lock: who holds it
export const R_GMEM_LOCK = -19; // guest_memfd's filemap_invalidate_lock: who holds it
/**
 * A call counter that an injected fault reads has advanced (`--inject`): the calling task's own
 * next call may end otherwise, so a retry after it is not one that "would end the same way"
 * (`WaitTracker.beginRetryWait`). Updated (commutatively) beside the counter's own id, which
 * is written: only the task's own footprint is asked about it and no step reads it, so it adds
 * no conflict between calls, of different leaves or tasks, that their counters do not make.
 */
export const R_INJECTED = -20;
/** The memslots' lpage_info KVM_LPAGE_MIXED_FLAG bits (apart from the guest-inhibit bits, R_LPAGE). */
export const R_LPAGE_MIXED = -21;
/** Task `i` has finished: `R_TASK_DONE - i`, one resource per task (below every other id). */
export const R_TASK_DONE = -1000;

export function taskDoneId(task: number): number {
  return R_TASK_DONE - task;
}

const FIXED_NAMES = [
  "",
  "mmu_lock writer",
  "mmu_lock readers",
  "mmu_lock waiters",
  "RCU",
  "page-table pool",
  "host frames",
  "memory attributes",
  "mmu_invalidate",
  "backend",
  "roots",
  "memslots",
  "dirty bitmaps",
  "finalize",
  "kvm->srcu",
  "lpage_info guest inhibit",
  "page-table pool counts",
  "the VM is torn down",
  "kvm->slots_lock",
  "guest_memfd's filemap_invalidate_lock",
  "an injected fault's call counter",
  "lpage_info mixed attributes",
];

/** A resource id as a reader would name it. */
export function resourceName(id: number): string {
  if (id >= 0) return `SPTE ${id % 512} of table slot ${Math.floor(id / 512)}`;
  if (id > R_TASK_DONE) return FIXED_NAMES[-id] ?? `resource ${id}`;
  if (id > -1099511627776) return `completion of task ${R_TASK_DONE - id}`;
  const rest = -1099511627776 - id;
  return `resource ${rest % 4294967296} of space ${Math.floor(rest / 4294967296)}`;
}

/** The first `n` of `names`, and how many more there are: "a, b, c and 4 more". */
export function fewNames(names: readonly string[], n: number): string {
  const more = names.length > n ? ` and ${names.length - n} more` : "";
  return names.slice(0, n).join(", ") + more;
}

/**
 * Resource `index` (< 2^32) of the per-object space `space` (`Clock.newResourceSpace`): a guest
 * backing's host pages, an RMP's entries, a TD's S-EPT entries. Below -2^40, apart from the
 * fixed ids above and the task ids; exact in a double for 2^12 spaces.
 */
export function resourceId(space: number, index: number): number {
  return -1099511627776 - space * 4294967296 - index;
}

export const KIND_READ = 1;
export const KIND_ADD = 2;
export const KIND_WRITE = 4;

/**
 * Whether an access of kind `theirs` by one task changes what an access of kind `mine` by another
 * saw: a write changes every access, a commutative update changes a read or a write.
 */
export function modifies(theirs: number, mine: number): boolean {
  return (
    (theirs & KIND_WRITE) !== 0 ||
    ((theirs & KIND_ADD) !== 0 && (mine & (KIND_READ | KIND_WRITE)) !== 0)
  );
}

/**
 * The footprints of the steps the explorer has taken and still refers to, in one growing buffer
 * (a step's accesses at an offset), named by handles 0, 1, 2, ... in the order they were added.
 * The explorer adds one for every step it takes with a choice and forgets them in the reverse
 * order (a depth-first search drops the footprints of a subtree when it leaves it), so the store
 * is a stack: `truncate` forgets every footprint from a handle on, and nothing is allocated per
 * step once the buffers have grown to the deepest path.
 */
export class FootprintStore {
  private ids = new Float64Array(1024);
  private kinds = new Uint8Array(1024);
  private used = 0;
  /** Per handle: where its accesses start in `ids`/`kinds`, and how many there are. */
  private start = new Int32Array(256);
  private len = new Int32Array(256);
  /** Per handle: 1 if any access writes or updates (a footprint of reads only changes nothing). */
  private mods = new Uint8Array(256);
  /**
   * Per footprint, a 32-bit signature of its ids (`idBit`), and of the ids it writes or updates:
   * two footprints can conflict only where one's written signature meets the other's, so most
   * pairs that share no modified id are told apart without the merge pass (`meets`).
   */
  private sig = new Int32Array(256);
  private wsig = new Int32Array(256);
  private n = 0;
  /** Room to sort a large footprint in (`sortRange`). */
  private scratch = new Float64Array(64);
  private scratchKinds = new Uint8Array(64);

  /** How many footprints are held (the next handle). */
  get count(): number {
    return this.n;
  }

  /** Forgets the footprints with handles `n` and up. */
  truncate(n: number): void {
    this.n = n;
    this.used = n === 0 ? 0 : this.start[n - 1]! + this.len[n - 1]!;
  }

  /**
   * Adds `count` accesses (ids and kinds, from index `from`), kept ascending by id with no id
   * twice (`sortRange`); returns the new footprint's handle.
   */
  add(ids: Float64Array, kinds: Uint8Array, count: number, from = 0): number {
    this.reserve(count);
    // A loop, not `set(subarray)`: a step touches a handful of resources, and a view per step
    // would be the one allocation left.
    const to = this.used;
    let mods = 0;
    let sorted = true;
    for (let i = 0; i < count; i++) {
      this.ids[to + i] = ids[from + i]!;
      this.kinds[to + i] = kinds[from + i]!;
      mods |= kinds[from + i]!;
      if (i > 0 && !(ids[from + i]! > ids[from + i - 1]!)) sorted = false;
    }
    return this.added(sorted ? count : this.sortRange(to, count), mods);
  }

  /** Room for one more footprint of `count` accesses. */
  private reserve(count: number): void {
    if (this.n === this.start.length) {
      this.start = grown(this.start, new Int32Array(this.n * 2));
      this.len = grown(this.len, new Int32Array(this.n * 2));
      this.mods = grown(this.mods, new Uint8Array(this.n * 2));
      this.sig = grown(this.sig, new Int32Array(this.n * 2));
      this.wsig = grown(this.wsig, new Int32Array(this.n * 2));
    }
    if (this.used + count > this.ids.length) {
      const cap = Math.max(this.ids.length * 2, this.used + count);
      this.ids = grown(this.ids, new Float64Array(cap));
      this.kinds = grown(this.kinds, new Uint8Array(cap));
    }
  }

  /** The footprint of the `n` accesses just written at `used` (their kinds or-ed in `mods`): its handle. */
  private added(n: number, mods: number): number {
    const h = this.n++;
    this.mods[h] = (mods & (KIND_WRITE | KIND_ADD)) !== 0 ? 1 : 0;
    let sig = 0;
    let wsig = 0;
    for (let i = this.used; i < this.used + n; i++) {
      const bit = idBit(this.ids[i]!);
      sig |= bit;
      if ((this.kinds[i]! & (KIND_WRITE | KIND_ADD)) !== 0) wsig |= bit;
    }
    this.sig[h] = sig;
    this.wsig[h] = wsig;
    this.start[h] = this.used;
    this.len[h] = n;
    this.used += n;
    return h;
  }

  /**
   * Sorts the `count` accesses at `at` by id, merging an id met twice into one access of both
   * kinds; returns how many are left. Footprints are kept so, ascending with no id twice, and
   * `dependsOn` compares two by one merge pass: a step that splits a 2 MiB page touches a
   * thousand resources, and comparing every pair of two such footprints cost the race analysis
   * most of its time.
   */
  private sortRange(at: number, count: number): number {
    const ids = this.ids;
    const kinds = this.kinds;
    if (count <= 16) {
      // Insertion sort: most footprints are a handful of ids.
      for (let i = 1; i < count; i++) {
        const id = ids[at + i]!;
        const k = kinds[at + i]!;
        let j = i - 1;
        for (; j >= 0 && ids[at + j]! > id; j--) {
          ids[at + j + 1] = ids[at + j]!;
          kinds[at + j + 1] = kinds[at + j]!;
        }
        ids[at + j + 1] = id;
        kinds[at + j + 1] = k;
      }
    } else {
      // The ids by the typed array's own numeric sort, without repeats; then each access's kind
      // into its id's place, found by bisection.
      if (this.scratch.length < count) {
        this.scratch = new Float64Array(2 * count);
        this.scratchKinds = new Uint8Array(2 * count);
      }
      const sorted = this.scratch.subarray(0, count);
      sorted.set(ids.subarray(at, at + count));
      sorted.sort();
      let u = 0;
      for (let i = 0; i < count; i++)
        if (u === 0 || sorted[u - 1] !== sorted[i]) sorted[u++] = sorted[i]!;
      const k = this.scratchKinds;
      k.fill(0, 0, u);
      for (let i = 0; i < count; i++) k[lowerBound(sorted, 0, u, ids[at + i]!)]! |= kinds[at + i]!;
      for (let i = 0; i < u; i++) {
        ids[at + i] = sorted[i]!;
        kinds[at + i] = k[i]!;
      }
      return u;
    }
    let n = 0;
    for (let i = 0; i < count; i++) {
      if (n > 0 && ids[at + n - 1] === ids[at + i]) kinds[at + n - 1]! |= kinds[at + i]!;
      else {
        ids[at + n] = ids[at + i]!;
        kinds[at + n] = kinds[at + i]!;
        n++;
      }
    }
    return n;
  }

  /** Adds a copy of footprint `h` of store `src`; returns its handle here. */
  addFrom(src: FootprintStore, h: number): number {
    return this.add(src.ids, src.kinds, src.len[h]!, src.start[h]);
  }

  /** Where the accesses of footprint `h` start in `idsView`/`kindsView`. */
  startOf(h: number): number {
    return this.start[h]!;
  }

  lengthOf(h: number): number {
    return this.len[h]!;
  }

  /** Whether footprint `h` writes or updates resource `id`. */
  modifiesId(h: number, id: number): boolean {
    const from = this.start[h]!;
    const to = from + this.len[h]!;
    const i = lowerBound(this.ids, from, to, id);
    return i < to && this.ids[i] === id && (this.kinds[i]! & (KIND_WRITE | KIND_ADD)) !== 0;
  }

  /** Whether footprint `h` writes or updates anything (else it cannot change what another step saw). */
  modifiesAny(h: number): boolean {
    return this.mods[h] === 1;
  }

  /** The accesses of every footprint (valid until the next `add`, which may grow them). */
  get idsView(): Float64Array {
    return this.ids;
  }

  get kindsView(): Uint8Array {
    return this.kinds;
  }

  /** Whether the step of footprint `a` changes what the step of footprint `b` touched (`modifies`). */
  modifiesSome(a: number, b: number): boolean {
    return this.meets(a, this, b, false);
  }

  /** Whether the steps of footprints `a` and `b` do not commute: either modifies what the other touched. */
  dependsOn(a: number, b: number): boolean {
    return this.meets(a, this, b, true);
  }

  /** `dependsOn` of footprint `a` of this store and footprint `b` of store `other`. */
  dependsOnIn(a: number, other: FootprintStore, b: number): boolean {
    return this.meets(a, other, b, true);
  }

  /**
   * Whether an id of both footprints (`a` of this store, `b` of `other`, which may be this one)
   * is modified by `a`'s access (`both`: or by `b`'s). Both are ascending with no id twice
   * (`add`), so two footprints whose id ranges do not overlap share nothing, and otherwise one
   * pass finds the ids they share. The race analysis compares a step of a handful of ids with
   * one that splits a 2 MiB page (a thousand): there the pass leaps through the large one by
   * bisection instead of stepping through it (measured on the three-vCPU race, such pairs were
   * 7 % of the comparisons and 68 % of the ids stepped over).
   */
  private meets(a: number, other: FootprintStore, b: number, both: boolean): boolean {
    const ids = this.ids;
    const idsB = other.ids;
    const a0 = this.start[a]!;
    const a1 = a0 + this.len[a]!;
    const b0 = other.start[b]!;
    const b1 = b0 + other.len[b]!;
    // An id both touch that one modifies sets a bit of both signatures (`sig`).
    const sigs = both
      ? (this.wsig[a]! & other.sig[b]!) | (this.sig[a]! & other.wsig[b]!)
      : this.wsig[a]! & other.sig[b]!;
    if (sigs === 0) return false;
    if (a0 === a1 || b0 === b1 || ids[a1 - 1]! < idsB[b0]! || idsB[b1 - 1]! < ids[a0]!)
      return false;
    const la = a1 - a0;
    const lb = b1 - b0;
    if (la * LEAP_RATIO < lb)
      return meetsLeaping(ids, this.kinds, a0, a1, idsB, other.kinds, b0, b1, both, false);
    if (lb * LEAP_RATIO < la)
      return meetsLeaping(idsB, other.kinds, b0, b1, ids, this.kinds, a0, a1, both, true);
    const kinds = this.kinds;
    const kindsB = other.kinds;
    let i = a0;
    let j = b0;
    while (i < a1 && j < b1) {
      const x = ids[i]!;
      const y = idsB[j]!;
      if (x < y) i++;
      else if (x > y) j++;
      else {
        const ka = kinds[i++]!;
        const kb = kindsB[j++]!;
        if (modifies(ka, kb) || (both && modifies(kb, ka))) return true;
      }
    }
    return false;
  }
}

/**
 * The bit of resource `id` in a footprint's signature: a hash of its two 32-bit halves (ids are
 * whole numbers, exact in a double; `resourceId`), so that the SPTEs of one table, the entries
 * of one space and the fixed ids spread over the 32 bits.
 */
function idBit(id: number): number {
  const lo = (id % 4294967296) | 0;
  const hi = (id / 4294967296) | 0;
  return 1 << ((Math.imul(lo, 0x9e3779b1) ^ Math.imul(hi, 0x85ebca77)) >>> 27);
}

/**
 * `meets` of a small footprint (`[s0, s1)` of `sIds`/`sKinds`) and a large one (`[l0, l1)` of
 * `lIds`/`lKinds`): each id of the small one is looked for in the rest of the large one by
 * bisection. `swapped`: the small one is `meets`'s `b`.
 */
function meetsLeaping(
  sIds: Float64Array,
  sKinds: Uint8Array,
  s0: number,
  s1: number,
  lIds: Float64Array,
  lKinds: Uint8Array,
  l0: number,
  l1: number,
  both: boolean,
  swapped: boolean,
): boolean {
  let lo = l0;
  for (let i = s0; i < s1 && lo < l1; i++) {
    const x = sIds[i]!;
    lo = lowerBound(lIds, lo, l1, x);
    if (lo === l1 || lIds[lo]! !== x) continue;
    const ka = swapped ? lKinds[lo]! : sKinds[i]!;
    const kb = swapped ? sKinds[i]! : lKinds[lo]!;
    if (modifies(ka, kb) || (both && modifies(kb, ka))) return true;
    lo++;
  }
  return false;
}

/**
 * A sorted set of ids is searched by bisection, instead of stepping through it beside another,
 * when it is more than this many times the other's size (`meets`).
 */
const LEAP_RATIO = 8;

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
      this.ids = grown(this.ids, new Float64Array(this.n * 2));
      this.kinds = grown(this.kinds, new Uint8Array(this.n * 2));
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

  /** The resources recorded since `reset`, in the order first touched (for the audit). */
  touched(): number[] {
    return Array.from(this.ids.subarray(0, this.n));
  }

  /** How the step in progress touched `id` (KIND_* bits), 0 if not at all. */
  kindOf(id: number): number {
    const i = this.find(id);
    return i < 0 ? 0 : this.kinds[i]!;
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

  /** Adds the accesses recorded since `reset` to `store`; returns their handle there. */
  saveTo(store: FootprintStore): number {
    return store.add(this.ids, this.kinds, this.n);
  }
}
