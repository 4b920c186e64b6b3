/**
 * Where backends and their parts come from: tsyringe containers in three layers, as the parts
 * live.
 *
 * - The process: `processContainer`, one per loaded core (and the command links every plugin to
 *   the command's core, so one per process). Nothing of a run is registered here.
 * - A host: `Host.container`, a child of the process's. Host-wide singletons: the host itself
 *   (`HOST`), its frame allocator (`FRAMES`), and for a run the clock (`CLOCK`) and the event bus
 *   (`EVENTS`); then each backend's platform parts, registered once per host by its
 *   registration's `registerHost` (the TDX module, the RMP: one per machine, shared by every VM
 *   on it).
 * - A VM: a child of the host's, made by `BackendSource.create`. The registration's `register`
 *   puts the backend under `BACKEND` there, with any per-VM parts; the backend is resolved from
 *   it, so its constructor is handed what it declares with `@inject(...)`.
 *
 * A later registration of a token shadows an earlier one, and a VM's container shadows its
 * host's: a test substitutes a part (a TDX module that fails on cue, a recording event sink) by
 * registering it after the backend's own registrations (`configure`).
 *
 * The explorer makes a host and a VM per schedule: the containers cost about 1.4 µs of its
 * ~50 µs (measured with a loop of host + VM container, three registrations and one injected
 * resolve).
 */
import "reflect-metadata";
import {
  container as rootContainer,
  type DependencyContainer,
  type InjectionToken,
} from "tsyringe";
import type { Clock } from "../exec/clock.js";
import type { EventSink } from "../events/events.js";
import type { FrameAllocator } from "../mem/frame-allocator.js";
import type { Host } from "../mem/host.js";

/** The host a part lives on (host container). */
export const HOST: InjectionToken<Host> = Symbol.for("tdpemu.Host");
/** The host's frame allocator: all of host physical memory (host container). */
export const FRAMES: InjectionToken<FrameAllocator> = Symbol.for("tdpemu.FrameAllocator");
/** The run's clock: steps, and the footprint the explorer records (host container, for a run). */
export const CLOCK: InjectionToken<Clock> = Symbol.for("tdpemu.Clock");
/** The run's event bus (host container, for a run). */
export const EVENTS: InjectionToken<EventSink> = Symbol.for("tdpemu.EventSink");

/** The container of this process: the parent of every host's. */
export const processContainer: DependencyContainer = rootContainer.createChildContainer();

/** Registrations a test or a caller adds to a container, after the backend's own. */
export type Configure = (c: DependencyContainer) => void;
