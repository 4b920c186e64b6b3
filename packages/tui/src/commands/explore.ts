/**
 * `tdpemu explore <scenario>`: enumerate interleavings, stop at the first invariant violation,
 * write its schedule. Exit 1 when a violation is found.
 */
import { createHash } from "node:crypto";
import { availableParallelism } from "node:os";
import { basename } from "node:path";
import {
  ScheduleFileError,
  exploreScenario,
  loadScenario,
  saveScheduleFile,
  scheduleFileText,
  scheduleSteps,
  shrinkSchedule,
  type ExploreProgress,
  type ExploreViolation,
  type MmuOptions,
  type Scenario,
  type ScheduleBudget,
  type ScheduleContent,
  type ScheduleSteps,
} from "@tdpemu/core";
import {
  PLUGIN_OPTIONS,
  countOption,
  hostMemoryOption,
  injectOptions,
  mmuOptions,
  parseCommandArgs,
} from "../cli-options.js";
import { commandEntry } from "../command-entry.js";
import type { Io } from "../io.js";
import { backendForSchedule, scenarioBackend } from "../registry.js";
import { drawDiagram } from "../race-diagram.js";
import { renderRaceReport } from "../report/race-html.js";
import { exploreRaceReport } from "../report/race-report.js";
import { raceRun } from "../report/race-run.js";
import { checkReportPath, writeReportFile } from "../report/report-file.js";
import { UsageError } from "../usage-error.js";
import { runExploreJobs } from "./explore-jobs.js";
import { type ExploreReport, printExploreReport } from "./explore-report.js";

const DEFAULT_MAX_SCHEDULES = 1_000_000;

/**
 * One of the threads of `explore --jobs N` (`explore-jobs.ts`): it explores the subtrees it
 * claims and prints its report as a shard does.
 */
export interface ExploreJob {
  index: number;
  count: number;
  owns: (subtree: number) => boolean;
  /** The threads' one count of schedules, capped at the search's `--max-schedules`. */
  budget: (maxSchedules: number) => ScheduleBudget;
  /** Called with the position of the violation this job stopped at. */
  found: (position: number) => void;
  progress: (p: ExploreProgress) => void;
  /** How often `progress` is called (the main thread starts the workers from it). */
  progressMs: number;
}

