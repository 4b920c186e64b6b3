/**
 * The benchmark cases of `tdpemu bench`. Each returns one measurement of one run; the command
 * runs each several times and reports the median. Rates are compared with the speed of light
 * measured in the same process, never with absolute targets from another machine.
 */
import { spawnSync } from "node:child_process";
import v8 from "node:v8";
import vm from "node:vm";
import {
  OpError,
  Prng,
  RunInputError,
  exploreScenario,
  hostOps,
  loadScenario,
  parseScenarioText,
  runScenario,
  runToEnd,
  buildRun,
  Scheduler,
  type BackendRegistry,
} from "@tdpemu/core";
import { randomWorkload } from "../fuzz/generate.js";

export interface Measurement {
  /** The headline number, in `unit`. */
  value: number;
  unit: string;
  /** Other numbers worth a column. */
  extra?: Record<string, number>;
}

const GiB = 2 ** 30;
export const PAGES_1G = 262144;

v8.setFlagsFromString("--expose-gc");
const gc = vm.runInNewContext("gc") as () => void;

/**
 * The speed of light: a bare loop that walks and fills a 4-level radix table in one typed array
 * for the same GFNs as the fault cases, with no events, hooks, locks or checks.
 */
export function speedOfLight(pages: number): Measurement {
  const t0 = performance.now();
  radixFill(pages);
  const s = (performance.now() - t0) / 1000;
  return { value: pages / s, unit: "pages/s" };
}

/**
 * The loop of `speedOfLight`: table 0 is the root, each present entry holds its table's index
 * as the PFN (EPT bits 12+) with RWX, and each leaf maps GFN g to PFN g.
 */
export function radixFill(pages: number): Uint32Array {
  const tables = Math.ceil(pages / 512) + Math.ceil(pages / 512 / 512) + 3;
  const pool = new Uint32Array(tables * 1024);
  let next = 1;
  for (let gfn = 0; gfn < pages; gfn++) {
    let table = 0;
    for (let level = 4; level > 1; level--) {
      const off = table * 1024 + 2 * (Math.floor(gfn / 512 ** (level - 1)) % 512);
      if (pool[off + 1] === 0) {
        pool[off] = ((next << 12) | 0x907) >>> 0;
        pool[off + 1] = 0x80000000;
        table = next++;
      } else table = pool[off]! >>> 12;
    }
    const off = table * 1024 + 2 * (gfn % 512);
    pool[off] = ((gfn << 12) | 0xb77) >>> 0;
    pool[off + 1] = 0x86000000;
  }
  return pool;
}

/** A one-vCPU scenario that writes `pages` pages from GPA 0, in order. */
export function sequential(
  memory: string,
  pages: number,
  backend: string,
  hugepages: boolean,
): string {
  return `
name: bench-${backend}
vm: { memory: ${memory}, gpaw: 48, vcpus: 1, hugepages: ${hugepages ? "2MiB" : "false"} }
backend: ${backend}
schedule: { mode: round-robin, interleave: false }
vcpus:
  - - { op: access, gpa: 0x0, count: ${pages}, write: true }
`;
}

/**
 * Sequential private faults, one vCPU, no interleaving: faults/s. Only the run is timed: the VM
 * is built before, and the invariants are checked after (a violation fails the case).
 */
export function faultCase(
  registry: BackendRegistry,
  backend: string,
  hugepages: boolean,
): Measurement {
  const scn = parseScenarioText(sequential("1GiB", PAGES_1G, backend, hugepages), "bench.yaml");
  const built = buildRun(scn, { backend: registry.source(backend) });
  const t0 = performance.now();
  new Scheduler("round-robin", 0).run(built.tasks, built.clock);
  const s = (performance.now() - t0) / 1000;
  const check = built.check(true);
  if (check.violations.length > 0) throw new Error(`${backend}: ${check.violations[0]!.message}`);
  const stats = built.vm.mmu.stats;
  const expected = hugepages ? PAGES_1G / 512 : PAGES_1G;
  if (stats.faults < expected)
    throw new Error(`${backend}: ${stats.faults} faults, expected at least ${expected}`);
  const pages = stats.pages[1]! + 512 * stats.pages[2]!;
  return { value: stats.faults / s, unit: "faults/s", extra: { "pages/s": pages / s } };
}

/** Zapping 1 GiB of 4 KiB mappings: pages/s. */
export function zapCase(registry: BackendRegistry, backend: string): Measurement {
  const scn = parseScenarioText(sequential("1GiB", PAGES_1G, backend, false), "bench.yaml");
  const built = buildRun(scn, { backend: registry.source(backend) });
  new Scheduler("round-robin", 0).run(built.tasks, built.clock);
  const t0 = performance.now();
  const zapped = runToEnd(hostOps.zapGfnRange(built.vm, built.vm.hostCtx, 0, PAGES_1G));
  const s = (performance.now() - t0) / 1000;
  return { value: zapped / s, unit: "pages/s" };
}

