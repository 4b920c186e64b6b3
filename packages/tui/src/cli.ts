#!/usr/bin/env node
import v8 from "node:v8";
import { isMainThread } from "node:worker_threads";
import "reflect-metadata";
import { main } from "./main.js";
import { exploreCommand } from "./commands/explore.js";
import { isExploreJob, runExploreJob } from "./commands/explore-jobs.js";
import { isCompareJob, runCompareJob } from "./compare-job.js";
import { processIo } from "./io.js";
import { inlineForFaultPath } from "./v8-inlining.js";

// The fault path's inlining budget (`v8-inlining.ts`), before any hot code has run; a worker
// thread leaves the flag, which is the process's, as the main thread set it.
if (isMainThread) inlineForFaultPath();

// V8 allocates objects from an allocation site straight into the old generation once most of
// them have survived a young collection ("pretenuring"). The explorer builds a VM for every
// schedule and drops it when the schedule ends, a fraction of a millisecond later; yet its sites
// were all tenured within the first schedules (those run slowly, before compilation, and an old
// object keeps every young one it points to alive at the next young collection, so each tenured
// site tenures the next). Each schedule then left about 23 KiB in the old generation, freed only
// by full collections, and the kernel's page zeroing for the old generation's growth was a sixth
// of a long search's wall time; two searches side by side ran at 1.5x the throughput of one.
// Without pretenuring (`node --trace-gc-nvp ... explore scenarios/tdx-race-2m-4k-convert.yaml`,
// summing `promoted=`): 1.9 KiB a schedule, the search 1.16x faster over 150,000 schedules, and
// two side by side at 1.9x. The fault benchmarks, whose VM lives for the whole run, do not move.
v8.setFlagsFromString("--no-allocation-site-pretenuring");

// A reader that stops reading (`tdpemu replay s.json --steps | head -1`) is not an error of the
// run: the output ends there, quietly, as a command killed by SIGPIPE would.
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (e: NodeJS.ErrnoException) => {
    if (e.code === "EPIPE") process.exit(0);
    throw e;
  });
}

// The same module is the entry of `explore --jobs`'s worker threads, and of the UI's comparison
// thread: there it runs that job.
if (isExploreJob()) void runExploreJob(exploreCommand);
else if (isCompareJob()) void runCompareJob();
else
  main(process.argv.slice(2), processIo).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`tdpemu: internal error: ${e instanceof Error ? e.stack : String(e)}\n`);
      process.exitCode = 70;
    },
  );
