/**
 * `kvm_mmu_max_mapping_level` and `kvm_mmu_hugepage_adjust`: the largest level a GFN may be
 * mapped at. A huge mapping needs a host page at least that large behind it, the whole huge
 * page inside the memslot, uniform memory attributes over it (no `KVM_LPAGE_MIXED_FLAG`), no
 * dirty logging on the slot, and, for private memory, the backend's consent.
 */
import { KVM_MAX_HUGEPAGE_LEVEL, PAGES_PER_LEVEL, type Level } from "../arch/levels.js";
import type { Backend } from "../backend/backend.js";
import type { BackendVm } from "../backend/backend-vm.js";
import type { Memslot } from "../mem/memslots.js";

export function maxMappingLevel(vm: BackendVm, backend: Backend, slot: Memslot, gfn: number, isPrivate: boolean, pfn: number): Level {
  const backing = isPrivate ? slot.gmem : slot.shared;
  let level = Math.min(backing ? backing.hostPageLevel : 1, KVM_MAX_HUGEPAGE_LEVEL);
  if (level === 1) return 1;
  // kvm_max_private_mapping_level asks the backend (gmem_max_mapping_level) only when more
  // than 4K is possible at all.
  if (isPrivate && backend.maxMappingLevel) {
    // The backend answers from its own state (SEV: the RMP entry's size), and records the read.
    level = Math.min(level, backend.maxMappingLevel(vm, gfn, pfn));
  }
  for (; level > 1; level--) {
    const span = PAGES_PER_LEVEL[level]!;
    const base = gfn - (gfn % span);
    if (base < slot.baseGfn || base + span > slot.endGfn) continue;
    if (!vm.attributes.isUniform(base, span)) continue;
    break;
  }
  return level as Level;
}

/** `kvm_mmu_hugepage_adjust`: the goal level of a fault. Dirty logging forces 4K. */
export function hugepageAdjust(vm: BackendVm, backend: Backend, slot: Memslot, gfn: number, isPrivate: boolean, pfn: number): Level {
  if (slot.dirtyBitmap) return 1;
  return maxMappingLevel(vm, backend, slot, gfn, isPrivate, pfn);
}
