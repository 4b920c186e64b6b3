/**
 * @tdpemu/core/testing: the public face and the internals tests reach (the page-table pool, the
 * walkers, the locks, the scheduler's parts, the explorer on a system of a test's own, the
 * footprint audit). Not for programs: nothing here is kept stable for them.
 */
export * from "./index.js";
export { type HostStorage } from "./mem/host.js";
export { OWNER_PT_POOL } from "./mem/frame-allocator.js";
export { PtPool, ROLE_MIRROR, ROLE_ROOT, ROLE_INVALID, U32_PER_TABLE } from "./mem/pt-pool.js";
export { GuestBacking, type BackingKind } from "./mem/guest-backing.js";
export { Memslot, Memslots, type MemslotFlags } from "./mem/memslots.js";
export { MemAttributes } from "./mem/mem-attributes.js";
export { TdpIter } from "./mmu/tdp-iter.js";
export { TdpMmu } from "./mmu/tdp-mmu.js";
export { MmuStats } from "./mmu/mmu-stats.js";
export { KVM_DIRECT_ROOTS, KVM_INVALID_ROOTS, KVM_MIRROR_ROOTS } from "./mmu/roots.js";
export * from "./mmu/tdp-map.js";
export { FastPageFault, fastPageFault } from "./mmu/fast-page-fault.js";
export {
  zapLeafs,
  zapRoot,
  zapAll,
  zapInvalidatedRoots,
  unmapGfnRange,
  zapLeafsOfValidRoots,
  KVM_FILTER_PRIVATE,
  KVM_FILTER_SHARED,
} from "./mmu/zap.js";
export {
  wrprotGfnRange,
  wrprotSlot,
  clearDirtyPtMasked,
  collectDirtyLog,
} from "./mmu/dirty-log.js";
export { ageGfnRange } from "./mmu/age.js";
export { trySplitHugePages } from "./mmu/split.js";
export { recoverHugePages } from "./mmu/recover.js";
export { maxMappingLevel, hugepageAdjust } from "./mmu/max-level.js";
export { processContainer } from "./backend/containers.js";
export {
  BACKEND_HOOKS,
  checkPluginBackend,
  guardPlugin,
  type PluginInfo,
} from "./backend/plugin-guard.js";
export { recordedBackend } from "./backend/recorded-backend.js";
export { ExecCtx, KVM_ARCH_NR_OBJS_PER_MEMORY_CACHE } from "./exec/ctx.js";
export * from "./exec/footprint.js";
export { RwLock, DeadlockError, LockdepError } from "./exec/rwlock.js";
export { Rcu } from "./exec/rcu.js";
export { Srcu } from "./exec/srcu.js";
export { SharedFlag } from "./exec/shared-flag.js";
export { ReplayDivergence, stepTask } from "./exec/scheduler.js";
export { runNow, runSteps } from "./exec/step-machine.js";
export { WaitTracker } from "./exec/wait-tracker.js";
export { RaceFinder } from "./exec/races.js";
export { ReversalOrder } from "./exec/reversal-order.js";
export { traceKey } from "./exec/trace-key.js";
export { Vm, Vcpu, type VmOptions } from "./vm/vm.js";
export {
  eptWalk,
  WalkOut,
  WALK_OK,
  WALK_NOT_PRESENT,
  WALK_PERMISSION,
  type HwUpdate,
} from "./vm/ept-walk.js";
export {
  tdpPageFault,
  guestAccessPage,
  guestAccessRange,
  AccessTally,
  guestAcceptPage,
  guestRmpAdjustPage,
  GuestLivelock,
  type AccessOutcome,
} from "./vm/guest-access.js";
export { guestPageStateChange, type PscResult } from "./vm/guest-psc.js";
export { RET_PF_MEMORY_FAULT_EXIT } from "./vm/tdp-fault.js";
export { checkInvariants, mirrorView, INVARIANTS } from "./check/invariants.js";
// scenario
export * from "./scenario/schema.js";
export { checkPluginOps } from "./scenario/plugin-ops.js";
export { explore, type ExploreSplit, type ExploreSystem } from "./exec/explorer.js";
export { FootprintAudit } from "./check/footprint-audit.js";
export { auditCommutation, type CommuteAuditOptions } from "./check/commute-audit.js";
export { auditTraceStates, type TraceStateAuditOptions } from "./check/trace-state-audit.js";
export { exploreEveryState, type EveryStateResult } from "./check/every-state.js";
export { recordedStep } from "./exec/recorded-step.js";
