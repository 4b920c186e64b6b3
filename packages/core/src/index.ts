/**
 * @tdpemu/core: the public face of the core, for the `tdpemu` command, the backend SDK and
 * programs that run scenarios themselves. The MMU's internals (the page-table pool, the
 * walkers, locks, the scheduler's parts) are not here: tests reach them through
 * `@tdpemu/core/testing` (`testing.ts`).
 */
import "reflect-metadata";

// arch: the vocabulary (levels, GPA/GFN arithmetic, the bit-exact EPT SPTE codec)
export * from "./arch/levels.js";
export * from "./arch/gpa.js";
export * from "./arch/spte.js";
export * from "./arch/spte-format.js";
// errors shared by every layer
export { ErrorOfKind, defineErrorKind, errorKind } from "./error-kind.js";
export { HostMemoryExhausted } from "./mem/errors.js";
export { KvmBug, type MmuOptions, type MirrorStrategy } from "./mmu/tdp-mmu.js";
export { OpError } from "./vm/op-error.js";
// the host and what a backend is made of
export { Host, type HostOptions } from "./mem/host.js";
export { FrameAllocator, FRAMES_PER_BLOCK, OWNER_FREE } from "./mem/frame-allocator.js";
export { grown, nextSetBit } from "./mem/typed-arrays.js";
export { Root } from "./mmu/roots.js";
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
export { HOST, FRAMES, CLOCK, EVENTS, type Configure } from "./backend/containers.js";
export { CallCounts, packedZeros } from "./backend/call-counts.js";
export { ControlPages } from "./backend/control-pages.js";
export { IdAllocator } from "./backend/id-allocator.js";
export { StatusNames } from "./backend/status-names.js";
export { PluginError } from "./backend/plugin-guard.js";
// execution: steps, step machines, footprints a backend records
export { Clock, UnrecordedAccess } from "./exec/clock.js";
export { runToEnd, BLOCKED, RETRY_WAIT, type Op, type Step } from "./exec/ctx.js";
export {
  resourceId,
  resourceName,
  R_BACKING,
  R_INJECTED,
  FootprintRecorder,
} from "./exec/footprint.js";
export { Scheduler, TaskStepper, type ScheduleMode, type Task } from "./exec/scheduler.js";
export { STEP_YIELD, STEP_BLOCKED, type StepMachine } from "./exec/step-machine.js";
export { Prng } from "./exec/prng.js";
export * as hostOps from "./vm/host-ops.js";
// events and checks
export {
  EventSink,
  type EventTone,
  type TdpEvent,
  type TdpEventInput,
  type EventListener,
  type FaultResult,
} from "./events/events.js";
export type { CheckResult, Violation } from "./check/invariants.js";
// scenarios: the format, running, exploring, replaying
export {
  GUEST_OPS,
  HOST_OPS,
  STRATEGIES,
  type Scenario,
  type VmSpec,
  type HugePages,
  type ScheduleSpec,
  type GuestOp,
  type HostOp,
  type Strategy,
  type InjectSpec,
} from "./scenario/schema.js";
export {
  parseScenarioText,
  loadScenario,
  validateScenario,
  parseSizeText,
  ScenarioError,
} from "./scenario/parse.js";
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
export {
  exploreScenario,
  scenarioSystem,
  type ExploreScenarioOptions,
} from "./scenario/explore-scenario.js";
export {
  auditScenario,
  type AuditScenarioOptions,
  type AuditScenarioResult,
} from "./scenario/audit-scenario.js";
export type { CommuteAuditResult } from "./check/commute-audit.js";
export type { TraceStateAuditResult } from "./check/trace-state-audit.js";
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
export type {
  ExploreAlgorithm,
  ExploreOptions,
  ExploreResult,
  ExploreProgress,
  ExploreViolation,
  ScheduleBudget,
} from "./exec/explorer.js";
export { buildReport, type Report } from "./scenario/report.js";
export {
  guestMemory,
  type GuestMemory,
  type GuestMemoryRange,
  type PageOwner,
} from "./scenario/guest-memory.js";
export { DEFAULT_SCENARIO_YAML, DEFAULT_SCENARIO_SOURCE } from "./scenario/default-scenario.js";
// virtual time: what a run would cost on a platform
export {
  parseCostTable,
  loadCostTable,
  defaultCostTable,
  builtinCostTables,
  type CostTable,
  type CostEntry,
} from "./cost/cost-table.js";
export { VirtualTime, costKey, type VirtualTimeReport } from "./cost/virtual-time.js";
