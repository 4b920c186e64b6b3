/** Option parsing shared by the commands: one-line errors, sizes, counts. */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { parseSizeText } from "@tdpemu/core";
import { UsageError } from "./usage-error.js";

type Options = NonNullable<ParseArgsConfig["options"]>;

export interface ParsedArgs {
  /** String options as strings, boolean options as true, absent ones undefined. */
  values: Record<string, string | undefined> & { flags: Set<string> };
  positionals: string[];
}

export function parseCommandArgs(cmd: string, args: string[], options: Options): ParsedArgs {
  let parsed;
  try {
    parsed = parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError(`${cmd}: ${(e as Error).message.split("\n")[0]}`);
  }
  const flags = new Set<string>();
  const values: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(parsed.values)) {
    if (v === true) flags.add(k);
    else if (typeof v === "string") values[k] = v;
  }
  return { values: Object.assign(values, { flags }), positionals: parsed.positionals };
}

export function hostMemoryOption(cmd: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = parseSizeText(v);
  if (n === null) throw new UsageError(`${cmd}: --host-memory: expected a size such as 4GiB, got '${v}'`);
  return n;
}

/** A whole number option, or `Infinity` for "none"/"inf" when `allowInfinite`. */
export function countOption(cmd: string, name: string, v: string | undefined, min: number, allowInfinite = false): number | undefined {
  if (v === undefined) return undefined;
  if (allowInfinite && /^(none|inf|infinity|unbounded)$/i.test(v)) return Infinity;
  if (!/^[0-9]+$/.test(v) || Number(v) < min || !Number.isSafeInteger(Number(v))) {
    throw new UsageError(`${cmd}: --${name}: expected a whole number of at least ${min}${allowInfinite ? " (or none)" : ""}, got '${v}'`);
  }
  return Number(v);
}
