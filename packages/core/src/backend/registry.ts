/**
 * The backend registry: names (`tdx`, `sev`, `plain`) and module paths to registrations. A
 * registration puts its backend class into a tsyringe container under the `BACKEND` token; each
 * VM resolves its backend from a child container of its own, so backends never share state.
 * A plugin is any ES module that exports `registration` (or a default export) of this shape:
 * nothing in the core changes to add one.
 */
import "reflect-metadata";
import { pathToFileURL } from "node:url";
import { resolve as resolvePath } from "node:path";
import { container as rootContainer, type DependencyContainer } from "tsyringe";
import { BACKEND, type Backend } from "./backend.js";
import { ErrorOfKind } from "../error-kind.js";
import { PluginError, checkPluginBackend, guardPlugin, pluginLabel, pluginThrew } from "./plugin-guard.js";

export interface BackendRegistration {
  name: string;
  description: string;
  /** Registers the backend under `BACKEND` in `c` (e.g. `c.register(BACKEND, { useClass: X })`). */
  register(c: DependencyContainer): void;
}

export class UnknownBackendError extends ErrorOfKind("UnknownBackendError") {}

export function isRegistration(x: unknown): x is BackendRegistration {
  const r = x as BackendRegistration;
  return typeof r === "object" && r !== null && typeof r.name === "string" && typeof r.register === "function";
}

export interface BackendRegistryOptions {
  /**
   * Called before each plugin module is imported: the command links the plugin's imports of the
   * backend SDK to its own instance here (`tui/src/plugin-linker.ts`).
   */
  beforeLoad?: () => void;
  /** Check what each plugin hook returns (`--strict-plugin`; see `plugin-guard.ts`). */
  strictPlugins?: boolean;
}

const BUILT_IN = "built-in";

export class BackendRegistry {
  private readonly regs = new Map<string, BackendRegistration & { origin: string }>();

  constructor(private readonly opts: BackendRegistryOptions = {}) {}

  add(reg: BackendRegistration, origin = BUILT_IN): void {
    if (this.regs.has(reg.name)) throw new Error(`a backend named '${reg.name}' is already registered (${this.regs.get(reg.name)!.origin})`);
    this.regs.set(reg.name, { ...reg, origin });
  }

  list(): { name: string; description: string; origin: string }[] {
    return [...this.regs.values()].map(({ name, description, origin }) => ({ name, description, origin }));
  }

  /** The module a plugin backend was loaded from (as loaded: an absolute path from the command), or null for a built-in. */
  moduleOf(name: string): string | null {
    const o = this.regs.get(name)?.origin;
    return o === undefined || o === BUILT_IN ? null : o;
  }

  has(name: string): boolean {
    return this.regs.has(name);
  }

  /**
   * A fresh backend instance for one VM. A plugin's comes behind its guard (`guardPlugin`), and
   * an exception from its registration or constructor is a `PluginError` naming it.
   */
  create(name: string): Backend {
    const reg = this.regs.get(name);
    if (!reg) {
      throw new UnknownBackendError(`unknown backend '${name}' (registered: ${[...this.regs.keys()].join(", ") || "none"}; a plugin is given by a module path such as ./my-backend.js)`);
    }
    if (reg.origin === BUILT_IN) {
      const child = rootContainer.createChildContainer();
      reg.register(child);
      return child.resolve<Backend>(BACKEND);
    }
    return guardPlugin(this.resolvePlugin(reg), { name: reg.name, origin: reg.origin, strict: this.opts.strictPlugins ?? false });
  }

  /** A plugin's backend, unguarded: its `register` and its construction, each answering for itself. */
  private resolvePlugin(reg: BackendRegistration & { origin: string }): Backend {
    const child = rootContainer.createChildContainer();
    try {
      reg.register(child);
    } catch (e) {
      throw pluginThrew(reg, "register()", e);
    }
    try {
      return child.resolve<Backend>(BACKEND);
    } catch (e) {
      const m = e instanceof Error ? e.message : "";
      if (!child.isRegistered(BACKEND)) throw new PluginError(`${pluginLabel(reg)}: register() put nothing under the BACKEND token (c.register(BACKEND, { useClass: ... }))`);
      throw pluginThrew(reg, /TypeInfo not known|Cannot inject the dependency/.test(m) ? "resolving its backend" : "its backend's constructor", e);
    }
  }

  /**
   * Loads a plugin module and registers what it exports; returns the backend's name. Relative
   * paths are taken from the current directory.
   */
  async load(modulePath: string): Promise<string> {
    const url = /^[a-z]+:/i.test(modulePath) ? modulePath : pathToFileURL(resolvePath(modulePath)).href;
    let mod: Record<string, unknown>;
    this.opts.beforeLoad?.();
    try {
      mod = (await import(url)) as Record<string, unknown>;
    } catch (e) {
      throw new UnknownBackendError(`cannot load backend module '${modulePath}': ${(e as Error).message.split("\n")[0]}`);
    }
    const reg = mod.registration ?? mod.default;
    if (!isRegistration(reg)) {
      throw new UnknownBackendError(`backend module '${modulePath}' exports no registration (expected 'export const registration = { name, description, register }')`);
    }
    const known = this.regs.get(reg.name);
    if (known !== undefined) {
      // The same module named twice (by --backend and by the scenario) is loaded once.
      if (known.origin === modulePath) return reg.name;
      throw new PluginError(known.origin === BUILT_IN
        ? `backend module '${modulePath}' registers '${reg.name}', the name of a built-in backend: give it a name of its own`
        : `backend module '${modulePath}' registers '${reg.name}', which '${known.origin}' registered already`);
    }
    this.add(reg, modulePath);
    // Checked now, on an instance made for the purpose, so that a broken plugin is refused
    // before anything runs rather than in the middle of a run.
    let problems: string[];
    try {
      const probe = this.resolvePlugin(this.regs.get(reg.name)!);
      try {
        problems = checkPluginBackend(probe, reg.name);
      } catch (e) {
        // A member that is a getter, and throws.
        throw pluginThrew({ name: reg.name, origin: modulePath }, "reading its backend's members", e);
      }
    } catch (e) {
      this.regs.delete(reg.name);
      throw e;
    }
    if (problems.length > 0) {
      this.regs.delete(reg.name);
      throw new PluginError(`${pluginLabel({ name: reg.name, origin: modulePath })}: ${problems.join("; ")}`);
    }
    return reg.name;
  }
}
