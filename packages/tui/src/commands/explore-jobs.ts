/**
 * `tdpemu explore --jobs N`: one exploration on N threads, the main thread and N - 1 workers.
 * Each runs the whole command as a shard of the search (`ExploreSplit`) whose subtrees are not
 * fixed in advance: a thread takes each subtree it reaches that no other thread has taken yet
 * (one compare-and-swap on a shared array), so a thread that finishes its subtree early takes the
 * next ones, and the work spreads however unevenly the subtrees are sized. Their reports are
 * merged as `explore-merge` merges shards: the same counts, traces and first violation as one
 * thread.
 *
 * The main thread explores too, rather than only waiting: it has the command loaded already,
 * while a worker must load it first (on the machine of the figures in docs/explorer.md, 0.1 s
 * alone and 0.45 s beside a main thread compiling its search), and the subtrees the main thread
 * takes meanwhile are work the workers no longer wait for. Its exploration keeps it from
 * handling messages, so every thread publishes its progress in a shared array, and the main
 * thread prints the sums.
 *
 * Once a thread has found a violation, no thread takes a subtree that comes after it in the
 * search: the subtrees before it are still explored (one of them may hold the violation the
 * search meets first), the rest are not.
 *
 * `--max-schedules` caps the whole search, as with one thread: the threads take their schedules
 * from one count (`ScheduleBudget`), where shards, apart, each have their own.
 */
import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads";
import type { ExploreProgress, ExploreViolation, ScheduleBudget } from "@tdpemu/core";
import { commandEntry } from "../command-entry.js";
import type { Io } from "../io.js";
import { UsageError } from "../usage-error.js";
import { mergeShares, printMerged } from "./explore-merge.js";
import { inlineForThreads } from "../v8-inlining.js";
import type { ExploreJob } from "./explore.js";
import type { ExploreReport } from "./explore-report.js";

/** Subtrees the shared array has a slot for; past it each thread takes every N-th (as --shard). */
const CLAIM_SLOTS = 1 << 20;
/**
 * Slot 0: the least position of a violation found so far; `STOP` once a thread has failed (no
 * thread takes another subtree: the whole run fails).
 */
const BEST = 0;
const STOP = -1;
/** How often the main thread prints the threads' progress summed. */
const PROGRESS_MS = 2000;

interface JobData {
  kind: "tdpemu-explore-job";
  args: string[];
  index: number;
  count: number;
  claims: SharedArrayBuffer;
  /** Per thread, the schedules and steps it has explored (`publishProgress`). */
  progress: SharedArrayBuffer;
  /** The schedules the threads have taken, together (`scheduleBudget`). */
  taken: SharedArrayBuffer;
}

type JobMessage = { done: { code: number; report: string } } | { failed: string };

type ExploreCommand = (args: string[], io: Io, job: ExploreJob) => Promise<number>;

/** Thread `index`'s progress, where the main thread reads it (`progressLine`). */
export function publishProgress(
  shared: BigInt64Array,
  index: number,
  p: Pick<ExploreProgress, "schedules" | "steps">,
): void {
  Atomics.store(shared, 2 * index, BigInt(p.schedules));
  Atomics.store(shared, 2 * index + 1, BigInt(p.steps));
}

/**
 * The threads' progress, summed, on standard error at most every `PROGRESS_MS` of `clock`, with
 * how many are `running` (the others start late without --jobs: `runExploreJobs`).
 */
export function progressLine(
  shared: BigInt64Array,
  jobs: number,
  io: Io,
  clock: () => number = () => performance.now(),
  running: () => number = () => jobs,
): () => void {
  let last = clock();
  return () => {
    const now = clock();
    if (now - last < PROGRESS_MS) return;
    last = now;
    let schedules = 0n;
    let steps = 0n;
    for (let i = 0; i < jobs; i++) {
      schedules += Atomics.load(shared, 2 * i);
      steps += Atomics.load(shared, 2 * i + 1);
    }
    const n = running();
    io.err(
      `explored ${schedules.toLocaleString("en-US")} schedules, ${steps.toLocaleString("en-US")} steps, on ${n} thread${n === 1 ? "" : "s"}`,
    );
  };
}

/** The array the threads claim subtrees in: no subtree taken, no violation found. */
export function newClaims(): Int32Array {
  const claims = new Int32Array(new SharedArrayBuffer(4 * CLAIM_SLOTS));
  claims[BEST] = 0x7fffffff;
  return claims;
}

/** Stops every thread from taking another subtree (the run has failed). */
export function stopClaims(claims: Int32Array): void {
  Atomics.store(claims, BEST, STOP);
}

/**
 * The word the threads take their schedules from: the schedules counted, times 2^16, plus the
 * ones held by runs under way (one a thread at most, and at most `MAX_JOBS` threads).
 */
