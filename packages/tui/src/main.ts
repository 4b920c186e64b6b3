/**
 * The `tdpemu` command: dispatch, and the mapping of errors to exit codes (0 success, 1 a run
 * that found a violation, 2 bad input with one clear line).
 */
import "reflect-metadata";
import { inspect } from "node:util";
import { printable } from "./printable.js";
import {
  DEFAULT_MAX_INPUT,
  HostMemoryExhausted,
  OpError,
  PluginError,
  RunInputError,
  ScenarioError,
  ScheduleFileError,
  UnknownBackendError,
  inputLimits,
  parseSizeText,
} from "@tdpemu/core";
import { auditCommand } from "./commands/audit.js";
import { backendsCommand } from "./commands/backends.js";
import { runCommand } from "./commands/run.js";
import { exploreCommand } from "./commands/explore.js";
import { exploreMergeCommand } from "./commands/explore-merge.js";
import { replayCommand } from "./commands/replay.js";
import { tuiCommand } from "./commands/tui.js";
import { compareCommand } from "./commands/compare.js";
import { benchCommand } from "./commands/bench.js";
import { fuzzCommand } from "./commands/fuzz.js";
import { newBackendCommand } from "./commands/new-backend.js";
import { schemaCommand } from "./commands/schema.js";
import type { Io } from "./io.js";
import { pluginMode } from "./registry.js";
import { USAGE, UsageError, commandUsage } from "./usage-error.js";

/** Options of every command, taken wherever they stand. */
const GLOBAL_FLAGS = ["--debug", "--strict-plugin"];

/** `--max-input <size>` (any command): the largest scenario or schedule file read. Returns the other arguments. */
function takeMaxInput(args: string[]): string[] {
  inputLimits.maxBytes = DEFAULT_MAX_INPUT;
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a !== "--max-input" && !a.startsWith("--max-input=")) {
      out.push(a);
      continue;
    }
    const v = a === "--max-input" ? args[++i] : a.slice("--max-input=".length);
    const n = v === undefined ? null : parseSizeText(v);
    if (n === null || n < 1)
      throw new UsageError(
        `--max-input: expected a size such as 64MiB, got ${v === undefined ? "nothing" : `'${v}'`}`,
      );
    inputLimits.maxBytes = n;
  }
  return out;
}

export async function main(argv: string[], io: Io): Promise<number> {
  const debug = argv.includes("--debug");
  pluginMode.strict = argv.includes("--strict-plugin");
  try {
    const [cmd, ...rest] = takeMaxInput(argv.filter((a) => !GLOBAL_FLAGS.includes(a)));
    // `tdpemu <command> --help` (before any "--"), and `tdpemu help <command>`: that command's usage.
    const beforeDashes = rest.includes("--") ? rest.slice(0, rest.indexOf("--")) : rest;
    const helpFor =
      cmd === "help" && rest.length > 0
        ? rest[0]!
        : cmd !== undefined && (beforeDashes.includes("--help") || beforeDashes.includes("-h"))
          ? cmd
          : null;
    if (helpFor !== null) {
      const usage = commandUsage(helpFor);
      if (usage === null)
        throw new UsageError(
          `help: no command '${helpFor}' (commands: tui, run, explore, explore-merge, audit, replay, compare, bench, backends, fuzz, new-backend, schema)`,
        );
      io.out(usage);
      return 0;
    }
    switch (cmd) {
      case undefined:
        return await tuiCommand([], io);
      case "tui":
        return await tuiCommand(rest, io);
      case "compare":
        return await compareCommand(rest, io);
      case "bench":
        return await benchCommand(rest, io);
      case "run":
        return await runCommand(rest, io, { requireScenario: true });
      case "explore":
        return await exploreCommand(rest, io);
      case "explore-merge":
        return exploreMergeCommand(rest, io);
      case "audit":
        return await auditCommand(rest, io);
      case "replay":
        return await replayCommand(rest, io);
      case "backends":
        return await backendsCommand(rest, io);
      case "fuzz":
        return await fuzzCommand(rest, io, main);
      case "new-backend":
        return newBackendCommand(rest, io);
      case "schema":
        return await schemaCommand(rest, io);
      case "help":
      case "--help":
      case "-h":
        io.out(USAGE);
        return 0;
      default:
        throw new UsageError(
          `unknown command '${cmd}' (commands: tui, run, explore, explore-merge, audit, replay, compare, bench, backends, fuzz, new-backend, schema, help)`,
        );
    }
  } catch (e) {
    if (
      UsageError.is(e) ||
      ScenarioError.is(e) ||
      RunInputError.is(e) ||
      UnknownBackendError.is(e) ||
      OpError.is(e) ||
      HostMemoryExhausted.is(e) ||
      ScheduleFileError.is(e) ||
      PluginError.is(e)
    ) {
      io.err(`tdpemu: ${printable(e.message)}`);
      // The plugin's own stack, where its mistake is: one line unless asked for.
      if (debug && e.cause !== undefined)
        io.err(e.cause instanceof Error && e.cause.stack ? e.cause.stack : inspect(e.cause));
      return 2;
    }
    throw e;
  }
}
