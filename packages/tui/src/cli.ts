#!/usr/bin/env node
import v8 from "node:v8";
import "reflect-metadata";
import { main } from "./main.js";
import { exploreCommand } from "./commands/explore.js";
import { isExploreJob, runExploreJob } from "./commands/explore-jobs.js";
import { isCompareJob, runCompareJob } from "./compare-job.js";
import { processIo } from "./io.js";

// V8 inlines callees into an optimized function until their bytecode adds up to 920 bytes. The
// fault path is many small functions (one per kernel function it models), and that budget runs
// out a few calls deep: each call left is a few nanoseconds, and the SPTE halves it passes
// (uint32 above 2^31) are boxed into heap numbers. With a larger budget V8 inlines more of it:
// measured +15 % faults/s on plain and +30 % on SEV and TDX, with the explorer and the UI frame
// unchanged (`tdpemu bench`). Raising the per-function limit as well made it slower. Compilation
// reads the flag, so setting it here, before any hot code has run, applies it to the whole run.
v8.setFlagsFromString("--max-inlined-bytecode-size-cumulative=4000");

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
