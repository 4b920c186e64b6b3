/**
 * The hardware's side of a guest access: the CPU walks the EPT from the root the VMCS points at
 * (the direct root; hardware never walks a mirror root) with the full GPA, shared bit included.
 * An entry is present to the hardware if any of R/W/X is set, which is why FROZEN_SPTE
 * (0x5a0) and the empty SPTE are both non-present to it. With A/D bits enabled the CPU sets
 * Accessed on the leaf it uses, and Dirty on a write.
 *
 * There is no TLB in the model: every access walks the live tables, so a stale translation
 * after a missing flush is not observable here.
 */
import {
  EPT_R,
  EPT_RWX,
  EPT_W,
  PT_PAGE_SIZE_MASK,
  SPTE_ACCESSED,
  SPTE_DIRTY,
  spteToPfn,
} from "../arch/spte.js";
import { gfnOffsetInLevel, sptIndex } from "../arch/levels.js";
import { MEM_MASK, U32_PER_TABLE, type PtPool } from "../mem/pt-pool.js";
import { PathCache } from "../mem/path-cache.js";

export const WALK_OK = 0;
/** No translation: some entry on the way is not present (EPT violation, GPA not mapped). */
export const WALK_NOT_PRESENT = 1;
/** A present leaf that does not allow the access (EPT violation on a present translation). */
export const WALK_PERMISSION = 2;

/** Told of an Accessed/Dirty update the "CPU" made, for the event stream. */
export type HwUpdate = (
  table: number,
  off: number,
  level: number,
  oldLo: number,
  newLo: number,
  hi: number,
) => void;

/**
 * Where the walk leaves the translation it found (reused, never allocated per walk), and the
 * walker's paging-structure cache (see `PathCache`; the walk keeps only the last-level table).
 */
export class WalkOut {
  pfn = 0;
  level = 0;
  readonly cache = new PathCache();
}

/**
 * Walk `rawGfn` from the root table `rootSlot`; sets A/D like the CPU. Returns WALK_OK,
 * WALK_NOT_PRESENT or WALK_PERMISSION (what the EPT violation's exit qualification tells KVM).
 * `onUpdate`, if given, hears of every A/D update.
 */
export function eptWalk(
  pool: PtPool,
  rootSlot: number,
  rootLevel: number,
  rawGfn: number,
  write: boolean,
  onUpdate?: HwUpdate | null,
  out?: WalkOut,
): number {
  let slot = rootSlot;
  let level = rootLevel;
  if (out !== undefined && out.cache.hit(pool, rootSlot, rawGfn)) {
    slot = out.cache.path[1]!;
    level = 1;
  }
  for (; level >= 1; level--) {
    const idx = sptIndex(rawGfn, level);
    const lo = pool.readSpte(slot, idx);
    const hi = pool.readHi;
    if ((lo & EPT_RWX) === 0) return WALK_NOT_PRESENT;
    if (level === 1 || (lo & PT_PAGE_SIZE_MASK) !== 0) {
      if (out) {
        const leafPfn = spteToPfn(lo, hi);
        out.pfn = leafPfn + gfnOffsetInLevel(rawGfn, level);
        out.level = level;
      }
      if ((lo & EPT_R) === 0 || (write && (lo & EPT_W) === 0)) return WALK_PERMISSION;
      const want = write ? SPTE_ACCESSED | SPTE_DIRTY : SPTE_ACCESSED;
      if ((lo & want) !== want) {
        const now = pool.setHardwareBits(slot, idx, want);
        onUpdate?.(slot, (slot & MEM_MASK) * U32_PER_TABLE + 2 * idx, level, lo, now, hi);
      }
      return WALK_OK;
    }
    slot = pool.pfnToSlot(spteToPfn(lo, hi));
    if (level === 2 && out !== undefined) out.cache.fillTable(pool, rootSlot, rawGfn, slot);
  }
  return WALK_NOT_PRESENT;
}
