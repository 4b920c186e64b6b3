/**
 * TDP roots (`kvm_mmu_page` with `role.level` 4 or 5): the direct root and, for a VM that uses
 * one, the mirror root. A root is refcounted: it starts at 2, one reference for the vCPU that
 * asked for it and one for the MMU itself (`kvm_tdp_mmu_alloc_root`). Invalidation marks it
 * invalid; the MMU zaps invalidated roots and drops its own reference; the last put frees the
 * root page after an RCU grace period, and only an invalid root may be freed.
 *
 * The root list is one shared resource (R_ROOTS, the MMU's); each root's refcount, its validity
 * (`role.invalid`, with whether a zap of it is scheduled) and whether it is freed are three
 * more, in a resource space of the MMU's (`rootIds`): in the kernel they are separate words, and
 * a walker taking a reference (`kvm_tdp_mmu_get_root`) changes nothing a fault reads when it
 * asks whether its root is still valid. Taking a reference is a commutative update; dropping
 * one is a write, since the one that drops the last frees the root. A root's state is reached
 * only through the accessors below, which record into the clock's recorder; the `peek*`
 * readers record nothing and are for checks between steps.
 */
import type { Clock } from "../exec/clock.js";
import { resourceId } from "../exec/footprint.js";

/** A root's resources in the MMU's space `space`: its refcount, validity and freed flag. */
export function rootIds(space: number, slot: number): [number, number, number] {
  return [
    resourceId(space, 3 * slot),
    resourceId(space, 3 * slot + 1),
    resourceId(space, 3 * slot + 2),
  ];
}

export const KVM_INVALID_ROOTS = 1;
export const KVM_DIRECT_ROOTS = 2;
export const KVM_MIRROR_ROOTS = 4;

export class Root {
  private refs = 2;
  private isInvalid = false;
  /** Set by `invalidateRoots`, cleared when `zapInvalidatedRoots` has zapped it. */
  private scheduled = false;
  private isFreed = false;

  /** The resources of the refcount, the validity and the freed flag (`rootIds`). */
  private readonly refsId: number;
  private readonly validityId: number;
  private readonly freedId: number;

  constructor(
    readonly slot: number,
    readonly level: number,
    readonly mirror: boolean,
    private readonly clock: Clock,
    space: number,
  ) {
    [this.refsId, this.validityId, this.freedId] = rootIds(space, slot);
    // A new root's words are written as it is made (`kvm_tdp_mmu_alloc_root`).
    clock.touch(this.refsId);
    clock.touch(this.validityId);
    clock.touch(this.freedId);
  }

  /** `root->role.invalid` */
  get invalid(): boolean {
    this.clock.fp?.read(this.validityId);
    return this.isInvalid;
  }

  get refcount(): number {
    this.clock.fp?.read(this.refsId);
    return this.refs;
  }

  /** The root page has gone to its RCU callback (refcount reached zero). */
  get freed(): boolean {
    this.clock.fp?.read(this.freedId);
    return this.isFreed;
  }

  /** `kvm_tdp_mmu_get_root`: an increment, which commutes with another. */
  get(): void {
    this.clock.update(this.refsId);
    this.refs++;
  }

  /** `kvm_tdp_mmu_put_root`'s decrement: the references left (who reaches zero frees the root). */
  put(): number {
    this.clock.touch(this.refsId);
    return --this.refs;
  }

  /** Invalid, and scheduled for `zapInvalidatedRoots`. */
  markInvalid(): void {
    this.clock.touch(this.validityId);
    this.isInvalid = true;
    this.scheduled = true;
  }

  /** Freed (off the list, its page on its way back): every word of the root goes with it. */
  markFreed(): void {
    this.clock.touch(this.refsId);
    this.clock.touch(this.validityId);
    this.clock.touch(this.freedId);
    this.isFreed = true;
  }

  /** Whether the root waits for `zapInvalidatedRoots`; it does not any more after this. */
  takeScheduledZap(): boolean {
    this.clock.touch(this.validityId);
    const s = this.scheduled;
    this.scheduled = false;
    return s;
  }

  /** The state, recording nothing: for checks and views between steps. */
  peekInvalid(): boolean {
    this.clock.assertBetweenSteps("whether a root is invalid");
    return this.isInvalid;
  }

  peekFreed(): boolean {
    this.clock.assertBetweenSteps("whether a root is freed");
    return this.isFreed;
  }

  peekRefcount(): number {
    this.clock.assertBetweenSteps("a root's refcount");
    return this.refs;
  }

  peekScheduledZap(): boolean {
    this.clock.assertBetweenSteps("whether a root waits for its zap");
    return this.scheduled;
  }

  get id(): number {
    return this.slot;
  }
}
