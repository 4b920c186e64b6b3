/**
 * A backend that does not record its own accesses (`Backend.recordsOwnAccesses` unset: a
 * plugin, a test's backend) is reached through this wrapper, which records them for it at the
 * coarsest grain: every hook that may change the backend's state as a write of one resource,
 * the whole backend (R_BACKEND), and the hooks that only read it as reads. So the explorer can
 * never take two calls into such a backend as independent; a backend that records per entry
 * (TDX's S-EPT and PAMT, SEV's RMP) lets it tell more calls apart, and is not wrapped.
 *
 * The wrapper calls the backend's own functions with the backend as `this`, and reads its other
 * properties through, so a backend's extra methods and fields stay reachable through it.
 */
import type { Clock } from "../exec/clock.js";
import { R_BACKEND } from "../exec/footprint.js";
import type { StepMachine } from "../exec/step-machine.js";
import type { Backend } from "./backend.js";

/**
 * Hooks that only read the backend's state (recorded as reads). Every other function the core
 * reaches through the wrapper is recorded as a write, the sound default: a hook added to
 * `Backend` later, or one this list forgets, is over-recorded rather than never recorded.
 */
const READS: ReadonlySet<string> = new Set(["maxMappingLevel", "classifyFault", "preFaultAllowed"]);
/**
 * Functions that record nothing: called at VM creation (`init`, `gfnDirectBits`, `injectFault`,
 * before any step), between steps by the checks, the audit, the UI and the report (which record
 * nothing by design), or right after a recorded hook of the same step, about it (`lastError`).
 */
const UNRECORDED: ReadonlySet<string> = new Set([
  "init",
  "gfnDirectBits",
  "injectFault",
  "lastError",
  "stats",
  "checkInvariants",
  "auditState",
  "walkTitle",
  "describeEntry",
  "mapCell",
  "extraStats",
  "guestPage",
]);

type Fn = (...args: unknown[]) => unknown;

export function recordedBackend(backend: Backend, clock: Clock): Backend {
  if (backend.recordsOwnAccesses) return backend;
  // The backend is the wrapper's prototype: every field reads through, even one the backend
  // sets later (in `init`); its functions are shadowed by ones that call it as `this`.
  const out = Object.create(backend) as Record<string, unknown>;
  const self = backend as unknown as Record<string, unknown>;
  for (
    let o: object | null = backend;
    o !== null && o !== Object.prototype;
    o = Object.getPrototypeOf(o) as object | null
  ) {
    for (const k of Object.getOwnPropertyNames(o)) {
      if (k === "constructor" || Object.prototype.hasOwnProperty.call(out, k)) continue;
      const v = self[k];
      if (typeof v === "function") out[k] = wrap(k, v as Fn, backend, clock);
    }
  }
  return out as unknown as Backend;
}

/** Fixed arity (every hook takes at most six arguments): no array is made per call. */
function wrap(name: string, fn: Fn, backend: Backend, clock: Clock): Fn {
  if (UNRECORDED.has(name)) return fn.bind(backend);
  if (READS.has(name)) {
    return (a?: unknown, b?: unknown, c?: unknown, d?: unknown, e?: unknown, f?: unknown) => {
      clock.fp?.read(R_BACKEND);
      return fn.call(backend, a, b, c, d, e, f);
    };
  }
  return (a?: unknown, b?: unknown, c?: unknown, d?: unknown, e?: unknown, f?: unknown) => {
    clock.touch(R_BACKEND);
    const r = fn.call(backend, a, b, c, d, e, f);
    return typeof r === "object" && r !== null && typeof (r as StepMachine).step === "function"
      ? recordedSteps(r as StepMachine, clock)
      : r;
  };
}

/** A hook's step machine (a removal in several atomic points): each step writes the backend too. */
function recordedSteps(m: StepMachine, clock: Clock): StepMachine {
  return {
    step: () => {
      clock.touch(R_BACKEND);
      return m.step();
    },
    abort: () => m.abort(),
  };
}
