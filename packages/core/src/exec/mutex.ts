/**
 * A sleeping lock of the kernel's (`struct mutex`) as one resource that records its own
 * accesses: `kvm->slots_lock`. KVM takes it around memslot and memory-attribute changes:
 * KVM_SET_MEMORY_ATTRIBUTES (`kvm_vm_set_mem_attributes`, from before its "nothing to
 * do" check to after the post-change section), memslot updates (`kvm_set_memory_region`, dirty
 * logging on and off included), KVM_GET_DIRTY_LOG and eager splitting, and guest_memfd population
 * (`kvm_gmem_populate` asserts it, so that a conversion cannot change the attributes the
 * population relies on). Two conversions therefore never interleave, whichever task asks for
 * them: a vCPU answering its own KVM_EXIT_MEMORY_FAULT or page-state change, or the VMM.
 *
 * Taking it is an atomic point of its own, as `mmu_lock`'s are: a task that finds it held blocks
 * until the holder's release, which writes the resource and so wakes it.
 */
import type { Clock } from "./clock.js";
import { BLOCKED, type ExecCtx, type Op } from "./ctx.js";
import { DeadlockError, LockdepError } from "./rwlock.js";

export class Mutex {
  /** The task holding it. Private: steps learn of it only through `lock`, which records. */
  private owner: ExecCtx | null = null;

  constructor(
    private readonly clock: Clock,
    /** The resource the lock's word is (`R_SLOTS_LOCK`). */
    private readonly id: number,
    /** The kernel's name for it, for messages. */
    readonly name: string,
  ) {}

  /**
   * `mutex_lock`: the attempt is one atomic point; a task that finds it held blocks. `atStepStart`:
   * the caller's step began right before, with nothing shared touched since (an ioctl the
   * scenario's program issues as an op of its own), so the attempt is that step's first atomic
   * point rather than one more step.
   */
  *lock(ctx: ExecCtx, atStepStart = false): Op {
    if (!atStepStart) {
      this.clock.step++;
      if (ctx.interleave) yield;
    }
    if (this.owner === ctx)
      throw new LockdepError(`${ctx.name}: ${this.name} taken again by its holder (AA deadlock)`);
    this.clock.fp?.read(this.id);
    if (this.owner !== null) {
      if (!ctx.interleave)
        throw new DeadlockError(
          `${ctx.name}: mutex_lock(${this.name}) would block without interleaving`,
        );
      do {
        yield BLOCKED;
        this.clock.step++;
        this.clock.fp?.read(this.id);
      } while (this.owner !== null);
    }
    this.clock.touch(this.id);
    this.owner = ctx;
  }

  /** `mutex_unlock`, in the holder's current step (waking a task blocked on it). */
  unlock(ctx: ExecCtx): void {
    if (this.owner !== ctx)
      throw new LockdepError(
        `${ctx.name}: mutex_unlock(${this.name}) by a task that does not hold it`,
      );
    this.clock.touch(this.id);
    this.owner = null;
  }

  /**
   * `lockdep_assert_held(&kvm->slots_lock)` for function `fn`: held by the task whose step is
   * running (`Clock.ctx`), or, with no task context (setup, a test's own calls), by anyone. The
   * running task's own hold depends on nothing another task can change, so it records nothing.
   */
  assertHeld(fn: string): void {
    const ctx = this.clock.ctx;
    const held = ctx !== null ? this.owner === ctx : this.owner !== null;
    if (!held) throw new LockdepError(`${fn}: ${this.name} must be held, but it is not`);
  }

  /** Who holds it, for checks, views and the audit between steps. */
  peekOwner(): string | null {
    this.clock.assertBetweenSteps("the owner of a mutex");
    return this.owner?.name ?? null;
  }
}

/** Runs `body` with `mutex` held by `ctx`, releasing it however the body ends. */
export function* withMutex<T>(
  mutex: Mutex,
  ctx: ExecCtx,
  body: () => Op<T>,
  atStepStart = false,
): Op<T> {
  yield* mutex.lock(ctx, atStepStart);
  try {
    return yield* body();
  } finally {
    mutex.unlock(ctx);
  }
}
