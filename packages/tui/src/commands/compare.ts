/**
 * `tdpemu compare <scenario> [--plugin m.js]... [--backend b]...`: the scenario on every backend,
 * one table side by side. Every registered backend takes part: the built-ins, each `--plugin`,
 * and the scenario's own `backend:` if it is a module; `--backend` (repeatable) picks some.
 */
import { loadScenario } from "@tdpemu/core";
import { PLUGIN_OPTIONS, parseCommandArgs, mmuOptions } from "../cli-options.js";
import type { Io } from "../io.js";
import { builtinRegistry, loadPlugins, namedInScenario, resolveBackend } from "../registry.js";
import { compareBackends, formatCompare } from "../session.js";
import { UsageError } from "../usage-error.js";

export async function compareCommand(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parseCommandArgs("compare", args, {
    strategy: { type: "string" },
    "tdx-huge-pages": { type: "boolean" },
    json: { type: "boolean" },
    ...PLUGIN_OPTIONS,
    backend: { type: "string", multiple: true },
  });
  if (positionals.length !== 1)
    throw new UsageError("compare: which scenario? (tdpemu compare scenarios/<name>.yaml)");
  const scn = loadScenario(positionals[0]!);
  const { strategy, tdxHugePages } = mmuOptions("compare", values, scn);
  const registry = builtinRegistry();
  await loadPlugins(registry, values.lists.plugin ?? []);
  await resolveBackend(
    registry,
    scn.backend,
    namedInScenario(scn, values.flags.has("allow-plugins")),
  ); // the scenario's own plugin takes part too
  const only: string[] = [];
  for (const b of values.lists.backend ?? []) {
    const name = await resolveBackend(registry, b);
    if (!registry.has(name))
      throw new UsageError(
        `compare: --backend: unknown backend '${b}' (registered: ${registry
          .list()
          .map((x) => x.name)
          .join(", ")})`,
      );
    if (!only.includes(name)) only.push(name);
  }
  const rows = compareBackends(
    scn,
    registry,
    { strategy, tdxHugePages },
    only.length > 0 ? only : undefined,
  );
  io.out(
    values.flags.has("json")
      ? JSON.stringify({ scenario: scn.name, backends: rows }, null, 2)
      : formatCompare(scn, rows),
  );
  // A backend that refuses one of the scenario's ops is reported, not a violation.
  return rows.some((r) => !r.error && r.values.violations !== "0") ? 1 : 0;
}
