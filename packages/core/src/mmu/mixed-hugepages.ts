/**
 * KVM_LPAGE_MIXED_FLAG (`arch/x86/kvm/mmu/mmu.c`): which huge pages of a memslot hold GFNs of
 * both kinds, private and shared, and so may not be mapped huge. The kernel keeps the answer in
 * `lpage_info` rather than asking the attributes on every fault, and updates it at two points
 * only: when a memslot is made (`kvm_mmu_init_memslot_memory_attributes`) and in the second
 * lock section of `KVM_SET_MEMORY_ATTRIBUTES` (`kvm_arch_post_set_memory_attributes`, under the
 * write `mmu_lock`). So while a conversion has stored the new attributes but not yet taken the
 * lock again, a fault still sees the huge pages as they were: one that was mixed is still mixed,
 * and a fault beside the converted GFNs maps 4K, not a huge page over GFNs whose invalidation is
 * still in progress.
 *
 * Only a memslot with a guest_memfd tracks it (`kvm_slot_can_be_private`): the others never
 * consume the private attribute. Levels 2 (2M) and 3 (1G); a 1G page is uniform when each of its
 * 2M pages is and they all have the same attributes, so level 2 goes first.
 */
import { KVM_MAX_HUGEPAGE_LEVEL, PAGES_PER_LEVEL } from "../arch/levels.js";
import type { BackendVm } from "../backend/backend-vm.js";
import type { Memslot } from "../mem/memslots.js";

/** `hugepage_has_attrs`: every GFN of the huge page of `level` at `gfn` is `priv`. */
function hugepageHasAttrs(
  vm: BackendVm,
  slot: Memslot,
  gfn: number,
  level: number,
  priv: boolean,
): boolean {
  const span = PAGES_PER_LEVEL[level]!;
  if (level === 2)
    return vm.attributes.isUniform(gfn, span) && vm.attributes.isPrivate(gfn) === priv;
  const sub = PAGES_PER_LEVEL[level - 1]!;
  for (let g = gfn; g < gfn + span; g += sub) {
    if (slot.hugepageMixed(g, level - 1) || vm.attributes.isPrivate(g) !== priv) return false;
  }
  return true;
}

/** The mixed bit of the huge page of `level` at `gfn`, from the attributes as they are now. */
function recompute(vm: BackendVm, slot: Memslot, gfn: number, level: number, priv: boolean): void {
  slot.setHugepageMixed(gfn, level, !hugepageHasAttrs(vm, slot, gfn, level, priv));
}

/**
 * `kvm_mmu_init_memslot_memory_attributes`: every huge page wholly inside the new slot, from the
 * attributes it finds (they may be mixed already).
 */
export function initMemslotMemoryAttributes(vm: BackendVm, slot: Memslot): void {
  if (slot.gmem === null) return;
  for (let level = 2; level <= KVM_MAX_HUGEPAGE_LEVEL; level++) {
    const span = PAGES_PER_LEVEL[level]!;
    let gfn = slot.baseGfn - (slot.baseGfn % span);
    if (gfn < slot.baseGfn) gfn += span;
    const end = slot.endGfn - (slot.endGfn % span);
    for (; gfn < end; gfn += span) recompute(vm, slot, gfn, level, vm.attributes.isPrivate(gfn));
  }
}

/**
 * `kvm_arch_post_set_memory_attributes` for [start, end) of `slot` (the caller clamps it to the
 * slot, as `kvm_handle_gfn_range` does), which has just become `priv`: the head and tail huge
 * pages that straddle the range are recomputed, those wholly inside it are uniform. As in the
 * kernel, a head page is tracked if it starts inside the slot and a tail page if it ends inside
 * it (a huge page the slot does not hold whole is never mapped huge anyway).
 */
export function postSetMemoryAttributes(
  vm: BackendVm,
  slot: Memslot,
  start: number,
  end: number,
  priv: boolean,
): void {
  if (slot.gmem === null) return;
  for (let level = 2; level <= KVM_MAX_HUGEPAGE_LEVEL; level++) {
    const span = PAGES_PER_LEVEL[level]!;
    let gfn = start - (start % span);
    if (gfn !== start || gfn + span > end) {
      if (gfn >= slot.baseGfn) recompute(vm, slot, gfn, level, priv);
      gfn += span;
    }
    for (; gfn + span <= end; gfn += span) slot.setHugepageMixed(gfn, level, false);
    if (gfn < end && gfn + span <= slot.endGfn) recompute(vm, slot, gfn, level, priv);
  }
}
