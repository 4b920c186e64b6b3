/** `tdpemu compare <scenario>`: the scenario on every backend, one table side by side. */
import { loadScenario } from "@tdpemu/core";
import { parseCommandArgs, mmuOptions } from "../cli-options.js";
import type { Io } from "../io.js";
import { builtinRegistry } from "../registry.js";
import { compareBackends, formatCompare } from "../session.js";
import { UsageError } from "../usage-error.js";

export async function compareCommand(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parseCommandArgs("compare", args, { strategy: { type: "string" }, json: { type: "boolean" } });
  if (positionals.length !== 1) throw new UsageError("compare: which scenario? (tdpemu compare scenarios/<name>.yaml)");
  const scn = loadScenario(positionals[0]!);
  const { strategy } = mmuOptions("compare", values, scn);
  const rows = compareBackends(scn, builtinRegistry(), strategy);
  io.out(values.flags.has("json") ? JSON.stringify({ scenario: scn.name, backends: rows }, null, 2) : formatCompare(scn, rows));
  // A backend that refuses one of the scenario's ops is reported, not a violation.
  return rows.some((r) => !r.error && r.values.violations !== "0") ? 1 : 0;
}
