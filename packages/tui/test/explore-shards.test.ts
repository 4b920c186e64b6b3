/**
 * `tdpemu explore --shard K/N` in N processes side by side with `tdpemu explore-merge`, and
 * `tdpemu explore --jobs N` on N threads: the report is the one report a single-threaded
 * `tdpemu explore` gives, field by field (all but the timing), and a violation is the same one,
 * with the same schedule.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import type { ExploreProgress } from "@tdpemu/core";
import {
  jobOf,
  newClaims,
  newTaken,
  progressLine,
  publishProgress,
  scheduleBudget,
  stopClaims,
} from "../src/commands/explore-jobs.js";

const run = promisify(execFile);
const CLI = resolve("packages/tui/dist/tdpemu.mjs");
const dir = mkdtempSync(join(tmpdir(), "tdpemu-shards-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The command's exit code, standard output and error (a non-zero exit is an answer, not a failure). */
async function tdpemu(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  return tdpemuWith({}, ...args);
}

/** `tdpemu` with more environment variables. */
async function tdpemuWith(
  env: Record<string, string>,
  ...args: string[]
): Promise<{ code: number; out: string; err: string }> {
  try {
    const r = await run(process.execPath, [CLI, ...args], {
      maxBuffer: 64 << 20,
      env: { ...process.env, ...env },
    });
    return { code: 0, out: r.stdout, err: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, out: x.stdout, err: x.stderr };
  }
}

/** Runs the N shards as N processes at once; returns their report files. */
async function shards(n: number, args: string[], tag: string): Promise<string[]> {
  const files = Array.from({ length: n }, (_, k) => join(dir, `${tag}-${k}.json`));
  const rs = await Promise.all(
    files.map((_, k) => tdpemu("explore", ...args, "--shard", `${k}/${n}`)),
  );
  rs.forEach((r, k) => writeFileSync(files[k]!, r.out));
  return files;
}

/** A thread's progress before its first schedule. */
const NO_PROGRESS: ExploreProgress = {
  schedules: 0,
  steps: 0,
  skippedByReduction: 0,
  prunedByBound: 0,
  complete: 0,
  cut: 0,
  unfair: 0,
  seconds: 0,
};

/** The fields a split search's report may differ in from one thread's: timing, and the threads. */
const TIMING = new Set(["seconds", "schedulesPerSecond", "threads"]);

/**
 * The one-thread search a split one must equal: `--jobs 1`, split as shares and threads are
 * (an optimal search branches as sleep sets do above the split depth).
 */
const single = (args: readonly string[]) => [...args, "--jobs", "1"];

