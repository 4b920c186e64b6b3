/**
 * `tdpemu fuzz [--budget s] [--seed n] [--corpus dir] [--json]` (`pnpm fuzz`): the fuzzer of
 * `fuzz/fuzz.ts`, and `--write-corpus dir [--count n]` to make a corpus of malformed files.
 * Exit 0 when every case was answered properly, 1 when a case crashed, warned, was not
 * deterministic or was slow, or a valid workload ended in a violation (each listed, and the
 * generated inputs of those cases kept in `fuzz-findings/`).
 */
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { countOption, parseCommandArgs } from "../cli-options.js";
import { fuzz, keepFindingInputs, writeCorpus } from "../fuzz/fuzz.js";
import type { Io } from "../io.js";
import { UsageError } from "../usage-error.js";

const DEFAULT_CORPUS = "fuzz/corpus";
/** Where `fuzz` keeps the inputs of its findings (relative to the current folder). */
const FINDINGS_DIR = "fuzz-findings";

export async function fuzzCommand(
  args: string[],
  io: Io,
  main: (argv: string[], io: Io) => Promise<number>,
): Promise<number> {
  const { values, positionals } = parseCommandArgs("fuzz", args, {
    budget: { type: "string" },
    seed: { type: "string" },
    corpus: { type: "string" },
    json: { type: "boolean" },
    verbose: { type: "boolean" },
    "write-corpus": { type: "string" },
    count: { type: "string" },
  });
  if (positionals.length > 0)
    throw new UsageError(
      `fuzz: takes no file (got ${positionals.join(" ")}); --corpus names a folder`,
    );
  const seed = countOption("fuzz", "seed", values.seed, 0) ?? 1;
  if (values["write-corpus"] !== undefined) {
    const count = countOption("fuzz", "count", values.count, 1) ?? 220;
    const scenarios = readdirSync("scenarios")
      .filter((f) => f.endsWith(".yaml"))
      .map((f) => readFileSync(join("scenarios", f), "utf8"));
    const dir = mkdtempSync(join(tmpdir(), "tdpemu-corpus-"));
    try {
      // Schedules to break: recorded from two scenarios.
      for (const s of ["race-shared-table", "zap-refault"])
        await main(["run", `scenarios/${s}.yaml`, "--schedule-out", join(dir, `${s}.json`)], {
          out: () => {},
          err: () => {},
        });
      const schedules = readdirSync(dir).map((f) => readFileSync(join(dir, f), "utf8"));
      const written = writeCorpus(values["write-corpus"], seed, count, scenarios, schedules);
      io.out(`wrote ${written.length} malformed files to ${values["write-corpus"]}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    return 0;
  }
  const budget = countOption("fuzz", "budget", values.budget, 0) ?? 60;
  const corpus = values.corpus ?? (existsSync(DEFAULT_CORPUS) ? DEFAULT_CORPUS : undefined);
  if (corpus !== undefined && !existsSync(corpus))
    throw new UsageError(`fuzz: --corpus: no such folder '${corpus}'`);
  const dir = mkdtempSync(join(tmpdir(), "tdpemu-fuzz-"));
  try {
    const onCase = values.flags.has("verbose")
      ? (kind: string, argv: string[]) => io.err(`${kind}: tdpemu ${argv.join(" ")}`)
      : undefined;
    const r = await fuzz({ seed, budgetMs: budget * 1000, corpus, dir, main, onCase });
    const findings = [
      ...r.crashes.map((f) => ({ ...f, is: "crash" })),
      ...r.violations.map((f) => ({ ...f, is: "violation" })),
      ...r.nondeterministic.map((f) => ({ ...f, is: "nondeterministic" })),
      ...r.slow.map((f) => ({ ...f, is: "slow" })),
    ];
    if (values.flags.has("json")) io.out(JSON.stringify({ seed, ...r }, null, 2));
    else {
      io.out(
        `fuzz        seed ${seed}, ${r.cases} cases in ${r.seconds.toFixed(1)} s: ${Object.entries(
          r.byKind,
        )
          .map(([k, n]) => `${k} ${n}`)
          .join(", ")}`,
      );
      io.out(
        `exits       ${Object.entries(r.exits)
          .map(([k, n]) => `${k}: ${n}`)
          .join(", ")}`,
      );
      io.out(
        `found       ${r.crashes.length} crashes, ${r.violations.length} violations of valid workloads, ${r.slow.length} slow, ${r.nondeterministic.length} nondeterministic`,
      );
      io.out(
        `costs       slowest case ${Math.round(r.maxMs)} ms, largest heap ${Math.round(r.maxHeapMiB)} MiB` +
          (r.largestAccepted
            ? `; largest input accepted ${r.largestAccepted.bytes} bytes in ${Math.round(r.largestAccepted.ms)} ms`
            : ""),
      );
      for (const f of findings)
        io.out(`  [${f.is}] ${f.kind}: tdpemu ${f.argv.join(" ")}: ${f.what}`);
    }
    // The generated inputs go with the temporary folder: keep the ones that found something.
    const kept = keepFindingInputs(findings, dir, FINDINGS_DIR);
    if (kept > 0)
      io.err(
        `tdpemu: fuzz: the ${kept} input file(s) of the findings are kept in ${FINDINGS_DIR}/`,
      );
    return findings.length > 0 ? 1 : 0;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
