/**
 * The MMU's counters: the kernel's `kvm->stat.pages[]` and `tdp_mmu_pages`, plus what the
 * emulator counts that the kernel does not (leaked pages, which the kernel only WARNs about, as
 * `handle_removed_pt()` in arch/x86/kvm/mmu/tdp_mmu.c does for a failed `free_external_spt`, and
 * the review of the TDX patch asked to be counted).
 */
export class MmuStats {
  /** EPT violations handled by the fault path (each retry is a new fault). */
  faults = 0;
  /** Faults that returned `RET_PF_RETRY`. */
  faultRetries = 0;
  /** Faults that returned `RET_PF_SPURIOUS`. */
  spuriousFaults = 0;
  /** Leaf SPTEs by level (`kvm->stat.pages[]`), index = level. */
  readonly pages = [0, 0, 0, 0, 0, 0];
  /** Linked non-root table pages (`kvm->arch.tdp_mmu_pages`). */
  tablePages = 0;
  /** Remote TLB flushes requested (`kvm_flush_remote_tlbs`: a request on every vCPU). */
  tlbFlushes = 0;
  /** TLB flushes the vCPUs did at entry: for the requests (coalesced), and after loading a new root. */
  vcpuTlbFlushes = 0;
  /** Present leaves made non-present. */
  zappedLeaves = 0;
  /** Pages intentionally leaked because they could not be given back safely. */
  leakedPages = 0;
  /** The same, by cause ("TDH.PHYMEM.PAGE.RECLAIM failed: ..."). */
  readonly leakCauses: Record<string, number> = {};
  /** Faults whose access did not match the memory attributes (`KVM_EXIT_MEMORY_FAULT`). */
  memoryFaultExits = 0;
  /** Accesses with no memslot, handed to userspace as MMIO. */
  mmioExits = 0;
}
