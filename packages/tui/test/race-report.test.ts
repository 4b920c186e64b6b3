/**
 * `explore --report` and `replay --report` without a browser: the run the page is built from
 * (lanes, steps, SPTE changes, backend calls, the chain the text diagram draws), the verdicts of
 * a search that found nothing, escaping, and the paths that are refused.
 */
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadScenario, scheduleSteps } from "@tdpemu/core";
import { main, type Io } from "../src/index.js";
import { drawDiagram } from "../src/race-diagram.js";
import { builtinRegistry } from "../src/registry.js";
import { renderRaceReport } from "../src/report/race-html.js";
import { type ExploreReport } from "../src/commands/explore-report.js";
import { exploreRaceReport, type RaceReport, shellWord } from "../src/report/race-report.js";
import { raceRun } from "../src/report/race-run.js";

const dir = mkdtempSync(join(tmpdir(), "tdpemu-report-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const RACE = resolve("scenarios/tdx-race-2m-4k.yaml");
const SHARED = resolve("scenarios/race-shared-table.yaml");

function io() {
  const out: string[] = [];
  const err: string[] = [];
  const o: Io = { out: (t) => out.push(t), err: (t) => err.push(t) };
  return { o, out: () => out.join("\n"), err: () => err.join("\n") };
}

/** The step numbers of a page's rows, and of those marked on the chain. */
function rows(page: string): { steps: number[]; chain: number[] } {
  const numbers = (re: RegExp) => [...page.matchAll(re)].map((m) => Number(m[1]));
  return {
    steps: numbers(/<tr class="step[^"]*" id="step-(\d+)"/g),
    chain: numbers(/<tr class="step on-chain[^"]*" id="step-(\d+)"/g),
  };
}

describe("the race report's run", () => {
  it("marks the steps replay --diagram draws, with their SPTE changes and SEAMCALLs", async () => {
    const out = join(dir, "aah.schedule.json");
    const page = join(dir, "aah.html");
    const x = io();
    const args = ["explore", RACE, "--strategy", "atomic-then-hook", "--out", out];
    expect(await main([...args, "--report", page], x.o)).toBe(1);
    expect(x.out()).toContain(`report      written to ${page}`);

    // The page shows the shrunk schedule, the one the text diagram draws and its replay names.
    const shrunk = join(dir, "aah.shrunk.schedule.json");
    const sched = JSON.parse(readFileSync(shrunk, "utf8")) as { choices: number[] };
    const tdx = builtinRegistry().source("tdx");
    const opts = { backend: tdx, mmu: { strategy: "atomic-then-hook" as const } };
    const s = scheduleSteps(loadScenario(RACE), opts, sched.choices);
    const run = raceRun(s);
    const drawn = drawDiagram(s)
      .flatMap((l) => /^#(\d+)/.exec(l)?.slice(1) ?? [])
      .map(Number);
    expect(run.chain).toEqual(drawn);
    expect(run.chain).toEqual([8, 9, 15, 16, 18]);
    expect(run.lanes).toEqual(["vcpu0", "vcpu1"]);
    expect(run.steps.map((st) => st.lane)).toEqual(sched.choices);

    const cmpxchg = run.steps[8]!.sptes[0]!;
    expect(cmpxchg).toMatchObject({ by: "cmpxchg", mirror: true, level: 2, gpa: "0x0" });
    expect(cmpxchg.old).toMatchObject({ hex: "0x8000000000000000", kind: "empty", flags: [] });
    expect(cmpxchg.new).toMatchObject({ hex: "0x8000000000804907", kind: "table" });
    // The line replay --steps and the text diagram print for it.
    expect(cmpxchg.text).toBe("cmpxchg mirror L2 gfn 0x0: 0x8000000000000000 → 0x8000000000804907");
    const aug = run.steps[17]!;
    expect(aug).toMatchObject({ failing: true, chain: 5, lane: 1 });
    expect(aug.calls).toEqual([
      expect.objectContaining({
        name: "TDH.MEM.PAGE.AUG",
        status: "EPT_WALK_FAILED",
        tone: "error",
        detail: "gpa 0x1000 L1 [tdx 0] page 2561",
      }),
    ]);
    expect(run.steps.filter((st) => st.failing)).toHaveLength(1);
    expect(run.steps[1]!.began).toBe("accept gpa 0x0 count 1 size 4096");
    expect(run.violation).toMatchObject({ check: "kvm-bug", step: 18 });
    expect(run.violation!.message).toMatch(
      /^KVM_BUG: SEAMCALL TDH.MEM.PAGE.AUG failed: .*EPT_WALK_FAILED/,
    );

    // And the page has a row per step, the same chain marked, and the replay command.
    const html = readFileSync(page, "utf8");
    expect(rows(html)).toEqual({ steps: run.steps.map((st) => st.n), chain: run.chain });
    expect(html).toContain(`id="replay-command">tdpemu replay ${shrunk}</pre>`);
    expect(html).toContain('data-verdict="violation"');
  });

  it("replay --report on a schedule without a violation shows its run and no chain", async () => {
    const sched = join(dir, "seed5.schedule.json");
    expect(await main(["run", SHARED, "--seed", "5", "--schedule-out", sched], io().o)).toBe(0);
    const page = join(dir, "seed5.html");
    const x = io();
    expect(await main(["replay", sched, "--report", page], x.o)).toBe(0);
    const html = readFileSync(page, "utf8");
    const { choices } = JSON.parse(readFileSync(sched, "utf8")) as { choices: number[] };
    expect(rows(html)).toEqual({ steps: choices.map((_, i) => i + 1), chain: [] });
    expect(html).toContain('data-verdict="no-violation"');
    expect(html).toContain(`id="replay-command">tdpemu replay ${sched}</pre>`);
    const lanes = [...html.matchAll(/<th class="lane" [^>]*>([^<]*)</g)];
    expect(lanes.map((m) => m[1])).toEqual(["vcpu0", "vcpu1"]);
    expect(html).not.toContain("swatch chain");
  });

  it("the host has a lane of its own when it has a program, after the vCPUs", async () => {
    const scn = join(dir, "host-zap.yaml");
    writeFileSync(
      scn,
      [
        "name: host-zap",
        "vm: { memory: 8MiB, gpaw: 48, vcpus: 2 }",
        "backend: tdx",
        "schedule: { mode: random, seed: 3 }",
        "vcpus:",
        "  - - { op: accept, gpa: 0x0 }",
        "  - - { op: accept, gpa: 0x1000 }",
        "host:",
        "  - { op: zap, gpa: 0x0, size: 2MiB }",
      ].join("\n"),
    );
    const sched = join(dir, "host-zap.schedule.json");
    expect(await main(["run", scn, "--schedule-out", sched], io().o)).toBe(0);
    const tdx = builtinRegistry().source("tdx");
    const { choices } = JSON.parse(readFileSync(sched, "utf8")) as { choices: number[] };
    const run = raceRun(scheduleSteps(loadScenario(scn), { backend: tdx }, choices));
    expect(run.lanes).toEqual(["vcpu0", "vcpu1", "host"]);
    const host = run.steps.filter((st) => st.lane === 2);
    expect(host.length).toBeGreaterThan(0);
    const ops = host.map((st) => st.began).filter((b) => b !== null);
    expect(ops).toEqual(["zap gpa 0x0 size 2097152"]);
    const page = join(dir, "host-zap.html");
    expect(await main(["replay", sched, "--report", page], io().o)).toBe(0);
    expect(readFileSync(page, "utf8")).toMatch(/<th class="lane" [^>]*data-lane="2"[^>]*>host</);
  });
});

describe("the verdict of a search that found nothing", () => {
  it.each([
    ["exhausted", [SHARED], "exhausted, no violation", "no violation; the space is exhausted"],
    [
      "stopped",
      [SHARED, "--max-schedules", "3"],
      "stopped, no violation in the schedules explored",
      "no violation in the first 3 schedules; the space is not exhausted (--max-schedules)",
    ],
    [
      "bounded",
      [RACE, "--preemption-bound", "1"],
      "bounded, no violation within the preemption bound",
      "no violation in any schedule of at most 1 preemptions (all of them ran)",
    ],
  ] as const)("%s: the page says so, with the figures", async (verdict, args, h, detail) => {
    const page = join(dir, `${verdict}.html`);
    const x = io();
    expect(await main(["explore", ...args, "--json", "--report", page], x.o)).toBe(0);
    const r = JSON.parse(x.out()) as { schedules: number; skippedByReduction: number };
    expect(x.err()).toContain(`report      written to ${page}`);
    const html = readFileSync(page, "utf8");
    expect(html).toContain(`data-verdict="${verdict}"`);
    expect(html).toContain(`<h2>${h}</h2>`);
    expect(html).toContain(detail);
    const figure = (name: string, n: number) =>
      `<tr><td>${name}</td><td class="num">${n.toLocaleString("en-US")}</td></tr>`;
    expect(html).toContain(figure("schedules", r.schedules));
    expect(html).toContain(figure("branches skipped by the reduction", r.skippedByReduction));
    expect(html).toContain('<p id="no-run">');
    expect(rows(html).steps).toEqual([]);
  });
});

describe("a violation without a run to show", () => {
  it("names the schedule found, and says why no run is shown", async () => {
    const out = join(dir, "norun.schedule.json");
    const x = io();
    const args = ["explore", RACE, "--strategy", "atomic-then-hook", "--out", out, "--json"];
    expect(await main(args, x.o)).toBe(1);
    const r = exploreRaceReport(JSON.parse(x.out()) as ExploreReport, null);
    expect(r).toMatchObject({ verdict: "violation", run: null, replay: `tdpemu replay ${out}` });
    expect(r.violation).toMatchObject({ check: "kvm-bug", step: 18 });
    expect(renderRaceReport(r)).toContain("No run to show: the schedule, run again, did not end");
  });
});

describe("a schedule that could not be written", () => {
  it("is carried by the page instead of a replay command", async () => {
    const page = join(dir, "unsaved.html");
    const out = join(dir, "no-such-folder", "x.schedule.json");
    const args = ["explore", RACE, "--strategy", "atomic-then-hook", "--out", out];
    expect(await main([...args, "--report", page], io().o)).toBe(1);
    const html = readFileSync(page, "utf8");
    expect(html).not.toContain('id="replay-command"');
    const carried = /<pre class="command" id="unsaved-schedule">([^<]*)<\/pre>/.exec(html)![1]!;
    const sched = JSON.parse(carried.replace(/&quot;/g, '"')) as { choices: number[] };
    expect(sched.choices).toHaveLength(rows(html).steps.length);
  });
});

describe("--report refuses what it cannot write, before any work, with exit 2", () => {
  const before = () => new Set(readdirSync(dir));
  it.each([
    [
      "a folder that does not exist",
      (p: string) => join(p, "no-such-folder", "r.html"),
      /folder '.*no-such-folder' does not exist/,
    ],
    ["a folder", (p: string) => p, /is a folder; expected a file path such as race.html/],
    ["an empty path", () => "", /an empty path; expected a file path/],
  ])("explore and replay: %s", async (_, path, message) => {
    const sched = join(dir, "refused.schedule.json");
    expect(await main(["run", SHARED, "--schedule-out", sched], io().o)).toBe(0);
    const out = join(dir, "never.schedule.json");
    const seen = before();
    const explore = ["explore", RACE, "--strategy", "atomic-then-hook", "--out", out];
    for (const args of [explore, ["replay", sched]]) {
      const x = io();
      expect(await main([...args, "--report", path(dir)], x.o)).toBe(2);
      expect(x.err().split("\n")).toHaveLength(1);
      expect(x.err()).toMatch(new RegExp(`^tdpemu: ${args[0]}: --report: .*${message.source}`));
      expect(x.out()).toBe("");
    }
    expect(existsSync(out)).toBe(false);
    expect(new Set(readdirSync(dir))).toEqual(seen);
  });

  it("explore: --report with --jobs or --shard is refused, saying what to do instead", async () => {
    for (const split of [
      ["--jobs", "2"],
      ["--shard", "0/2"],
    ]) {
      const x = io();
      const page = join(dir, "split.html");
      expect(await main(["explore", RACE, ...split, "--report", page], x.o)).toBe(2);
      expect(x.err()).toMatch(/^tdpemu: explore: --report and --jobs\/--shard: .*replay --report/);
      expect(existsSync(join(dir, "split.html"))).toBe(false);
    }
  });
});

describe("the page escapes what it shows", () => {
  it("a hostile scenario name, task name, message and SPTE text stay text", () => {
    const evil = `<img src=x onerror="alert(1)">'&</script><script>alert(2)</script>`;
    const report: RaceReport = {
      command: "replay",
      scenario: evil,
      setup: [["backend", evil]],
      verdict: "violation",
      headline: `violation: [${evil}]`,
      detail: evil,
      violation: { check: evil, message: evil, step: 1 },
      figures: [[evil, evil]],
      run: {
        lanes: [evil],
        chain: [1],
        violation: { check: evil, message: evil, step: 1 },
        steps: [
          {
            n: 1,
            lane: 0,
            began: evil,
            other: [evil],
            reads: null,
            chain: 1,
            failing: true,
            switched: false,
            sptes: [
              {
                by: evil,
                mirror: false,
                level: 1,
                gfn: evil,
                gpa: evil,
                text: evil,
                old: { hex: evil, kind: evil, pfn: evil, flags: [evil] },
                new: { hex: evil, kind: evil, pfn: null, flags: [] },
              },
            ],
            calls: [
              {
                name: evil,
                detail: evil,
                status: evil,
                tone: "error",
                injected: false,
                text: evil,
              },
            ],
          },
        ],
      },
      runNote: evil,
      replay: `tdpemu replay ${shellWord(evil)}`,
      unsavedSchedule: null,
    };
    const html = renderRaceReport(report);
    expect(html).not.toContain("<img");
    expect(html).not.toContain("alert(2)</script>");
    expect(html.match(/<script>/g)).toHaveLength(1);
    expect(html).toContain(
      "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&#39;&amp;&lt;/script&gt;",
    );
    expect(html.match(/&lt;img/g)!.length).toBeGreaterThanOrEqual(20);
  });
});
