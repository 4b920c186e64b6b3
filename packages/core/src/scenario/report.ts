/**
 * The JSON report of `tdpemu run --json` (docs/architecture.md, "The JSON report"). The keys named
 * there are the contract; `memslotBytes`-style extras may be added, never renamed.
 */
import type { BackendStats } from "../backend/backend.js";
import type { CheckResult } from "../check/invariants.js";
import type { Vm } from "../vm/vm.js";
import type { GuestMemory } from "./guest-memory.js";
import type { Scenario } from "./schema.js";

export interface Report {
  scenario: string;
  backend: string;
  seed: number;
  /** Atomic points the run passed (`Clock.step`), the same interleaved or not; not scheduler steps. */
  steps: number;
  stats: {
    faults: number;
    faultRetries: number;
    spuriousFaults: number;
    pages: { "4k": number; "2m": number; "1g": number };
    tablePages: number;
    /** Remote flushes requested (a KVM_REQ_TLB_FLUSH on every vCPU). */
    tlbFlushes: number;
    /** Flushes the vCPUs did at entry (requests coalesced, and after loading a new root). */
    vcpuTlbFlushes: number;
    zappedLeaves: number;
    leakedPages: number;
    /** Extra: leaked pages by cause. */
    leakCauses: Record<string, number>;
  };
  backendStats: BackendStats;
  invariants: CheckResult;
  /** Extra: what each op found, in the order the ops finished. */
  ops: { who: string; index: number; op: string; result: Record<string, number | string> }[];
  /** Extra: false when the run stopped before its programs ended (a replay cut at a violation). */
  complete: boolean;
  /** Extra, when asked for (`RunOptions.guestMemory`, `run --json`): the guest's memory at the end, per GFN range. */
  guestMemory?: GuestMemory;
}

export function buildReport(
  scn: Scenario,
  vm: Vm,
  steps: number,
  invariants: CheckResult,
  ops: Report["ops"],
  complete = true,
): Report {
  const s = vm.mmu.stats;
  return {
    scenario: scn.name,
    backend: vm.backend.name,
    seed: scn.schedule.seed,
    steps,
    stats: {
      faults: s.faults,
      faultRetries: s.faultRetries,
      spuriousFaults: s.spuriousFaults,
      pages: { "4k": s.pages[1]!, "2m": s.pages[2]!, "1g": s.pages[3]! },
      tablePages: s.tablePages,
      tlbFlushes: s.tlbFlushes,
      vcpuTlbFlushes: s.vcpuTlbFlushes,
      zappedLeaves: s.zappedLeaves,
      leakedPages: s.leakedPages,
      leakCauses: { ...s.leakCauses },
    },
    backendStats: vm.backend.stats(),
    invariants,
    ops,
    complete,
  };
}
