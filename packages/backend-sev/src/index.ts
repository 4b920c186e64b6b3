/** @tdpemu/backend-sev: the SEV-like backend (AMD SEV-SNP's RMP), registered as `sev`. */
import "reflect-metadata";
import { BACKEND, type BackendRegistration } from "@tdpemu/backend-sdk";
import { SevBackend } from "./sev-backend.js";

export { SevBackend, rmpOf, type SevException } from "./sev-backend.js";
export * from "./sev-backend.js";
export * from "./rmp.js";
export * from "./rmp-instructions.js";

export const registration: BackendRegistration = {
  name: "sev",
  description: "SEV-like (AMD SEV-SNP): one nested table plus a reverse-map table checked on every access",
  register(c) {
    c.register(BACKEND, { useClass: SevBackend });
  },
};

export default registration;
