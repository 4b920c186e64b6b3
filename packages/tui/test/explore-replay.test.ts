/** `tdpemu explore` and `tdpemu replay` from the command line. */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Report, ScheduleFile } from "@tdpemu/core";
import { afterAll, describe, expect, it } from "vitest";
import type { ExploreReport } from "../src/commands/explore-report.js";
import { main, type Io } from "../src/index.js";

const dir = mkdtempSync(join(tmpdir(), "tdpemu-explore-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const SCN = resolve("scenarios/race-shared-table.yaml");

function io() {
  const out: string[] = [];
  const err: string[] = [];
  const o: Io = { out: (t) => out.push(t), err: (t) => err.push(t) };
  return { o, out: () => out.join("\n"), err: () => err.join("\n") };
}

describe("tdpemu explore", () => {
  it("exhausts the race scenario without the unsafe option: exit 0, counts reported", async () => {
    const x = io();
    expect(await main(["explore", SCN, "--json"], x.o)).toBe(0);
    const r = JSON.parse(x.out()) as ExploreReport;
    expect(r).toMatchObject({
      scenario: "race-shared-table",
      backend: "plain",
      exhausted: true,
      violation: null,
    });
    expect(r.schedules).toBeGreaterThan(100);
    expect(r.skippedByReduction).toBeGreaterThan(0);
    expect(r.schedulesPerSecond).toBeGreaterThan(0);
  });

  it("a bound that cut branches is not called an exhausted space (B6)", async () => {
    const x = io();
    expect(
      await main(["explore", "scenarios/tdx-race-2m-4k.yaml", "--preemption-bound", "1"], x.o),
    ).toBe(0);
    expect(x.out()).toMatch(
      /^result {6}no violation in any schedule of at most 1 preemptions \(all of them ran\); the bound cut [\d,]+ branches, so the space beyond it is not exhausted/m,
    );
    expect(x.out()).not.toMatch(/the space is exhausted/);
    const j = io();
    expect(
      await main(
        ["explore", "scenarios/tdx-race-2m-4k.yaml", "--preemption-bound", "1", "--json"],
        j.o,
      ),
    ).toBe(0);
    expect(JSON.parse(j.out())).toMatchObject({ exhausted: true, spaceExhausted: false });
    const whole = io();
    expect(await main(["explore", SCN, "--json"], whole.o)).toBe(0);
    expect(JSON.parse(whole.out())).toMatchObject({
      exhausted: true,
      spaceExhausted: true,
      prunedByBound: 0,
    });
  });

  it("with --unsafe-non-atomic-set finds a violation, exits 1 and writes the schedule", async () => {
    const out = join(dir, "v.schedule.json");
    const x = io();
    expect(await main(["explore", SCN, "--unsafe-non-atomic-set", "--out", out], x.o)).toBe(1);
    expect(x.out()).toMatch(/violation\s+in schedule \d+/);
    expect(x.out()).toContain(`tdpemu replay ${out}`);
    const file = JSON.parse(readFileSync(out, "utf8")) as ScheduleFile;
    expect(file.format).toBe("tdpemu-schedule/1");
    expect(file.mmu).toEqual({ strategy: "freeze", unsafeNonAtomicSet: true, tdxHugePages: false });
    expect(file.choices.length).toBeGreaterThan(5);

    // Replay reproduces the violation, with the same trace byte for byte each time.
    const t1 = join(dir, "t1.jsonl");
    const t2 = join(dir, "t2.jsonl");
    const a = io();
    expect(await main(["replay", out, "--trace", t1], a.o)).toBe(1);
    expect(a.out()).toMatch(/no-leaked-table/);
    expect(await main(["replay", out, "--trace", t2], io().o)).toBe(1);
    expect(readFileSync(t2, "utf8")).toBe(readFileSync(t1, "utf8"));
    expect(readFileSync(t1, "utf8").split("\n").length).toBeGreaterThan(10);

    // --steps shows the two links of the level-1 table, the second over the first.
    const s = io();
    await main(["replay", out, "--steps"], s.o);
    expect(s.out().match(/store L2 gfn 0x0: 0x8000000000000000 → /g)?.length).toBe(1);
    expect(s.out()).toMatch(
      /store L2 gfn 0x0: 0x80000000[0-9a-f]{5}907 → 0x80000000[0-9a-f]{5}907/,
    );
  });

  it("a violation is shrunk to the fewest preemptions and drawn as the race, one column per task; replay --diagram draws the same", async () => {
    const out = join(dir, "aah.schedule.json");
    const shrunk = join(dir, "aah.shrunk.schedule.json");
    const x = io();
    expect(
      await main(
        [
          "explore",
          resolve("scenarios/tdx-race-2m-4k.yaml"),
          "--strategy",
          "atomic-then-hook",
          "--out",
          out,
        ],
        x.o,
      ),
    ).toBe(1);
    expect(x.out()).toMatch(
      /^the race, shrunk to 18 steps and 1 preemption \(the steps that lead to the violation\):$/m,
    );
    expect(x.out()).toContain(`replay it with: tdpemu replay ${shrunk} --diagram`);
    const race = x.out().slice(x.out().indexOf("the race"));
    const d = io();
    expect(await main(["replay", shrunk, "--diagram"], d.o)).toBe(1);
    const lines = d.out().split("\n");
    // The account of the TDX patch: vcpu0 publishes the L2 mirror entry before its SEPT.ADD at
    // L2, vcpu1 walks into the new table and its AUG below it fails.
    expect(lines[0]).toMatch(/^step\s+vcpu0\s+vcpu1$/);
    const col = lines[0]!.indexOf("vcpu1");
    const at = (re: RegExp) => lines.find((l) => re.test(l));
    expect(at(/cmpxchg mirror L2 gfn 0x0/)!.indexOf("cmpxchg")).toBeLessThan(col);
    expect(at(/TDH\.MEM\.PAGE\.AUG gpa 0x1000/)!.indexOf("TDH.MEM.PAGE.AUG")).toBe(col);
    expect(d.out()).toMatch(
      /^=> \[kvm-bug\] KVM_BUG: SEAMCALL TDH\.MEM\.PAGE\.AUG failed: 0xC0000B0000000001/m,
    );
    expect(d.out()).toMatch(/^\((\d+) of 18 steps: the chain of conflicting steps/m);
    expect(Number(/\((\d+) of 18 steps/.exec(d.out())![1])).toBeLessThan(9);
    // explore printed the same lines, indented.
    for (const l of lines) expect(race).toContain(`  ${l}`);
    // A schedule that is not the scenario's is bad input, as for a plain replay.
    const bad = join(dir, "bad.schedule.json");
    const sf = JSON.parse(readFileSync(shrunk, "utf8")) as { choices: number[] };
    writeFileSync(
      bad,
      JSON.stringify({ ...sf, choices: [...sf.choices.slice(0, 3), 7, ...sf.choices.slice(3)] }),
    );
    const b = io();
    expect(await main(["replay", bad, "--diagram"], b.o)).toBe(2);
    expect(b.err()).toMatch(
      /replay: choice 4 names task 7, which does not exist: the schedule is not this scenario's/,
    );
    // --algorithm is checked before --jobs starts its threads.
    const j = io();
    const bounded = ["--preemption-bound", "2", "--algorithm", "optimal"];
    expect(await main(["explore", SCN, "--jobs", "2", ...bounded], j.o)).toBe(2);
    expect(j.err()).toMatch(/--algorithm optimal and --preemption-bound/);
    // A schedule that ends in no violation has no race to draw.
    const clean = join(dir, "clean.schedule.json");
    expect(await main(["run", SCN, "--seed", "3", "--schedule-out", clean], io().o)).toBe(0);
    const c = io();
    expect(await main(["replay", clean, "--diagram"], c.o)).toBe(0);
    expect(c.out()).toMatch(/^no violation: the schedule runs to its end/);
  });

  it("the lost-table race, drawn: vcpu1 links the level-1 table, vcpu0's non-atomic store overwrites the link", async () => {
    const out = join(dir, "lost.schedule.json");
    const x = io();
    expect(await main(["explore", SCN, "--unsafe-non-atomic-set", "--out", out], x.o)).toBe(1);
    const race = x.out().slice(x.out().indexOf("the race"));
    const lines = race.split("\n");
    const col = lines[1]!.indexOf("vcpu1");
    const link = lines.findIndex((l) => /store L2 gfn 0x0: 0x8000000000000000 →/.test(l));
    const overwrite = lines.findIndex((l) =>
      /store L2 gfn 0x0: 0x80000000[0-9a-f]{5}907 →/.test(l),
    );
    expect(link).toBeGreaterThan(0);
    expect(overwrite).toBeGreaterThan(link);
    expect(lines[link]!.indexOf("store")).toBe(col);
    expect(lines[overwrite]!.indexOf("store")).toBeLessThan(col);
    expect(race).toMatch(/=> \[(stats-match-tables|no-leaked-table)\]/);
  });

  it("--tdx-huge-pages switches on 2 MiB private pages, and the schedule it writes replays with them", async () => {
    // The 2M-leaf race without the scenario's own switch: the flag alone turns it on.
    const text = readFileSync(resolve("scenarios/tdx-race-2m-leaf.yaml"), "utf8").replace(
      "tdxHugePages: true",
      "tdxHugePages: false",
    );
    const scn = join(dir, "race-2m-leaf-off.yaml");
    writeFileSync(scn, text);
    const off = io();
    expect(await main(["run", scn, "--json"], off.o)).toBe(0);
    expect((JSON.parse(off.out()) as Report).stats.pages["2m"]).toBe(0);
    const on = io();
    expect(await main(["run", scn, "--json", "--tdx-huge-pages", "--seed", "3"], on.o)).toBe(0);
    const calls = (JSON.parse(on.out()) as Report).backendStats.calls;
    expect(calls["TDH.MEM.PAGE.AUG"]).toBeGreaterThan(0);
    const out = join(dir, "race-2m-leaf.json");
    const x = io();
    expect(
      await main(
        ["explore", scn, "--tdx-huge-pages", "--strategy", "atomic-then-hook", "--out", out],
        x.o,
      ),
    ).toBe(1);
    expect(x.out()).toContain("TDX huge pages");
    const written = JSON.parse(readFileSync(out, "utf8")) as ScheduleFile;
    expect(written.mmu).toEqual({
      strategy: "atomic-then-hook",
      unsafeNonAtomicSet: false,
      tdxHugePages: true,
    });
    const r = io();
    expect(await main(["replay", out], r.o)).toBe(1);
    expect(r.out()).toMatch(/EPT_WALK_FAILED/);
  });

  it("a preemption bound and a schedule cap are reported", async () => {
    const x = io();
    expect(
      await main(
        ["explore", SCN, "--preemption-bound", "1", "--max-schedules", "3", "--json"],
        x.o,
      ),
    ).toBe(0);
    const r = JSON.parse(x.out()) as ExploreReport;
    expect(r.schedules).toBe(3);
    expect(r.exhausted).toBe(false);
    expect(r.preemptionBound).toBe(1);
  });

  it("a search whose last schedule is the cap's is exhausted; one short of it is not", async () => {
    const report = async (...args: string[]) => {
      const x = io();
      expect(await main(["explore", SCN, "--json", ...args], x.o)).toBe(0);
      return JSON.parse(x.out()) as ExploreReport;
    };
    for (const algorithm of ["optimal", "sleep"]) {
      const whole = await report("--algorithm", algorithm);
      expect(whole.exhausted).toBe(true);
      const n = whole.schedules;
      const at = await report("--algorithm", algorithm, "--max-schedules", String(n));
      const short = await report("--algorithm", algorithm, "--max-schedules", String(n - 1));
      expect([at.schedules, at.exhausted]).toEqual([n, true]);
      expect([short.schedules, short.exhausted]).toEqual([n - 1, false]);
    }
  });

  it("bad input exits 2 with one line", async () => {
    for (const args of [
      ["explore"],
      ["explore", SCN, "--max-schedules", "0"],
      ["explore", SCN, "--preemption-bound", "x"],
      ["replay"],
      ["replay", join(dir, "missing.json")],
    ]) {
      const x = io();
      expect(await main(args, x.o), args.join(" ")).toBe(2);
      expect(x.err().split("\n")).toHaveLength(1);
      expect(x.err()).toMatch(/^tdpemu: /);
    }
    const bad = join(dir, "bad.json");
    writeFileSync(
      bad,
      JSON.stringify({
        format: "tdpemu-schedule/1",
        scenario: SCN,
        backend: "plain",
        interleave: true,
        choices: [0, 7],
      }),
    );
    const x = io();
    expect(await main(["replay", bad], x.o)).toBe(2);
    expect(x.err()).toMatch(/replay: choice 1 names task 7, which cannot run there/);
  });
});

describe("tdpemu run --schedule-out", () => {
  it("records a random run; replay gives the same report and the same trace", async () => {
    const sched = join(dir, "run.schedule.json");
    const t1 = join(dir, "run1.jsonl");
    const t2 = join(dir, "run2.jsonl");
    const a = io();
    expect(
      await main(
        ["run", SCN, "--seed", "5", "--schedule-out", sched, "--trace", t1, "--json"],
        a.o,
      ),
    ).toBe(0);
    const b = io();
    expect(await main(["replay", sched, "--trace", t2, "--json"], b.o)).toBe(0);
    expect(readFileSync(t2, "utf8")).toBe(readFileSync(t1, "utf8"));
    const replayed = JSON.parse(b.out()) as Report;
    expect(replayed.stats).toEqual((JSON.parse(a.out()) as Report).stats);
    // The seed is the one the schedule was recorded with (--seed 5), not the scenario's (B3).
    expect(replayed.seed).toBe(5);
    const c = io();
    expect(await main(["replay", sched], c.o)).toBe(0);
    expect(c.out()).toMatch(/^scenario .*\(backend plain, seed 5, /);
  });
});
