/**
 * The read-only view of a VM's roots that a backend's invariant checks walk (`MirrorView`):
 * the mirror roots' present entries (what TDX compares with its S-EPT) and the direct roots'
 * (what SEV compares with its RMP).
 *
 * It is checked after every explorer step, so it is one object per VM, made on first use, and
 * its walks are methods that take the callback as an argument: nothing is allocated per check.
 */
import { gfnWithoutDirectBits } from "../arch/gpa.js";
import { PAGES_PER_LEVEL, gfnRoundForLevel, sptIndex } from "../arch/levels.js";
import { isLastSpte, isShadowPresent, spteToPfn } from "../arch/spte.js";
import type { Backend, MirrorEntryKind, MirrorView } from "../backend/backend.js";
import type { PtPool } from "../mem/pt-pool.js";
import { grown } from "../mem/typed-arrays.js";
import type { Vm } from "../vm/vm.js";

/** A backend's `checkInvariants` and what it returns. */
type BackendCheck = NonNullable<Backend["checkInvariants"]>;
type Finding = ReturnType<BackendCheck>[number];

type MirrorCb = (
  gfn: number,
  level: number,
  kind: MirrorEntryKind,
  pfn: number,
  externalSpt: number,
) => void;
type DirectCb = (gfn: number, level: number, kind: MirrorEntryKind, pfn: number) => void;

const LOG_LEAF = 1;
const LOG_MIRROR = 2;

/**
 * The present entries of the valid roots, in walk order, as the core's invariant walk met them
 * (it visits every one of them anyway): the backend's checks, run right after it on the same
 * state, replay this instead of walking the tables again.
 */
export class VisitLog {
  private gfns = new Float64Array(LOG_INITIAL);
  private pfns = new Float64Array(LOG_INITIAL);
  private exts = new Int32Array(LOG_INITIAL);
  private levels = new Uint8Array(LOG_INITIAL);
  private flags = new Uint8Array(LOG_INITIAL);
  private n = 0;
  /**
   * The positions of the mirror entries, and whether they came in ascending (GFN, then
   * descending level) order: the preorder of one root's walk, where an entry's table comes
   * before its children and a table's entries by index. Then `find` needs no walk.
   */
  private mirrorAt = new Int32Array(LOG_INITIAL);
  private nMirror = 0;
  private mirrorSorted = true;
  /** Where the last `find` ended: lookups in walk order each start where the last one stopped. */
  private cursor = 0;
  /**
   * More entries than `LOG_MAX` were met: the log stopped taking them and the checks must walk.
   * A large guest (a 1 TiB one has 268 M leaves) would otherwise need gigabytes for a copy of
   * its tables; the log pays off on the explorer's small states, checked after every step.
   */
  overflowed = false;

  constructor(private readonly max = LOG_MAX) {}

  /** Empties the log, and gives back the memory of a large one (the checker lives on). */
  clear(): void {
    this.n = 0;
    this.nMirror = 0;
    this.mirrorSorted = true;
    this.cursor = 0;
    this.overflowed = false;
    if (this.gfns.length > LOG_KEEP) {
      this.resize(LOG_INITIAL);
      this.mirrorAt = new Int32Array(LOG_INITIAL);
    }
  }

  add(
    gfn: number,
    level: number,
    leaf: boolean,
    pfn: number,
    externalSpt: number,
    mirror: boolean,
  ): void {
    if (this.n === this.gfns.length) {
      if (this.n >= this.max) {
        this.overflowed = true;
        return;
      }
      this.resize(this.n * 2);
    }
    const i = this.n++;
    this.gfns[i] = gfn;
    this.pfns[i] = pfn;
    this.exts[i] = externalSpt;
    this.levels[i] = level;
    this.flags[i] = (leaf ? LOG_LEAF : 0) | (mirror ? LOG_MIRROR : 0);
    if (!mirror) return;
    if (this.nMirror === this.mirrorAt.length)
      this.mirrorAt = grown(this.mirrorAt, new Int32Array(2 * this.nMirror));
    if (this.nMirror > 0 && !this.precedes(this.mirrorAt[this.nMirror - 1]!, gfn, level))
      this.mirrorSorted = false;
    this.mirrorAt[this.nMirror++] = i;
  }

