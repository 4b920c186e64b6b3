/**
 * The largest level a GFN may be mapped at, in the kernel's two halves:
 *
 * - before `mmu_lock`: the host page behind the GFN bounds it (the folio's order,
 *   `hostPageLevel`, which never changes here; the kernel reads the host mapping's level in
 *   `hugepage_adjust`), and for private memory the backend has its say in `kvm_mmu_faultin_pfn`
 *   (`kvm_max_private_mapping_level` → `gmem_max_mapping_level`): `faultinMaxLevel`;
 * - `kvm_mmu_hugepage_adjust` (in `kvm_tdp_mmu_map`, under the read `mmu_lock`): the huge page
 *   must lie inside the memslot, not mixed (`KVM_LPAGE_MIXED_FLAG`, `mixed-hugepages.ts`), no
 *   dirty logging on the slot, and no guest-inhibit bit for that size (the TDX huge-page series:
 *   the guest accepted a page under it at a smaller size, which is set under the write lock, so
 *   reading it under the read lock orders a fault against it).
 *
 * `maxMappingLevel` is both at once, for the walkers that hold the lock already (recovery).
 */
import { KVM_MAX_HUGEPAGE_LEVEL, PAGES_PER_LEVEL, type Level } from "../arch/levels.js";
import type { Backend } from "../backend/backend.js";
import type { BackendVm } from "../backend/backend-vm.js";
import type { Memslot } from "../mem/memslots.js";

export function faultinMaxLevel(
  vm: BackendVm,
  backend: Backend,
  slot: Memslot,
  gfn: number,
  isPrivate: boolean,
  pfn: number,
): Level {
  const backing = isPrivate ? slot.gmem : slot.shared;
  let level = Math.min(backing ? backing.hostPageLevel : 1, KVM_MAX_HUGEPAGE_LEVEL);
  if (level === 1) return 1;
  // kvm_max_private_mapping_level asks the backend (gmem_max_mapping_level) only when more
  // than 4K is possible at all.
  if (isPrivate && backend.maxMappingLevel) {
    // The backend answers from its own state (SEV: the RMP entry's size), and records the read.
    level = Math.min(level, backend.maxMappingLevel(vm, gfn, pfn));
  }
  return level as Level;
}

/** `kvm_mmu_hugepage_adjust`: the goal level of a fault, from `faultinMaxLevel`'s bound. Dirty logging forces 4K. */
export function hugepageAdjust(slot: Memslot, gfn: number, bound: Level): Level {
  if (bound === 1 || slot.dirtyBitmap) return 1;
  return levelInSlot(slot, gfn, bound);
}

/** `kvm_mmu_max_mapping_level`: both halves, for a caller that holds `mmu_lock` (recovery skips dirty-logged slots itself). */
export function maxMappingLevel(
  vm: BackendVm,
  backend: Backend,
  slot: Memslot,
  gfn: number,
  isPrivate: boolean,
  pfn: number,
): Level {
  const bound = faultinMaxLevel(vm, backend, slot, gfn, isPrivate, pfn);
  return bound === 1 ? 1 : levelInSlot(slot, gfn, bound);
}

/** The largest level up to `bound` whose huge page over `gfn` is inside the slot, uniform, and not guest-inhibited. */
function levelInSlot(slot: Memslot, gfn: number, bound: Level): Level {
  let level: number = bound;
  for (; level > 1; level--) {
    const span = PAGES_PER_LEVEL[level]!;
    const base = gfn - (gfn % span);
    if (base < slot.baseGfn || base + span > slot.endGfn) continue;
    // KVM_LPAGE_MIXED_FLAG as the last attribute change left it, not the attributes
    // themselves (`mixed-hugepages.ts`); only a slot with a guest_memfd tracks it.
    if (slot.gmem !== null && slot.hugepageMixed(base, level)) continue;
    // __kvm_mmu_max_mapping_level in the TDX huge-page series: lpage_info's guest-inhibit bit,
    // one of `disallow_lpage`'s, which holds for shared faults as well.
    if (slot.guestInhibited(gfn, level)) continue;
    break;
  }
  return level as Level;
}
