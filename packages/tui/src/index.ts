/** @tdpemu/tui: the `tdpemu` command. */
export { main } from "./main.js";
export type { Io } from "./io.js";
export { builtinRegistry, defaultBackend } from "./registry.js";
export { formatSummary } from "./summary.js";