  /** Whether entry `i` comes before (gfn, level) in a walk's preorder. */
  private precedes(i: number, gfn: number, level: number): boolean {
    const g = this.gfns[i]!;
    return g < gfn || (g === gfn && this.levels[i]! > level);
  }

  /**
   * The position of the mirror entry at KVM `level` whose span starts at `gfn`; -1 if there is
   * none; -2 if the log cannot tell (its mirror entries are not in one walk's order: two valid
   * mirror roots).
   */
  find(gfn: number, level: number): number {
    if (!this.mirrorSorted) return -2;
    const at = this.mirrorAt;
    const n = this.nMirror;
    let k = this.cursor;
    // Lookups in the walk's order move the cursor forward a little; any other starts afresh,
    // by bisection.
    if (k > n || (k > 0 && !this.precedes(at[k - 1]!, gfn, level))) {
      let lo = 0;
      let hi = n;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (this.precedes(at[mid]!, gfn, level)) lo = mid + 1;
        else hi = mid;
      }
      k = lo;
    } else while (k < n && this.precedes(at[k]!, gfn, level)) k++;
    this.cursor = k;
    if (k === n) return -1;
    const i = at[k]!;
    return this.gfns[i] === gfn && this.levels[i] === level ? i : -1;
  }

  /** The entry at position `i` (`find`), as `MirrorView.lookup` gives it. */
  entryAt(i: number): { kind: MirrorEntryKind; pfn: number; externalSpt: number } {
    return this.flags[i]! & LOG_LEAF
      ? { kind: "leaf", pfn: this.pfns[i]!, externalSpt: -1 }
      : { kind: "table", pfn: this.pfns[i]!, externalSpt: this.exts[i]! };
  }

  get size(): number {
    return this.n;
  }

  forEach(mirror: boolean, cb: MirrorCb): void {
    const want = mirror ? LOG_MIRROR : 0;
    for (let i = 0; i < this.n; i++) {
      const f = this.flags[i]!;
      if ((f & LOG_MIRROR) !== want) continue;
      cb(
        this.gfns[i]!,
        this.levels[i]!,
        f & LOG_LEAF ? "leaf" : "table",
        this.pfns[i]!,
        this.exts[i]!,
      );
    }
  }

  private resize(cap: number): void {
    const n = this.n;
    this.gfns = grown(this.gfns.subarray(0, n), new Float64Array(cap));
    this.pfns = grown(this.pfns.subarray(0, n), new Float64Array(cap));
    this.exts = grown(this.exts.subarray(0, n), new Int32Array(cap));
    this.levels = grown(this.levels.subarray(0, n), new Uint8Array(cap));
    this.flags = grown(this.flags.subarray(0, n), new Uint8Array(cap));
  }
}

const LOG_INITIAL = 64;
/** A cleared log larger than this gives its arrays back. */
const LOG_KEEP = 1 << 16;
/** Entries a log takes at most (22 bytes each). */
const LOG_MAX = 1 << 20;

class PoolMirrorView implements MirrorView {
  private readonly pool: PtPool;
  /** Set while the state is the one `log` was taken of (see `checkWithLog`). */
  private log: VisitLog | null = null;

  constructor(private readonly vm: Vm) {
    this.pool = vm.host.pool;
  }

  /** Runs the backend's checks with the walks answered from `log`, a complete record of the current state's valid roots. */
  checkWithLog(log: VisitLog, backend: Backend, check: BackendCheck): Finding[] {
    this.log = log;
    try {
      return check.call(backend, this.vm, this);
    } finally {
      this.log = null;
    }
  }

  forEach(cb: MirrorCb): void {
    if (this.log !== null) {
      this.log.forEach(true, cb);
      return;
    }
    for (const root of this.vm.mmu.peekRoots())
      if (root.mirror && !root.peekInvalid()) this.walk(cb, root.slot, root.level, 0, true);
  }

