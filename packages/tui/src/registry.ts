/**
 * The backends the `tdpemu` command knows without a plugin. A backend package exports a
 * registration; adding one here is the only change a new built-in backend needs.
 */
import { BackendRegistry } from "@tdpemu/core";
import { registration as plain } from "@tdpemu/backend-plain";
import { registration as tdx } from "@tdpemu/backend-tdx";
import { registration as sev } from "@tdpemu/backend-sev";
import { linkPlugins } from "./plugin-linker.js";

export function builtinRegistry(): BackendRegistry {
  const r = new BackendRegistry({ beforeLoad: linkPlugins });
  r.add(tdx);
  r.add(sev);
  r.add(plain);
  return r;
}

/**
 * The backend `tdpemu` uses when neither the scenario nor `--backend` names one that exists:
 * TDX once it is registered, else the first of sev and plain.
 */
export function defaultBackend(r: BackendRegistry): string {
  for (const name of ["tdx", "sev", "plain"]) if (r.has(name)) return name;
  return r.list()[0]!.name;
}

/** Resolves `--backend` (a name or a module path) to a registered name. */
export async function resolveBackend(r: BackendRegistry, nameOrPath: string): Promise<string> {
  if (r.has(nameOrPath)) return nameOrPath;
  if (/[/\\]|\.m?js$/.test(nameOrPath)) return r.load(nameOrPath);
  return nameOrPath; // create() reports it as unknown, with the list of known names
}
