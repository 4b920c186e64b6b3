/**
 * The SEV backend's internals, for its tests: the public face (`index.ts`: the registration,
 * the backend class, the host-wide parts' tokens) and the model's own modules.
 */
export * from "./index.js";
export * from "./sev-backend.js";
export * from "./rmp.js";
export * from "./rmp-instructions.js";
export * from "./snp-firmware.js";
