/** @tdpemu/backend-tdx: Intel TDX (KVM's side and a model of the TDX module), registered as `tdx`. */
import { BACKEND, type BackendRegistration } from "@tdpemu/backend-sdk";
import { TdxBackend } from "./tdx-backend.js";
import { registerTdxHost } from "./tdx-platform.js";

export { TdxBackend } from "./tdx-backend.js";
export { SEAM_MODULE, TDX_KEYIDS, TdxKeyIds, kernelTdmrInfo, pamtFrames, tdmrFramesFor, tdxEnable } from "./tdx-platform.js";
export { MAX_RESERVED_AREAS, type FrameRange, type RsvdArea, type TdmrInfo } from "./seam/sys-leaves.js";
export { SeamModule, type SeamResult, type GuestExit, type InjectedFault } from "./seam/seam-module.js";
export * from "./seam/status.js";
export * from "./seam/sept.js";
export * from "./seam/pamt.js";
export * from "./seam/td.js";
export { TD_TSC_MULTIPLIER, TD_TSC_OFFSET, VP_GUEST_RIP, VP_PEND_NMI, VP_PIN_BASED_VM_EXEC_CONTROL, VP_POSTED_INTR_DESC_ADDR, VP_POSTED_INTR_NV } from "./seam/md-leaves.js";

export const registration: BackendRegistration = {
  name: "tdx",
  description: "Intel TDX: mirror page tables propagated to a model of the TDX module (S-EPT, PAMT, epochs, locks)",
  register(c) {
    c.register(BACKEND, { useClass: TdxBackend });
  },
  registerHost: registerTdxHost,
};

export default registration;
