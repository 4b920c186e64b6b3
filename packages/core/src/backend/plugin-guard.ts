/**
 * A plugin backend is code tdpemu did not write: it is checked when it loads, and reached
 * through a guard while it runs, so that its mistakes are reported as its own, in one line that
 * names the plugin and the hook, and never as a crash or as a finding against the core.
 *
 * - At load (`checkPluginBackend`): the members every backend has, the hooks that go together
 *   (a mirror backend cannot work without the hooks the core calls on the mirror), and the
 *   registration's name against the backend's.
 * - At run time (`guardPlugin`): an exception from a hook is a `PluginError`, unless it is one of
 *   tdpemu's own (a `KvmBug` is a finding: a violation, exit 1). With `strict` (the CLI's
 *   `--strict-plugin`, on in tests), each hook's return value is checked against its contract in
 *   `backend.ts`, so a hook that returns `undefined` where a status is due is named, rather than
 *   taken as "retry" until the fault path reports a livelock.
 *
 * Built-in backends are not guarded: their hooks are tested, and the fault path pays nothing.
 */
import { ErrorOfKind, errorKind } from "../error-kind.js";
import type { StepMachine } from "../exec/step-machine.js";
import { MAP_CELL_CLASSES, type Backend } from "./backend.js";

/** A plugin that is broken: it fails to load, breaks a contract or throws. Bad input, exit 2. */
export class PluginError extends ErrorOfKind("PluginError") {}

/** Which plugin, for messages: its backend's name and the module it came from. */
export interface PluginInfo {
  name: string;
  origin: string;
  /** Check what each hook returns (`--strict-plugin`). */
  strict: boolean;
}

export function pluginLabel(p: { name: string; origin: string }): string {
  return `plugin '${p.name}' (${p.origin})`;
}

/**
 * One line for what `e` was: its class name and message, the message's lines joined (tsyringe
 * puts the reason a dependency could not be injected on the lines after the first, nested as
 * deep as the chain of constructors).
 */
export function describeThrown(e: unknown): string {
  if (e instanceof Error || (typeof e === "object" && e !== null && "message" in e)) {
    const err = e as Error;
    return `${err.name || "Error"}: ${String(err.message)
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l !== "")
      .join(" ")}`;
  }
  return `the value ${String(e)}`;
}

/** A plugin's exception, as a one-line `PluginError` that keeps the original as its cause (`--debug`). */
export function pluginThrew(
  p: { name: string; origin: string },
  where: string,
  e: unknown,
): PluginError {
  return new PluginError(`${pluginLabel(p)}: ${where} threw ${describeThrown(e)}`, { cause: e });
}

// ---------------------------------------------------------------- the contracts of the returns

type Check = (r: unknown) => boolean;
interface Contract {
  ok: Check;
  expected: string;
}

const isInt = (r: unknown): r is number => Number.isInteger(r);
const status: Contract = {
  ok: (r) => isInt(r) && r <= 0,
  expected: "a status: 0, or a negative errno such as -16 (EBUSY) to retry",
};
const oneOf = (values: number[], expected: string): Contract => ({
  ok: (r) => values.includes(r as number),
  expected,
});
const isStepMachine = (r: unknown): r is StepMachine =>
  typeof r === "object" &&
  r !== null &&
  typeof (r as StepMachine).step === "function" &&
  typeof (r as StepMachine).abort === "function";
const isRecordOfCounts = (r: unknown) =>
  typeof r === "object" &&
  r !== null &&
  Object.values(r).every((v) => typeof v === "number" && Number.isFinite(v));

