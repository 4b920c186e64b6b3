/**
 * `tdpemu bench`: the harness itself (the cases are measured by running it, not by tests). Runs
 * the built binary, since cases that need a process of their own re-run it as a child.
 */
import { spawnSync } from "node:child_process";
import { tmpdir } from "node:os";
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { exploreJobsCase, radixFill } from "../src/bench/cases.js";

const CLI = resolve("packages/tui/dist/tdpemu.mjs");

function bench(...args: string[]) {
  return benchIn(process.cwd(), ...args);
}

function benchIn(cwd: string, ...args: string[]) {
  const p = spawnSync(process.execPath, [CLI, "bench", ...args], {
    cwd,
    encoding: "utf8",
    timeout: 120_000,
  });
  return { code: p.status, out: p.stdout, err: p.stderr };
}

describe("tdpemu bench", () => {
  it("a filter that matches no case is bad input, and the message names the cases", () => {
    const r = bench("--filter", "no-such-case");
    expect(r.code).toBe(2);
    expect(r.err).toMatch(
      /^tdpemu: bench: --filter 'no-such-case' matches no case \(cases: sol, fault-plain, .*scale-plain-1TiB\)/,
    );
  });

  it("a case in a child process reports every run's median, with progress on stderr and JSON on stdout", () => {
    const r = bench("--filter", "fault-plain-2m", "--json");
    expect(r.code).toBe(0);
    expect(r.err).toMatch(/fault-plain-2m: 2 warm-up and 5 runs in a child process/);
    const j = JSON.parse(r.out) as {
      speedOfLight: number;
      cases: {
        name: string;
        value: number;
        unit: string;
        extra: Record<string, number>;
        error?: string;
      }[];
    };
    expect(j.speedOfLight).toBeGreaterThan(0);
    const row = j.cases.find((c) => c.name === "fault-plain-2m")!;
    expect(row.error).toBeUndefined();
    expect(row.unit).toBe("faults/s");
    // 1 GiB in 2 MiB pages is 512 faults: the pages/s figure is 512 times the fault rate.
    expect(row.extra["pages/s"]! / row.value).toBeCloseTo(512, 0);
  });

  it("explore-optimality: one complete run per trace on every race, and the same traces as sleep sets in more runs", () => {
    const r = bench("--filter", "explore-optimality", "--json");
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out) as {
      cases: { name: string; value: number; ok: boolean; extra: Record<string, number> }[];
    };
    const row = j.cases.find((c) => c.name === "explore-optimality")!;
    expect([row.value, row.ok]).toEqual([1, true]);
    expect(row.extra["2m-4k tdx traces"]).toBe(3914);
    expect(row.extra["shared-table plain traces"]).toBe(268);
    for (const k of ["shared-table plain", "2m-4k sev", "2m-4k tdx", "shared-table sev"]) {
      expect(row.extra[`${k} runs/trace`]).toBe(1);
      expect(row.extra[`${k} cut`]).toBe(0);
      expect(row.extra[`${k} sleep runs/trace`]).toBeGreaterThan(1.5);
    }
  });

  it("finds the repository's scenarios from any working directory", () => {
    const r = benchIn(tmpdir(), "--child", "explore-race");
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    const runs = JSON.parse(r.out) as { value: number; unit: string }[];
    expect(runs).toHaveLength(3);
    for (const m of runs) expect(m.unit).toBe("schedules/s");
  });

  it("a child reports its timed runs only, not its warm-up runs", () => {
    const r = bench("--child", "fault-plain-2m");
    expect(r.code).toBe(0);
    const runs = JSON.parse(r.out) as { value: number; unit: string }[];
    expect(runs).toHaveLength(5);
    for (const m of runs) expect(m.unit).toBe("faults/s");
  });

  it("the speed of light's loop fills the table it claims to: every GFN walks to its own leaf", () => {
    const pages = 512 * 512 + 700; // more than one level-2 table
    const pool = radixFill(pages);
    for (const gfn of [0, 1, 511, 512, 262143, 262144, pages - 1]) {
      let table = 0;
      for (let level = 4; level > 1; level--) {
        const off = table * 1024 + 2 * (Math.floor(gfn / 512 ** (level - 1)) % 512);
        expect(pool[off]! & 7, `gfn ${gfn} level ${level}`).toBe(7);
        table = pool[off]! >>> 12;
      }
      expect(pool[table * 1024 + 2 * (gfn % 512)]! >>> 12).toBe(gfn);
    }
    // The entry past the last GFN was never written.
    let table = 0;
    for (let level = 4; level > 1; level--)
      table = pool[table * 1024 + 2 * (Math.floor(pages / 512 ** (level - 1)) % 512)]! >>> 12;
    expect(pool[table * 1024 + 2 * (pages % 512)]).toBe(0);
  });

  it("explore-jobs compares searches that end alike: both exhausted, or both at the same cap", () => {
    const scn = resolve("scenarios/race-shared-table.yaml");
    const capped = exploreJobsCase(CLI, [scn, "--max-schedules", "50"], true);
    expect(capped.extra?.schedules).toBe(50);
    expect(capped.value).toBeGreaterThan(0);
    const whole = exploreJobsCase(CLI, [scn]);
    expect(whole.extra?.schedules).toBeGreaterThan(50);
    expect(() => exploreJobsCase(CLI, [scn, "--max-schedules", "50"])).toThrow(
      /the space was not exhausted/,
    );
    expect(() => exploreJobsCase(CLI, [scn], true)).toThrow(/exhausted before the cap/);
  }, 120_000);
});
