/**
 * Everything the HTML race report (`--report` of explore and replay) shows, as plain data: the
 * verdict, the figures of the search, the run (`race-run.ts`) and the command that replays it.
 * `race-html.ts` renders it; nothing here knows HTML.
 */
import { resultText, searchEnd, type ExploreReport } from "../commands/explore-report.js";
import { grouped } from "../grouped.js";
import type { RaceRun } from "./race-run.js";

export type Verdict = "violation" | "exhausted" | "bounded" | "stopped" | "no-violation";

export interface RaceReport {
  command: "explore" | "replay";
  scenario: string;
  /** Backend, strategy and the other options the run had, as "name value" pairs. */
  setup: [string, string][];
  verdict: Verdict;
  /** The verdict in one line ("exhausted, no violation"), and what it means. */
  headline: string;
  detail: string;
  /** The violation: of the run shown if there is one, else the one the search found. */
  violation: { check: string; message: string; step: number } | null;
  /** The search's figures (explore only), as label and value. */
  figures: [string, string][];
  /** The run shown: the violation's, or the replayed schedule's; null when there is none. */
  run: RaceRun | null;
  /** What the run is (the schedule found, or shrunk), in one sentence. */
  runNote: string | null;
  /** The command that replays the run exactly, or null when its schedule is not on disk. */
  replay: string | null;
  /** The schedule file's text, when it could not be written (the page carries it instead). */
  unsavedSchedule: string | null;
}

/** A path as a POSIX shell takes it: as is when it is plain, quoted otherwise. */
export function shellWord(s: string): string {
  return /^[A-Za-z0-9_./:=@%+,-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

export function replayCommand(file: string): string {
  return `tdpemu replay ${shellWord(file)}`;
}

function exploreSetup(r: ExploreReport): [string, string][] {
  const setup: [string, string][] = [
    ["backend", r.backend],
    ["strategy", r.strategy],
  ];
  if (r.unsafeNonAtomicSet) setup.push(["unsafe non-atomic set", "on"]);
  if (r.tdxHugePages) setup.push(["TDX huge pages", "on"]);
  setup.push(["preemption bound", r.preemptionBound === null ? "none" : String(r.preemptionBound)]);
  const search = { optimal: "optimal DPOR", sleep: "sleep sets", none: "no reduction" };
  setup.push(["search", search[r.algorithm]]);
  return setup;
}

function exploreFigures(r: ExploreReport): [string, string][] {
  const figures: [string, string][] = [
    ["schedules", grouped(r.schedules)],
    ["steps", grouped(r.steps)],
    ["complete schedules", grouped(r.complete)],
    ["cut short (sleep sets or bound)", grouped(r.cut)],
  ];
  if (r.traces !== null) figures.push(["distinct traces", grouped(r.traces)]);
  if (typeof r.otherStates === "number")
    figures.push(["other states checked (--every-state)", grouped(r.otherStates)]);
  if (r.unfair > 0) figures.push(["dropped as unfair", grouped(r.unfair)]);
  figures.push(
    ["branches skipped by the reduction", grouped(r.skippedByReduction)],
    ["branches cut by the bound", grouped(r.prunedByBound)],
    ["seconds", r.seconds.toFixed(2)],
  );
  return figures;
}

const HEADLINES = {
  exhausted: "exhausted, no violation",
  bounded: "bounded, no violation within the preemption bound",
  stopped: "stopped, no violation in the schedules explored",
} as const;

/** The run a violation is shown by, and its schedule file (or its text, if not written). */
export interface FoundRace {
  run: RaceRun;
  note: string;
  replayFile: string | null;
  unsaved: string | null;
}

/**
 * The report of `explore`: its verdict and figures, and for a violation the run shown (the one
 * the text diagram draws) with the command that replays it.
 */
export function exploreRaceReport(r: ExploreReport, found: FoundRace | null): RaceReport {
  const base = {
    command: "explore" as const,
    scenario: r.scenario,
    setup: exploreSetup(r),
    figures: exploreFigures(r),
  };
  const v = r.violation?.violations[0];
  if (r.violation === null || v === undefined) {
    const end = searchEnd(r);
    return {
      ...base,
      verdict: end,
      headline: HEADLINES[end],
      detail: resultText(r),
      violation: null,
      run: null,
      runNote: null,
      replay: null,
      unsavedSchedule: null,
    };
  }
  return {
    ...base,
    verdict: "violation",
    headline: `violation: [${v.check}]`,
    detail: `found in schedule ${grouped(r.violation.schedule)}, after ${grouped(r.violation.steps)} steps`,
    violation: found?.run.violation ?? v,
    run: found?.run ?? null,
    runNote: found?.note ?? null,
    ...(found !== null
      ? {
          replay: found.replayFile === null ? null : replayCommand(found.replayFile),
          unsavedSchedule: found.unsaved,
        }
      : {
          // No run to show (it did not end in the violation when run again): the schedule found.
          replay: r.violation.file === null ? null : replayCommand(r.violation.file),
          unsavedSchedule:
            r.violation.scheduleFile === undefined
              ? null
              : JSON.stringify(r.violation.scheduleFile, null, 1),
        }),
  };
}

/** The report of `replay`: the schedule's run, with its violation if it ends in one. */
export function replayRaceReport(
  file: string,
  scenario: string,
  setup: [string, string][],
  run: RaceRun,
): RaceReport {
  const v = run.violation;
  return {
    command: "replay",
    scenario,
    setup,
    figures: [],
    verdict: v === null ? "no-violation" : "violation",
    headline: v === null ? "no violation" : `violation: [${v.check}]`,
    detail:
      v === null
        ? "the schedule runs to its end with every invariant holding"
        : `the schedule ends in it, after ${grouped(run.steps.length)} steps`,
    violation: v,
    run,
    runNote: `the schedule of ${file}, ${grouped(run.steps.length)} steps`,
    replay: replayCommand(file),
    unsavedSchedule: null,
  };
}
