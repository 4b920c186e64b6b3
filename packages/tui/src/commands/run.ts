/** `tdpemu run <scenario>`: run headless, print the summary or the JSON report. */
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { parseArgs } from "node:util";
import {
  DEFAULT_SCENARIO_SOURCE, DEFAULT_SCENARIO_YAML, loadScenario, parseScenarioText, parseSizeText,
  runScenario, type Scenario,
} from "@tdpemu/core";
import { builtinRegistry, defaultBackend, resolveBackend } from "../registry.js";
import { formatSummary } from "../summary.js";
import { TraceWriter } from "../trace-writer.js";
import { UsageError } from "../usage-error.js";
import type { Io } from "../io.js";

function loadReplay(scn: Scenario): number[] {
  const file = resolve(scn.source === DEFAULT_SCENARIO_SOURCE ? "." : dirname(scn.source), scn.schedule.file!);
  let data: unknown;
  try {
    data = JSON.parse(readFileSync(file, "utf8"));
  } catch (e) {
    throw new UsageError(`${scn.source}: schedule.file: cannot read schedule '${file}': ${(e as Error).message.split("\n")[0]}`);
  }
  const choices = Array.isArray(data) ? data : (data as { choices?: unknown }).choices;
  if (!Array.isArray(choices) || !choices.every((c) => Number.isInteger(c) && c >= 0)) {
    throw new UsageError(`${file}: expected a schedule with "choices": a list of task indexes`);
  }
  return choices as number[];
}

export async function runCommand(args: string[], io: Io, opts: { requireScenario: boolean }): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        backend: { type: "string" },
        json: { type: "boolean" },
        trace: { type: "string" },
        seed: { type: "string" },
        "host-memory": { type: "string" },
        check: { type: "string" },
      },
    });
  } catch (e) {
    throw new UsageError(`run: ${(e as Error).message.split("\n")[0]}`);
  }
  const { values, positionals } = parsed;
  if (opts.requireScenario && positionals.length === 0) throw new UsageError("run: which scenario? (tdpemu run scenarios/<name>.yaml)");
  if (positionals.length > 1) throw new UsageError(`run: one scenario at a time, got ${positionals.length}: ${positionals.join(" ")}`);
  const scn = positionals.length === 1 ? loadScenario(positionals[0]!) : parseScenarioText(DEFAULT_SCENARIO_YAML, DEFAULT_SCENARIO_SOURCE);
  if (values.seed !== undefined) {
    const seed = /^[0-9]+$/.test(values.seed) ? Number(values.seed) : NaN;
    if (!Number.isInteger(seed) || seed > 0xffffffff) throw new UsageError(`run: --seed: expected an integer from 0 to 2^32-1, got '${values.seed}'`);
    scn.schedule.seed = seed;
  }
  let hostMemory: number | undefined;
  if (values["host-memory"] !== undefined) {
    const n = parseSizeText(values["host-memory"]);
    if (n === null) throw new UsageError(`run: --host-memory: expected a size such as 4GiB, got '${values["host-memory"]}'`);
    hostMemory = n;
  }
  const check = values.check ?? "end";
  if (check !== "end" && check !== "op") throw new UsageError(`run: --check: expected end or op, got '${check}'`);

  const registry = builtinRegistry();
  let backendName: string;
  if (values.backend !== undefined) backendName = await resolveBackend(registry, values.backend);
  else if (positionals.length === 0 && !registry.has(scn.backend)) backendName = defaultBackend(registry);
  else backendName = await resolveBackend(registry, scn.backend);
  const backend = registry.create(backendName);
  const replay = scn.schedule.mode === "replay" ? loadReplay(scn) : undefined;

  let trace: TraceWriter | null = null;
  if (values.trace !== undefined) {
    try {
      trace = new TraceWriter(values.trace);
    } catch (e) {
      throw new UsageError(`run: --trace: cannot create '${values.trace}': ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  }
  const t0 = performance.now();
  let result;
  try {
    result = runScenario(scn, { backend, hostMemory, onEvent: trace?.write, replay, check: check as "end" | "op" });
  } finally {
    trace?.close();
  }
  const seconds = (performance.now() - t0) / 1000;
  const report = result.report;
  if (values.json) io.out(JSON.stringify(report, null, 2));
  else io.out(formatSummary(report, { seconds }) + (trace ? `\ntrace       ${trace.count} events → ${trace.path}` : ""));
  return report.invariants.violations.length > 0 ? 1 : 0;
}
