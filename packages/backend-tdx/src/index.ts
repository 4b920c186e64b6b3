/** @tdpemu/backend-tdx: Intel TDX (KVM's side and a model of the TDX module), registered as `tdx`. */
import { BACKEND, type BackendRegistration } from "@tdpemu/backend-sdk";
import { TdxBackend } from "./tdx-backend.js";
import { registerTdxHost } from "./tdx-platform.js";

export { TdxBackend } from "./tdx-backend.js";
export { SEAM_MODULE, TDX_KEYIDS, TdxKeyIds } from "./tdx-platform.js";

export const registration: BackendRegistration = {
  name: "tdx",
  description:
    "Intel TDX: mirror page tables propagated to a model of the TDX module (S-EPT, PAMT, epochs, locks)",
  register(c) {
    c.register(BACKEND, { useClass: TdxBackend });
  },
  registerHost: registerTdxHost,
};

export default registration;