export function newTaken(): BigInt64Array {
  return new BigInt64Array(new SharedArrayBuffer(8));
}

const HELD_BITS = 16n;
const HELD = (1n << HELD_BITS) - 1n;
/** The largest cap the word holds; a larger one never stops a search anyway (2^47 schedules). */
const MAX_CAP = 2 ** 47 - 1;

/**
 * Schedules from `taken`, shared by every thread, up to `max` counted in all. A thread that finds
 * the last ones held by other threads' runs waits until one settles (a run given back frees
 * its schedule), unless `stopped` (the run has failed).
 */
export function scheduleBudget(
  taken: BigInt64Array,
  max: number,
  stopped: () => boolean,
): ScheduleBudget {
  const cap = BigInt(Math.min(max, MAX_CAP));
  return {
    take: () => {
      for (;;) {
        const w = Atomics.load(taken, 0);
        const held = w & HELD;
        if ((w >> HELD_BITS) + held < cap) {
          if (Atomics.compareExchange(taken, 0, w, w + 1n) === w) return true;
        } else if (held === 0n || stopped()) return false;
        else Atomics.wait(taken, 0, w, 10);
      }
    },
    settle: (counted) => {
      Atomics.add(taken, 0, counted ? (1n << HELD_BITS) - 1n : -1n);
      Atomics.notify(taken, 0);
    },
  };
}

/** The job of thread `index`: it claims subtrees in `claims`, takes schedules from `taken` and publishes its progress in `progress`. */
export function jobOf(
  claims: Int32Array,
  taken: BigInt64Array,
  progress: BigInt64Array,
  index: number,
  count: number,
  onProgress: () => void,
): ExploreJob {
  return {
    index,
    count,
    budget: (max) => scheduleBudget(taken, max, () => Atomics.load(claims, BEST) === STOP),
    owns: (i) => {
      // Nothing after a violation found (positions: 2i inside subtree i, 2i - 1 before it).
      if (2 * i > Atomics.load(claims, BEST)) return false;
      if (i + 1 >= CLAIM_SLOTS) return i % count === index;
      return Atomics.compareExchange(claims, i + 1, 0, index + 1) === 0;
    },
    found: (position) => {
      for (let b = Atomics.load(claims, BEST); position < b; b = Atomics.load(claims, BEST)) {
        if (Atomics.compareExchange(claims, BEST, b, position) === b) break;
      }
    },
    progress: (p) => {
      publishProgress(progress, index, p);
      onProgress();
    },
    // The main thread starts the workers from its progress calls (`runExploreJobs`).
    progressMs: index === 0 ? 100 : 2000,
  };
}

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
  explore: ExploreCommand,
  {
    startAfterMs,
    onViolation,
  }: {
    startAfterMs: number;
    /**
     * Called with the violation reported, once the report is printed: its violations and
     * choices, the file its schedule was written to (null if it could not be) and the schedules
     * the search ran.
     */
    onViolation?: (
      violations: ExploreViolation[],
      choices: number[],
      file: string | null,
      searched: number,
    ) => void;
  },
): Promise<number> {
  const entry = commandEntry();
  if (entry === null)
    throw new UsageError("explore: --jobs: needs the built command (packages/tui/dist/tdpemu.mjs)");
  // Before this thread's search is compiled, and the workers': see `inlineForThreads`.
  inlineForThreads();
  const claims = newClaims();
  const claimsBuffer = claims.buffer as SharedArrayBuffer;
  const taken = newTaken();
  const progressBuffer = new SharedArrayBuffer(16 * jobs);
  const progress = new BigInt64Array(progressBuffer);
  const workers: Worker[] = [];
  const threads: Promise<string>[] = [];
  const printProgress = progressLine(progress, jobs, io, undefined, () => 1 + threads.length);
  const startWorker = (index: number) =>
    new Promise<string>((resolve, reject) => {
      const data: JobData = {
        kind: "tdpemu-explore-job",
        args: jobArgs(args),
        index,
        count: jobs,
        claims: claimsBuffer,
        progress: progressBuffer,
        taken: taken.buffer as SharedArrayBuffer,
      };
      const worker = new Worker(entry, { workerData: data });
      workers.push(worker);
      let reported = false;
      worker.on("message", (m: JobMessage) => {
        reported = true;
        if ("done" in m) resolve(m.done.report);
        else reject(new Error(`explore --jobs: thread ${index}: ${m.failed}`));
      });
      // A thread that dies before its report fails the run: the others take no more subtrees
      // (one that failed in its search has stopped them itself). After its report, its exit
      // changes nothing.
      const died = (e: Error) => {
        if (reported) return;
        stopClaims(claims);
        reject(e);
      };
      worker.on("error", died);
      worker.on("exit", (code) =>
        died(
          new Error(`explore --jobs: thread ${index} ended (exit code ${code}) without its report`),
        ),
      );
    });
  // The workers start at once, or (without --jobs) once the main thread has explored for
  // `startAfterMs`: from its progress calls, since its exploration runs no timer. They join a
  // search already under way as any thread does, taking the subtrees no thread has taken yet.
  const t0 = performance.now();
  const startWorkers = () => {
    if (threads.length > 0 || performance.now() - t0 < startAfterMs) return;
    for (let index = 1; index < jobs; index++) {
      const thread = startWorker(index);
      // Awaited once the main thread's share is done; a failure before that is not unhandled.
      thread.catch(() => {});
      threads.push(thread);
    }
  };
  startWorkers();
  // While the main thread explores it runs no timer; once its share is done, the workers'
  // progress, until they are.
  let timer: NodeJS.Timeout | undefined;
  const mainShare = async (): Promise<ExploreReport> => {
    const { report } = await runShare(
      explore,
      jobArgs(args),
      claims,
      taken,
      progress,
      0,
      jobs,
      () => {
        startWorkers();
        printProgress();
      },
    );
    if (threads.length > 0) timer = setInterval(printProgress, PROGRESS_MS).unref();
    return report;
  };
  let reports: [ExploreReport, ...string[]];
  try {
    const main = await mainShare();
    reports = [main, ...(await Promise.all(threads))];
  } catch (e) {
    // One thread failed: the others' work is moot, and they would keep the process alive. A
    // thread busy exploring hears no message; it sees STOP at its next subtree.
    stopClaims(claims);
    await Promise.all(workers.map((w) => w.terminate()));
    throw e;
  } finally {
    clearInterval(timer);
  }
  const [main, ...others] = reports;
  const shares = [main, ...others.map((text) => JSON.parse(text) as ExploreReport)].map((r) => ({
    r,
  }));
  const merged = mergeShares(shares);
  // Explored by the main thread alone (the search ended before the others started): its
  // violation is the whole search's, counted as one thread counts.
  if (shares.length === 1 && merged.violation !== null) delete merged.violation.foundBy;
  // The budget may run out while a thread is still in a subtree before the violation found.
  if (merged.violation !== null && shares.some(({ r }) => !r.exhausted && r.violation === null))
    io.err(
      "tdpemu: explore: --max-schedules stopped a thread before its part of the search was explored: the violation reported may not be the first",
    );
  const v = merged.violation;
  const choices = v === null ? null : (v.scheduleFile as { choices: number[] }).choices;
  const code = printMerged("explore", io, merged, out, json);
  if (v !== null && onViolation) onViolation(v.violations, choices!, v.file, merged.schedules);
  return code;
}

