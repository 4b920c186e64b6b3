/**
 * The fuzzer behind `tdpemu fuzz` (`pnpm fuzz`): every input it makes goes through the command
 * as a user's would (`main`, in this process), and each answer is checked:
 *
 * - the exit code is 0, 1 (a violation) or 2 (bad input, a refusal), never an internal error;
 * - with exit 2, stderr is one line that starts with `tdpemu: `, with no stack trace;
 * - no warning reaches the process's stderr (Node's, or a library's, beside the one line);
 * - a random valid workload ends without a violation (exit 1 there is a bug of the model);
 * - the same input gives the same answer again (stdout, stderr and code), byte for byte;
 * - time and heap per case are measured; a case over `slowMs` is reported as slow.
 *
 * A checked-in corpus of malformed files goes first, then, until the budget is spent, random
 * valid workloads on every backend, files broken from them, and command lines that misuse the
 * CLI. A case that hangs outright stops the fuzzer with it; the time limit of the caller (CI's,
 * or the shell's) is what finds those.
 */
import { copyFileSync, existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { basename, join, sep } from "node:path";
import { Prng } from "@tdpemu/core";
import type { Io } from "../io.js";
import { malformed, misuse, randomWorkload } from "./generate.js";

export interface FuzzOptions {
  seed: number;
  budgetMs: number;
  /** A folder of files each run as `run <file>` (and `replay <file>` for .json). */
  corpus?: string;
  /** Where generated files go. */
  dir: string;
  slowMs?: number;
  /** Told of each case before it runs (`--verbose`): the last one named is the one that hangs. */
  onCase?: (kind: string, argv: string[]) => void;
  /** The command, as `main` (passed in, so that this module does not import the one that imports it). */
  main: (argv: string[], io: Io) => Promise<number>;
}

export interface FuzzFinding {
  kind: string;
  argv: string[];
  what: string;
}

export interface FuzzReport {
  cases: number;
  byKind: Record<string, number>;
  exits: Record<string, number>;
  crashes: FuzzFinding[];
  /** Valid workloads that ended with a violation: the model broke its own invariants. */
  violations: FuzzFinding[];
  nondeterministic: FuzzFinding[];
  slow: FuzzFinding[];
  /** The slowest case, in ms, and the largest heap seen, in MiB. */
  maxMs: number;
  maxHeapMiB: number;
  /** The largest input accepted (exit 0 or 1), in bytes, and how long it took. */
  largestAccepted: { bytes: number; ms: number; file: string } | null;
  seconds: number;
}

interface Answer {
  code: number | "crash";
  /** Process warnings emitted while the case ran. */
  warnings: string[];
  out: string;
  err: string;
  ms: number;
}

async function ask(main: FuzzOptions["main"], argv: string[]): Promise<Answer> {
  const out: string[] = [];
  const err: string[] = [];
  const io: Io = { out: (t) => out.push(t), err: (t) => err.push(t) };
  const warnings: string[] = [];
  const onWarning = (w: Error) => warnings.push(w.message);
  process.on("warning", onWarning);
  const t0 = performance.now();
  let code: number | "crash";
  try {
    code = await main(argv, io);
  } catch (e) {
    code = "crash";
    err.push(`internal error: ${e instanceof Error ? e.stack : String(e)}`);
  }
  const ms = performance.now() - t0;
  // `process.emitWarning` delivers on the next tick.
  await new Promise((r) => setImmediate(r));
  process.off("warning", onWarning);
  return { code, warnings, out: out.join("\n"), err: err.join("\n"), ms };
}

/**
 * An answer without what depends on the machine's speed (rates and whether they are shown at
 * all, seconds, the compare table's ms row and the column widths it sets): what must be the
 * same on a rerun.
 */
export function withoutTimes(text: string): string {
  return text
    // explore's progress lines come every 2 s: how many depends on the machine's load.
    .replace(/^explored [\d,]+ schedules, [\d,]+ steps, [\d,]+\/s(\n|$)/gm, "")
    // A rate is shown only when the run took long enough (summary.ts), so its presence depends
    // on the machine's load as much as its value does.
    .replace(/; [\d,.]+ (faults|schedules|steps)\/s/g, "")
    .replace(/[\d,.]+(e[+-]?\d+)?( ?)(faults\/s|schedules\/s|steps\/s|ms\b|s\b)/g, "#$2$3")
    .replace(/"(ms|seconds|schedulesPerSecond|steps\/s|faults\/s|value)": "?[\d.e+-]+"?/g, '"$1": #')
    .replace(/^(ms\s+).*$/gm, "$1#")
    // A table pads its columns to the widest cell, the ms row's included: compare what the
    // cells say, not how wide they are.
    .replace(/[ \t]+/g, " ");
}

/** The first violation of a `run --json` report. */
function firstViolation(out: string): string {
  try {
    const v = (JSON.parse(out) as { invariants: { violations: { check: string; message: string }[] } }).invariants.violations[0];
    return v === undefined ? "exit 1" : `[${v.check}] ${v.message}`;
  } catch {
    return "exit 1";
  }
}

/** What is wrong with an answer, or null. */
function judge(a: Answer): string | null {
  if (a.code === "crash") return a.err.split("\n").slice(0, 3).join(" | ");
  if (a.warnings.length > 0) return `a warning on stderr: ${a.warnings[0]!.slice(0, 200)}`;
  if (a.code !== 0 && a.code !== 1 && a.code !== 2) return `exit ${a.code}`;
  if (/internal error|\n\s+at /.test(a.err)) return `a stack trace: ${a.err.split("\n").slice(0, 2).join(" | ")}`;
  if (a.code === 2 && (a.err.split("\n").length !== 1 || !a.err.startsWith("tdpemu: "))) return `not one line: ${JSON.stringify(a.err.slice(0, 200))}`;
  return null;
}

export async function fuzz(opts: FuzzOptions): Promise<FuzzReport> {
  const r = new Prng(opts.seed);
  const slowMs = opts.slowMs ?? 10_000;
  const report: FuzzReport = {
    cases: 0, byKind: {}, exits: {}, crashes: [], violations: [], nondeterministic: [], slow: [], maxMs: 0, maxHeapMiB: 0, largestAccepted: null, seconds: 0,
  };
  mkdirSync(opts.dir, { recursive: true });
  const t0 = performance.now();

  const check = async (kind: string, argv: string[], bytes = 0): Promise<void> => {
    opts.onCase?.(kind, argv);
    const a = await ask(opts.main, argv);
    const b = await ask(opts.main, argv);
    report.cases++;
    report.byKind[kind] = (report.byKind[kind] ?? 0) + 1;
    report.exits[String(a.code)] = (report.exits[String(a.code)] ?? 0) + 1;
    report.maxMs = Math.max(report.maxMs, a.ms, b.ms);
    report.maxHeapMiB = Math.max(report.maxHeapMiB, process.memoryUsage().heapUsed / 2 ** 20);
    const bad = judge(a);
    if (bad !== null) report.crashes.push({ kind, argv, what: bad });
    else if (kind === "workload" && a.code === 1) report.violations.push({ kind, argv, what: firstViolation(a.out) });
    else if (a.code !== b.code || withoutTimes(a.out) !== withoutTimes(b.out) || withoutTimes(a.err) !== withoutTimes(b.err)) {
      const same = (x: string, y: string) => (withoutTimes(x) === withoutTimes(y) ? "same" : "differs");
      report.nondeterministic.push({ kind, argv, what: `exit ${a.code} then ${b.code}; stdout ${same(a.out, b.out)}; stderr ${same(a.err, b.err)}` });
    }
    if (a.ms > slowMs) report.slow.push({ kind, argv, what: `${Math.round(a.ms)} ms` });
    if ((a.code === 0 || a.code === 1) && bytes > (report.largestAccepted?.bytes ?? -1)) report.largestAccepted = { bytes, ms: a.ms, file: argv[1] ?? "" };
  };

  if (opts.corpus !== undefined) {
    for (const name of readdirSync(opts.corpus).sort()) {
      const f = join(opts.corpus, name);
      await check("corpus", ["run", f]);
      if (name.endsWith(".json")) await check("corpus", ["replay", f]);
    }
  }

  const backends = ["tdx", "sev", "plain", "cca"];
  for (let i = 0; performance.now() - t0 < opts.budgetMs; i++) {
    const backend = backends[i % backends.length]!;
    const workload = randomWorkload(r, backend);
    switch (r.below(3)) {
      case 0: {
        const f = join(opts.dir, `workload-${i}.yaml`);
        writeFileSync(f, workload);
        await check("workload", ["run", f, "--json", "--check", "op"], workload.length);
        break;
      }
      case 1: {
        const f = join(opts.dir, `malformed-${i}.yaml`);
        const text = malformed(r, workload);
        writeFileSync(f, text);
        await check("malformed", ["run", f], text.length);
        break;
      }
      default:
        await check("misuse", misuse(r, opts.dir));
    }
  }
  report.seconds = (performance.now() - t0) / 1000;
  return report;
}

/**
 * Writes `count` malformed files into `dir`: scenarios broken from random workloads and from
 * `scenarios` (texts), and schedule files broken from `schedules` (texts). For checking in as the
 * fuzzer's corpus.
 */
export function writeCorpus(dir: string, seed: number, count: number, scenarios: string[], schedules: string[]): string[] {
  const r = new Prng(seed);
  mkdirSync(dir, { recursive: true });
  const written: string[] = [];
  for (let i = 0; i < count; i++) {
    const kind = r.below(4);
    const json = kind === 3 && schedules.length > 0;
    const base = json ? schedules[r.below(schedules.length)]! : kind === 0 ? randomWorkload(r, ["tdx", "sev", "plain", "cca"][r.below(4)]!) : scenarios[r.below(scenarios.length)]!;
    const name = `${String(i).padStart(3, "0")}-${json ? "schedule.json" : "scenario.yaml"}`;
    writeFileSync(join(dir, name), malformed(r, base));
    written.push(name);
  }
  return written;
}

/** Copies the files under `dir` that the findings' command lines name into `to`; returns how many. */
export function keepFindingInputs(findings: { argv: string[] }[], dir: string, to: string): number {
  let n = 0;
  for (const f of findings) {
    for (const a of f.argv) {
      if (!a.startsWith(dir + sep) || !existsSync(a)) continue;
      mkdirSync(to, { recursive: true });
      copyFileSync(a, join(to, basename(a)));
      n++;
    }
  }
  return n;
}
