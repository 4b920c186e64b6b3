/**
 * @tdpemu/backend-cca: Arm CCA realms, registered as `cca`: a model of the Realm Management
 * Monitor (granules, RTTs, RIPAS, RECs) and KVM for arm64's realm support on the TDP MMU's
 * hooks. Written against `@tdpemu/backend-sdk` only.
 */
import { BACKEND, type BackendRegistration } from "@tdpemu/backend-sdk";
import { CcaBackend } from "./cca-backend.js";
import { registerCcaHost } from "./cca-platform.js";

export { CcaBackend } from "./cca-backend.js";
export { RMM, CCA_VMIDS } from "./cca-platform.js";

export const registration: BackendRegistration = {
  name: "cca",
  description:
    "Arm CCA realms: mirror page tables propagated to a model of the RMM (granules, RTTs, RIPAS)",
  register(c) {
    c.register(BACKEND, { useClass: CcaBackend });
  },
  registerHost: registerCcaHost,
};

export default registration;
