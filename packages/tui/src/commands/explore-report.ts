/**
 * What `tdpemu explore` reports, as one object: printed as JSON (`--json`, and always for a
 * shard) or as text, by `explore` and by `explore-merge` alike, so that merged shards read
 * exactly as one exploration does.
 */
import type { ExploreViolation } from "@tdpemu/core";
import { grouped } from "../grouped.js";
import type { Io } from "../io.js";

export interface ExploreReport {
  scenario: string;
  backend: string;
  /** The MMU options the schedules ran with (the text report's first line names them). */
  strategy: string;
  unsafeNonAtomicSet: boolean;
  tdxHugePages: boolean;
  reduction: boolean;
  /** The search: Optimal-DPOR, sleep sets, or none (`--no-reduction`). */
  algorithm: "optimal" | "sleep" | "none";
  schedules: number;
  steps: number;
  complete: number;
  cut: number;
  traces: number | null;
  /**
   * With `--every-state`: the states checked besides those the schedules passed through (those
   * other orders of each trace's steps pass through); null without it.
   */
  otherStates: number | null;
  unfair: number;
  skippedByReduction: number;
  prunedByBound: number;
  preemptionBound: number | null;
  /** Every schedule within the bound ran; `spaceExhausted`: and the bound cut none. */
  exhausted: boolean;
  spaceExhausted: boolean;
  seconds: number;
  schedulesPerSecond: number;
  violation: {
    schedule: number;
    violations: ExploreViolation[];
    file: string | null;
    steps: number;
    /** Where in the search it was found (for a share of one: which comes first). */
    position?: number;
    /** The schedule file's content, when it is not on disk (or, for a shard, always). */
    scheduleFile?: unknown;
    /** In merged shards: the shard that found it ("K/N"; `schedule` counts that shard's schedules). */
    foundBy?: string;
  } | null;
  /** The threads that explored (`--jobs`; shards merged: theirs added up). */
  threads: number;
  /**
   * The depth the search was split at (`--jobs`, `--shard`, or the threads a search runs on
   * without `--jobs`), null if it was not. An optimal search branches as sleep sets do above it.
   */
  splitDepth: number | null;
  /** For a share of an exploration (`--shard K/N`): which one, and the depth the search was split at. */
  shard?: { index: number; count: number; depth: number };
  /** For a share with `--count-traces`: a digest of each trace it counted (merged as a set). */
  traceDigests?: string[];
}

export function printExploreReport(io: Io, r: ExploreReport, json: boolean): void {
  if (json) {
    io.out(JSON.stringify(r, null, 2));
    return;
  }
  const bound =
    r.preemptionBound !== null ? `preemption bound ${r.preemptionBound}` : "no preemption bound";
  const search =
    r.algorithm === "optimal"
      ? r.splitDepth === null
        ? "optimal DPOR"
        : `optimal DPOR below depth ${r.splitDepth}, sleep sets above`
      : r.algorithm === "sleep"
        ? "sleep sets"
        : "no reduction";
  io.out(
    `scenario    ${r.scenario}  (backend ${r.backend}, strategy ${r.strategy}${r.unsafeNonAtomicSet ? ", unsafe non-atomic set" : ""}${r.tdxHugePages ? ", TDX huge pages" : ""}, ${bound}, ${search})`,
  );
  io.out(
    `explored    ${grouped(r.schedules)} schedules, ${grouped(r.steps)} steps in ${r.seconds.toFixed(2)} s${r.threads > 1 ? ` on ${r.threads} threads` : ""} (${grouped(r.schedulesPerSecond)} schedules/s)`,
  );
  const traces = r.traces === null ? "" : `, ${grouped(r.traces)} distinct traces`;
  io.out(
    `complete    ${grouped(r.complete)} schedules ran to the end${traces}; ${grouped(r.cut)} were cut short by the sleep sets or the bound${r.unfair > 0 ? `; ${grouped(r.unfair)} starved a task and were dropped as unfair` : ""}`,
  );
  io.out(
    `reduction   skipped ${grouped(r.skippedByReduction)} branches that only reorder independent steps; the bound cut ${grouped(r.prunedByBound)}`,
  );
  if (typeof r.otherStates === "number")
    io.out(
      `states      ${grouped(r.otherStates)} more checked: those other orders of the same steps pass through (--every-state)`,
    );
  const v = r.violation;
  if (v) {
    io.out(
      `violation   in schedule ${v.schedule}${v.foundBy === undefined ? "" : ` of shard ${v.foundBy}`}, after ${v.steps} steps:`,
    );
    for (const x of v.violations) io.out(`  [${x.check}] step ${x.step}: ${x.message}`);
    if (v.file !== null)
      io.out(`schedule    written to ${v.file}; replay it with: tdpemu replay ${v.file}`);
    else
      io.out(
        `schedule    not written (see above); save these lines as a .json file and replay it with tdpemu replay:\n${JSON.stringify(v.scheduleFile, null, 1)}`,
      );
  } else {
    io.out(`result      ${resultText(r)}`);
  }
}

/**
 * How a search without a violation ended: stopped by --max-schedules, bounded (every schedule
 * within the preemption bound ran, but the bound cut branches) or exhausted.
 */
export function searchEnd(r: ExploreReport): "stopped" | "bounded" | "exhausted" {
  return !r.exhausted ? "stopped" : r.prunedByBound > 0 ? "bounded" : "exhausted";
}

/** The result line of a search without a violation (the text report's and the HTML report's). */
export function resultText(r: ExploreReport): string {
  switch (searchEnd(r)) {
    case "stopped":
      return (
        `no violation in the first ${grouped(r.schedules)} schedules; ` +
        "the space is not exhausted (--max-schedules)"
      );
    case "bounded":
      return (
        `no violation in any schedule of at most ${r.preemptionBound} preemptions ` +
        "(all of them ran); " +
        `the bound cut ${grouped(r.prunedByBound)} branches, so the space beyond it is not exhausted ` +
        "(leave out --preemption-bound to explore it)"
      );
    case "exhausted":
      // A reduced search checks the states its schedules pass through; another order of a
      // trace's independent steps passes through others (`--every-state` checks them too).
      return typeof r.otherStates === "number" || r.algorithm === "none"
        ? "no violation in any state; the space is exhausted"
        : "no violation; the space is exhausted (in the states its schedules passed; --every-state checks every state)";
  }
}
