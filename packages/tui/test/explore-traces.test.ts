/**
 * The explorer's reduction (sleep sets, bound-aware) loses no Mazurkiewicz trace: with and
 * without it, the same set of traces among the complete schedules, on the race scenarios and
 * within preemption bounds. The SEV races have test files of their own, so that their
 * brute-force searches (over a million schedules each) run beside the rest.
 */
import { describe, expect, it } from "vitest";
import { expectSameTraces } from "./trace-sets.js";

describe("the reduced searches reach exactly the traces of the full one", () => {
  it("race-shared-table on plain", () => {
    expectSameTraces("race-shared-table.yaml", "plain");
  });

  it("tdx-race-2m-4k on TDX, preemption bound 2", () => {
    expectSameTraces("tdx-race-2m-4k.yaml", "tdx", 2);
  });

  it("tdx-race-2m-4k on TDX, preemption bound 3", () => {
    expectSameTraces("tdx-race-2m-4k.yaml", "tdx", 3);
  });

  it("convert-race on TDX: kvm->slots_lock keeps the two conversions apart", () => {
    const { full } = expectSameTraces("convert-race.yaml", "tdx");
    // Either ioctl first, each whole; each is followed by its hole punch (a syscall of its own,
    // under guest_memfd's filemap_invalidate_lock, with two mmu_lock sections), which
    // interleaves with the other's ioctl: 30 traces (4 with no punch, as before the punch left
    // the ioctl's last step). The vCPU's first entry loads its roots under mmu_lock for read
    // (kvm_mmu_load), before or after the VMM's write-lock sections: 41.
    expect(full.traces).toBe(41);
  });

  it("tdx-race-3vcpu on TDX, preemption bound 1", () => {
    expectSameTraces("tdx-race-3vcpu.yaml", "tdx", 1);
  });

  it("tdx-race-3vcpu on TDX, preemption bound 2", () => {
    expectSameTraces("tdx-race-3vcpu.yaml", "tdx", 2);
  });
});