export async function exploreCommand(args: string[], io: Io, job?: ExploreJob): Promise<number> {
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
    algorithm: { type: "string" },
    "count-traces": { type: "boolean" },
    "every-state": { type: "boolean" },
    shard: { type: "string" },
    "split-depth": { type: "string" },
    jobs: { type: "string" },
    strategy: { type: "string" },
    inject: { type: "string", multiple: true },
    report: { type: "string" },
  });
  if (positionals.length !== 1)
    throw new UsageError("explore: which scenario? (tdpemu explore scenarios/<name>.yaml)");
  const scenarioPath = positionals[0]!;
  const scn = loadScenario(scenarioPath);
  const maxSchedules =
    countOption("explore", "max-schedules", values["max-schedules"], 1) ?? DEFAULT_MAX_SCHEDULES;
  const preemptionBound =
    countOption("explore", "preemption-bound", values["preemption-bound"], 0, true) ?? Infinity;
  const hostMemory = hostMemoryOption("explore", values["host-memory"]);
  const mmu = mmuOptions("explore", values, scn);
  const inject = injectOptions("explore", values.lists.inject);
  const { registry, name: backendName } = await scenarioBackend(values, scn);
  const source = registry.source(backendName); // an unknown backend fails here, before any schedule runs
  const out =
    values.out ??
    `${basename(scenarioPath).replace(/\.(ya?ml|json)$/i, "")}.violation.schedule.json`;

  const askedJobs = countOption("explore", "jobs", values.jobs, 1);
  if (askedJobs !== undefined && askedJobs > MAX_JOBS)
    throw new UsageError(`explore: --jobs: expected at most ${MAX_JOBS} threads, got ${askedJobs}`);
  if (askedJobs !== undefined && askedJobs > 1 && values.shard !== undefined)
    throw new UsageError(
      "explore: --jobs and --shard: a shard runs in one thread (run more shards instead)",
    );
  // Every search is split, whatever runs it (one thread, threads or shards), so that it gives
  // the same report on any machine: an optimal search branches as sleep sets do above the
  // split depth. 0: not split, the search shared out by no thread or shard.
  const splitDepth =
    countOption("explore", "split-depth", values["split-depth"], 0) ?? DEFAULT_SPLIT_DEPTH;
  if (splitDepth === 0 && ((askedJobs ?? 1) > 1 || values.shard !== undefined))
    throw new UsageError(
      "explore: --split-depth 0 and --jobs/--shard: a search that is not split runs on one thread; leave out --jobs/--shard",
    );
  const reduction = !values.flags.has("no-reduction");
  // Every state of every trace: the states are checked as each complete schedule ends, against
  // one set of those checked before, so the search runs in one thread.
  const everyState = values.flags.has("every-state");
  if (everyState && ((askedJobs ?? 1) > 1 || values.shard !== undefined))
    throw new UsageError(
      "explore: --every-state and --jobs/--shard: the states are checked in one thread; leave out --jobs/--shard",
    );
  const reportPath = values.report;
  // Read (and a bad value refused) whether or not other threads will start.
  const startAfterMs = job === undefined && askedJobs === undefined ? jobsStartMs() : 0;
  const jobs =
    askedJobs ??
    defaultJobs(
      job === undefined &&
        values.shard === undefined &&
        reportPath === undefined &&
        splitDepth > 0 &&
        !everyState,
    );
  if (reportPath !== undefined) {
    // The threads and the shards each see a share of the search; the one run to show is
    // known only to the merge, which does not run the scenario again.
    if (jobs > 1 || job !== undefined || values.shard !== undefined) {
      throw new UsageError(
        "explore: --report and --jobs/--shard: a report is written by " +
          "one-thread searches only; leave out --jobs/--shard, or run tdpemu replay --report on " +
          "the schedule the search writes",
      );
    }
    checkReportPath("explore", reportPath);
  }
  // Checked here, before --jobs hands the command line to its threads.
  const algorithm = algorithmOption(values.algorithm, reduction, Number.isFinite(preemptionBound));
  const opts = { backend: source, hostMemory, mmu, inject };
  /** The schedule file's content for a violation found. */
  const contentOf = (violations: ExploreViolation[], choices: number[]): ScheduleContent => ({
    scenarioPath,
    name: scn.name,
    backend: backendForSchedule(registry, backendName),
    seed: scn.schedule.seed,
    interleave: true,
    mmu,
    hostMemory,
    inject,
    violations,
    choices,
  });
  if (jobs > 1 && job === undefined) {
    const json = values.flags.has("json");
    return runExploreJobs(args, jobs, out, json, io, exploreCommand, {
      startAfterMs,
      // The race, shrunk and drawn, as one thread's search shows it (in the text report).
      onViolation: json
        ? undefined
        : (violations, choices, file, searched) => {
            drawRace(io, scn, opts, contentOf(violations, choices), file, searched, true);
          },
    });
  }
  const shard =
    job !== undefined
      ? { index: job.index, count: job.count, depth: splitDepth }
      : shardOption(values.shard, splitDepth);
  const split = shard ?? (splitDepth === 0 ? null : { depth: splitDepth });
  const owns =
    job !== undefined
      ? job.owns
      : shard === null
        ? () => true
        : (i: number) => i % shard.count === shard.index;
  const progress =
    job !== undefined
      ? job.progress
      : (p: ExploreProgress) => {
          const line =
            `explored ${p.schedules.toLocaleString("en-US")} schedules, ${p.steps.toLocaleString("en-US")} steps, ` +
            `${Math.round(p.schedules / p.seconds).toLocaleString("en-US")}/s`;
          io.err(line);
        };
  const countTraces = values.flags.has("count-traces");
  const digests: string[] = [];
  const r = exploreScenario(scn, {
    backend: source,
    hostMemory,
    mmu,
    inject,
    maxSchedules,
    preemptionBound,
    onProgress: progress,
    progressMs: job?.progressMs ?? 2000,
    reduction,
    algorithm: algorithm === "none" ? undefined : algorithm,
    countTraces,
    everyState,
    ...(split === null
      ? {}
      : {
          // The threads of --jobs share one --max-schedules; shards each have their own.
          split: {
            depth: split.depth,
            owns,
            ...(job === undefined ? {} : { budget: job.budget(maxSchedules) }),
          },
          // A shard's traces leave as digests, for explore-merge to count them as one set.
          onTrace:
            countTraces && shard !== null
              ? (key: string) => digests.push(traceDigest(key))
              : undefined,
        }),
  });
  let file: string | null = null;
  /** The schedule, when it could not be written to `out` (or, for a shard, always): in the report, never lost. */
  let unsaved: string | null = null;
  let content: ScheduleContent | null = null;
  if (r.violation) {
    content = contentOf(r.violation.violations, r.violation.choices);
    // A shard writes its schedule only where told to (shards side by side would overwrite one
    // file); its report carries it for explore-merge.
    if (shard !== null) unsaved = scheduleFileText(null, content);
    if (shard === null || (values.out !== undefined && job === undefined)) {
      try {
        saveScheduleFile(out, content);
        file = out;
      } catch (e) {
        if (!ScheduleFileError.is(e)) throw e;
        io.err(`tdpemu: explore: --out: ${e.message}; the schedule is printed instead`);
        unsaved = scheduleFileText(null, content);
      }
    }
  }
  const report: ExploreReport = {
    scenario: scn.name,
    backend: backendName,
    strategy: mmu.strategy,
    unsafeNonAtomicSet: mmu.unsafeNonAtomicSet,
    tdxHugePages: mmu.tdxHugePages,
    reduction,
    algorithm,
    schedules: r.schedules,
    steps: r.steps,
    complete: r.complete,
    cut: r.cut,
    traces: r.traces,
    otherStates: r.otherStates,
    unfair: r.unfair,
    skippedByReduction: r.skippedByReduction,
    prunedByBound: r.prunedByBound,
    preemptionBound: Number.isFinite(r.preemptionBound) ? r.preemptionBound : null,
    exhausted: r.exhausted,
    spaceExhausted: r.exhausted && r.prunedByBound === 0,
    seconds: r.seconds,
    threads: 1,
    splitDepth: split === null ? null : split.depth,
    schedulesPerSecond: r.seconds > 0 ? Math.round(r.schedules / r.seconds) : r.schedules,
    violation: r.violation
      ? {
          schedule: r.violation.schedule,
          violations: r.violation.violations,
          file,
          steps: r.violation.choices.length,
          ...(shard === null ? {} : { position: r.violation.position }),
          ...(unsaved === null ? {} : { scheduleFile: JSON.parse(unsaved) as unknown }),
        }
      : null,
    ...(shard === null ? {} : { shard, ...(countTraces ? { traceDigests: digests } : {}) }),
  };
  if (job !== undefined && r.violation) job.found(r.violation.position);
  const json = shard !== null || values.flags.has("json");
  printExploreReport(io, report, json);
  const race =
    content !== null && shard === null && (!json || reportPath !== undefined)
      ? drawRace(io, scn, opts, content, file, r.schedules, !json)
      : null;
  if (reportPath !== undefined) {
    const found = race === null ? null : { ...race, run: raceRun(race.steps) };
    writeReportFile("explore", reportPath, renderRaceReport(exploreRaceReport(report, found)));
    // Beside JSON on stdout the line goes to stderr, so stdout stays one JSON document.
    const line = `report      written to ${reportPath}`;
    if (json) io.err(line);
    else io.out(line);
  }
  return r.violation ? 1 : 0;
}

