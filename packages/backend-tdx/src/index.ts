/** @tdpemu/backend-tdx: Intel TDX (KVM's side and a model of the TDX module), registered as `tdx`. */
import "reflect-metadata";
import { BACKEND, type BackendRegistration } from "@tdpemu/backend-sdk";
import { TdxBackend } from "./tdx-backend.js";

export { TdxBackend, seamModuleOf } from "./tdx-backend.js";
export { SeamModule, type SeamResult, type GuestExit, type InjectedFault } from "./seam/seam-module.js";
export * from "./seam/status.js";
export * from "./seam/sept.js";
export * from "./seam/pamt.js";
export * from "./seam/td.js";

export const registration: BackendRegistration = {
  name: "tdx",
  description: "Intel TDX: mirror page tables propagated to a model of the TDX module (S-EPT, PAMT, epochs, locks)",
  register(c) {
    c.register(BACKEND, { useClass: TdxBackend });
  },
};

export default registration;