/** Each hook's return value, as `backend.ts` declares it; hooks that return nothing are not listed. */
const RETURNS: Readonly<Record<string, Contract>> = {
  gfnDirectBits: {
    ok: (r) => isInt(r) && r >= 0,
    expected: "the direct-root GFN bits, an integer ≥ 0",
  },
  classifyFault: {
    ok: (r) => typeof r === "boolean",
    expected: "a boolean (is the access private)",
  },
  maxMappingLevel: oneOf([1, 2, 3], "a level: 1 (4K), 2 (2M) or 3 (1G)"),
  preFaultAllowed: {
    ok: (r) => typeof r === "boolean",
    expected: "a boolean (may KVM_PRE_FAULT_MEMORY run now)",
  },
  allocExternalSpt: {
    ok: (r) => isInt(r) && r >= 0,
    expected: "the external page's handle, an integer ≥ 0",
  },
  adoptExternalSpt: {
    ok: (r) => isInt(r) && r >= -1,
    expected: "the handle of the secure table it already has, an integer ≥ 0, or -1 for none",
  },
  linkExternalSpt: status,
  setExternalSpte: status,
  removeExternalSpte: {
    ok: (r) => status.ok(r) || isStepMachine(r),
    expected: `${status.expected}, or a step machine ({ step, abort })`,
  },
  splitExternalSpte: {
    ok: (r) => status.ok(r) || isStepMachine(r),
    expected: `${status.expected}, or a step machine ({ step, abort })`,
  },
  promoteExternalSpt: {
    ok: (r) => status.ok(r) || isStepMachine(r),
    expected: `${status.expected} (-11, EAGAIN: refused, nothing changed), or a step machine ({ step, abort })`,
  },
  freeExternalSpt: status,
  guestAcceptLevel: oneOf(
    [0, 1, 2],
    "0 (nothing to honor), or the level the guest accepted at: 1 (4K) or 2 (2M)",
  ),
  gmemPrepare: status,
  populate: status,
  canPopulate: status,
  finalize: status,
  terminate: status,
  runHostOp: status,
  lastError: { ok: (r) => typeof r === "string", expected: "a string" },
  checkGuestAccess: oneOf(
    [-1, 0, 1, 2, 3],
    "ACCESS_OK (0), ACCESS_FAULT (1), ACCESS_GUEST_EXCEPTION (2), ACCESS_FAULT_PRESENT (3), or -1 to let the core walk the EPT",
  ),
  checkTranslation: oneOf(
    [0, 2, 3],
    "ACCESS_OK (0), ACCESS_GUEST_EXCEPTION (2) or ACCESS_FAULT_PRESENT (3)",
  ),
  guestAccept: oneOf([0, 1, 2], "ACCESS_OK (0), ACCESS_FAULT (1) or ACCESS_GUEST_EXCEPTION (2)"),
  faultFixup: {
    ok: (r) =>
      r === null ||
      (typeof r === "object" &&
        isInt((r as { gfn: unknown }).gfn) &&
        isInt((r as { npages: unknown }).npages) &&
        (r as { npages: number }).npages > 0),
    expected: "null, or { gfn, npages } with npages > 0",
  },
  checkInvariants: {
    ok: (r) =>
      Array.isArray(r) &&
      (r as unknown[]).every(
        (v) =>
          typeof v === "object" &&
          v !== null &&
          typeof (v as { check?: unknown }).check === "string" &&
          typeof (v as { message?: unknown }).message === "string",
      ),
    expected: "an array of { check, message }",
  },
  rawCall: {
    ok: (r) =>
      typeof r === "object" &&
      r !== null &&
      typeof (r as { status: unknown }).status === "string" &&
      typeof (r as { detail: unknown }).detail === "string",
    expected: "{ status, detail } (two strings)",
  },
  stats: {
    ok: (r) => {
      const s = r as { calls: unknown; busy: unknown; errors: unknown };
      return (
        typeof s === "object" &&
        s !== null &&
        isRecordOfCounts(s.calls) &&
        typeof s.busy === "number" &&
        isRecordOfCounts(s.errors)
      );
    },
    expected: "{ calls, busy, errors }: two records of counts and a number",
  },
  walkTitle: { ok: (r) => typeof r === "string", expected: "a string" },
  describeEntry: { ok: (r) => typeof r === "string", expected: 'a string ("" for nothing)' },
  mapCell: {
    ok: (r) => r === null || (typeof r === "string" && Object.hasOwn(MAP_CELL_CLASSES, r)),
    expected: `null, or one of the map's classes (${Object.keys(MAP_CELL_CLASSES).join(" ")})`,
  },
  guestPage: {
    ok: (r) => isInt(r) && r >= 0 && r <= 3,
    expected: "GUEST_PAGE_ACCEPTED (1) and GUEST_PAGE_OWNED (2) or'd together, or 0",
  },
  extraStats: {
    ok: (r) =>
      Array.isArray(r) &&
      r.every(
        (v) =>
          Array.isArray(v) &&
          v.length === 2 &&
          typeof v[0] === "string" &&
          typeof v[1] === "string",
      ),
    expected: "an array of [label, value] string pairs",
  },
};

