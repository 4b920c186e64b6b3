/** `tdpemu` and `tdpemu tui [scenario]`: the terminal UI. */
import { createElement } from "react";
import { render } from "ink";
import { DEFAULT_SCENARIO_SOURCE, DEFAULT_SCENARIO_YAML, loadScenario, parseScenarioText } from "@tdpemu/core";
import { PLUGIN_OPTIONS, parseCommandArgs, mmuOptions } from "../cli-options.js";
import type { Io } from "../io.js";
import { builtinRegistry, defaultBackend, loadPlugins, namedInScenario, resolveBackend } from "../registry.js";
import { UsageError } from "../usage-error.js";
import { App } from "../ui/app.js";

export async function tuiCommand(args: string[], _io: Io): Promise<number> {
  const { values, positionals } = parseCommandArgs("tui", args, {
    backend: { type: "string" },
    strategy: { type: "string" },
    paused: { type: "boolean" },
    ...PLUGIN_OPTIONS,
  });
  if (positionals.length > 1) throw new UsageError(`tui: one scenario at a time, got ${positionals.length}`);
  const scn = positionals.length === 1 ? loadScenario(positionals[0]!) : parseScenarioText(DEFAULT_SCENARIO_YAML, DEFAULT_SCENARIO_SOURCE);
  const registry = builtinRegistry();
  // Plugins given here join the built-ins in the UI's comparison view.
  await loadPlugins(registry, values.lists.plugin ?? []);
  const backend = values.backend !== undefined ? await resolveBackend(registry, values.backend)
    : registry.has(scn.backend) ? scn.backend : positionals.length === 0 ? defaultBackend(registry) : await resolveBackend(registry, scn.backend, namedInScenario(scn, values.flags.has("allow-plugins")));
  registry.source(backend); // an unknown backend fails here, before the UI starts
  const { strategy } = mmuOptions("tui", values, scn);
  if (!process.stdin.isTTY) {
    throw new UsageError("tui: the terminal UI needs a terminal (use tdpemu run for a headless run)");
  }
  const app = render(createElement(App, { scenario: scn, registry, backend, strategy, autoRun: !values.flags.has("paused") }), { exitOnCtrlC: true });
  await app.waitUntilExit();
  return 0;
}
