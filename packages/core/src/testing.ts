/**
 * @tdpemu/core/testing: the public face and the internals tests reach (the page-table pool, the
 * walkers, the locks, the scheduler's parts, the explorer on a system of a test's own, the
 * footprint audit). Not for programs: nothing here is kept stable for them.
 */
export * from "./index.js";
// arch
export * from "./arch/levels.js";
export * from "./arch/gpa.js";
export * from "./arch/spte.js";
export * from "./arch/spte-format.js";
// mem
export { Host, type HostOptions, type HostStorage } from "./mem/host.js";
export {
  FrameAllocator,
  FRAMES_PER_BLOCK,
  OWNER_FREE,
  OWNER_PT_POOL,
} from "./mem/frame-allocator.js";
export { PtPool, ROLE_MIRROR, ROLE_ROOT, ROLE_INVALID, U32_PER_TABLE } from "./mem/pt-pool.js";
export { HostMemoryExhausted } from "./mem/errors.js";
export { ErrorOfKind, defineErrorKind, errorKind } from "./error-kind.js";
export { GuestBacking, type BackingKind } from "./mem/guest-backing.js";
export { Memslot, Memslots, type MemslotFlags } from "./mem/memslots.js";
export { MemAttributes } from "./mem/mem-attributes.js";
export { nextSetBit } from "./mem/typed-arrays.js";
// mmu
export { TdpIter } from "./mmu/tdp-iter.js";
export { TdpMmu, KvmBug, type MmuOptions, type MirrorStrategy } from "./mmu/tdp-mmu.js";
export { MmuStats } from "./mmu/mmu-stats.js";
export { Root, KVM_DIRECT_ROOTS, KVM_INVALID_ROOTS, KVM_MIRROR_ROOTS } from "./mmu/roots.js";
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
// backend
export * from "./backend/backend.js";
export type { BackendVm, VmConfig } from "./backend/backend-vm.js";
export {
  BackendRegistry,
  UnknownBackendError,
  type BackendRegistryOptions,
} from "./backend/registry.js";
export {
  backendSource,
  isRegistration,
  type BackendRegistration,
  type BackendSource,
} from "./backend/backend-source.js";
export {
  HOST,
  FRAMES,
  CLOCK,
  EVENTS,
  processContainer,
  type Configure,
} from "./backend/containers.js";
export { CallCounts, packedZeros } from "./backend/call-counts.js";
export { ControlPages } from "./backend/control-pages.js";
export { IdAllocator } from "./backend/id-allocator.js";
export { StatusNames } from "./backend/status-names.js";
export {
  PluginError,
  BACKEND_HOOKS,
  checkPluginBackend,
  guardPlugin,
  type PluginInfo,
} from "./backend/plugin-guard.js";
export { recordedBackend } from "./backend/recorded-backend.js";
// exec
export { Clock } from "./exec/clock.js";
export { ExecCtx, runToEnd, BLOCKED, RETRY_WAIT, type Op, type Step } from "./exec/ctx.js";
export * from "./exec/footprint.js";
export { RwLock, DeadlockError, LockdepError } from "./exec/rwlock.js";
export { Rcu } from "./exec/rcu.js";
export { Srcu } from "./exec/srcu.js";
export { SharedFlag } from "./exec/shared-flag.js";
export {
  Scheduler,
  ReplayDivergence,
  TaskStepper,
  stepTask,
  type ScheduleMode,
  type Task,
} from "./exec/scheduler.js";
export {
  STEP_YIELD,
  STEP_BLOCKED,
  runNow,
  runSteps,
  type StepMachine,
} from "./exec/step-machine.js";
export { WaitTracker } from "./exec/wait-tracker.js";
export { traceKey } from "./exec/trace-key.js";
export { Prng } from "./exec/prng.js";
// vm
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
export * as hostOps from "./vm/host-ops.js";
export { OpError } from "./vm/op-error.js";
// events, checks
export {
  EventSink,
  type EventTone,
  type TdpEvent,
  type TdpEventInput,
  type EventListener,
  type FaultResult,
} from "./events/events.js";
export {
  checkInvariants,
  mirrorView,
  INVARIANTS,
  type CheckResult,
  type Violation,
} from "./check/invariants.js";
// scenario
export * from "./scenario/schema.js";
export {
  parseScenarioText,
  loadScenario,
  validateScenario,
  parseSizeText,
  ScenarioError,
} from "./scenario/parse.js";
export { checkPluginOps } from "./scenario/plugin-ops.js";
export { scenarioJsonSchema, scheduleJsonSchema, type JsonSchema } from "./scenario/json-schema.js";
export { scenarioFormatMarkdown, type FormatExample } from "./scenario/format-doc.js";
export {
  runScenario,
  buildRun,
  classifyRunError,
  defaultHostMemory,
  RunInputError,
  InvariantViolation,
  type RunOptions,
  type RunResult,
  type OpResult,
  type BuiltRun,
} from "./scenario/runner.js";
export { exploreScenario, type ExploreScenarioOptions } from "./scenario/explore-scenario.js";
export {
  conflictChain,
  scheduleSteps,
  type ScheduleStep,
  type ScheduleSteps,
} from "./scenario/schedule-steps.js";
export { shrinkSchedule, type Shrunk } from "./scenario/shrink.js";
export { inputLimits, readInputFile, DEFAULT_MAX_INPUT } from "./scenario/input-file.js";
export {
  loadScheduleFile,
  saveScheduleFile,
  scheduleFileText,
  ScheduleFileError,
  SCHEDULE_FORMAT,
  BUILTIN_SCENARIO,
  type ScheduleContent,
  type ScheduleFile,
} from "./scenario/schedule-file.js";
export {
  explore,
  type ExploreAlgorithm,
  type ExploreSystem,
  type ExploreOptions,
  type ExploreResult,
  type ExploreProgress,
  type ExploreViolation,
} from "./exec/explorer.js";
export { buildReport, type Report } from "./scenario/report.js";
export {
  guestMemory,
  type GuestMemory,
  type GuestMemoryRange,
  type PageOwner,
} from "./scenario/guest-memory.js";
export { DEFAULT_SCENARIO_YAML, DEFAULT_SCENARIO_SOURCE } from "./scenario/default-scenario.js";
export { FootprintAudit } from "./check/footprint-audit.js";
