/**
 * A registration, and how a backend is made from it for a VM: on the VM's host, in a container
 * of its own (`containers.ts`), resolved with whatever its constructor declares.
 */
import type { DependencyContainer } from "tsyringe";
import type { Host } from "../mem/host.js";
import { BACKEND, type Backend } from "./backend.js";
import type { Configure } from "./containers.js";
import {
  PluginError,
  guardPlugin,
  pluginLabel,
  pluginThrew,
  type PluginInfo,
} from "./plugin-guard.js";

/**
 * What a backend module exports (as `registration`, or as its default export): the backend's
 * name, a line on what it models, and what it puts into the containers.
 */
export interface BackendRegistration {
  name: string;
  description: string;
  /**
   * Registers the backend under `BACKEND` in the VM's container `c`
   * (`c.register(BACKEND, { useClass: X })`), and any parts made per VM.
   */
  register(c: DependencyContainer): void;
  /**
   * Registers the parts one host shares among all the VMs of this backend on it (the TDX
   * module, the RMP), in the host's container: called once per host, before its first VM of
   * this backend. Register them as singletons (`Lifecycle.Singleton`, or a factory wrapped in
   * `instanceCachingFactory`), so that every VM on the host is handed the same one.
   */
  registerHost?(c: DependencyContainer): void;
}

export function isRegistration(x: unknown): x is BackendRegistration {
  const r = x as BackendRegistration;
  return (
    typeof r === "object" &&
    r !== null &&
    typeof r.name === "string" &&
    typeof r.register === "function"
  );
}

/** A registered backend, ready to make instances for VMs. */
export interface BackendSource {
  readonly name: string;
  /** Registers the backend's host-wide parts in `host.container`, once per host. */
  prepareHost(host: Host): void;
  /**
   * A fresh backend for a VM on `host`: the host's parts first (`prepareHost`), then a VM
   * container under the host's with the registration's parts and `configure`'s after them.
   */
  create(host: Host, configure?: Configure): Backend;
}

/**
 * The source of `reg`'s backends. With `plugin`, its code answers for itself: an exception from
 * its registration or its constructor is a `PluginError` naming it, and what it makes is
 * reached through its guard (`guardPlugin`) unless `guarded` is false (the checks at load look
 * at the backend itself).
 */
export function backendSource(
  reg: BackendRegistration,
  plugin?: PluginInfo,
  guarded = true,
): BackendSource {
  const prepareHost = (host: Host): void => {
    if (reg.registerHost === undefined || host.preparedFor.includes(reg.name)) return;
    host.preparedFor.push(reg.name);
    if (plugin === undefined) {
      reg.registerHost(host.container);
      return;
    }
    try {
      reg.registerHost(host.container);
    } catch (e) {
      throw pluginThrew(plugin, "registerHost()", e);
    }
  };
  return {
    name: reg.name,
    prepareHost,
    create(host, configure) {
      prepareHost(host);
      const c = host.container.createChildContainer();
      if (plugin === undefined) {
        reg.register(c);
        configure?.(c);
        return c.resolve<Backend>(BACKEND);
      }
      const b = resolvePlugin(reg, plugin, c, configure);
      return guarded ? guardPlugin(b, plugin) : b;
    },
  };
}

/** A plugin's backend, unguarded: its `register` and its construction, each answering for itself. */
function resolvePlugin(
  reg: BackendRegistration,
  p: PluginInfo,
  c: DependencyContainer,
  configure?: Configure,
): Backend {
  try {
    reg.register(c);
  } catch (e) {
    throw pluginThrew(p, "register()", e);
  }
  configure?.(c);
  try {
    return c.resolve<Backend>(BACKEND);
  } catch (e) {
    const m = e instanceof Error ? e.message : "";
    if (!c.isRegistered(BACKEND, true))
      throw new PluginError(
        `${pluginLabel(p)}: register() put nothing under the BACKEND token (c.register(BACKEND, { useClass: ... }))`,
      );
    throw pluginThrew(
      p,
      /TypeInfo not known|Cannot inject the dependency/.test(m)
        ? "resolving its backend"
        : "its backend's constructor",
      e,
    );
  }
}
