/** @tdpemu/backend-sev: the SEV-like backend (AMD SEV-SNP's RMP), registered as `sev`. */
import { BACKEND, type BackendRegistration } from "@tdpemu/backend-sdk";
import { SevBackend } from "./sev-backend.js";
import { registerSevHost } from "./sev-platform.js";

export { SevBackend, type SevException } from "./sev-backend.js";
export { RMP, SEV_ASIDS } from "./sev-platform.js";

export const registration: BackendRegistration = {
  name: "sev",
  description:
    "SEV-like (AMD SEV-SNP): one nested table plus a reverse-map table checked on every access",
  register(c) {
    c.register(BACKEND, { useClass: SevBackend });
  },
  registerHost: registerSevHost,
};

export default registration;