/** The run a race is shown by (text diagram, HTML report), and how to replay it. */
interface Race {
  steps: ScheduleSteps;
  /** The schedule file that replays it, or null if it could not be written. */
  replayFile: string | null;
  /** Its schedule file's text when it could not be written. */
  unsaved: string | null;
  note: string;
}

/**
 * After a violation: the schedule shrunk to the fewest preemptions (`shrinkSchedule`), written
 * beside the one found (`<out>.shrunk.schedule.json`), and drawn as the race
 * (`race-diagram.ts`) if `print`, with the command that replays it. Returns the run drawn, which
 * the HTML report shows too.
 */
function drawRace(
  io: Io,
  scn: Scenario,
  opts: Parameters<typeof shrinkSchedule>[1] & { mmu: MmuOptions },
  found: ScheduleContent,
  file: string | null,
  searched: number,
  print: boolean,
): Race | null {
  const check = found.violations?.[0]?.check;
  if (check === undefined) return null;
  // Each bounded search may run ten times the schedules the search that found it ran (at least
  // 1,000, at most 100,000): a violation found at once is shrunk at once.
  const shrunk = shrinkSchedule(
    scn,
    opts,
    check,
    6,
    Math.max(1000, Math.min(100_000, 10 * searched)),
  );
  const better = shrunk !== null && shrunk.choices.length <= found.choices.length;
  let replayFile = file;
  if (better && file !== null) {
    replayFile = `${file.replace(/(\.schedule)?\.json$/i, "")}.shrunk.schedule.json`;
    try {
      saveScheduleFile(replayFile, {
        ...found,
        violations: shrunk.violations,
        choices: shrunk.choices,
      });
    } catch (e) {
      if (!ScheduleFileError.is(e)) throw e;
      replayFile = null;
    }
  }
  const shown = better
    ? { ...found, violations: shrunk.violations, choices: shrunk.choices }
    : found;
  const steps = scheduleSteps(scn, opts, shown.choices);
  if (steps.violation === null || steps.steps.length === 0) return null;
  const race: Race = {
    steps,
    replayFile,
    unsaved: replayFile === null ? scheduleFileText(null, shown) : null,
    note: !better
      ? "the schedule found"
      : `the schedule found, shrunk to ${shrunk.choices.length} steps and ` +
        `${shrunk.preemptions} preemption${shrunk.preemptions === 1 ? "" : "s"}`,
  };
  if (!print) return race;
  const lines = drawDiagram(steps);
  io.out(
    better
      ? `\nthe race, shrunk to ${shrunk.choices.length} steps and ${shrunk.preemptions} preemption${shrunk.preemptions === 1 ? "" : "s"} (the steps that lead to the violation):`
      : "\nthe race (the steps that lead to the violation; all of them: tdpemu replay --steps):",
  );
  for (const line of lines) io.out(`  ${line}`);
  if (replayFile !== null) io.out(`replay it with: tdpemu replay ${replayFile} --diagram`);
  return race;
}

