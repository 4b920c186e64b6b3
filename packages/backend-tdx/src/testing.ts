/**
 * The TDX backend's internals, for its tests: the public face (`index.ts`: the registration,
 * the backend class, the host-wide parts' tokens) and the model's own modules.
 */
export * from "./index.js";
export { rememberTdSetups } from "./td-setup-memo.js";
export {
  SEAM_MODULE,
  TDX_KEYIDS,
  TdxKeyIds,
  kernelTdmrInfo,
  pamtFrames,
  tdmrFramesFor,
  tdxEnable,
} from "./tdx-platform.js";
export {
  MAX_RESERVED_AREAS,
  type FrameRange,
  type RsvdArea,
  type TdmrInfo,
} from "./seam/sys-leaves.js";
export {
  SeamModule,
  type SeamResult,
  type GuestExit,
  type InjectedFault,
} from "./seam/seam-module.js";
export * from "./seam/status.js";
export * from "./seam/sept.js";
export * from "./seam/pamt.js";
export * from "./seam/td.js";
export {
  TD_TSC_MULTIPLIER,
  TD_TSC_OFFSET,
  VP_GUEST_RIP,
  VP_PEND_NMI,
  VP_PIN_BASED_VM_EXEC_CONTROL,
  VP_POSTED_INTR_DESC_ADDR,
  VP_POSTED_INTR_NV,
} from "./seam/md-leaves.js";
export { SeamFootprint, TD_CHILDREN, TD_PART_COUNT, TD_STATE } from "./seam/seam-footprint.js";