/** Every hook the core may call, the ones returning nothing included. */
export const BACKEND_HOOKS: readonly string[] = [
  ...Object.keys(RETURNS),
  "init",
  "releaseExternalSpt",
  "gmemInvalidate",
  "teardown",
  "flushTlb",
  "kickVcpu",
  "vcpuExit",
  "destroy",
  "auditState",
  "injectFault",
  "memoryAttributesChanged",
  "directSpteChanged",
];

/** The hooks the core calls on a mirror root's entries: a backend with `usesMirrorRoot` needs every one. */
const MIRROR_HOOKS = [
  "classifyFault",
  "checkGuestAccess",
  "linkExternalSpt",
  "setExternalSpte",
  "removeExternalSpte",
  "freeExternalSpt",
];

export function describeValue(r: unknown): string {
  if (typeof r === "string") return JSON.stringify(r);
  if (typeof r === "function") return "a function";
  if (Array.isArray(r)) return "an array";
  if (typeof r === "object" && r !== null) {
    try {
      return JSON.stringify(r).slice(0, 60);
    } catch {
      return "an object";
    }
  }
  return String(r);
}

// ---------------------------------------------------------------- at load

/**
 * What is wrong with a plugin's backend instance, one problem per entry (empty when nothing is):
 * its members, the hooks that go together, and its name against the registration's.
 */
export function checkPluginBackend(b: unknown, registeredName: string): string[] {
  if (typeof b !== "object" || b === null)
    return [`its registration resolved ${describeValue(b)}, not a backend object`];
  const x = b as Record<string, unknown>;
  const problems: string[] = [];
  for (const k of ["name", "description"])
    if (typeof x[k] !== "string")
      problems.push(`'${k}' is ${describeValue(x[k])}, expected a string`);
  for (const k of ["usesMirrorRoot", "hasPrivateMemory"])
    if (typeof x[k] !== "boolean")
      problems.push(`'${k}' is ${describeValue(x[k])}, expected true or false`);
  if (typeof x.stats !== "function")
    problems.push("it has no stats() (every backend reports its calls, busy count and errors)");
  for (const h of BACKEND_HOOKS) {
    if (h !== "stats" && x[h] !== undefined && typeof x[h] !== "function")
      problems.push(`hook '${h}' is ${describeValue(x[h])}, expected a function`);
  }
  if (x.usesMirrorRoot === true) {
    const missing = MIRROR_HOOKS.filter((h) => typeof x[h] !== "function");
    if (missing.length > 0)
      problems.push(
        `it uses a mirror root but lacks ${missing.join(", ")} (the core calls them on every private fault and zap)`,
      );
  }
  if (x.usesMirrorRoot !== true) {
    const mirrorOnly = ["adoptExternalSpt", "allocExternalSpt", "linkExternalSpt"].filter(
      (h) => typeof x[h] === "function",
    );
    if (mirrorOnly.length > 0)
      problems.push(
        `it has ${mirrorOnly.join(", ")} but no mirror root (usesMirrorRoot): the core would never call them`,
      );
  }
  if (x.hasPrivateMemory === true && typeof x.classifyFault !== "function") {
    problems.push(
      "it has private memory but no classifyFault (every access would be taken as shared)",
    );
  }
  if (x.hostOps !== undefined)
    problems.push(...hostOpProblems(x.hostOps, typeof x.runHostOp === "function"));
  if (typeof x.name === "string" && x.name !== registeredName) {
    problems.push(
      `its backend is named '${x.name}' but its registration '${registeredName}' (they must be the same)`,
    );
  }
  return problems;
}