describe("explore --shard K/N and explore-merge", () => {
  it.each([
    [
      "race-shared-table on plain, 3 shards split at depth 6",
      ["scenarios/race-shared-table.yaml", "--count-traces"],
      ["--split-depth", "6"],
      3,
    ],
    [
      "race-shared-table on SEV, 2 shards",
      ["scenarios/race-shared-table.yaml", "--backend", "sev", "--count-traces"],
      [],
      2,
    ],
    [
      "race-shared-table on plain without reduction, 3 shards",
      ["scenarios/race-shared-table.yaml", "--count-traces", "--no-reduction"],
      [],
      3,
    ],
    [
      "tdx-race-2m-4k on TDX, bound 2, 4 shards",
      ["scenarios/tdx-race-2m-4k.yaml", "--preemption-bound", "2", "--count-traces"],
      [],
      4,
    ],
  ] as const)(
    "%s: the merged report is the single exploration's, field by field",
    async (tag, args, split, n) => {
      const whole = await tdpemu("explore", ...single(args), ...split, "--json");
      expect(whole.code).toBe(0);
      const files = await shards(n, [...args, ...split], tag.replace(/\W+/g, "-"));
      const parts = files.map(
        (f) => JSON.parse(readFileSync(f, "utf8")) as { shard: unknown; schedules: number },
      );
      const shardOf = (k: number): unknown => expect.objectContaining({ index: k, count: n });
      expect(parts.map((p) => p.shard)).toEqual(Array.from({ length: n }, (_, k) => shardOf(k)));
      // Each shard did a share of the work, not all of it.
      const wholeSchedules = (JSON.parse(whole.out) as { schedules: number }).schedules;
      for (const p of parts) expect(p.schedules).toBeLessThan(wholeSchedules);
      const merged = await tdpemu("explore-merge", ...files, "--json");
      expect(merged.code).toBe(0);
      const w = JSON.parse(whole.out) as Record<string, unknown>;
      const m = JSON.parse(merged.out) as Record<string, unknown>;
      expect(Object.keys(m).sort()).toEqual(Object.keys(w).sort());
      for (const k of Object.keys(w)) if (!TIMING.has(k)) expect([k, m[k]]).toEqual([k, w[k]]);
      expect(w.exhausted).toBe(true);
      expect([w.threads, m.threads]).toEqual([1, n]);
      // The same traces as the unsplit search (optimal unless bounded or not reduced).
      const unsplit = await tdpemu("explore", ...args, "--json", "--split-depth", "0");
      expect(JSON.parse(unsplit.out)).toMatchObject({
        traces: w.traces,
        algorithm: w.algorithm,
        splitDepth: null,
      });
    },
    120_000,
  );

  it("a violation: the first in the order of the search, whichever shard found it, with the same schedule to replay", async () => {
    const args = ["scenarios/tdx-race-2m-4k.yaml", "--strategy", "atomic-then-hook"];
    const one = join(dir, "single.schedule.json");
    expect((await tdpemu("explore", ...single(args), "--out", one)).code).toBe(1);
    const files = await shards(4, args, "violation");
    const mergedSchedule = join(dir, "merged.schedule.json");
    const merged = await tdpemu("explore-merge", ...files, "--out", mergedSchedule);
    expect(merged.code).toBe(1);
    expect(merged.out).toMatch(/^violation {3}in schedule \d+ of shard \d\/4, after 18 steps:$/m);
    const a = JSON.parse(readFileSync(one, "utf8")) as { choices: number[]; violations: unknown };
    const b = JSON.parse(readFileSync(mergedSchedule, "utf8")) as {
      choices: number[];
      violations: unknown;
    };
    expect(b.choices).toEqual(a.choices);
    expect(b.violations).toEqual(a.violations);
    const replayed = await tdpemu("replay", mergedSchedule);
    expect(replayed.code).toBe(1);
    expect(replayed.out).toMatch(
      /TDH\.MEM\.PAGE\.AUG failed: 0xC0000B0000000001 \(EPT_WALK_FAILED\|RCX\)/,
    );
  }, 120_000);

  it.each([
    [
      "race-shared-table on SEV",
      ["scenarios/race-shared-table.yaml", "--backend", "sev", "--count-traces"],
    ],
    [
      "tdx-race-2m-4k on TDX, bound 3",
      ["scenarios/tdx-race-2m-4k.yaml", "--preemption-bound", "3", "--count-traces"],
    ],
  ] as const)(
    "--jobs 3 on %s: the report of one thread, field by field",
    async (_tag, args) => {
      const one = await tdpemu("explore", ...single(args), "--json");
      const three = await tdpemu("explore", ...args, "--json", "--jobs", "3");
      expect([one.code, three.code]).toEqual([0, 0]);
      const w = JSON.parse(one.out) as Record<string, unknown>;
      const m = JSON.parse(three.out) as Record<string, unknown>;
      expect(Object.keys(m).sort()).toEqual(Object.keys(w).sort());
      for (const k of Object.keys(w)) if (!TIMING.has(k)) expect([k, m[k]]).toEqual([k, w[k]]);
      expect([w.threads, m.threads]).toEqual([1, 3]);
    },
    120_000,
  );

  it("without --jobs, a search that can be shared out runs on every core, with one thread's report", async () => {
    const cores = Math.min(availableParallelism(), 256);
    const args = ["scenarios/tdx-race-2m-4k.yaml", "--preemption-bound", "3", "--count-traces"];
    const one = await tdpemu("explore", ...single(args), "--json");
    // The other threads start at once, not after the default second of the main thread alone.
    const now = { TDPEMU_JOBS_START_MS: "0" };
    const all = await tdpemuWith(now, "explore", ...args, "--json");
    expect([one.code, all.code]).toEqual([0, 0]);
    const w = JSON.parse(one.out) as Record<string, unknown>;
    const m = JSON.parse(all.out) as Record<string, unknown>;
    for (const k of Object.keys(w)) if (!TIMING.has(k)) expect([k, m[k]]).toEqual([k, w[k]]);
    expect([w.threads, m.threads]).toEqual([1, cores]);
    // So is an optimal search, split as `--jobs 1` splits it.
    const race = ["scenarios/race-shared-table.yaml", "--count-traces", "--json"];
    const optimalOne = JSON.parse((await tdpemu("explore", ...single(race))).out) as object;
    const optimal = JSON.parse((await tdpemuWith(now, "explore", ...race)).out) as object;
    expect(optimal).toMatchObject({ algorithm: "optimal", threads: cores, splitDepth: 12 });
    for (const [k, v] of Object.entries(optimalOne))
      if (!TIMING.has(k)) expect([k, (optimal as Record<string, unknown>)[k]]).toEqual([k, v]);
    // By default the others start only after a second: a shorter search runs on one thread.
    const short = await tdpemu("explore", "scenarios/race-shared-table.yaml", "--json");
    expect(JSON.parse(short.out)).toMatchObject({
      algorithm: "optimal",
      threads: 1,
      exhausted: true,
    });
    // A bad delay is refused even where no other thread would start (a shard).
    const soon = { TDPEMU_JOBS_START_MS: "soon" };
    for (const a of [args, ["scenarios/race-shared-table.yaml", "--shard", "0/1"]]) {
      const bad = await tdpemuWith(soon, "explore", ...a);
      expect(bad.code).toBe(2);
      expect(bad.err).toMatch(
        /TDPEMU_JOBS_START_MS: expected a whole number of milliseconds, got 'soon'/,
      );
    }
  }, 120_000);

  it("without --jobs, a violation is shrunk and drawn as one thread draws it", async () => {
    const out = join(dir, "default-jobs.schedule.json");
    const args = [
      "scenarios/race-shared-table.yaml",
      "--unsafe-non-atomic-set",
      "--algorithm",
      "sleep",
      "--out",
      out,
    ];
    const one = await tdpemu("explore", ...args, "--jobs", "1");
    const shrunk = out.replace(/\.schedule\.json$/, ".shrunk.schedule.json");
    // The other threads at once, and never: the same race either way.
    for (const start of ["0", "999999"]) {
      rmSync(shrunk, { force: true });
      const r = await tdpemuWith({ TDPEMU_JOBS_START_MS: start }, "explore", ...args);
      expect([one.code, r.code]).toEqual([1, 1]);
      const race = (t: string) => t.slice(t.indexOf("\nthe race"));
      expect(race(r.out)).toMatch(/^\nthe race, shrunk to \d+ steps and 1 preemption/);
      expect(race(r.out)).toEqual(race(one.out));
      expect(readFileSync(shrunk, "utf8")).toMatch(/"choices"/);
    }
  }, 120_000);

  it("--jobs 2 with a violation: the one a single thread stops at, and its schedule", async () => {
    const args = ["scenarios/tdx-race-2m-4k.yaml", "--strategy", "atomic-then-hook"];
    const one = join(dir, "jobs-single.schedule.json");
    const double = join(dir, "jobs-two.schedule.json");
    expect((await tdpemu("explore", ...single(args), "--out", one)).code).toBe(1);
    const r = await tdpemu("explore", ...args, "--jobs", "2", "--out", double);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/^schedule {4}written to .*jobs-two\.schedule\.json/m);
    const a = JSON.parse(readFileSync(one, "utf8")) as { choices: number[]; violations: unknown };
    const b = JSON.parse(readFileSync(double, "utf8")) as {
      choices: number[];
      violations: unknown;
    };
    expect(b.choices).toEqual(a.choices);
    expect(b.violations).toEqual(a.violations);
  }, 120_000);

  it("--jobs 2 --max-schedules N: N schedules in all, as one thread counts them", async () => {
    const args = ["scenarios/tdx-race-2m-4k.yaml", "--max-schedules", "300", "--json"];
    const one = await tdpemu("explore", ...single(args));
    const two = await tdpemu("explore", ...args, "--jobs", "2");
    expect([one.code, two.code]).toEqual([0, 0]);
    for (const r of [one, two]) {
      const report = JSON.parse(r.out) as { schedules: number; exhausted: boolean };
      expect([report.schedules, report.exhausted]).toEqual([300, false]);
    }
  }, 120_000);

  it("--jobs 4 with a cap above the search's size: exhausted, as one thread is", async () => {
    const args = ["scenarios/race-shared-table.yaml", "--json"];
    const one = JSON.parse((await tdpemu("explore", ...single(args))).out) as {
      schedules: number;
      exhausted: boolean;
    };
    expect(one.exhausted).toBe(true);
    // A thread that found the last schedules held by others' runs used to stop for good, and
    // the search ended not exhausted when those runs gave theirs back.
    for (let i = 0; i < 3; i++) {
      const cap = String(one.schedules + 1);
      const r = await tdpemu("explore", ...args, "--jobs", "4", "--max-schedules", cap);
      const four = JSON.parse(r.out) as { schedules: number; exhausted: boolean };
      expect([four.schedules, four.exhausted]).toEqual([one.schedules, true]);
    }
  }, 120_000);

  it("bad input is named, exit 2: a missing or doubled shard, shares of different explorations, a file that is no report, a bad --shard", async () => {
    const args = ["scenarios/race-shared-table.yaml", "--split-depth", "4"];
    const files = await shards(3, args, "bad");
    const other = await tdpemu("explore", ...args, "--shard", "1/3", "--backend", "sev");
    const otherFile = join(dir, "other.json");
    writeFileSync(otherFile, other.out);
    const notReport = join(dir, "not-report.json");
    writeFileSync(notReport, JSON.stringify({ shard: { index: 0 } }));
    // A count no exploration had, from a file: refused before anything is sized by it.
    const hugeCount = join(dir, "huge-count.json");
    writeFileSync(
      hugeCount,
      JSON.stringify({
        ...JSON.parse(readFileSync(files[0]!, "utf8")),
        shard: { index: 0, count: 2 ** 32, depth: 4 },
      }),
    );
    const cases: [string[], RegExp][] = [
      [[files[0]!, files[2]!], /explore-merge: shard 1\/3 missing: every share of the 3 is needed/],
      [[files[0]!, files[0]!, files[1]!, files[2]!], /explore-merge: shard 0\/3 is given twice/],
      [
        [files[0]!, otherFile, files[2]!],
        /has backend "sev", .* "plain": not shares of one exploration/,
      ],
      [
        [notReport],
        /not-report\.json: "shard": expected whole numbers, 0 <= index < count <= 65536, depth >= 1, got \{"index":0\}/,
      ],
      [[hugeCount], /"shard": expected whole numbers, 0 <= index < count <= 65536/],
      [[join(dir, "nowhere.json")], /explore-merge: .*nowhere\.json: cannot read the shard report/],
      [[], /explore-merge: which shard reports\?/],
    ];
    for (const [files_, message] of cases) {
      const r = await tdpemu("explore-merge", ...files_);
      expect([r.code, r.err]).toEqual([2, expect.stringMatching(message)]);
    }
    for (const [flags, message] of [
      [
        ["--shard", "3/3"],
        /--shard: expected K\/N, the K-th of N shares counted from 0 \(0 <= K < N\), got '3\/3'/,
      ],
      [["--shard", "one"], /--shard: expected K\/N/],
      [["--split-depth", "x"], /--split-depth: expected a whole number of at least 0, got .x./],
      [
        ["--split-depth", "0", "--jobs", "2"],
        /--split-depth 0 and --jobs\/--shard: a search that is not split runs on one thread/,
      ],
      [["--jobs", "0"], /--jobs: expected a whole number of at least 1, got '0'/],
      [["--jobs", "10000"], /--jobs: expected at most 256 threads, got 10000/],
      [["--jobs", "2", "--shard", "0/2"], /--jobs and --shard: a shard runs in one thread/],
      [["--shard", "0/2", "--split-depth", "0"], /--split-depth 0 and --jobs\/--shard/],
    ] as [string[], RegExp][]) {
      const r = await tdpemu("explore", "scenarios/race-shared-table.yaml", ...flags);
      expect([r.code, r.err]).toEqual([2, expect.stringMatching(message)]);
    }
  }, 120_000);
});

