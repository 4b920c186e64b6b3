/** `tdpemu run <scenario>`: run headless, print the summary or the JSON report. */
import {
  DEFAULT_SCENARIO_SOURCE,
  DEFAULT_SCENARIO_YAML,
  loadScenario,
  parseScenarioText,
  runScenario,
  saveScheduleFile,
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
import {
  backendForSchedule,
  builtinRegistry,
  defaultBackend,
  loadPlugins,
  namedInScenario,
  resolveBackend,
} from "../registry.js";
import { formatSummary } from "../summary.js";
import { eventListeners, formatVirtualTime, virtualTimeOption } from "../virtual-time-option.js";
import {
  TRACE_OPTIONS,
  openTrace,
  traceMeta,
  traceOption,
  type EventTrace,
} from "../trace-option.js";
import { UsageError } from "../usage-error.js";
import type { Io } from "../io.js";

export async function runCommand(
  args: string[],
  io: Io,
  opts: { requireScenario: boolean },
): Promise<number> {
  const { values, positionals } = parseCommandArgs("run", args, {
    ...PLUGIN_OPTIONS,
    backend: { type: "string" },
    json: { type: "boolean" },
    ...TRACE_OPTIONS,
    seed: { type: "string" },
    "host-memory": { type: "string" },
    check: { type: "string" },
    "schedule-out": { type: "string" },
    "unsafe-non-atomic-set": { type: "boolean" },
    "tdx-huge-pages": { type: "boolean" },
    strategy: { type: "string" },
    inject: { type: "string", multiple: true },
    costs: { type: "string" },
  });
  if (opts.requireScenario && positionals.length === 0)
    throw new UsageError("run: which scenario? (tdpemu run scenarios/<name>.yaml)");
  if (positionals.length > 1)
    throw new UsageError(
      `run: one scenario at a time, got ${positionals.length}: ${positionals.join(" ")}`,
    );
  const traceReq = traceOption("run", values);
  const scn =
    positionals.length === 1
      ? loadScenario(positionals[0]!)
      : parseScenarioText(DEFAULT_SCENARIO_YAML, DEFAULT_SCENARIO_SOURCE);
  applySeedOption("run", values.seed, scn);
  const hostMemory = hostMemoryOption("run", values["host-memory"]);
  const mmu = mmuOptions("run", values, scn);
  const inject = injectOptions("run", values.lists.inject);
  const check = values.check ?? "end";
  if (check !== "end" && check !== "op")
    throw new UsageError(`run: --check: expected end or op, got '${check}'`);

  const registry = builtinRegistry();
  await loadPlugins(registry, values.lists.plugin ?? []);
  let backendName: string;
  if (values.backend !== undefined) backendName = await resolveBackend(registry, values.backend);
  else if (positionals.length === 0 && !registry.has(scn.backend))
    backendName = defaultBackend(registry);
  else
    backendName = await resolveBackend(
      registry,
      scn.backend,
      namedInScenario(scn, values.flags.has("allow-plugins")),
    );
  const backend = registry.source(backendName);
  const replay = scenarioReplayChoices(scn);

  const vt = virtualTimeOption("run", values.costs, backendName, values.flags.has("json"));
  const meta = traceMeta(scn.name, backendName, scn.vcpus.length);
  const trace: EventTrace | null = traceReq && openTrace("run", traceReq, meta);
  const t0 = performance.now();
  let result;
  try {
    result = runScenario(scn, {
      backend,
      hostMemory,
      onEvent: eventListeners(trace ? (e) => trace.write(e) : undefined, vt?.onEvent),
      replay,
      check,
      mmu,
      inject,
      guestMemory: values.flags.has("json"),
    });
  } finally {
    trace?.close();
  }
  const seconds = (performance.now() - t0) / 1000;
  const report = result.report;
  if (values["schedule-out"] !== undefined) {
    saveScheduleFile(values["schedule-out"], {
      scenarioPath: positionals[0] ?? null,
      name: scn.name,
      backend: backendForSchedule(registry, backendName),
      seed: scn.schedule.seed,
      interleave: result.interleave,
      mmu,
      hostMemory,
      inject,
      violations: report.invariants.violations,
      choices: result.choices,
    });
  }
  const virtualTime = vt?.report();
  if (values.flags.has("json"))
    io.out(JSON.stringify(virtualTime ? { ...report, virtualTime } : report, null, 2));
  else
    io.out(
      formatSummary(report, { seconds }) +
        (virtualTime ? `\n${formatVirtualTime(virtualTime)}` : "") +
        (trace ? `\ntrace       ${trace.count} events → ${trace.path}` : ""),
    );
  return report.invariants.violations.length > 0 ? 1 : 0;
}