/**
 * Bytes of heap and array buffers per mapped 4 KiB page, after a GC, for a 2 GiB guest mapped
 * with 4K pages (large enough that the VM's fixed costs are a small part of it).
 */
export function memoryCase(registry: BackendRegistry, backend: string): Measurement {
  const scn = parseScenarioText(sequential("2GiB", 2 * PAGES_1G, backend, false), "bench.yaml");
  // Warm up first, so compiled code is not counted as memory of the mapped pages.
  runScenario(parseScenarioText(sequential("1GiB", 4096, backend, false), "warm.yaml"), {
    backend: registry.source(backend),
  });
  gc();
  gc();
  const m0 = process.memoryUsage();
  let r: ReturnType<typeof runScenario> | null = runScenario(scn, {
    backend: registry.source(backend),
  });
  gc();
  gc();
  const m1 = process.memoryUsage();
  const pages = r.report.stats.pages["4k"];
  r = null;
  const bytes = m1.heapUsed + m1.arrayBuffers - (m0.heapUsed + m0.arrayBuffers);
  return { value: bytes / pages, unit: "bytes/page" };
}

/**
 * The soak: random valid workloads (`fuzz/generate.ts`) on `backend`, with the invariants
 * checked after every op, until `minSteps` steps have run: steps/s. An op the backend refuses
 * ends its workload (counted); a violation fails the case, naming the seed that found it.
 */
export function soakCase(
  registry: BackendRegistry,
  backend: string,
  minSteps: number,
): Measurement {
  const r = new Prng(0x50a4);
  let steps = 0;
  let workloads = 0;
  let refused = 0;
  const t0 = performance.now();
  while (steps < minSteps) {
    const text = randomWorkload(r, backend);
    workloads++;
    try {
      const run = runScenario(parseScenarioText(text, `soak-${workloads}.yaml`), {
        backend: registry.source(backend),
        check: "op",
      });
      if (run.report.invariants.violations.length > 0)
        throw new Error(
          `${backend}: workload ${workloads}: ${run.report.invariants.violations[0]!.message}\n${text}`,
        );
      steps += run.report.steps;
    } catch (e) {
      if (!RunInputError.is(e) && !OpError.is(e)) throw e;
      refused++;
    }
  }
  const s = (performance.now() - t0) / 1000;
  return { value: steps / s, unit: "steps/s", extra: { steps, workloads, refused } };
}

/** Schedules explored per second on the 2M/4K race with the freeze protocol. */
export function exploreCase(
  registry: BackendRegistry,
  scenarioPath: string,
  maxSchedules: number,
): Measurement {
  const scn = loadScenario(scenarioPath);
  const r = exploreScenario(scn, { backend: registry.source("tdx"), maxSchedules });
  if (r.violation)
    throw new Error(`explore found a violation: ${r.violation.violations[0]!.message}`);
  return {
    value: r.schedules / r.seconds,
    unit: "schedules/s",
    extra: { schedules: r.schedules, "steps/s": r.steps / r.seconds },
  };
}

/** A scenario to explore, on a backend, unbounded. */
export interface ExploreTarget {
  label: string;
  path: string;
  backend: string;
}

/**
 * Optimal-DPOR's runs per trace: complete runs ÷ distinct traces on each target (the value: the
 * largest), and the runs cut short (every task asleep), beside sleep sets' on the same targets.
 */
export function exploreOptimalityCase(
  registry: BackendRegistry,
  targets: readonly ExploreTarget[],
): Measurement {
  const extra: Record<string, number> = {};
  let worst = 0;
  for (const t of targets) {
    const scn = loadScenario(t.path);
    const opt = exploreScenario(scn, {
      backend: registry.source(t.backend),
      countTraces: true,
      algorithm: "optimal",
    });
    const sleep = exploreScenario(scn, {
      backend: registry.source(t.backend),
      countTraces: true,
      algorithm: "sleep",
    });
    for (const r of [opt, sleep]) {
      if (r.violation || !r.exhausted)
        throw new Error(`${t.label}: the search did not exhaust the space without a violation`);
    }
    if (sleep.traces !== opt.traces)
      throw new Error(`${t.label}: sleep sets reach ${sleep.traces} traces, optimal ${opt.traces}`);
    const ratio = opt.complete / opt.traces!;
    worst = Math.max(worst, ratio);
    extra[`${t.label} traces`] = opt.traces!;
    extra[`${t.label} runs/trace`] = ratio;
    extra[`${t.label} cut`] = opt.cut;
    extra[`${t.label} sleep runs/trace`] = sleep.schedules / sleep.traces!;
  }
  return { value: worst, unit: "runs/trace", extra };
}

