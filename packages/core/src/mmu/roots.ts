/**
 * TDP roots (`kvm_mmu_page` with `role.level` 4 or 5): the direct root and, for a VM that uses
 * one, the mirror root. A root is refcounted: it starts at 2, one reference for the vCPU that
 * asked for it and one for the MMU itself (`kvm_tdp_mmu_alloc_root`). Invalidation marks it
 * invalid; the MMU zaps invalidated roots and drops its own reference; the last put frees the
 * root page after an RCU grace period, and only an invalid root may be freed.
 *
 * The root list and each root's refcount and validity are shared state, one resource (R_ROOTS).
 * A root's state is reached only through the accessors below, which record into the clock's
 * recorder; the `peek*` readers record nothing and are for checks between steps.
 */
import type { Clock } from "../exec/clock.js";
import { R_ROOTS } from "../exec/footprint.js";

export const KVM_INVALID_ROOTS = 1;
export const KVM_DIRECT_ROOTS = 2;
export const KVM_MIRROR_ROOTS = 4;

export class Root {
  private refs = 2;
  private isInvalid = false;
  /** Set by `invalidateRoots`, cleared when `zapInvalidatedRoots` has zapped it. */
  private scheduled = false;
  private isFreed = false;

  constructor(
    readonly slot: number,
    readonly level: number,
    readonly mirror: boolean,
    private readonly clock: Clock,
  ) {}

  /** `root->role.invalid` */
  get invalid(): boolean {
    this.clock.fp?.read(R_ROOTS);
    return this.isInvalid;
  }

  get refcount(): number {
    this.clock.fp?.read(R_ROOTS);
    return this.refs;
  }

  /** The root page has gone to its RCU callback (refcount reached zero). */
  get freed(): boolean {
    this.clock.fp?.read(R_ROOTS);
    return this.isFreed;
  }

  /** `kvm_tdp_mmu_get_root` */
  get(): void {
    this.clock.touch(R_ROOTS);
    this.refs++;
  }

  /** `kvm_tdp_mmu_put_root`'s decrement: the references left. */
  put(): number {
    this.clock.touch(R_ROOTS);
    return --this.refs;
  }

  /** Invalid, and scheduled for `zapInvalidatedRoots`. */
  markInvalid(): void {
    this.clock.touch(R_ROOTS);
    this.isInvalid = true;
    this.scheduled = true;
  }

  markFreed(): void {
    this.clock.touch(R_ROOTS);
    this.isFreed = true;
  }

  /** Whether the root waits for `zapInvalidatedRoots`; it does not any more after this. */
  takeScheduledZap(): boolean {
    this.clock.touch(R_ROOTS);
    const s = this.scheduled;
    this.scheduled = false;
    return s;
  }

  /** The state, recording nothing: for checks and views between steps. */
  peekInvalid(): boolean {
    return this.isInvalid;
  }

  peekFreed(): boolean {
    return this.isFreed;
  }

  peekRefcount(): number {
    return this.refs;
  }

  peekScheduledZap(): boolean {
    return this.scheduled;
  }

  get id(): number {
    return this.slot;
  }
}