const PARAM_KINDS = ["gpa", "size", "count", "number", "string", "boolean"];

/** What is wrong with a backend's `hostOps` declaration. */
function hostOpProblems(ops: unknown, runs: boolean): string[] {
  if (typeof ops !== "object" || ops === null)
    return [`'hostOps' is ${describeValue(ops)}, expected { name: { description, params } }`];
  const problems: string[] = [];
  if (!runs && Object.keys(ops).length > 0)
    problems.push("it defines hostOps but no runHostOp to run them");
  for (const [name, schema] of Object.entries(ops as Record<string, unknown>)) {
    if (!/^[A-Za-z0-9_.-]+$/.test(name))
      problems.push(`host op '${name}': a name of letters, digits, '_', '-' and '.' only`);
    const s = schema as { description?: unknown; params?: unknown };
    if (
      typeof s !== "object" ||
      s === null ||
      typeof s.description !== "string" ||
      typeof s.params !== "object" ||
      s.params === null
    ) {
      problems.push(
        `host op '${name}' is ${describeValue(schema)}, expected { description, params }`,
      );
      continue;
    }
    for (const [p, spec] of Object.entries(s.params as Record<string, { kind?: unknown }>)) {
      if (p === "op") problems.push(`host op '${name}': a parameter may not be named 'op'`);
      if (!PARAM_KINDS.includes(spec?.kind as string))
        problems.push(
          `host op '${name}', parameter '${p}': kind ${describeValue(spec?.kind)}, expected one of ${PARAM_KINDS.join(", ")}`,
        );
    }
  }
  return problems;
}

// ---------------------------------------------------------------- at run time

type Fn = (...args: unknown[]) => unknown;

/**
 * `b` behind a guard: each hook's exceptions that are not tdpemu's own become `PluginError`s
 * naming the plugin and the hook, and with `p.strict` each return value is checked. A step
 * machine a hook returns is guarded the same way. Fields read through to the backend.
 */
export function guardPlugin(b: Backend, p: PluginInfo): Backend {
  const out = Object.create(b) as Record<string, unknown>;
  const self = b as unknown as Record<string, unknown>;
  for (const h of BACKEND_HOOKS) {
    const fn = self[h];
    if (typeof fn === "function") out[h] = guardHook(h, fn as Fn, b, p);
  }
  return out as unknown as Backend;
}

/** Fixed arity (every hook takes at most six arguments): no array is made per call. */
function guardHook(hook: string, fn: Fn, b: Backend, p: PluginInfo): Fn {
  const contract = p.strict ? RETURNS[hook] : undefined;
  return (a?: unknown, c?: unknown, d?: unknown, e?: unknown, f?: unknown, g?: unknown) => {
    let r: unknown;
    try {
      r = fn.call(b, a, c, d, e, f, g);
    } catch (err) {
      throw errorKind(err) === undefined ? pluginThrew(p, `${hook}()`, err) : err;
    }
    if (contract !== undefined && !contract.ok(r)) {
      throw new PluginError(
        `${pluginLabel(p)}: ${hook}() returned ${describeValue(r)}; expected ${contract.expected}`,
      );
    }
    return isStepMachine(r) ? guardSteps(r, hook, p) : r;
  };
}

/** A hook's step machine: its steps answer for the plugin like the hook itself. */
function guardSteps(m: StepMachine, hook: string, p: PluginInfo): StepMachine {
  const call = <T>(what: string, f: () => T): T => {
    try {
      return f();
    } catch (err) {
      throw errorKind(err) === undefined
        ? pluginThrew(p, `the step machine of ${hook}(): ${what}`, err)
        : err;
    }
  };
  return {
    step: () => {
      const r = call("step()", () => m.step());
      if (p.strict && !(isInt(r) && r >= -2)) {
        throw new PluginError(
          `${pluginLabel(p)}: the step machine of ${hook}() returned ${describeValue(r)} from step(); expected a result ≥ 0, STEP_YIELD (-1) or STEP_BLOCKED (-2)`,
        );
      }
      return r;
    },
    abort: () => call("abort()", () => m.abort()),
  };
}