describe("explore --jobs progress", () => {
  it("prints every thread's schedules and steps summed, at most every two seconds", () => {
    const shared = new BigInt64Array(2 * 3);
    const lines: string[] = [];
    let now = 0;
    const print = progressLine(shared, 3, { out: () => {}, err: (t) => lines.push(t) }, () => now);
    publishProgress(shared, 0, { ...NO_PROGRESS, schedules: 10, steps: 400 });
    publishProgress(shared, 2, { ...NO_PROGRESS, schedules: 3_000, steps: 5_000_000 });
    now = 1_999;
    print();
    expect(lines).toEqual([]);
    now = 2_000;
    print();
    publishProgress(shared, 1, { ...NO_PROGRESS, schedules: 7, steps: 9 });
    now = 3_500;
    print();
    now = 4_000;
    print();
    expect(lines).toEqual([
      "explored 3,010 schedules, 5,000,400 steps, on 3 threads",
      "explored 3,017 schedules, 5,000,409 steps, on 3 threads",
    ]);
  });

  it("counts only the threads started: the main one alone until the others join", () => {
    const shared = new BigInt64Array(2 * 2);
    const lines: string[] = [];
    let now = 0;
    let running = 1;
    const io = { out: () => {}, err: (t: string) => lines.push(t) };
    const print = progressLine(
      shared,
      2,
      io,
      () => now,
      () => running,
    );
    publishProgress(shared, 0, { ...NO_PROGRESS, schedules: 5, steps: 50 });
    now = 2_000;
    print();
    running = 2;
    publishProgress(shared, 1, { ...NO_PROGRESS, schedules: 1, steps: 10 });
    now = 4_000;
    print();
    expect(lines).toEqual([
      "explored 5 schedules, 50 steps, on 1 thread",
      "explored 6 schedules, 60 steps, on 2 threads",
    ]);
  });
});

