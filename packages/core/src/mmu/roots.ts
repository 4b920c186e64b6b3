/**
 * TDP roots (`kvm_mmu_page` with `role.level` 4 or 5): the direct root and, for a VM that uses
 * one, the mirror root. A root is refcounted: it starts at 2, one reference for the vCPU that
 * asked for it and one for the MMU itself (`kvm_tdp_mmu_alloc_root`). Invalidation marks it
 * invalid; the MMU zaps invalidated roots and drops its own reference; the last put frees the
 * root page after an RCU grace period, and only an invalid root may be freed.
 */
export const KVM_INVALID_ROOTS = 1;
export const KVM_DIRECT_ROOTS = 2;
export const KVM_MIRROR_ROOTS = 4;

export class Root {
  refcount = 2;
  invalid = false;
  /** Set by `invalidateRoots`, cleared when `zapInvalidatedRoots` has zapped it. */
  scheduledToZap = false;
  freed = false;

  constructor(
    readonly slot: number,
    readonly level: number,
    readonly mirror: boolean,
  ) {}

  get id(): number {
    return this.slot;
  }
}
