/**
 * `tdpemu explore <scenario>`: enumerate interleavings, stop at the first invariant violation,
 * write its schedule. Exit 1 when a violation is found.
 */
import { basename } from "node:path";
import { ScheduleFileError, exploreScenario, loadScenario, saveScheduleFile, scheduleFileText, type ExploreProgress } from "@tdpemu/core";
import { PLUGIN_OPTIONS, countOption, hostMemoryOption, injectOptions, mmuOptions, parseCommandArgs } from "../cli-options.js";
import type { Io } from "../io.js";
import { backendForSchedule, builtinRegistry, loadPlugins, namedInScenario, resolveBackend } from "../registry.js";
import { UsageError } from "../usage-error.js";

const DEFAULT_MAX_SCHEDULES = 1_000_000;

export async function exploreCommand(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parseCommandArgs("explore", args, {
    ...PLUGIN_OPTIONS,
    backend: { type: "string" },
    "max-schedules": { type: "string" },
    "preemption-bound": { type: "string" },
    json: { type: "boolean" },
    out: { type: "string" },
    "host-memory": { type: "string" },
    "unsafe-non-atomic-set": { type: "boolean" },
    "tdx-huge-pages": { type: "boolean" },
    "no-reduction": { type: "boolean" },
    "count-traces": { type: "boolean" },
    strategy: { type: "string" },
    inject: { type: "string", multiple: true },
  });
  if (positionals.length !== 1) throw new UsageError("explore: which scenario? (tdpemu explore scenarios/<name>.yaml)");
  const scenarioPath = positionals[0]!;
  const scn = loadScenario(scenarioPath);
  const maxSchedules = countOption("explore", "max-schedules", values["max-schedules"], 1) ?? DEFAULT_MAX_SCHEDULES;
  const preemptionBound = countOption("explore", "preemption-bound", values["preemption-bound"], 0, true) ?? Infinity;
  const hostMemory = hostMemoryOption("explore", values["host-memory"]);
  const mmu = mmuOptions("explore", values, scn);
  const inject = injectOptions("explore", values.lists.inject);
  const registry = builtinRegistry();
  await loadPlugins(registry, values.lists.plugin ?? []);
  const backendName = values.backend !== undefined ? await resolveBackend(registry, values.backend)
    : await resolveBackend(registry, scn.backend, namedInScenario(scn, values.flags.has("allow-plugins")));
  const source = registry.source(backendName); // an unknown backend fails here, before any schedule runs
  const out = values.out ?? `${basename(scenarioPath).replace(/\.(ya?ml|json)$/i, "")}.violation.schedule.json`;

  const progress = (p: ExploreProgress) => {
    const line = `explored ${p.schedules.toLocaleString("en-US")} schedules, ${p.steps.toLocaleString("en-US")} steps, ` +
      `${Math.round(p.schedules / p.seconds).toLocaleString("en-US")}/s`;
    io.err(line);
  };
  const r = exploreScenario(scn, {
    backend: source, hostMemory, mmu, inject, maxSchedules, preemptionBound,
    onProgress: progress, progressMs: 2000, reduction: !values.flags.has("no-reduction"),
    countTraces: values.flags.has("count-traces"),
  });
  let file: string | null = null;
  /** The schedule, when it could not be written to `out`: printed instead, never lost. */
  let unsaved: string | null = null;
  if (r.violation) {
    const content = {
      scenarioPath, name: scn.name, backend: backendForSchedule(registry, backendName), seed: scn.schedule.seed, interleave: true,
      mmu, hostMemory, inject, violations: r.violation.violations, choices: r.violation.choices,
    };
    try {
      saveScheduleFile(out, content);
      file = out;
    } catch (e) {
      if (!ScheduleFileError.is(e)) throw e;
      io.err(`tdpemu: explore: --out: ${e.message}; the schedule is printed instead`);
      unsaved = scheduleFileText(null, content);
    }
  }
  const perSecond = r.seconds > 0 ? Math.round(r.schedules / r.seconds) : r.schedules;
  if (values.flags.has("json")) {
    io.out(JSON.stringify({
      scenario: scn.name, backend: backendName, schedules: r.schedules, steps: r.steps,
      complete: r.complete, cut: r.cut, traces: r.traces, unfair: r.unfair,
      skippedByReduction: r.skippedByReduction, prunedByBound: r.prunedByBound,
      preemptionBound: Number.isFinite(r.preemptionBound) ? r.preemptionBound : null,
      // `exhausted`: every schedule within the bound ran; `spaceExhausted`: and the bound cut none.
      exhausted: r.exhausted, spaceExhausted: r.exhausted && r.prunedByBound === 0, seconds: r.seconds, schedulesPerSecond: perSecond,
      violation: r.violation ? {
        schedule: r.violation.schedule, violations: r.violation.violations, file, steps: r.violation.choices.length,
        ...(unsaved === null ? {} : { scheduleFile: JSON.parse(unsaved) as unknown }),
      } : null,
    }, null, 2));
  } else {
    const bound = Number.isFinite(r.preemptionBound) ? `preemption bound ${r.preemptionBound}` : "no preemption bound";
    io.out(`scenario    ${scn.name}  (backend ${backendName}, strategy ${mmu.strategy}${mmu.unsafeNonAtomicSet ? ", unsafe non-atomic set" : ""}${mmu.tdxHugePages ? ", TDX huge pages" : ""}, ${bound})`);
    io.out(`explored    ${r.schedules.toLocaleString("en-US")} schedules, ${r.steps.toLocaleString("en-US")} steps in ${r.seconds.toFixed(2)} s (${perSecond.toLocaleString("en-US")} schedules/s)`);
    const traces = r.traces === null ? "" : `, ${r.traces.toLocaleString("en-US")} distinct traces`;
    io.out(`complete    ${r.complete.toLocaleString("en-US")} schedules ran to the end${traces}; ${r.cut.toLocaleString("en-US")} were cut short by the sleep sets or the bound${r.unfair > 0 ? `; ${r.unfair.toLocaleString("en-US")} starved a task and were dropped as unfair` : ""}`);
    io.out(`reduction   skipped ${r.skippedByReduction.toLocaleString("en-US")} branches that only reorder independent steps; the bound cut ${r.prunedByBound.toLocaleString("en-US")}`);
    if (r.violation) {
      io.out(`violation   in schedule ${r.violation.schedule}, after ${r.violation.choices.length} steps:`);
      for (const v of r.violation.violations) io.out(`  [${v.check}] step ${v.step}: ${v.message}`);
      if (unsaved === null) io.out(`schedule    written to ${file}; replay it with: tdpemu replay ${file}`);
      else io.out(`schedule    not written (see above); save these lines as a .json file and replay it with tdpemu replay:\n${unsaved.trimEnd()}`);
    } else {
      io.out(!r.exhausted ? `result      no violation in the first ${r.schedules.toLocaleString("en-US")} schedules; the space is not exhausted (--max-schedules)`
        : r.prunedByBound > 0 ? `result      no violation in any schedule of at most ${r.preemptionBound} preemptions (all of them ran); the bound cut ${r.prunedByBound.toLocaleString("en-US")} branches, so the space beyond it is not exhausted (leave out --preemption-bound to explore it)`
        : "result      no violation; the space is exhausted");
    }
  }
  return r.violation ? 1 : 0;
}