  forEachDirect(cb: DirectCb): void {
    if (this.log !== null) {
      this.log.forEach(false, cb);
      return;
    }
    for (const root of this.vm.mmu.peekRoots())
      if (!root.mirror && !root.peekInvalid()) this.walk(cb, root.slot, root.level, 0, false);
  }

  /** A direct root holds shared GFNs at their aliased index (`raw`); the GFN given is without the shared bit. */
  private walk(cb: MirrorCb, slot: number, level: number, base: number, mirror: boolean): void {
    const pool = this.pool;
    const bits = mirror ? 0 : this.vm.mmu.gfnDirectBits;
    const mem = pool.tableMem(slot);
    const off = pool.tableOff(slot);
    for (let i = 0; i < 512; i++) {
      const lo = mem[off + 2 * i]!;
      if (!isShadowPresent(lo)) continue;
      const hi = mem[off + 2 * i + 1]!;
      const raw = base + i * PAGES_PER_LEVEL[level]!;
      const gfn = gfnWithoutDirectBits(raw, bits);
      const pfn = spteToPfn(lo, hi);
      if (isLastSpte(lo, level)) {
        cb(gfn, level, "leaf", pfn, -1);
      } else {
        const child = pool.pfnToSlot(pfn);
        cb(gfn, level, "table", pfn, mirror ? pool.spExternal[child]! : -1);
        this.walk(cb, child, level - 1, raw, mirror);
      }
    }
  }

  inFlight(gfn: number, level: number): boolean {
    return this.vm.mmu.isMirrorInFlight(gfn, level);
  }

  forEachInFlight(cb: (gfn: number, level: number) => void): void {
    this.vm.mmu.forEachMirrorInFlight(cb);
  }

  lookup(
    gfn: number,
    level: number,
  ): { kind: MirrorEntryKind; pfn: number; externalSpt: number } | null {
    if (this.log !== null) {
      // The log holds every present entry of the valid roots, each under the GFN its span
      // starts at: the entry covering `gfn` at `level` is the one at that GFN, if any.
      const i = this.log.find(gfnRoundForLevel(gfn, level), level);
      if (i >= 0) return this.log.entryAt(i);
      if (i === -1) return null;
    }
    const pool = this.pool;
    for (const root of this.vm.mmu.peekRoots()) {
      if (!root.mirror || root.peekInvalid()) continue;
      let slot = root.slot;
      for (let l = root.level; l >= level; l--) {
        const mem = pool.tableMem(slot);
        const off = pool.tableOff(slot) + 2 * sptIndex(gfn, l);
        const lo = mem[off]!;
        const hi = mem[off + 1]!;
        if (!isShadowPresent(lo)) return null;
        const leaf = isLastSpte(lo, l);
        if (l === level) {
          const pfn = spteToPfn(lo, hi);
          return leaf
            ? { kind: "leaf", pfn, externalSpt: -1 }
            : { kind: "table", pfn, externalSpt: pool.spExternal[pool.pfnToSlot(pfn)]! };
        }
        if (leaf) return null;
        slot = pool.pfnToSlot(spteToPfn(lo, hi));
      }
    }
    return null;
  }
}

/** The VM's view, kept on the VM (a WeakMap keyed by short-lived VMs kept them alive through young-generation collections). */
function poolMirrorView(vm: Vm): PoolMirrorView {
  const v = vm.checkView;
  if (v instanceof PoolMirrorView) return v;
  const made = new PoolMirrorView(vm);
  vm.checkView = made;
  return made;
}

/** The mirror roots' present entries, for a backend's own checks. */
export function mirrorView(vm: Vm): MirrorView {
  return poolMirrorView(vm);
}

/**
 * `check` (the backend's `checkInvariants`) given `mirrorView(vm)` answering its walks from
 * `log` (the state must not change meanwhile). A method and its arguments, not a closure: it
 * runs after every explorer step that changed the state.
 */
export function checkWithVisitLog(vm: Vm, log: VisitLog, check: BackendCheck): Finding[] {
  return poolMirrorView(vm).checkWithLog(log, vm.backend, check);
}
