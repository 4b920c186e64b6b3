/**
 * The paging-structure cache of one walker (the hardware's walk, `WalkOut`, and KVM's,
 * `TdpIter`): the path from a root down to the last-level table of the last 2 MiB region the
 * walker stepped through. Most faults and accesses land in the region the previous one used, so
 * a hit reads only the leaf.
 *
 * Unlike a CPU's paging-structure caches it is exact: it is trusted only while no entry above
 * level 1 anywhere in the pool has been written since it was filled (`PtPool.upperWrites`), so a
 * stale path can never be observed. It is never used while the explorer records footprints,
 * which need every entry a walk reads.
 */
import { gfnOffsetInLevel } from "../arch/levels.js";
import type { PtPool } from "./pt-pool.js";

export class PathCache {
  /** The table slot at each level (index = level), valid from the root's level down to 1. */
  readonly path = new Int32Array(6);
  private root = -1;
  private region = -1;
  private gen = -1;

  /** The remembered path leads to the last-level table of `rawGfn` (GFN as walked, shared bit included) under `rootSlot`. */
  hit(pool: PtPool, rootSlot: number, rawGfn: number): boolean {
    return (
      pool.fp === null &&
      this.gen === pool.upperWrites &&
      this.root === rootSlot &&
      this.region === rawGfn - gfnOffsetInLevel(rawGfn, 2)
    );
  }

  /** Remembers the whole path (`TdpIter`). */
  fillPath(pool: PtPool, rootSlot: number, rawGfn: number, path: Int32Array): void {
    if (pool.fp !== null) return;
    copyPath(this.path, path);
    this.tag(pool, rootSlot, rawGfn);
  }

  /** Remembers the last-level table alone (the hardware walk needs no more). */
  fillTable(pool: PtPool, rootSlot: number, rawGfn: number, table: number): void {
    if (pool.fp !== null) return;
    this.path[1] = table;
    this.tag(pool, rootSlot, rawGfn);
  }

  private tag(pool: PtPool, rootSlot: number, rawGfn: number): void {
    this.root = rootSlot;
    this.region = rawGfn - gfnOffsetInLevel(rawGfn, 2);
    this.gen = pool.upperWrites;
  }
}

/**
 * Copies a path (table slot per level, 1-5). By hand: `TypedArray.prototype.set` is a call into
 * a builtin that optimized code does not inline, and it cost more than the rest of a cache hit.
 */
export function copyPath(to: Int32Array, from: Int32Array): void {
  to[1] = from[1]!;
  to[2] = from[2]!;
  to[3] = from[3]!;
  to[4] = from[4]!;
  to[5] = from[5]!;
}
