/**
 * `kvm->srcu`, as far as memslot updates, faults and a vCPU's destruction share it: a fault runs
 * inside a read-side section (`srcu_read_lock` in `kvm_arch_vcpu_ioctl_run`'s loop), as does
 * `kvm_mmu_destroy` in the teardown (the host's reader), and an update of the memslots publishes
 * the new ones and then `synchronize_srcu` waits for every section that began before. A reader's
 * sections do not nest: `readLock` refuses a reader already inside one.
 *
 * Modelled by generations: each `synchronize` starts a new one; a reader notes the generation it
 * entered under; the update waits until no reader of an older generation is left. The state is
 * one resource (R_SRCU): entering and leaving commute with each other (a commutative update),
 * and the writer's new generation conflicts with both. Every access records itself.
 */
import type { Clock } from "./clock.js";
import { R_SRCU } from "./footprint.js";

export class Srcu {
  private gen = 0;
  /** The generation each reader entered under, or -1 outside a section; reader `n` is the host's. */
  private readonly readers: Float64Array;

  constructor(
    private readonly clock: Clock,
    /** Readers 0 .. vcpus-1 are the vCPUs; one more is the host's own (`Vm.hostVcpu`, id -1). */
    private readonly vcpus: number,
  ) {
    this.readers = new Float64Array(vcpus + 1).fill(-1);
  }

  private index(vcpu: number): number {
    return vcpu < 0 ? this.vcpus : vcpu;
  }

  /** `srcu_read_lock` by vCPU `vcpu` (-1: the host's: its pre-faults, populate, the teardown). */
  readLock(vcpu: number): void {
    this.clock.fp?.add(R_SRCU);
    const i = this.index(vcpu);
    if (this.readers[i]! >= 0)
      throw new Error(`kvm->srcu: reader ${vcpu} is already inside a read-side section`);
    this.readers[i] = this.gen;
  }

  /** `srcu_read_unlock`. */
  readUnlock(vcpu: number): void {
    this.clock.fp?.add(R_SRCU);
    this.readers[this.index(vcpu)] = -1;
  }

  /** Whether `vcpu` is inside a read-side section (for lock assertions). */
  isReading(vcpu: number): boolean {
    this.clock.fp?.read(R_SRCU);
    return this.readers[this.index(vcpu)]! >= 0;
  }

  /** The start of `synchronize_srcu`: readers from here on see the new memslots. Returns the new generation. */
  newGeneration(): number {
    this.clock.touch(R_SRCU);
    return ++this.gen;
  }

  /** Whether a reader that entered before generation `gen` is still inside its section. */
  readersBefore(gen: number): boolean {
    this.clock.fp?.read(R_SRCU);
    for (let i = 0; i < this.readers.length; i++) {
      const g = this.readers[i]!;
      if (g >= 0 && g < gen) return true;
    }
    return false;
  }

  /** The state as a string, recording nothing: for the footprint audit. */
  auditState(): string {
    return `${this.gen}/${this.readers.join(",")}`;
  }
}
