/**
 * Dirty logging, the way KVM does it without PML: write-protect every leaf of the slot when
 * logging starts (`kvm_tdp_mmu_wrprot_slot`), let the first write to each page fault
 * (`fast_page_fault` restores W and marks the page dirty), and when userspace collects the
 * bitmap (`KVM_GET_DIRTY_LOG`) write-protect the pages it reports again
 * (`kvm_tdp_mmu_clear_dirty_pt_masked` with `wrprot`).
 */
import { EPT_W, isLastSpte, isShadowPresent } from "../arch/spte.js";
import type { ExecCtx, Op } from "../exec/ctx.js";
import type { Memslot } from "../mem/memslots.js";
import { iterResched, shouldResched } from "./iter-resched.js";
import { KVM_DIRECT_ROOTS, KVM_MIRROR_ROOTS, type Root } from "./roots.js";
import { TdpIter } from "./tdp-iter.js";
import type { TdpMmu } from "./tdp-mmu.js";

/**
 * `wrprot_gfn_range` (read lock): atomically clear W on every writable leaf at or above
 * `minLevel` in [start, end). MMU-writable stays set, so a write fault may restore W without
 * the lock. Returns whether anything changed.
 */
export function* wrprotGfnRange(
  mmu: TdpMmu,
  ctx: ExecCtx,
  root: Root,
  start: number,
  end: number,
  minLevel: number,
): Op<boolean> {
  const iter = new TdpIter(mmu.pool);
  let changed = false;
  for (
    iter.start(root, minLevel, start, mmu.rootGfnBits(root));
    iter.valid && iter.gfn < end;
    iter.next()
  ) {
    // retry: a lost cmpxchg goes back through the yield check, as the `goto retry` of
    // `wrprot_gfn_range()` in arch/x86/kvm/mmu/tdp_mmu.c.
    for (;;) {
      if (shouldResched(mmu, iter)) {
        yield* iterResched(mmu, ctx, iter, false, true);
        break;
      }
      if (
        !isShadowPresent(iter.oldLo) ||
        !isLastSpte(iter.oldLo, iter.level) ||
        (iter.oldLo & EPT_W) === 0
      )
        break;
      mmu.clock.step++;
      if (ctx.interleave) yield;
      if (yield* mmu.setSpteAtomicOp(ctx, iter, (iter.oldLo & ~EPT_W) >>> 0, iter.oldHi)) {
        changed = true;
        break;
      }
    }
  }
  return changed;
}

/** `kvm_tdp_mmu_wrprot_slot` over every valid root (read lock and RCU held by the caller). */
export function* wrprotSlot(
  mmu: TdpMmu,
  ctx: ExecCtx,
  slot: Memslot,
  minLevel: number,
): Op<boolean> {
  return yield* mmu.forEachRoot(KVM_DIRECT_ROOTS | KVM_MIRROR_ROOTS, false, (root, changed) =>
    wrprotRoot(mmu, ctx, root, slot, minLevel, changed),
  );
}

function* wrprotRoot(
  mmu: TdpMmu,
  ctx: ExecCtx,
  root: Root,
  slot: Memslot,
  minLevel: number,
  changed: boolean,
): Op<boolean> {
  return (yield* wrprotGfnRange(mmu, ctx, root, slot.baseGfn, slot.endGfn, minLevel)) || changed;
}

/**
 * `kvm_tdp_mmu_clear_dirty_pt_masked` with `wrprot` (write lock): for the 4K leaves of the
 * GFNs set in `mask` (32 GFNs from `gfn`), clear W with an atomic and. Returns whether any
 * leaf changed.
 */
export function clearDirtyPtMasked(mmu: TdpMmu, root: Root, gfn: number, mask: number): boolean {
  const iter = new TdpIter(mmu.pool);
  let changed = false;
  const first = gfn + (31 - Math.clz32(mask & -mask));
  for (
    iter.start(root, 1, first, mmu.rootGfnBits(root));
    iter.valid && iter.gfn < gfn + 32;
    iter.next()
  ) {
    if (mask === 0) break;
    if (iter.level > 1) continue;
    const bit = 1 << (iter.gfn - gfn);
    if ((mask & bit) === 0) continue;
    mask &= ~bit;
    if (!isShadowPresent(iter.oldLo) || (iter.oldLo & EPT_W) === 0) continue;
    mmu.clock.step++;
    const lo = (iter.mem[iter.off]! & ~EPT_W) >>> 0;
    mmu.writeSpte(
      iter.mem,
      iter.off,
      lo,
      iter.mem[iter.off + 1]!,
      iter.tableSlot,
      1,
      iter.gfn,
      "clear-dirty",
    );
    changed = true;
  }
  return changed;
}

/**
 * `KVM_GET_DIRTY_LOG` on `slot`, the part under the write lock (held by the caller): take and
 * clear the bitmap, write-protect what it reported. Returns the dirty GFNs, ascending; the
 * caller flushes after dropping the lock if any were found, as `kvm_get_dirty_log_protect` does.
 * The kernel (`virt/kvm/kvm_main.c`: `kvm_get_dirty_log_protect()`) takes the bitmap a `long` (64
 * GFNs) at a time; 32 here changes only how many times `clear_dirty_pt_masked` runs, not what it
 * does.
 */
export function collectDirtyLog(mmu: TdpMmu, slot: Memslot): number[] {
  const words = slot.dirtyWords();
  if (words < 0) throw new Error(`dirty logging is not enabled on memslot ${slot.id}`);
  const dirty: number[] = [];
  for (let w = 0; w < words; w++) {
    const mask = slot.takeDirtyWord(w);
    if (mask === 0) continue;
    const gfn = slot.baseGfn + w * 32;
    for (let b = 0; b < 32; b++) if (mask & (1 << b)) dirty.push(gfn + b);
    // Dirty logging never reaches mirror roots: guest_memfd slots cannot log.
    for (const root of mmu.validRoots()) if (!root.mirror) clearDirtyPtMasked(mmu, root, gfn, mask);
  }
  return dirty;
}
