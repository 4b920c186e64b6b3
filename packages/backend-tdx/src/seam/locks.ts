/**
 * The module's locks (`tdx_locks.h`): they never spin. A contended try-lock fails at once and
 * the leaf returns OPERAND_BUSY with the operand ID of what it could not lock. A sharex lock is
 * an exclusive bit plus a reader count; a host-priority sharex lock also has the HP bit, which
 * a host that failed to take it sets so that guest-side callers back off.
 *
 * Each SEAMCALL is one atomic step of the model, so within a step the locks it takes are always
 * free unless another holder keeps them across steps (a test playing a concurrent caller does).
 */
import { UNATTACHED_FOOTPRINT, type SeamFootprint } from "./seam-footprint.js";

export class SharexLock {
  exclusive = false;
  readers = 0;
  /** Host-priority bit: a host caller failed to take the lock. */
  hostPriority = false;

  constructor(
    /** Where the lock's accesses are recorded, as resource `id` (none for a lock no explorer sees). */
    private readonly fp: SeamFootprint | null = null,
    private readonly id = 0,
  ) {
    this.rec = fp ?? UNATTACHED_FOOTPRINT;
  }

  /** `fp`, or a footprint that never records: "recording?" is one load. */
  private readonly rec: SeamFootprint;

  tryShared(): boolean {
    this.fp?.write(this.id);
    if (this.exclusive) return false;
    this.readers++;
    return true;
  }

  tryExclusive(): boolean {
    this.fp?.write(this.id);
    if (this.exclusive || this.readers > 0) return false;
    this.exclusive = true;
    return true;
  }

  /**
   * Takes the lock and releases it again, as a leaf does within its one step: true if it could
   * be taken. The lock is left as it was, so the step only reads it.
   */
  tryTakeAndRelease(exclusive: boolean): boolean {
    if (this.rec.fp !== null) this.recordRead();
    return exclusive ? !this.exclusive && this.readers === 0 : !this.exclusive;
  }

  release(): void {
    this.fp?.write(this.id);
    if (this.exclusive) this.exclusive = false;
    else if (this.readers > 0) this.readers--;
    else throw new Error("release of a free sharex lock");
  }

  private recordRead(): void {
    this.fp!.fp!.read(this.id);
  }

  auditState(out: Map<number, string | number>): void {
    if (this.fp) out.set(this.id, `${this.exclusive}/${this.readers}/${this.hostPriority}`);
  }

  get held(): boolean {
    return this.exclusive || this.readers > 0;
  }
}
