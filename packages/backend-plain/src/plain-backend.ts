/**
 * Plain EPT: a VM with no private memory. Every hook is absent except the TLB flush, which on
 * real hardware is an INVEPT (single-context) of the VM's EPTP; the core walks the EPT itself.
 */
import {
  emptyBackendStats,
  injectable,
  type Backend,
  type BackendStats,
  type BackendVm,
} from "@tdpemu/backend-sdk";

@injectable()
export class PlainBackend implements Backend {
  readonly name: string = "plain";
  readonly description = "plain EPT: no private memory, every confidential-VM hook absent";
  readonly usesMirrorRoot = false;
  readonly hasPrivateMemory = false;
  /** Its only state is the call counter, which no hook reads: nothing to record. */
  readonly recordsOwnAccesses = true;
  private readonly counters: BackendStats = emptyBackendStats();

  /** A vCPU's flush at entry: INVEPT (single-context) of the VM's EPTP. */
  flushTlb(_vm: BackendVm, _vcpu: number): void {
    this.counters.calls.INVEPT = (this.counters.calls.INVEPT ?? 0) + 1;
  }

  stats(): BackendStats {
    return {
      calls: { ...this.counters.calls },
      busy: this.counters.busy,
      errors: { ...this.counters.errors },
    };
  }
}
