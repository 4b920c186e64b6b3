/**
 * @tdpemu/backend-sdk: the one package a backend imports, built-in or plugin.
 *
 * A backend is a table of optional hooks (`Backend`, declared with its contracts in the core's
 * `backend/backend.ts` and documented for authors in `docs/writing-a-backend.md`), registered
 * under a name by a `BackendRegistration`. What it needs besides the contract is here: the
 * status and access-result constants, the errors it may throw (`KvmBug` ends the run as a
 * violation), step machines for hooks of several atomic points, and the helpers every backend
 * writes otherwise (call counting, resource ids for recording its own accesses), and the
 * dependency injection its parts are made with: the tokens of what a host offers (`HOST`,
 * `FRAMES`, `CLOCK`, `EVENTS`) and tsyringe's decorators and helpers, re-exported so that a
 * plugin uses the command's one tsyringe.
 *
 * Loaded by the `tdpemu` command, a plugin's `import ... from "@tdpemu/backend-sdk"` resolves to
 * the command's own instance (the command links it so), so there is one core at run time
 * whatever the plugin has installed beside it.
 */
import "reflect-metadata";

// The contract and its registration.
export {
  type Backend,
  type BackendStats,
  type FaultSpec,
  type RawCallArgs,
  type MirrorView,
  type MirrorEntryKind,
  ACCESS_OK,
  ACCESS_FAULT,
  ACCESS_FAULT_PRESENT,
  ACCESS_GUEST_EXCEPTION,
  ACCESS_INTERNAL_ERROR,
  ACCESS_REENTER,
  EBUSY,
  EEXIST,
  EFAULT,
  EIO,
  EINVAL,
  ENOMEM,
  ENOTTY,
  BACKEND,
  emptyBackendStats,
  type BackendVm,
  type VmConfig,
  type BackendRegistration,
  type BackendSource,
  isRegistration,
  backendSource,
  type WalkedSpte,
  MAP_CELL_CLASSES,
  DIRECT_OLD_LEAF,
  DIRECT_NEW_LEAF,
  DIRECT_OLD_WRITABLE,
  DIRECT_NEW_WRITABLE,
  type HostOpSchema,
  type HostOpParamKind,
  GUEST_PAGE_ACCEPTED,
  GUEST_PAGE_OWNED,
} from "@tdpemu/core";
// Events a backend emits (`vm.events`), with the tone the UI colours them by.
export { type EventTone, type TdpEvent, type TdpEventInput } from "@tdpemu/core";
// Errors: a KvmBug is a finding (exit 1); the kinds are recognised across copies (`errorKind`).
export { KvmBug, ErrorOfKind, errorKind, defineErrorKind } from "@tdpemu/core";
// Hooks of several atomic points.
export { STEP_YIELD, STEP_BLOCKED, type StepMachine } from "@tdpemu/core";
// Recording a backend's own accesses for the explorer (`recordsOwnAccesses`).
export {
  resourceId,
  R_BACKING,
  R_INJECTED,
  type Clock,
  type FootprintRecorder,
} from "@tdpemu/core";
// Host-wide state a backend shares with the other VMs of its host, and the host's frames.
export { Host, FrameAllocator, FRAMES_PER_BLOCK, OWNER_FREE, EventSink } from "@tdpemu/core";
// Dependency injection (core's `backend/containers.ts`): what a host's container holds, and
// tsyringe's means of asking for it.
export { HOST, FRAMES, CLOCK, EVENTS, type Configure } from "@tdpemu/core";
export {
  inject,
  injectable,
  singleton,
  injectAll,
  instanceCachingFactory,
  Lifecycle,
  type DependencyContainer,
  type InjectionToken,
} from "tsyringe";
// Helpers.
export {
  CallCounts,
  ControlPages,
  IdAllocator,
  StatusNames,
  packedZeros,
  grown,
  nextSetBit,
  sharedGfnBit,
  type Level,
} from "@tdpemu/core";
