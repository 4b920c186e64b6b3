/**
 * The CCA backend's internals, for its tests: the public face (`index.ts`: the registration,
 * the backend class, the host-wide parts' tokens) and the model's own modules.
 */
export * from "./index.js";
export { CcaBackend, findMapLevel } from "./cca-backend.js";
export { RmiCalls, EXTRA_NAMES, BUILD_ONLY } from "./rmi-calls.js";
export { RAW_CALLS } from "./raw-calls.js";
export { Rmm } from "./rmm/rmm.js";
export * from "./rmm/rmi-status.js";
export * from "./rmm/granules.js";
export * from "./rmm/rtt.js";
export * from "./rmm/realm.js";
export * from "./rmm/rtt-commands.js";
export * from "./rmm/realm-side.js";
