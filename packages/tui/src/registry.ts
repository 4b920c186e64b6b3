/**
 * The backends the `tdpemu` command knows without a plugin. A backend package exports a
 * registration; adding one here is the only change a new built-in backend needs.
 */
import { dirname, resolve as resolvePath } from "node:path";
import { BackendRegistry, DEFAULT_SCENARIO_SOURCE, type Scenario } from "@tdpemu/core";
import { registration as plain } from "@tdpemu/backend-plain";
import { registration as tdx } from "@tdpemu/backend-tdx";
import { registration as sev } from "@tdpemu/backend-sev";
import { linkPlugins } from "./plugin-linker.js";

/** How plugins are run, for the whole command (`--strict-plugin`, set by `main`). */
export const pluginMode = { strict: false };

export function builtinRegistry(): BackendRegistry {
  const r = new BackendRegistry({ beforeLoad: linkPlugins, strictPlugins: pluginMode.strict });
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

/**
 * Resolves a backend (a name or a module path) to a registered name. A relative module path is
 * taken from `baseDir`: the directory of the file that names it (a scenario's `backend:`), or the
 * current one for `--backend`. The module is loaded by its absolute path, which is what
 * schedule files record (`backendForSchedule`).
 */
export async function resolveBackend(r: BackendRegistry, nameOrPath: string, baseDir = "."): Promise<string> {
  if (r.has(nameOrPath)) return nameOrPath;
  if (/[/\\]|\.m?js$/.test(nameOrPath)) return r.load(/^[a-z][a-z0-9+.-]*:/i.test(nameOrPath) && !/^[a-z]:[/\\]/i.test(nameOrPath) ? nameOrPath : resolvePath(baseDir, nameOrPath));
  return nameOrPath; // create() reports it as unknown, with the list of known names
}

/**
 * Loads each `--plugin` module (paths from the current directory, loaded by their absolute path,
 * as `resolveBackend` loads them, so the same module named both ways is loaded once). Returns
 * the absolute paths, for a child process to load again.
 */
export async function loadPlugins(r: BackendRegistry, paths: readonly string[]): Promise<string[]> {
  const abs = paths.map((p) => resolvePath(p));
  for (const p of abs) await r.load(p);
  return abs;
}

/** The directory a scenario's relative paths are taken from. */
export function scenarioDir(scn: Scenario): string {
  return scn.source === DEFAULT_SCENARIO_SOURCE ? "." : dirname(scn.source);
}

/** What a schedule file records for backend `name`: a plugin's module path, else the name. */
export function backendForSchedule(r: BackendRegistry, name: string): string {
  return r.moduleOf(name) ?? name;
}
