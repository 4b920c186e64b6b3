/** Option parsing shared by the commands: one-line errors, sizes, counts. */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { dirname, resolve } from "node:path";
import {
  DEFAULT_SCENARIO_SOURCE,
  STRATEGIES,
  loadScheduleFile,
  parseSizeText,
  type InjectSpec,
  type MmuOptions,
  type Scenario,
} from "@tdpemu/core";
import { UsageError } from "./usage-error.js";

type Options = NonNullable<ParseArgsConfig["options"]>;

export interface ParsedArgs {
  /** String options as strings, boolean options in `flags`, repeated options in `lists`. */
  values: Record<string, string | undefined> & {
    flags: Set<string>;
    lists: Record<string, string[]>;
  };
  positionals: string[];
}

export function parseCommandArgs(cmd: string, args: string[], options: Options): ParsedArgs {
  let parsed;
  try {
    parsed = parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (e) {
    // Node's message has its hint on the next lines ("use '--seed=-XYZ'"): one line, all of it.
    throw new UsageError(
      `${cmd}: ${(e as Error).message
        .split("\n")
        .map((l) => l.trim())
        .filter(Boolean)
        .join(" ")}`,
    );
  }
  const flags = new Set<string>();
  const lists: Record<string, string[]> = {};
  const values: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(parsed.values)) {
    if (v === true) flags.add(k);
    else if (typeof v === "string") values[k] = v;
    else if (Array.isArray(v)) lists[k] = v.filter((x): x is string => typeof x === "string");
  }
  return { values: Object.assign(values, { flags, lists }), positionals: parsed.positionals };
}

/**
 * `--plugin m.js` (repeatable) and `--allow-plugins`: the code a command may load. A module a
 * scenario or schedule file names is loaded only if given here, or with `--allow-plugins`.
 */
export const PLUGIN_OPTIONS = {
  plugin: { type: "string", multiple: true },
  "allow-plugins": { type: "boolean" },
} as const satisfies Options;

export function hostMemoryOption(cmd: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = parseSizeText(v);
  if (n === null)
    throw new UsageError(`${cmd}: --host-memory: expected a size such as 4GiB, got '${v}'`);
  // Host memory comes in 2 MiB blocks: 3MiB would silently be 2MiB.
  if (n % (2 * 2 ** 20) !== 0)
    throw new UsageError(
      `${cmd}: --host-memory: expected a multiple of 2MiB (host memory is handed out in 2 MiB blocks), got '${v}'`,
    );
  return n;
}

/** A whole number option, or `Infinity` for "none"/"inf" when `allowInfinite`. */
export function countOption(
  cmd: string,
  name: string,
  v: string | undefined,
  min: number,
  allowInfinite = false,
): number | undefined {
  if (v === undefined) return undefined;
  if (allowInfinite && /^(none|inf|infinity|unbounded)$/i.test(v)) return Infinity;
  if (!/^[0-9]+$/.test(v) || Number(v) < min || !Number.isSafeInteger(Number(v))) {
    throw new UsageError(
      `${cmd}: --${name}: expected a whole number of at least ${min}${allowInfinite ? " (or none)" : ""}, got '${v}'`,
    );
  }
  return Number(v);
}

/**
 * `--strategy` (default: the scenario's `options.strategy`), `--unsafe-non-atomic-set` and
 * `--tdx-huge-pages` (on if given or if the scenario's `options.tdxHugePages` is).
 */
export function mmuOptions(
  cmd: string,
  values: ParsedArgs["values"],
  scn: Scenario,
): Required<MmuOptions> {
  const strategy = values.strategy ?? scn.options.strategy;
  if (!(STRATEGIES as readonly string[]).includes(strategy)) {
    throw new UsageError(
      `${cmd}: --strategy: expected one of ${STRATEGIES.join(", ")}, got '${strategy}'`,
    );
  }
  return {
    strategy,
    unsafeNonAtomicSet: values.flags.has("unsafe-non-atomic-set"),
    tdxHugePages: values.flags.has("tdx-huge-pages") || scn.options.tdxHugePages,
  } as Required<MmuOptions>;
}

/**
 * `--inject CALL:N:STATUS[:TIMES]`, repeatable: the Nth CALL returns STATUS (TIMES times). A
 * status may carry an index in parentheses, as CCA's RMI_ERROR_RTT(2) carries the RTT level.
 */
export function injectOptions(cmd: string, specs: string[] | undefined): InjectSpec[] {
  return (specs ?? []).map((s) => {
    const m = /^([A-Za-z0-9_.#-]+):([0-9]+):([A-Z_]+(?:\(-?[0-9]+\))?)(?::([0-9]+))?$/.exec(s);
    if (!m || Number(m[2]) < 1 || (m[4] !== undefined && Number(m[4]) < 1)) {
      throw new UsageError(
        `${cmd}: --inject: expected CALL:N:STATUS[:TIMES] such as TDH.MEM.PAGE.AUG:1:OPERAND_BUSY, got '${s}'`,
      );
    }
    return {
      call: m[1]!,
      nth: Number(m[2]),
      status: m[3]!,
      times: m[4] === undefined ? 1 : Number(m[4]),
    };
  });
}

/** `--seed <n>`: sets the scenario's schedule seed. */
export function applySeedOption(cmd: string, v: string | undefined, scn: Scenario): void {
  if (v === undefined) return;
  const seed = /^[0-9]+$/.test(v) ? Number(v) : NaN;
  if (!Number.isInteger(seed) || seed > 0xffffffff)
    throw new UsageError(`${cmd}: --seed: expected an integer from 0 to 2^32-1, got '${v}'`);
  scn.schedule.seed = seed;
}

/** A scenario's `schedule: { mode: replay, file }`: the choices of that file (relative to the scenario's folder). */
export function scenarioReplayChoices(scn: Scenario): number[] | undefined {
  if (scn.schedule.mode !== "replay") return undefined;
  const file = resolve(
    scn.source === DEFAULT_SCENARIO_SOURCE ? "." : dirname(scn.source),
    scn.schedule.file!,
  );
  return loadScheduleFile(file).choices;
}
