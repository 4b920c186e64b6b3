/**
 * `tdpemu`, `tdpemu tui [scenario]` and `tdpemu tui <schedule.json>`: the terminal UI. A schedule
 * file (what `explore` writes, or `run --schedule-out`) is replayed exactly, as `replay` does,
 * and so is a scenario whose schedule is `mode: replay`.
 */
import {
  DEFAULT_SCENARIO_SOURCE,
  DEFAULT_SCENARIO_YAML,
  loadScenario,
  parseScenarioText,
  type Scenario,
} from "@tdpemu/core";
import {
  PLUGIN_OPTIONS,
  applySeedOption,
  hostMemoryOption,
  injectOptions,
  mmuOptions,
  parseCommandArgs,
  scenarioReplayChoices,
} from "../cli-options.js";
import type { Io } from "../io.js";
import {
  builtinRegistry,
  defaultBackend,
  loadPlugins,
  namedInScenario,
  resolveBackend,
} from "../registry.js";
import { isScheduleFile, openSchedule } from "../schedule-source.js";
import { Session, type SessionOptions } from "../session.js";
import { UsageError } from "../usage-error.js";

export async function tuiCommand(args: string[], _io: Io): Promise<number> {
  const { values, positionals } = parseCommandArgs("tui", args, {
    backend: { type: "string" },
    strategy: { type: "string" },
    seed: { type: "string" },
    inject: { type: "string", multiple: true },
    "host-memory": { type: "string" },
    "unsafe-non-atomic-set": { type: "boolean" },
    "tdx-huge-pages": { type: "boolean" },
    paused: { type: "boolean" },
    ...PLUGIN_OPTIONS,
  });
  if (positionals.length > 1)
    throw new UsageError(`tui: one scenario or schedule at a time, got ${positionals.length}`);
  const registry = builtinRegistry();
  // Plugins given here join the built-ins in the UI's comparison view.
  await loadPlugins(registry, values.lists.plugin ?? []);
  const allowPlugins = values.flags.has("allow-plugins");
  const path = positionals[0];
  let session: Session;
  let backend: string;
  let scn: Scenario;
  let strategy: "freeze" | "atomic-then-hook" | undefined;
  if (path !== undefined && isScheduleFile(path)) {
    // A recorded schedule is replayed as recorded: what would change it is refused.
    for (const o of [
      "backend",
      "seed",
      "strategy",
      "inject",
      "host-memory",
      "unsafe-non-atomic-set",
      "tdx-huge-pages",
    ]) {
      if (values[o] !== undefined || values.flags.has(o) || values.lists[o] !== undefined) {
        throw new UsageError(
          `tui: --${o}: a schedule file is replayed as it was recorded; give the scenario instead to change it`,
        );
      }
    }
    const opened = await openSchedule(path, registry, allowPlugins);
    const { sched } = opened;
    scn = opened.scn;
    backend = opened.backend;
    registry.source(backend); // an unknown backend fails here, before the UI starts
    strategy = sched.mmu.strategy;
    session = new Session(scn, registry, backend, {
      strategy: sched.mmu.strategy,
      unsafeNonAtomicSet: sched.mmu.unsafeNonAtomicSet,
      tdxHugePages: sched.mmu.tdxHugePages,
      replay: sched.choices,
      interleave: sched.interleave,
      inject: sched.inject,
      hostMemory: sched.hostMemory,
    });
  } else {
    scn =
      path !== undefined
        ? loadScenario(path)
        : parseScenarioText(DEFAULT_SCENARIO_YAML, DEFAULT_SCENARIO_SOURCE);
    applySeedOption("tui", values.seed, scn);
    backend =
      values.backend !== undefined
        ? await resolveBackend(registry, values.backend)
        : registry.has(scn.backend)
          ? scn.backend
          : path === undefined
            ? defaultBackend(registry)
            : await resolveBackend(registry, scn.backend, namedInScenario(scn, allowPlugins));
    registry.source(backend);
    const mmu = mmuOptions("tui", values, scn);
    strategy = mmu.strategy;
    const replay = scenarioReplayChoices(scn);
    const opts: SessionOptions = {
      strategy: mmu.strategy,
      unsafeNonAtomicSet: mmu.unsafeNonAtomicSet,
      tdxHugePages: mmu.tdxHugePages,
      inject: injectOptions("tui", values.lists.inject),
      hostMemory: hostMemoryOption("tui", values["host-memory"]),
      replay,
    };
    // Made before the UI starts, so that what the run refuses (an unknown call to inject, a host
    // too small) is one line and exit 2, not an error screen.
    session = new Session(scn, registry, backend, opts);
  }
  if (!process.stdin.isTTY) {
    throw new UsageError(
      "tui: the terminal UI needs a terminal (use tdpemu run for a headless run)",
    );
  }
  // The UI (ink, React and the views) loads here, not with the command: every other command,
  // and every worker thread of `explore --jobs`, starts without it (it is most of a start).
  const [{ createElement }, { render }, { App }] = await Promise.all([
    import("react"),
    import("ink"),
    import("../ui/app.js"),
  ]);
  const app = render(
    createElement(App, {
      scenario: scn,
      registry,
      backend,
      session,
      strategy,
      autoRun: !values.flags.has("paused"),
    }),
    { exitOnCtrlC: true },
  );
  await app.waitUntilExit();
  return 0;
}