/** Whether this thread is one of `explore --jobs`'s (then `runExploreJob` is its whole work). */
export function isExploreJob(): boolean {
  return !isMainThread && (workerData as JobData | null)?.kind === "tdpemu-explore-job";
}

/** A worker thread of `explore --jobs`: the command as a shard that claims its subtrees. */
export async function runExploreJob(explore: ExploreCommand): Promise<void> {
  const data = workerData as JobData;
  const post = (m: JobMessage) => parentPort!.postMessage(m);
  const claims = new Int32Array(data.claims);
  try {
    const share = await runShare(
      explore,
      data.args,
      claims,
      new BigInt64Array(data.taken),
      new BigInt64Array(data.progress),
      data.index,
      data.count,
      () => {},
    );
    post({ done: { code: share.code, report: share.text } });
  } catch (e) {
    // The run fails: the main thread, exploring a share itself, hears of it only once that
    // share is done, so the other threads are stopped from here.
    stopClaims(claims);
    post({ failed: e instanceof Error ? e.message : String(e) });
  }
}

/** Runs thread `index`'s share of the search: its exit code, and its report as text (JSON, as a shard's) and read. */
async function runShare(
  explore: ExploreCommand,
  args: string[],
  claims: Int32Array,
  taken: BigInt64Array,
  progress: BigInt64Array,
  index: number,
  count: number,
  onProgress: () => void,
): Promise<{ code: number; text: string; report: ExploreReport }> {
  const text: string[] = [];
  const code = await explore(
    args,
    { out: (t) => text.push(t), err: () => {} },
    jobOf(claims, taken, progress, index, count, onProgress),
  );
  const joined = text.join("\n");
  const report = JSON.parse(joined) as ExploreReport;
  // The final count: the explorer reports its progress every two seconds, not at its end.
  publishProgress(progress, index, report);
  return { code, text: joined, report };
}
