/**
 * `tdpemu explore-merge <shard.json>...`: the reports of the N shares of one exploration
 * (`tdpemu explore --shard K/N`, run anywhere: other processes, other machines) put together
 * into the report one `tdpemu explore` would have given. The shares' counts add up to the
 * whole search's (see `ExploreSplit`), their traces are merged as a set, and of the violations
 * they found the first in the order of the search is the one reported, with its schedule.
 */
import { writeFileSync } from "node:fs";
import { basename } from "node:path";
import { readInputFile, type ExploreViolation } from "@tdpemu/core";
import { parseCommandArgs } from "../cli-options.js";
import type { Io } from "../io.js";
import { UsageError } from "../usage-error.js";
import { type ExploreReport, printExploreReport } from "./explore-report.js";

/** The fields every share of one exploration must agree on. */
const SAME = [
  "scenario",
  "backend",
  "strategy",
  "unsafeNonAtomicSet",
  "tdxHugePages",
  "reduction",
  "algorithm",
  "preemptionBound",
] as const;
/** More shares than this are no exploration anyone ran (and a count from a file is not trusted). */
export const MAX_SHARDS = 65536;
const COUNTS = [
  "schedules",
  "steps",
  "complete",
  "cut",
  "unfair",
  "skippedByReduction",
  "prunedByBound",
] as const;

export function exploreMergeCommand(args: string[], io: Io): number {
  const { values, positionals } = parseCommandArgs("explore-merge", args, {
    json: { type: "boolean" },
    out: { type: "string" },
  });
  if (positionals.length === 0)
    throw new UsageError(
      "explore-merge: which shard reports? (tdpemu explore-merge shard-0.json shard-1.json ...)",
    );
  const shares = positionals.map((f) => ({ file: f, r: readShare(f) }));
  const first = shares[0]!;
  const { count, depth } = first.r.shard!;
  const seen = new Map<number, string>();
  for (const { file, r } of shares) {
    if (r.shard!.count !== count || r.shard!.depth !== depth) {
      throw new UsageError(
        `explore-merge: ${file} is shard ${r.shard!.index}/${r.shard!.count} split at depth ${r.shard!.depth}, ${first.file} of ${count} split at depth ${depth}: not shares of one exploration`,
      );
    }
    for (const k of SAME) {
      if (r[k] !== first.r[k])
        throw new UsageError(
          `explore-merge: ${file} has ${k} ${JSON.stringify(r[k])}, ${first.file} ${JSON.stringify(first.r[k])}: not shares of one exploration`,
        );
    }
    if ((r.traceDigests === undefined) !== (first.r.traceDigests === undefined)) {
      throw new UsageError(
        `explore-merge: ${file} and ${first.file}: one counted traces (--count-traces) and the other did not`,
      );
    }
    const twice = seen.get(r.shard!.index);
    if (twice !== undefined)
      throw new UsageError(
        `explore-merge: shard ${r.shard!.index}/${count} is given twice (${twice}, ${file})`,
      );
    seen.set(r.shard!.index, file);
  }
  if (shares.length !== count) {
    const missing: number[] = [];
    for (let i = 0; i < count && missing.length < 10; i++) if (!seen.has(i)) missing.push(i);
    const more =
      count - shares.length > missing.length
        ? ` and ${count - shares.length - missing.length} more`
        : "";
    throw new UsageError(
      `explore-merge: shard${missing.length > 1 ? "s" : ""} ${missing.map((i) => `${i}/${count}`).join(", ")}${more} missing: every share of the ${count} is needed`,
    );
  }
  // A share that stopped at --max-schedules without a violation may hold one that comes first.
  for (const { file, r } of shares) {
    if (!r.exhausted && r.violation === null)
      io.err(
        `tdpemu: explore-merge: ${file} stopped (--max-schedules) before its share was explored: a violation reported here may not be the first`,
      );
  }

  return printMerged(
    "explore-merge",
    io,
    mergeShares(shares),
    values.out,
    values.flags.has("json"),
  );
}

/**
 * The shares' reports as one: counts summed, traces as one set, exhausted if all are, and the
 * violation that comes first in the search's order (with the share that found it).
 */
export function mergeShares(shares: readonly { r: ExploreReport }[]): ExploreReport {
  const first = shares[0]!;
  const count = first.r.shard!.count;
  const merged: ExploreReport = { ...first.r };
  delete merged.shard;
  delete merged.traceDigests;
  for (const k of COUNTS) merged[k] = shares.reduce((a, s) => a + s.r[k], 0);
  merged.traces =
    first.r.traceDigests === undefined
      ? null
      : new Set(shares.flatMap((s) => s.r.traceDigests!)).size;
  merged.threads = shares.reduce((a, s) => a + s.r.threads, 0);
  // The shares ran side by side: the exploration took as long as the longest.
  merged.seconds = Math.max(...shares.map((s) => s.r.seconds));
  merged.schedulesPerSecond =
    merged.seconds > 0 ? Math.round(merged.schedules / merged.seconds) : merged.schedules;
  const found = shares
    .filter((s) => s.r.violation !== null)
    .sort((a, b) => a.r.violation!.position! - b.r.violation!.position!)[0];
  merged.exhausted = found === undefined && shares.every((s) => s.r.exhausted);
  merged.spaceExhausted = merged.exhausted && merged.prunedByBound === 0;
  merged.violation =
    found === undefined
      ? null
      : { ...found.r.violation!, file: null, foundBy: `${found.r.shard!.index}/${count}` };
  return merged;
}

/**
 * Writes the merged violation's schedule to `out` (default: named for the scenario), prints the
 * report; the exit code. `command` names what failed if the schedule cannot be written.
 */
