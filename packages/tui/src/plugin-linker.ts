/**
 * One core at run time. The `tdpemu` binary is a bundle with the core (and the backend SDK)
 * inside it; a plugin that imports `@tdpemu/backend-sdk` would otherwise get a second copy from
 * wherever it is installed, with its own classes, counters and constants. So before the first
 * plugin is imported, the command installs module resolution hooks (`module.register`) that
 * link every `import "@tdpemu/backend-sdk"` to the command's own instance, and resolve
 * `tsyringe` and `reflect-metadata` as the command does, so that a plugin's `@injectable()` and
 * `@inject()` register their metadata where the command's container reads it (the two are
 * peer dependencies of the SDK).
 *
 * The hooks run on Node's loader thread and cannot share objects with this one: they resolve the
 * SDK to a small module whose source reads the instance from a registered global symbol and
 * re-exports each of its names. The hooks are given as a data: URL, so that the same code serves
 * the bundle, the unbundled `dist/cli.js` and the tests, with no file to find beside them.
 */
import { register } from "node:module";
import * as sdk from "@tdpemu/backend-sdk";

/** Where the command's SDK instance is published for the linked module. */
const SDK_GLOBAL = "tdpemu.backendSdk";

const HOOKS = `
let sdkSource = "";
let hostUrl = "";
const SDK = "@tdpemu/backend-sdk";
const SDK_URL = "tdpemu:backend-sdk";
const SHARED = ["tsyringe", "reflect-metadata"];
export async function initialize(data) {
  hostUrl = data.hostUrl;
  sdkSource = "const sdk = globalThis[Symbol.for(" + JSON.stringify(data.global) + ")];\\n" +
    "export const { " + data.names.join(", ") + " } = sdk;\\nexport default sdk;\\n";
}
export async function resolve(specifier, context, next) {
  if (specifier === SDK) return { url: SDK_URL, shortCircuit: true };
  for (const p of SHARED) {
    if (specifier === p || specifier.startsWith(p + "/")) return next(specifier, { ...context, parentURL: hostUrl });
  }
  return next(specifier, context);
}
export async function load(url, context, next) {
  if (url === SDK_URL) return { format: "module", source: sdkSource, shortCircuit: true };
  return next(url, context);
}
`;

let linked = false;

/** Installs the hooks, once per process; afterwards every plugin shares the command's SDK. */
export function linkPlugins(): void {
  if (linked) return;
  linked = true;
  (globalThis as Record<symbol, unknown>)[Symbol.for(SDK_GLOBAL)] = sdk;
  register(`data:text/javascript,${encodeURIComponent(HOOKS)}`, {
    data: {
      hostUrl: import.meta.url,
      global: SDK_GLOBAL,
      names: Object.keys(sdk).filter((n) => n !== "default"),
    },
  });
}
