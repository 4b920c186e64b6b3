/**
 * vCPU requests (`kvm_make_request`, `kvm_check_request`): bits another thread sets on a vCPU
 * and the vCPU acts on at its next entry into the guest (`vcpu_enter_guest`). A remote TLB flush
 * (`kvm_flush_remote_tlbs`) is `KVM_REQ_TLB_FLUSH` made on every vCPU, which kicks the ones in
 * guest mode out; each flushes once at its next entry however many requests piled up.
 *
 * Each vCPU's requests are a resource of their own: making one is a write, the check at entry a
 * read (and a write when it finds one), recorded here.
 */
import type { Clock } from "../exec/clock.js";
import { resourceId } from "../exec/footprint.js";

export const KVM_REQ_TLB_FLUSH = 0;

export class VcpuRequests {
  private readonly pending: Uint8Array;
  private readonly space: number;

  constructor(
    private readonly clock: Clock,
    /** vCPUs 0 .. vcpus-1; the host's own vCPU (id -1) takes no requests. */
    readonly vcpus: number,
  ) {
    this.pending = new Uint8Array(vcpus);
    // No invariant check reads a vCPU's requests (a flush owed is not a state that can be wrong).
    this.space = clock.newResourceSpace(false);
  }

  /** `kvm_make_request(req, vcpu)` on every vCPU. */
  makeAll(req: number): void {
    for (let v = 0; v < this.vcpus; v++) {
      this.clock.touch(resourceId(this.space, v));
      this.pending[v] = this.pending[v]! | (1 << req);
    }
  }

  /** `kvm_check_request(req, vcpu)`: whether it was pending; it is not any more. */
  check(vcpu: number, req: number): boolean {
    if (vcpu < 0) return false;
    this.clock.fp?.read(resourceId(this.space, vcpu));
    const bit = 1 << req;
    if ((this.pending[vcpu]! & bit) === 0) return false;
    this.clock.touch(resourceId(this.space, vcpu));
    this.pending[vcpu] = this.pending[vcpu]! & ~bit;
    return true;
  }

  /** Each vCPU's pending requests under its resource id, recording nothing (the footprint audit). */
  auditState(out: Map<number, string | number>): void {
    for (let v = 0; v < this.vcpus; v++) out.set(resourceId(this.space, v), this.pending[v]!);
  }
}
