/**
 * The `tdpemu` command: dispatch, and the mapping of errors to exit codes (0 success, 1 a run
 * that found a violation, 2 bad input with one clear line).
 */
import "reflect-metadata";
import { HostMemoryExhausted, OpError, PluginError, RunInputError, ScenarioError, ScheduleFileError, UnknownBackendError } from "@tdpemu/core";
import { backendsCommand } from "./commands/backends.js";
import { runCommand } from "./commands/run.js";
import { exploreCommand } from "./commands/explore.js";
import { replayCommand } from "./commands/replay.js";
import { tuiCommand } from "./commands/tui.js";
import { compareCommand } from "./commands/compare.js";
import { benchCommand } from "./commands/bench.js";
import type { Io } from "./io.js";
import { pluginMode } from "./registry.js";
import { USAGE, UsageError } from "./usage-error.js";

/** Options of every command, taken wherever they stand. */
const GLOBAL_FLAGS = ["--debug", "--strict-plugin"];

export async function main(argv: string[], io: Io): Promise<number> {
  const debug = argv.includes("--debug");
  pluginMode.strict = argv.includes("--strict-plugin");
  const [cmd, ...rest] = argv.filter((a) => !GLOBAL_FLAGS.includes(a));
  try {
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
      case "replay":
        return await replayCommand(rest, io);
      case "backends":
        return await backendsCommand(rest, io);
      case "help":
      case "--help":
      case "-h":
        io.out(USAGE);
        return 0;
      default:
        throw new UsageError(`unknown command '${cmd}' (commands: tui, run, explore, replay, compare, bench, backends, help)`);
    }
  } catch (e) {
    if (UsageError.is(e) || ScenarioError.is(e) || RunInputError.is(e) || UnknownBackendError.is(e) || OpError.is(e) ||
        HostMemoryExhausted.is(e) || ScheduleFileError.is(e) || PluginError.is(e)) {
      io.err(`tdpemu: ${e.message}`);
      // The plugin's own stack, where its mistake is: one line unless asked for.
      if (debug && e.cause !== undefined) io.err(e.cause instanceof Error && e.cause.stack ? e.cause.stack : String(e.cause));
      return 2;
    }
    throw e;
  }
}
