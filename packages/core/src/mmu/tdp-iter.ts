/**
 * `struct tdp_iter`: a pre-order walk of one TDP root over a GFN range, in the kernel's order
 * (`arch/x86/kvm/mmu/tdp_iter.c`: `tdp_iter_next()`): step down into a present non-leaf unless at
 * `minLevel`, else step to the next entry at the same level, else step up and try the side again.
 *
 * Invariants, as in the kernel:
 * - `gfn` is the base GFN of the entry at `level` (rounded to the level), without `gfnBits`;
 * - `oldLo/oldHi` is the snapshot of that entry taken when the iterator arrived at it (and again
 *   just before stepping down, so it never descends into a table unlinked meanwhile);
 * - `nextLastLevelGfn` is the target the walk is heading for; after a yield the walk restarts
 *   from the root toward it, and `yieldedGfn` makes sure a yield only follows forward progress;
 * - `gfnBits` (the shared bit on a direct root of a TDX VM, 0 otherwise) is OR'd in only to
 *   compute indexes.
 *
 * One iterator object is reused across walks, so a walk allocates nothing.
 */
import { PAGES_PER_LEVEL, gfnOffsetInLevel, sptIndex } from "../arch/levels.js";
import { isLastSpte, isShadowPresent, spteToPfn } from "../arch/spte.js";
import type { PtPool } from "../mem/pt-pool.js";
import { MEM_MASK, MEM_SHIFT, U32_PER_TABLE } from "../mem/pt-pool.js";
import { copyPath, PathCache } from "../mem/path-cache.js";
import type { Root } from "./roots.js";

export class TdpIter {
  /** Table slot at each level (`pt_path`), index = level. */
  readonly ptSlot = new Int32Array(6);
  /** The current table's memory and the `Uint32` offset of the current entry in it. */
  mem!: Uint32Array;
  off = 0;
  oldLo = 0;
  oldHi = 0;
  gfn = 0;
  nextLastLevelGfn = 0;
  yieldedGfn = 0;
  gfnBits = 0;
  level = 0;
  rootLevel = 0;
  minLevel = 1;
  valid = false;
  yielded = false;
  root!: Root;
  /** The path of the last walk that stepped down into a last-level table, for `startAtLeaf`. */
  private readonly cache = new PathCache();

  constructor(private readonly pool: PtPool) {}

  /**
   * `tdp_iter_start` straight to the last-level entry of `gfn`, if the last walk went down the
   * same path and nothing above level 1 changed since: the iterator ends up exactly where
   * stepping down from the root would leave it, without reading the upper entries again. Only
   * for walkers that do not record footprints (the explorer needs every read). Returns false,
   * having done nothing, when the path is not known.
   */
  startAtLeaf(root: Root, gfn: number, gfnBits: number): boolean {
    if (!this.cache.hit(this.pool, root.slot, gfn + gfnBits)) return false;
    this.root = root;
    this.nextLastLevelGfn = gfn;
    this.gfnBits = gfnBits;
    this.rootLevel = root.level;
    this.minLevel = 1;
    copyPath(this.ptSlot, this.cache.path);
    this.yielded = false;
    this.yieldedGfn = gfn;
    this.level = 1;
    this.gfn = gfn;
    this.refreshSptep();
    this.valid = true;
    return true;
  }

  /** `tdp_iter_start` */
  start(root: Root, minLevel: number, gfn: number, gfnBits: number): void {
    this.root = root;
    this.nextLastLevelGfn = gfn;
    this.gfnBits = gfnBits;
    this.rootLevel = root.level;
    this.minLevel = minLevel;
    this.ptSlot[root.level] = root.slot;
    this.restart();
  }

  /** `tdp_iter_restart`: back to the root, toward `nextLastLevelGfn`. */
  restart(): void {
    this.yielded = false;
    this.yieldedGfn = this.nextLastLevelGfn;
    this.level = this.rootLevel;
    this.gfn = this.nextLastLevelGfn - gfnOffsetInLevel(this.nextLastLevelGfn, this.level);
    this.refreshSptep();
    this.valid = true;
  }

  /** `tdp_iter_next` */
  next(): void {
    if (this.yielded) {
      this.restart();
      return;
    }
    if (this.tryStepDown()) return;
    do {
      if (this.tryStepSide()) return;
    } while (this.tryStepUp());
    this.valid = false;
  }

  /** Re-reads the current entry (`kvm_tdp_mmu_read_spte(iter->sptep)`). */
  read(): void {
    this.oldLo = this.mem[this.off]!;
    this.oldHi = this.mem[this.off + 1]!;
    if (this.pool.fp !== null) this.noteRead();
  }

  /** For the explorer: this step read the current entry (nothing while no one records). */
  noteRead(): void {
    const fp = this.pool.fp;
    if (fp !== null) fp.read(this.ptSlot[this.level]! * 512 + ((this.off % U32_PER_TABLE) >>> 1));
  }

  /** Slot of the table the current entry lives in. */
  get tableSlot(): number {
    return this.ptSlot[this.level]!;
  }

  /** Index of the current entry in its table. */
  get index(): number {
    return (this.off % U32_PER_TABLE) >>> 1;
  }

  private refreshSptep(): void {
    const slot = this.ptSlot[this.level]!;
    this.mem = this.pool.mem[slot >>> MEM_SHIFT]!;
    this.off =
      (slot & MEM_MASK) * U32_PER_TABLE + 2 * sptIndex(this.gfn + this.gfnBits, this.level);
    this.read();
  }

  private tryStepDown(): boolean {
    if (this.level === this.minLevel) return false;
    // Re-read before stepping down, so the walk never enters a table unlinked meanwhile.
    this.read();
    if (!isShadowPresent(this.oldLo) || isLastSpte(this.oldLo, this.level)) return false;
    const child = this.pool.pfnToSlot(spteToPfn(this.oldLo, this.oldHi));
    this.level--;
    this.ptSlot[this.level] = child;
    this.gfn = this.nextLastLevelGfn - gfnOffsetInLevel(this.nextLastLevelGfn, this.level);
    this.refreshSptep();
    if (this.level === 1)
      this.cache.fillPath(this.pool, this.root.slot, this.gfn + this.gfnBits, this.ptSlot);
    return true;
  }

  private tryStepSide(): boolean {
    if (sptIndex(this.gfn + this.gfnBits, this.level) === 511) return false;
    this.gfn += PAGES_PER_LEVEL[this.level]!;
    this.nextLastLevelGfn = this.gfn;
    this.off += 2;
    this.read();
    return true;
  }

  private tryStepUp(): boolean {
    if (this.level === this.rootLevel) return false;
    this.level++;
    this.gfn -= gfnOffsetInLevel(this.gfn, this.level);
    this.refreshSptep();
    return true;
  }
}