describe("explore --jobs claims", () => {
  it("gives each subtree to one thread, none after a violation found, none once a thread failed", () => {
    const claims = newClaims();
    const progress = new BigInt64Array(4);
    const [a, b] = [0, 1].map((i) => jobOf(claims, newTaken(), progress, i, 2, () => {}));
    expect(a!.owns(0)).toBe(true);
    expect(b!.owns(0)).toBe(false);
    expect(b!.owns(1)).toBe(true);
    // A violation inside subtree 3 (position 2 * 3): subtrees after it go to no one.
    b!.found(6);
    expect(a!.owns(3)).toBe(true);
    expect(a!.owns(4)).toBe(false);
    expect(b!.owns(2)).toBe(true);
    // A thread failed: the run fails, and no thread takes another subtree.
    stopClaims(claims);
    expect(a!.owns(2)).toBe(false);
    expect(b!.owns(0)).toBe(false);
    a!.found(0);
    expect(b!.owns(0)).toBe(false);
  });
});

describe("explore --jobs schedules", () => {
  const never = () => false;

  it("come from one count: taken by any thread up to the cap, then none", () => {
    const taken = newTaken();
    const [a, b] = [scheduleBudget(taken, 3, never), scheduleBudget(taken, 3, never)];
    expect([a.take(), b.take(), a.take()]).toEqual([true, true, true]);
    a.settle(true);
    b.settle(true);
    a.settle(true);
    expect([b.take(), a.take()]).toEqual([false, false]);
  });

  it("a run not counted gives its schedule back; a thread that finds the last one held waits for it", () => {
    const taken = newTaken();
    const a = scheduleBudget(taken, 1, never);
    expect(a.take()).toBe(true);
    a.settle(false);
    expect(a.take()).toBe(true);
    // The last schedule is held by a's run: b waits, and takes it once the run gives it back
    // (here the run settles while b asks whether the search has failed, as it does while waiting).
    let asked = 0;
    const b = scheduleBudget(taken, 1, () => {
      if (asked++ === 0) a.settle(false);
      return false;
    });
    expect(b.take()).toBe(true);
    expect(asked).toBe(1);
    b.settle(true);
    expect(a.take()).toBe(false);
    // A failed run stops a waiting thread.
    const c = newTaken();
    const d = scheduleBudget(c, 1, never);
    expect(d.take()).toBe(true);
    expect(scheduleBudget(c, 1, () => true).take()).toBe(false);
  });
});
