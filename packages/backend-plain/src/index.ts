/** @tdpemu/backend-plain: plain EPT, registered as `plain`. */
import { BACKEND, type BackendRegistration } from "@tdpemu/backend-sdk";
import { PlainBackend } from "./plain-backend.js";

export { PlainBackend };

export const registration: BackendRegistration = {
  name: "plain",
  description: "plain EPT: no private memory, every confidential-VM hook absent",
  register(c) {
    c.register(BACKEND, { useClass: PlainBackend });
  },
};

export default registration;
