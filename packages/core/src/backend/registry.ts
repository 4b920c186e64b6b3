/**
 * The backend registry: names (`tdx`, `sev`, `plain`) and module paths to registrations
 * (`backend-source.ts`). Each VM resolves its backend from a container of its own under its
 * host's (`containers.ts`), so backends share only what their registration puts on the host.
 * A plugin is any ES module that exports `registration` (or a default export) of this shape:
 * nothing in the core changes to add one.
 */
import { statSync, type Stats } from "node:fs";
import { fileURLToPath, pathToFileURL } from "node:url";
import { resolve as resolvePath } from "node:path";
import { ErrorOfKind } from "../error-kind.js";
import { Host } from "../mem/host.js";
import {
  backendSource,
  isRegistration,
  type BackendRegistration,
  type BackendSource,
} from "./backend-source.js";
import type { HostOpSchema } from "./backend.js";
import {
  PluginError,
  checkPluginBackend,
  describeThrown,
  describeValue,
  pluginLabel,
  pluginThrew,
} from "./plugin-guard.js";

export class UnknownBackendError extends ErrorOfKind("UnknownBackendError") {}

export interface BackendRegistryOptions {
  /**
   * Called before each plugin module is imported: the command links the plugin's imports of the
   * backend SDK to its own instance here (`tui/src/plugin-linker.ts`).
   */
  beforeLoad?: () => void;
  /** Check what each plugin hook returns (`--strict-plugin`; see `plugin-guard.ts`). */
  strictPlugins?: boolean;
  /** How long a plugin module may take to load (default 10 s). */
  loadTimeoutMs?: number;
}

const BUILT_IN = "built-in";
/** How long a plugin module may take to load (its imports and top-level code). */
const PLUGIN_LOAD_TIMEOUT_MS = 10_000;
/** The host a plugin's backend is made on to be checked at load (2 MiB: the least a host has). */
const PROBE_HOST_MEMORY = 2 * 2 ** 20;
/** The host `hostOpsOf` makes a backend on: room for the TDX module's PAMT of a small host. */
const SCHEMA_HOST_MEMORY = 64 * 2 ** 20;

export class BackendRegistry {
  private readonly regs = new Map<string, BackendRegistration & { origin: string }>();

  constructor(private readonly opts: BackendRegistryOptions = {}) {}

  add(reg: BackendRegistration, origin = BUILT_IN): void {
    if (this.regs.has(reg.name))
      throw new Error(
        `a backend named '${reg.name}' is already registered (${this.regs.get(reg.name)!.origin})`,
      );
    this.regs.set(reg.name, { ...reg, origin });
  }

  list(): { name: string; description: string; origin: string }[] {
    return [...this.regs.values()].map(({ name, description, origin }) => ({
      name,
      description,
      origin,
    }));
  }

  /** The module a plugin backend was loaded from (as loaded: an absolute path from the command), or null for a built-in. */
  moduleOf(name: string): string | null {
    const o = this.regs.get(name)?.origin;
    return o === undefined || o === BUILT_IN ? null : o;
  }

  /** The backend registered from the module at `modulePath` (as loaded), if it was loaded. */
  loadedFrom(modulePath: string): string | undefined {
    for (const r of this.regs.values()) if (r.origin === modulePath) return r.name;
    return undefined;
  }

  has(name: string): boolean {
    return this.regs.has(name);
  }

  /**
   * Where VMs get backend `name` from. A plugin's instances come behind its guard
   * (`guardPlugin`), and an exception from its registration or constructor is a `PluginError`
   * naming it.
   */
  source(name: string): BackendSource {
    const reg = this.regs.get(name);
    if (!reg) {
      throw new UnknownBackendError(
        `unknown backend '${name}' (registered: ${[...this.regs.keys()].join(", ") || "none"}; a plugin is given by a module path such as ./my-backend.js)`,
      );
    }
    return reg.origin === BUILT_IN ? backendSource(reg) : backendSource(reg, this.pluginInfo(reg));
  }

  /**
   * The host ops backend `name` defines (`Backend.hostOps`), read off an instance made for the
   * purpose on a host of its own: what `tdpemu schema scenario` spells out.
   */
  hostOpsOf(name: string): Readonly<Record<string, HostOpSchema>> {
    // Larger than a plugin's probe: a built-in backend's host-wide tables (the TDX module's PAMT)
    // are made with the first VM.
    return this.source(name).create(new Host({ memory: SCHEMA_HOST_MEMORY })).hostOps ?? {};
  }

