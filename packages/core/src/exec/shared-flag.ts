/**
 * A flag two tasks share (the VM has been finalized: the vCPUs may start), as one resource that
 * records its own accesses: reading it is a read, raising it a write.
 */
import type { Clock } from "./clock.js";

export class SharedFlag {
  constructor(
    private readonly clock: Clock,
    /** The resource the flag is (`R_FINALIZED`). */
    private readonly id: number,
    private value: boolean,
  ) {}

  get(): boolean {
    this.clock.fp?.read(this.id);
    return this.value;
  }

  raise(): void {
    this.clock.touch(this.id);
    this.value = true;
  }

  /** The flag under its resource id, recording nothing: for the footprint audit, between steps. */
  auditState(s: Map<number, string | number>): void {
    this.clock.assertBetweenSteps("a shared flag");
    s.set(this.id, this.value ? 1 : 0);
  }
}