/** Exhausting a scenario unbounded with Optimal-DPOR: seconds; runs and steps, and (`withSleep`) sleep sets' beside. */
export function exploreExhaustCase(
  registry: BackendRegistry,
  t: ExploreTarget,
  withSleep = true,
): Measurement {
  const scn = loadScenario(t.path);
  const opt = exploreScenario(scn, { backend: registry.source(t.backend), algorithm: "optimal" });
  const sleep = withSleep
    ? exploreScenario(scn, { backend: registry.source(t.backend), algorithm: "sleep" })
    : null;
  for (const r of sleep ? [opt, sleep] : [opt])
    if (r.violation || !r.exhausted)
      throw new Error(`${t.label}: the search did not exhaust the space without a violation`);
  const extra: Record<string, number> = { complete: opt.complete, cut: opt.cut, steps: opt.steps };
  if (sleep) {
    extra["sleep schedules"] = sleep.schedules;
    extra["sleep steps"] = sleep.steps;
    extra["sleep s"] = sleep.seconds;
    extra["× faster"] = sleep.seconds / opt.seconds;
  }
  return { value: opt.seconds, unit: "s", extra };
}

/**
 * `explore --jobs 2` against `--jobs 1` (the same search, split at the same depth), as two
 * processes of the built CLI run one after the other: the speedup of the wall-clock times. The
 * search runs to its end, or, with `capped`, both stop at the same `--max-schedules` (which
 * caps the threads together): the same number of schedules, not the same ones.
 */
export function exploreJobsCase(cli: string, args: readonly string[], capped = false): Measurement {
  const time = (
    jobs: string[],
    threads: number,
  ): { s: number; schedules: number; steps: number } => {
    const t0 = performance.now();
    const p = spawnSync(process.execPath, [cli, "explore", ...args, "--json", ...jobs], {
      encoding: "utf8",
      maxBuffer: 1 << 24,
    });
    const s = (performance.now() - t0) / 1000;
    if (p.status !== 0)
      throw new Error(
        `explore ${jobs.join(" ")}: exit ${p.status}: ${(p.stderr || "").trim().split("\n").pop()}`,
      );
    const r = JSON.parse(p.stdout) as {
      schedules: number;
      steps: number;
      exhausted: boolean;
      threads: number;
    };
    // Without --jobs a search runs on every core: the one thread is asked for.
    if (r.threads !== threads)
      throw new Error(`explore ${jobs.join(" ")}: ran on ${r.threads} threads, not ${threads}`);
    if (r.exhausted === capped)
      throw new Error(
        `explore ${jobs.join(" ")}: ${capped ? "exhausted before the cap" : "the space was not exhausted"}`,
      );
    return { s, schedules: r.schedules, steps: r.steps };
  };
  const one = time(["--jobs", "1"], 1);
  const two = time(["--jobs", "2"], 2);
  if (one.schedules !== two.schedules)
    throw new Error(`--jobs 2 ran ${two.schedules} schedules, --jobs 1 ${one.schedules}`);
  return {
    value: one.s / two.s,
    unit: "× speedup",
    extra: {
      "jobs 1 s": one.s,
      "jobs 2 s": two.s,
      schedules: one.schedules,
      ...(capped ? { "jobs 1 steps": one.steps, "jobs 2 steps": two.steps } : {}),
    },
  };
}

/**
 * A whole guest faulted in: seconds and peak memory (run in a child process of its own). The
 * invariants are checked after the run, timed apart ("check s"), and a violation fails the case.
 */
export function scaleCase(registry: BackendRegistry, backend: string, memory: number): Measurement {
  const pages = memory / 4096;
  const scn = parseScenarioText(
    sequential(`${memory / GiB}GiB`, pages, backend, false),
    "bench.yaml",
  );
  const built = buildRun(scn, { backend: registry.source(backend), hostMemory: 2 * memory + GiB });
  const t0 = performance.now();
  new Scheduler("round-robin", 0).run(built.tasks, built.clock);
  const s = (performance.now() - t0) / 1000;
  const faults = built.vm.mmu.stats.faults;
  if (faults !== pages) throw new Error(`${backend}: ${faults} faults for ${pages} pages`);
  const c0 = performance.now();
  const check = built.check(true);
  const checkSeconds = (performance.now() - c0) / 1000;
  if (check.violations.length > 0) throw new Error(`${backend}: ${check.violations[0]!.message}`);
  const peak = process.resourceUsage().maxRSS * 1024;
  return {
    value: s,
    unit: "s",
    extra: {
      "faults/s": pages / s,
      "check s": checkSeconds,
      "peak RSS GiB": peak / GiB,
      "bytes/page (RSS)": peak / pages,
    },
  };
}
