/**
 * `tdpemu explore --jobs N`: one exploration on N worker threads. Each thread runs the whole
 * command as a shard of the search (`ExploreSplit`) whose subtrees are not fixed in advance: a
 * thread takes each subtree it reaches that no other thread has taken yet (one compare-and-swap
 * on a shared array), so a thread that finishes its subtree early takes the next ones, and the
 * work spreads however unevenly the subtrees are sized. Their reports are merged as
 * `explore-merge` merges shards: the same counts, traces and first violation as one thread.
 *
 * Once a thread has found a violation, no thread takes a subtree that comes after it in the
 * search: the subtrees before it are still explored (one of them may hold the violation the
 * search meets first), the rest are not.
 */
import { fileURLToPath } from "node:url";
import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads";
import type { ExploreProgress } from "@tdpemu/core";
import type { Io } from "../io.js";
import { UsageError } from "../usage-error.js";
import { mergeShares, printMerged } from "./explore-merge.js";
import type { ExploreJob } from "./explore.js";
import type { ExploreReport } from "./explore-report.js";

/** Subtrees the shared array has a slot for; past it each thread takes every N-th (as --shard). */
const CLAIM_SLOTS = 1 << 20;
/** Slot 0: the least position of a violation found so far. */
const BEST = 0;

interface JobData {
  kind: "tdpemu-explore-job";
  args: string[];
  index: number;
  count: number;
  claims: SharedArrayBuffer;
}

type JobMessage =
  { progress: ExploreProgress } | { done: { code: number; report: string } } | { failed: string };

/** The arguments of the threads: the command's, without --jobs, --out and --json (the main thread merges and prints). */
function jobArgs(args: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--") {
      out.push(...args.slice(i));
      break;
    }
    if (a === "--jobs" || a === "--out") i++;
    else if (!a.startsWith("--jobs=") && !a.startsWith("--out=") && a !== "--json") out.push(a);
  }
  return out;
}

export async function runExploreJobs(
  args: string[],
  jobs: number,
  out: string,
  json: boolean,
  io: Io,
): Promise<number> {
  // The threads start where the command starts: the bundle this code is part of, or next to
  // the unbundled build, its cli.js (from the TypeScript sources, as in tests, there is none).
  const here = fileURLToPath(import.meta.url);
  const entry = here.endsWith(".mjs")
    ? here
    : here.endsWith(".js")
      ? fileURLToPath(new URL("../cli.js", import.meta.url))
      : null;
  if (entry === null)
    throw new UsageError("explore: --jobs: needs the built command (packages/tui/dist/tdpemu.mjs)");
  const claims = new SharedArrayBuffer(4 * CLAIM_SLOTS);
  new Int32Array(claims)[BEST] = 0x7fffffff;
  const latest: ExploreProgress[] = [];
  let lastPrinted = performance.now();
  const workers: Worker[] = [];
  const all = Promise.all(
    Array.from(
      { length: jobs },
      (_, index) =>
        new Promise<string>((resolve, reject) => {
          const data: JobData = {
            kind: "tdpemu-explore-job",
            args: jobArgs(args),
            index,
            count: jobs,
            claims,
          };
          const w = new Worker(entry, { workerData: data });
          workers.push(w);
          w.on("message", (m: JobMessage) => {
            if ("progress" in m) {
              latest[index] = m.progress;
              const now = performance.now();
              if (now - lastPrinted >= 2000) {
                lastPrinted = now;
                const sum = (f: "schedules" | "steps") =>
                  latest.reduce((a, p) => a + (p?.[f] ?? 0), 0);
                io.err(
                  `explored ${sum("schedules").toLocaleString("en-US")} schedules, ${sum("steps").toLocaleString("en-US")} steps, on ${jobs} threads`,
                );
              }
            } else if ("done" in m) resolve(m.done.report);
            else reject(new Error(`explore --jobs: thread ${index}: ${m.failed}`));
          });
          w.on("error", reject);
          // After its report, a thread's exit changes nothing; before it, it is the thread's failure.
          w.on("exit", (code) =>
            reject(
              new Error(
                `explore --jobs: thread ${index} ended (exit code ${code}) without its report`,
              ),
            ),
          );
        }),
    ),
  );
  let reports: string[];
  try {
    reports = await all;
  } catch (e) {
    // One thread failed: the others' work is moot, and they would keep the process alive.
    await Promise.all(workers.map((w) => w.terminate()));
    throw e;
  }
  const shares = reports.map((text) => ({ r: JSON.parse(text) as ExploreReport }));
  return printMerged(io, mergeShares(shares), out, json);
}

/** Whether this thread is one of `explore --jobs`'s (then `runExploreJob` is its whole work). */
export function isExploreJob(): boolean {
  return !isMainThread && (workerData as JobData | null)?.kind === "tdpemu-explore-job";
}

/** A thread of `explore --jobs`: the command as a shard that claims its subtrees. */
export async function runExploreJob(
  explore: (args: string[], io: Io, job: ExploreJob) => Promise<number>,
): Promise<void> {
  const data = workerData as JobData;
  const claims = new Int32Array(data.claims);
  const post = (m: JobMessage) => parentPort!.postMessage(m);
  const text: string[] = [];
  try {
    const code = await explore(
      data.args,
      { out: (t) => text.push(t), err: () => {} },
      {
        index: data.index,
        count: data.count,
        owns: (i) => {
          // Nothing after a violation found (positions: 2i inside subtree i, 2i - 1 before it).
          if (2 * i > Atomics.load(claims, BEST)) return false;
          if (i + 1 >= CLAIM_SLOTS) return i % data.count === data.index;
          return Atomics.compareExchange(claims, i + 1, 0, data.index + 1) === 0;
        },
        found: (position) => {
          for (let b = Atomics.load(claims, BEST); position < b; b = Atomics.load(claims, BEST)) {
            if (Atomics.compareExchange(claims, BEST, b, position) === b) break;
          }
        },
        progress: (p) => post({ progress: p }),
      },
    );
    post({ done: { code, report: text.join("\n") } });
  } catch (e) {
    post({ failed: e instanceof Error ? e.message : String(e) });
  }
}