export function printMerged(
  command: "explore" | "explore-merge",
  io: Io,
  merged: ExploreReport,
  out: string | undefined,
  json: boolean,
): number {
  const v = merged.violation;
  if (v !== null) {
    const schedule = v.scheduleFile as { scenario: string };
    const path =
      out ??
      `${basename(schedule.scenario).replace(/\.(ya?ml|json)$/i, "")}.violation.schedule.json`;
    delete v.position;
    try {
      writeFileSync(path, JSON.stringify(schedule, null, 1) + "\n");
      v.file = path;
      delete v.scheduleFile;
    } catch (e) {
      io.err(
        `tdpemu: ${command}: --out: cannot write the schedule to '${path}': ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}; the schedule is printed instead`,
      );
    }
  }
  printExploreReport(io, merged, json);
  return v ? 1 : 0;
}

/** A shard's report, checked field by field: anything else is named with what was expected. */
function readShare(file: string): ExploreReport {
  const text = readInputFile(
    file,
    "shard report",
    (why) => new UsageError(`explore-merge: ${file}: cannot read the shard report: ${why}`),
  );
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new UsageError(
      `explore-merge: ${file}: not valid JSON: ${(e as Error).message.split("\n")[0]} (expected the output of tdpemu explore --shard K/N)`,
    );
  }
  const bad = (what: string, expected: string, got: unknown) =>
    new UsageError(
      `explore-merge: ${file}: ${what}: expected ${expected}, got ${JSON.stringify(got) ?? String(got)}`,
    );
  if (typeof data !== "object" || data === null || Array.isArray(data))
    throw bad("the report", "an object (the output of tdpemu explore --shard K/N)", data);
  const r = data as Record<string, unknown>;
  const shard = r.shard as Record<string, unknown> | undefined;
  if (typeof shard !== "object" || shard === null)
    throw bad('"shard"', "{ index, count, depth } (a report of tdpemu explore --shard K/N)", shard);
  const whole = (v: unknown, min: number) => Number.isSafeInteger(v) && (v as number) >= min;
  if (
    !whole(shard.count, 1) ||
    (shard.count as number) > MAX_SHARDS ||
    !whole(shard.index, 0) ||
    (shard.index as number) >= (shard.count as number) ||
    !whole(shard.depth, 1)
  ) {
    throw bad('"shard"', `whole numbers, 0 <= index < count <= ${MAX_SHARDS}, depth >= 1`, shard);
  }
  for (const k of COUNTS)
    if (!whole(r[k], 0)) throw bad(`"${k}"`, "a whole number of at least 0", r[k]);
  for (const k of ["scenario", "backend", "strategy"] as const)
    if (typeof r[k] !== "string") throw bad(`"${k}"`, "a string", r[k]);
  if (r.algorithm !== "optimal" && r.algorithm !== "sleep" && r.algorithm !== "none")
    throw bad('"algorithm"', '"optimal", "sleep" or "none"', r.algorithm);
  for (const k of ["unsafeNonAtomicSet", "tdxHugePages", "reduction", "exhausted"] as const)
    if (typeof r[k] !== "boolean") throw bad(`"${k}"`, "true or false", r[k]);
  if (r.preemptionBound !== null && !whole(r.preemptionBound, 0))
    throw bad('"preemptionBound"', "a whole number or null", r.preemptionBound);
  if (typeof r.seconds !== "number" || !(r.seconds >= 0))
    throw bad('"seconds"', "a number of at least 0", r.seconds);
  // A shard's report from before the field was added ran on one thread, split at its depth.
  r.threads ??= 1;
  r.splitDepth ??= (r.shard as { depth: number }).depth;
  if (r.splitDepth !== (r.shard as { depth: number }).depth)
    throw bad('"splitDepth"', "the shard's depth", r.splitDepth);
  if (!whole(r.threads, 1)) throw bad('"threads"', "a whole number of at least 1", r.threads);
  if (
    r.traceDigests !== undefined &&
    (!Array.isArray(r.traceDigests) || !r.traceDigests.every((d) => typeof d === "string"))
  ) {
    throw bad('"traceDigests"', "a list of strings", r.traceDigests);
  }
  const v = r.violation as Record<string, unknown> | null | undefined;
  if (v !== null) {
    if (typeof v !== "object" || v === undefined) throw bad('"violation"', "null or an object", v);
    if (typeof v.position !== "number" || !Number.isInteger(v.position))
      throw bad(
        '"violation.position"',
        "a whole number (where in the search it was found)",
        v.position,
      );
    if (!whole(v.schedule, 0) || !whole(v.steps, 0))
      throw bad('"violation"', 'whole numbers "schedule" and "steps"', v);
    if (!Array.isArray(v.violations) || !v.violations.every(isViolation))
      throw bad('"violation.violations"', "a list of { check, message, step }", v.violations);
    const sf = v.scheduleFile as Record<string, unknown> | undefined;
    if (
      typeof sf !== "object" ||
      sf === null ||
      typeof sf.scenario !== "string" ||
      sf.scenario === "" ||
      !Array.isArray(sf.choices)
    ) {
      throw bad(
        '"violation.scheduleFile"',
        'the schedule file\'s content, with "scenario" and "choices"',
        sf,
      );
    }
  }
  return r as unknown as ExploreReport;
}

function isViolation(x: unknown): x is ExploreViolation {
  const v = x as Record<string, unknown>;
  return (
    typeof x === "object" &&
    x !== null &&
    typeof v.check === "string" &&
    typeof v.message === "string" &&
    typeof v.step === "number"
  );
}
