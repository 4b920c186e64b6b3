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
import { defineErrorKind, errorKind } from "../error-kind.js";

export interface BackendRegistration {
  name: string;
  description: string;
  /** Registers the backend under `BACKEND` in `c` (e.g. `c.register(BACKEND, { useClass: X })`). */
  register(c: DependencyContainer): void;
}

export class UnknownBackendError extends Error {
  static is(e: unknown): e is UnknownBackendError {
    return errorKind(e) === "UnknownBackendError";
  }
}
defineErrorKind(UnknownBackendError, "UnknownBackendError");

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
}

export class BackendRegistry {
  private readonly regs = new Map<string, BackendRegistration & { origin: string }>();

  constructor(private readonly opts: BackendRegistryOptions = {}) {}

  add(reg: BackendRegistration, origin = "built-in"): void {
    if (this.regs.has(reg.name)) throw new Error(`a backend named '${reg.name}' is already registered (${this.regs.get(reg.name)!.origin})`);
    this.regs.set(reg.name, { ...reg, origin });
  }

  list(): { name: string; description: string; origin: string }[] {
    return [...this.regs.values()].map(({ name, description, origin }) => ({ name, description, origin }));
  }

  has(name: string): boolean {
    return this.regs.has(name);
  }

  /** A fresh backend instance for one VM. */
  create(name: string): Backend {
    const reg = this.regs.get(name);
    if (!reg) {
      throw new UnknownBackendError(`unknown backend '${name}' (registered: ${[...this.regs.keys()].join(", ") || "none"}; a plugin is given by a module path such as ./my-backend.js)`);
    }
    const child = rootContainer.createChildContainer();
    reg.register(child);
    return child.resolve<Backend>(BACKEND);
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
    if (!this.regs.has(reg.name)) this.add(reg, modulePath);
    return reg.name;
  }
}
