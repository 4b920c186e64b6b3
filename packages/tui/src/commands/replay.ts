/**
 * `tdpemu replay <schedule.json>`: run a recorded schedule again, exactly: the same choices,
 * the same steps, the same trace byte for byte. `--steps` prints what each step did; `--diagram`
 * only the steps that lead to its violation, one column per task (`race-diagram.ts`); `--report`
 * writes the run as an HTML page (`report/`).
 */
import { runScenario, scheduleSteps, type ScheduleFile, type TdpEvent } from "@tdpemu/core";
import { describeEvent } from "../event-text.js";
import { PLUGIN_OPTIONS, parseCommandArgs } from "../cli-options.js";
import type { Io } from "../io.js";
import { builtinRegistry, loadPlugins } from "../registry.js";
import { raceDiagram } from "../race-diagram.js";
import { renderRaceReport } from "../report/race-html.js";
import { replayRaceReport } from "../report/race-report.js";
import { raceRun } from "../report/race-run.js";
import { checkReportPath, writeReportFile } from "../report/report-file.js";
import { openSchedule } from "../schedule-source.js";
import { formatSummary } from "../summary.js";
import {
  TRACE_OPTIONS,
  openTrace,
  traceMeta,
  traceOption,
  type EventTrace,
} from "../trace-option.js";
import { UsageError } from "../usage-error.js";

export async function replayCommand(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parseCommandArgs("replay", args, {
    ...PLUGIN_OPTIONS,
    json: { type: "boolean" },
    ...TRACE_OPTIONS,
    steps: { type: "boolean" },
    diagram: { type: "boolean" },
    report: { type: "string" },
  });
  if (positionals.length !== 1)
    throw new UsageError("replay: which schedule? (tdpemu replay <file>.schedule.json)");
  const traceReq = traceOption("replay", values);
  const registry = builtinRegistry();
  await loadPlugins(registry, values.lists.plugin ?? []);
  const opened = await openSchedule(positionals[0]!, registry, values.flags.has("allow-plugins"));
  const { sched, scn } = opened;
  const backend = registry.source(opened.backend);
  const reportPath = values.report;
  if (reportPath !== undefined) {
    if (!sched.interleave) {
      throw new UsageError(
        "replay: --report: the schedule was recorded without interleaving " +
          "(whole ops, no atomic points to show)",
      );
    }
    checkReportPath("replay", reportPath);
    const opts = { backend, mmu: sched.mmu, hostMemory: sched.hostMemory, inject: sched.inject };
    const run = raceRun(scheduleSteps(scn, opts, sched.choices));
    const setup = replaySetup(opened.backend, sched);
    writeReportFile(
      "replay",
      reportPath,
      renderRaceReport(replayRaceReport(positionals[0]!, sched.name, setup, run)),
    );
    // Beside JSON on stdout the line goes to stderr, so stdout stays one JSON document.
    const line = `report      written to ${reportPath}`;
    if (values.flags.has("json")) io.err(line);
    else io.out(line);
  }
  if (values.flags.has("diagram")) {
    if (!sched.interleave)
      throw new UsageError(
        "replay: --diagram: the schedule was recorded without interleaving (whole ops, no atomic points to draw)",
      );
    const lines = raceDiagram(
      scn,
      { backend, mmu: sched.mmu, hostMemory: sched.hostMemory, inject: sched.inject },
      sched.choices,
    );
    if (lines === null) {
      io.out(
        "no violation: the schedule runs to its end with every invariant holding, so there is no race to draw",
      );
      return 0;
    }
    for (const line of lines) io.out(line);
    return 1;
  }
  const meta = traceMeta(scn.name, opened.backend, scn.vcpus.length);
  const trace: EventTrace | null = traceReq && openTrace("replay", traceReq, meta);
  const showSteps = values.flags.has("steps");
  const pending: string[] = [];
  let built = false;
  const onEvent = (e: TdpEvent) => {
    trace?.write(e);
    if (!showSteps) return;
    // What the host does while the VM is built (step 0) comes before the first step, under its own heading.
    if (e.step === 0) {
      if (!built) io.out("#0 host: the VM is built");
      built = true;
      io.out(`    ${describeEvent(e)}`);
      return;
    }
    pending.push(describeEvent(e));
  };
  const onStep = showSteps
    ? (task: string, n: number) => {
        io.out(`#${n} ${task}${pending.length ? "" : ": (no table change)"}`);
        for (const line of pending) io.out(`    ${line}`);
        pending.length = 0;
      }
    : undefined;
  let result;
  try {
    result = runScenario(scn, {
      backend,
      replay: sched.choices,
      interleave: sched.interleave,
      mmu: sched.mmu,
      hostMemory: sched.hostMemory,
      inject: sched.inject,
      onEvent: trace || showSteps ? onEvent : undefined,
      onStep,
      guestMemory: values.flags.has("json"),
    });
  } finally {
    trace?.close();
  }
  if (showSteps && pending.length > 0) {
    // The events of a step that ended in a violation (the step never returned to the scheduler).
    io.out(`#${sched.choices.length} (the step that failed)`);
    for (const line of pending) io.out(`    ${line}`);
  }
  const report = result.report;
  if (values.flags.has("json")) io.out(JSON.stringify(report, null, 2));
  else
    io.out(
      formatSummary(report, { seconds: 0 }) +
        (trace ? `\ntrace       ${trace.count} events → ${trace.path}` : ""),
    );
  return report.invariants.violations.length > 0 ? 1 : 0;
}

/** What the replayed run was set up with, as the report's header lists it. */
function replaySetup(backend: string, sched: ScheduleFile): [string, string][] {
  const setup: [string, string][] = [["backend", backend]];
  setup.push(["strategy", sched.mmu.strategy ?? "freeze"]);
  if (sched.mmu.unsafeNonAtomicSet === true) setup.push(["unsafe non-atomic set", "on"]);
  if (sched.mmu.tdxHugePages === true) setup.push(["TDX huge pages", "on"]);
  for (const f of sched.inject ?? []) {
    setup.push(["inject", `${f.call}:${f.nth}:${f.status}:${f.times}`]);
  }
  setup.push(["seed", String(sched.seed)]);
  return setup;
}
