/**
 * The backends the `tdpemu` command knows without a plugin. A backend package exports a
 * registration; adding one here is the only change a new built-in backend needs.
 */
import { dirname, resolve as resolvePath } from "node:path";
import { BackendRegistry, DEFAULT_SCENARIO_SOURCE, type Scenario } from "@tdpemu/core";
import { registration as plain } from "@tdpemu/backend-plain";
import { registration as tdx } from "@tdpemu/backend-tdx";
import { registration as sev } from "@tdpemu/backend-sev";
import { registration as cca } from "@tdpemu/backend-cca";
import { linkPlugins } from "./plugin-linker.js";
import type { ParsedArgs } from "./cli-options.js";
import { UsageError } from "./usage-error.js";

/** How plugins are run, for the whole command (`--strict-plugin`, set by `main`). */
export const pluginMode = { strict: false };

export function builtinRegistry(): BackendRegistry {
  const r = new BackendRegistry({ beforeLoad: linkPlugins, strictPlugins: pluginMode.strict });
  r.add(tdx);
  r.add(sev);
  r.add(plain);
  r.add(cca);
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
 * Where a backend was named, when not on the command line: a data file (a scenario's
 * `backend:`, a schedule's `"backend"`), which never loads code by itself.
 */
export interface NamedInFile {
  file: string;
  line?: number;
  what: "scenario" | "schedule";
  /** `--allow-plugins`: load a module the file names even when the command line does not. */
  allowPlugins: boolean;
}

/** The `NamedInFile` of a scenario's `backend:`. */
export function namedInScenario(scn: Scenario, allowPlugins: boolean): NamedInFile {
  return { file: scn.source, line: scn.backendLine, what: "scenario", allowPlugins };
}

/** A URL (file:, data:...) rather than a path; a Windows drive letter is a path. */
const isUrl = (p: string) => /^[a-z][a-z0-9+.-]*:/i.test(p) && !/^[a-z]:[/\\]/i.test(p);

/**
 * Resolves a backend (a name or a module path) to a registered name. A module is loaded by its
 * absolute path, which is what schedule files record (`backendForSchedule`); a relative path is
 * taken from the current directory on the command line, from the file's folder in a file.
 *
 * A module named in a file (`from`) is trusted only when the command line gave the same module
 * (`--backend`, `--plugin`) or `--allow-plugins`: a schedule attached to a bug report, or a
 * scenario from elsewhere, must not run code on the machine of whoever replays it.
 */
export async function resolveBackend(
  r: BackendRegistry,
  nameOrPath: string,
  from?: NamedInFile,
): Promise<string> {
  if (r.has(nameOrPath)) return nameOrPath;
  const at = from === undefined ? "" : `${from.file}${from.line ? `:${from.line}` : ""}: `;
  if (!/[/\\]|\.m?js$/.test(nameOrPath)) {
    if (from === undefined) return nameOrPath; // source() reports it as unknown, with the known names
    throw new UsageError(
      `${at}backend: unknown backend '${nameOrPath}' (registered: ${r
        .list()
        .map((b) => b.name)
        .join(", ")}; a plugin is given by a module path such as ./my-backend.mjs)`,
    );
  }
  const baseDir =
    from === undefined || from.file === DEFAULT_SCENARIO_SOURCE ? "." : dirname(from.file);
  const target = isUrl(nameOrPath) ? nameOrPath : resolvePath(baseDir, nameOrPath);
  if (from !== undefined) {
    const given = r.loadedFrom(target);
    if (given !== undefined) return given;
    if (!from.allowPlugins) {
      throw new UsageError(
        `${at}backend '${nameOrPath}' is a module, and a ${from.what} file does not load code by itself: ` +
          `give it on the command line (--plugin ${target}) or allow it with --allow-plugins`,
      );
    }
  }
  try {
    return await r.load(target);
  } catch (e) {
    // Where the module was named, in front of what went wrong with it.
    if (from !== undefined && e instanceof Error) e.message = at + e.message;
    throw e;
  }
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

/** What a schedule file records for backend `name`: a plugin's module path, else the name. */
export function backendForSchedule(r: BackendRegistry, name: string): string {
  return r.moduleOf(name) ?? name;
}

/**
 * The backend a command runs a scenario on (`explore`, `audit`): `--backend` if given, else the
 * scenario's own (a plugin module it names loads only with `--plugin` or `--allow-plugins`),
 * with every `--plugin` loaded first. The registry comes with it, for the backend's source.
 */
export async function scenarioBackend(
  values: ParsedArgs["values"],
  scn: Scenario,
): Promise<{ registry: BackendRegistry; name: string }> {
  const registry = builtinRegistry();
  await loadPlugins(registry, values.lists.plugin ?? []);
  const name =
    values.backend !== undefined
      ? await resolveBackend(registry, values.backend)
      : await resolveBackend(
          registry,
          scn.backend,
          namedInScenario(scn, values.flags.has("allow-plugins")),
        );
  return { registry, name };
}