  private pluginInfo(reg: BackendRegistration & { origin: string }) {
    return { name: reg.name, origin: reg.origin, strict: this.opts.strictPlugins ?? false };
  }

  /**
   * Loads a plugin module and registers what it exports; returns the backend's name. Relative
   * paths are taken from the current directory.
   */
  async load(modulePath: string): Promise<string> {
    const url = /^[a-z]+:/i.test(modulePath)
      ? modulePath
      : pathToFileURL(resolvePath(modulePath)).href;
    // A device or a FIFO is not a module: /dev/zero would be read forever by the loader.
    if (url.startsWith("file:")) {
      let st: Stats | undefined;
      try {
        st = statSync(fileURLToPath(url));
      } catch {
        /* missing: the import says so */
      }
      if (st !== undefined && !st.isFile())
        throw new UnknownBackendError(
          `cannot load backend module '${modulePath}': not a regular file`,
        );
    }
    let mod: Record<string, unknown>;
    this.opts.beforeLoad?.();
    let timer: NodeJS.Timeout | undefined;
    const ms = this.opts.loadTimeoutMs ?? PLUGIN_LOAD_TIMEOUT_MS;
    try {
      // A module whose top-level await never settles would leave nothing for the event loop to
      // wait on: the command would end with exit 0 and no word. The timer keeps it alive and
      // turns the wait into an error.
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new PluginError(
                `backend module '${modulePath}' did not finish loading within ${ms / 1000} s (a top-level await that never settles?)`,
              ),
            ),
          ms,
        );
      });
      mod = (await Promise.race([import(url), timeout])) as Record<string, unknown>;
    } catch (e) {
      if (PluginError.is(e)) throw e;
      throw new UnknownBackendError(
        `cannot load backend module '${modulePath}': ${describeThrown(e)}`,
      );
    } finally {
      clearTimeout(timer);
    }
    const reg = mod.registration ?? mod.default;
    if (!isRegistration(reg)) {
      throw new UnknownBackendError(
        `backend module '${modulePath}' exports no registration (expected 'export const registration = { name, description, register }')`,
      );
    }
    const known = this.regs.get(reg.name);
    if (known !== undefined) {
      // The same module named twice (by --backend and by the scenario) is loaded once.
      if (known.origin === modulePath) return reg.name;
      throw new PluginError(
        known.origin === BUILT_IN
          ? `backend module '${modulePath}' registers '${reg.name}', the name of a built-in backend: give it a name of its own`
          : `backend module '${modulePath}' registers '${reg.name}', which '${known.origin}' registered already`,
      );
    }
    // A plugin's registration is only typed as one: its `registerHost` may be anything.
    const { registerHost } = reg as { registerHost?: unknown };
    if (registerHost !== undefined && typeof registerHost !== "function") {
      throw new PluginError(
        `${pluginLabel({ name: reg.name, origin: modulePath })}: its registration's registerHost is ${describeValue(registerHost)}, expected a function`,
      );
    }
    this.add(reg, modulePath);
    // Checked now, on an instance made for the purpose, so that a broken plugin is refused
    // before anything runs rather than in the middle of a run.
    let problems: string[];
    try {
      // On a host of its own, the smallest there is; the guard is left off to see the backend itself.
      const probe = backendSource(reg, this.pluginInfo(this.regs.get(reg.name)!), false).create(
        new Host({ memory: PROBE_HOST_MEMORY }),
      );
      try {
        problems = checkPluginBackend(probe, reg.name);
      } catch (e) {
        // A member that is a getter, and throws.
        throw pluginThrew(
          { name: reg.name, origin: modulePath },
          "reading its backend's members",
          e,
        );
      }
    } catch (e) {
      this.regs.delete(reg.name);
      throw e;
    }
    if (problems.length > 0) {
      this.regs.delete(reg.name);
      throw new PluginError(
        `${pluginLabel({ name: reg.name, origin: modulePath })}: ${problems.join("; ")}`,
      );
    }
    return reg.name;
  }
}