/**
 * `--algorithm`: Optimal-DPOR unless the search is bounded, where only sleep sets are complete
 * (see docs/explorer.md): asking for `optimal` there is an error, not a silent change.
 */
function algorithmOption(
  v: string | undefined,
  reduction: boolean,
  bounded: boolean,
): "optimal" | "sleep" | "none" {
  if (v !== undefined && v !== "optimal" && v !== "sleep")
    throw new UsageError(
      `explore: --algorithm: expected optimal or sleep, got ${JSON.stringify(v)}`,
    );
  if (!reduction) {
    if (v !== undefined)
      throw new UsageError(
        `explore: --algorithm ${v} and --no-reduction: --no-reduction runs every interleaving, with no reduction to choose`,
      );
    return "none";
  }
  if (v === "optimal" && bounded) {
    throw new UsageError(
      "explore: --algorithm optimal and --preemption-bound: an optimal search reaches some traces only through reorderings that cost more preemptions than the bound allows, so it would miss traces within the bound; leave out --algorithm (a bounded search uses sleep sets)",
    );
  }
  return v ?? (bounded ? "sleep" : "optimal");
}

/** More threads than any machine this runs on has cores for (each is a V8 isolate of its own). */
const MAX_JOBS = 256;

/**
 * Without `--jobs`, how long the main thread explores alone before it starts the other threads:
 * a worker takes 0.1-0.45 s to load the command (docs/explorer.md), which a search shorter than
 * this would only wait for. `TDPEMU_JOBS_START_MS` sets another (0: at once).
 */
const DEFAULT_JOBS_START_MS = 1000;

function jobsStartMs(): number {
  const v = process.env.TDPEMU_JOBS_START_MS;
  if (v === undefined || v === "") return DEFAULT_JOBS_START_MS;
  if (!/^[0-9]{1,9}$/.test(v))
    throw new UsageError(
      `explore: TDPEMU_JOBS_START_MS: expected a whole number of milliseconds, got '${v}'`,
    );
  return Number(v);
}

/**
 * The threads a search runs on without `--jobs`: every core; one for a shard, for a thread of
 * `--jobs` itself and with `--report`, which one thread writes.
 */
function defaultJobs(free: boolean): number {
  if (!free || commandEntry() === null) return 1;
  return Math.min(availableParallelism(), MAX_JOBS);
}

/** The depth a search is split at unless `--split-depth` says: deep enough for a few hundred subtrees in the shipped races. */
export const DEFAULT_SPLIT_DEPTH = 12;

/** `--shard K/N` (and `--split-depth`): the K-th of N shares of the search, or null. */
function shardOption(
  v: string | undefined,
  depth: number,
): { index: number; count: number; depth: number } | null {
  if (v === undefined) return null;
  const m = /^([0-9]+)\/([0-9]+)$/.exec(v);
  const index = m ? Number(m[1]) : NaN;
  const count = m ? Number(m[2]) : NaN;
  if (!m || !Number.isSafeInteger(count) || count < 1 || index >= count) {
    throw new UsageError(
      `explore: --shard: expected K/N, the K-th of N shares counted from 0 (0 <= K < N), got '${v}'`,
    );
  }
  return { index, count, depth };
}

/** A trace's key as a short digest (SHA-256, 96 bits): what a shard's report lists of each trace. */
export function traceDigest(key: string): string {
  return createHash("sha256").update(key).digest("base64url").slice(0, 16);
}
