/**
 * `--trace-format chrome`: the built command's traces open as Perfetto and chrome://tracing read
 * them, one per backend and with several vCPUs, and say what the run did: a slice per op, named
 * and ordered as the scenario's ops, a slice per fault inside its op, an instant per call with
 * its status, a counter that ends at the report's page counts, and each record at the time of
 * its event in the same run's JSONL trace. A replay writes the same file; a run stopped by a
 * violation or killed mid-way still gives a valid trace that says so.
 */
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadScenario } from "@tdpemu/core";
import { checkChromeTrace, traceEvents, type Slice } from "./chrome-trace-check.js";

const dir = mkdtempSync(join(tmpdir(), "tdpemu-chrome-trace-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const cli = resolve("packages/tui/dist/tdpemu.mjs");

type Rec = Record<string, unknown> & { name: string; ph: string; ts: number; tid: number };

function tdpemu(...args: string[]) {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: "utf8" });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

interface Report {
  stats: { faults: number; pages: Record<string, number> };
  invariants: { violations: unknown[] };
}

/** The run's chrome trace, checked, with its JSONL trace and JSON report. */
function traced(args: string[], name: string) {
  const file = join(dir, `${name}.json`);
  const jsonl = join(dir, `${name}.jsonl`);
  const r = tdpemu(...args, "--json", "--trace", file, "--trace-format", "chrome");
  expect(r.err).toBe("");
  const again = tdpemu(...args, "--trace", jsonl);
  expect(again.code).toBe(r.code);
  const recs = traceEvents(JSON.parse(readFileSync(file, "utf8"))) as Rec[];
  const events = readFileSync(jsonl, "utf8")
    .trimEnd()
    .split("\n")
    .map((l) => JSON.parse(l) as Rec);
  const report = JSON.parse(r.out) as Report;
  return { code: r.code, report, recs, events, check: checkChromeTrace(recs) };
}

function taskOf(check: ReturnType<typeof checkChromeTrace>, s: Slice): string {
  return check.threads.get(`${s.pid}:${s.tid}`)!;
}

const SCENARIOS = [
  ["race-shared-table", "plain, two vCPUs interleaved"],
  ["dirty-log", "plain, host ops"],
  ["tdx-race-2m-4k", "TDX, two vCPUs interleaved"],
  ["tdx-populate-teardown", "TDX, host ops and an injected failure"],
  ["sev-hugepages", "SEV-SNP"],
  ["cca-realm-life", "CCA, two vCPUs and host ops"],
] as const;

describe("run --trace-format chrome", () => {
  for (const [name, what] of SCENARIOS) {
    it(`${name} (${what}): a sound trace of every op, fault and call`, () => {
      const path = `scenarios/${name}.yaml`;
      const { code, report, recs, events, check } = traced(["run", path], name);
      expect(code).toBe(0);
      expect(check.problems).toEqual([]);

      // One track per task, named: the host and each vCPU.
      const scn = loadScenario(path);
      const tasks = ["host", ...scn.vcpus.map((_, i) => `vcpu${i}`)];
      expect([...check.threads.values()].sort()).toEqual(tasks.sort());

      // The op slices are the scenario's ops, in order, on their task's track, all finished.
      const ops = check.slices.filter((s) => s.cat === "op");
      for (const task of tasks) {
        const want =
          task === "host"
            ? scn.host.map((op) => (op.op === "plugin" ? op.name : op.op))
            : scn.vcpus[Number(task.slice(4))]!.map((op) => op.op);
        const mine = ops.filter((s) => taskOf(check, s) === task).sort((a, b) => a.start - b.start);
        expect(
          mine.map((s) => s.name),
          task,
        ).toEqual(want);
        for (const s of mine) expect(s.end, `${task} ${s.name} ends`).toBeLessThan(Infinity);
      }

      // A fault slice per fault, each inside an op of its task: its vCPU's, or the host's for
      // the faults a populate takes (vcpu -1).
      const faults = check.slices.filter((s) => s.cat === "fault");
      expect(faults).toHaveLength(report.stats.faults);
      for (const f of faults) {
        expect(f.parent?.cat, `${f.name} at ${f.start} lies in an op`).toBe("op");
        const vcpu = f.args.vcpu as number;
        expect(taskOf(check, f)).toBe(vcpu < 0 ? "host" : `vcpu${vcpu}`);
      }

      // Every call instant carries its status; there are some on every backend but plain.
      const calls = recs.filter((r) => r.cat === "call");
      for (const c of calls) expect((c.args as { status: unknown }).status, c.name).toMatch(/\S/);
      if (scn.backend !== "plain") expect(calls.length).toBeGreaterThan(0);

      // The counter ends where the report's page counts do.
      const last = recs.filter((r) => r.ph === "C").at(-1)!;
      const pages = report.stats.pages;
      expect(last.args).toEqual({ "4K": pages["4k"], "2M": pages["2m"], "1G": pages["1g"] });

      // Each record sits at its event's index in the JSONL trace of the same run.
      expect(events.length).toBeGreaterThan(0);
      for (const r of recs) {
        const at = (i: number) => events[i]!;
        if (r.ph === "i") {
          const e = at(Math.floor(r.ts));
          expect(r.ts % 1).toBe(0.5);
          expect(e.type).toBe(r.cat);
          expect(e.task).toBe(check.threads.get(`1:${r.tid}`));
          const status = (r.args as Rec).status;
          if (r.cat === "call") expect([e.name, e.status]).toEqual([r.name, status]);
        }
        const op = { type: "op", op: r.name };
        if (r.ph === "B") expect(at(r.ts)).toMatchObject({ ...op, phase: "start" });
        if (r.ph === "E") expect(at(r.ts - 1)).toMatchObject({ ...op, phase: "end" });
        if (r.ph === "X") {
          const e = at(r.ts + (r.dur as number) - 1);
          expect(e).toMatchObject({ type: "fault", gpa: Number((r.args as Rec).gpa) });
          // The slice starts at an event of its own task.
          expect(at(r.ts).task).toBe(e.task);
        }
      }
    });
  }

  it("TDX: every SEAMCALL is an instant with its status, an injected one marked", () => {
    const args = ["run", "scenarios/tdx-populate-teardown.yaml"];
    const { recs, events } = traced(args, "tdx-seamcalls");
    const seamcalls = recs.filter((r) => r.cat === "call" && r.name.startsWith("TDH."));
    const inTrace = events.filter((e) => e.type === "call" && e.name.startsWith("TDH."));
    expect(seamcalls.length).toBe(inTrace.length);
    expect(seamcalls.length).toBeGreaterThan(10);
    const injected = seamcalls.filter((r) => (r.args as Rec).injected === true);
    expect(injected.map((r) => [r.name, (r.args as Rec).status])).toEqual([
      ["TDH.PHYMEM.PAGE.RECLAIM", "PAGE_METADATA_INCORRECT"],
    ]);
  });
});

describe("replay --trace-format chrome", () => {
  it("a replay writes the run's trace byte for byte", () => {
    const sched = join(dir, "race.schedule.json");
    const a = join(dir, "run.json");
    const b = join(dir, "replay.json");
    const scn = "scenarios/race-shared-table.yaml";
    const chrome = ["--trace-format", "chrome"];
    const recorded = tdpemu(
      "run",
      scn,
      "--seed",
      "5",
      "--schedule-out",
      sched,
      "--trace",
      a,
      ...chrome,
    );
    expect(recorded.code).toBe(0);
    expect(tdpemu("replay", sched, "--trace", b, ...chrome).code).toBe(0);
    expect(readFileSync(b, "utf8")).toBe(readFileSync(a, "utf8"));
  });

  it("a violation's run ends its open ops as unfinished, and the trace stays sound", () => {
    const sched = join(dir, "violation.schedule.json");
    const scn = "scenarios/race-shared-table.yaml";
    expect(tdpemu("explore", scn, "--unsafe-non-atomic-set", "--out", sched).code).toBe(1);
    const { code, report, check } = traced(["replay", sched], "violation");
    expect(code).toBe(1);
    expect(report.invariants.violations.length).toBeGreaterThan(0);
    expect(check.problems).toEqual([]);
    const ops = check.slices.filter((s) => s.cat === "op");
    for (const s of ops) expect(s.end).toBeLessThan(Infinity);
    expect(ops.filter((s) => s.args.unfinished === true).length).toBeGreaterThan(0);
  });
});

describe("a chrome trace cut short", () => {
  it("a run killed mid-way leaves valid JSON that ends with an 'interrupted' instant", async () => {
    const out = join(dir, "cut.json");
    const args = ["run", "scenarios/sequential-1g.yaml", "--trace", out, "--trace-format=chrome"];
    const child = spawn(process.execPath, [cli, ...args], { stdio: "ignore" });
    // Once a chunk of records is on disk (the header and its trailer alone are small), kill it.
    const t0 = Date.now();
    while ((!existsSync(out) || statSync(out).size < 100_000) && Date.now() - t0 < 60_000) {
      await new Promise((r) => setTimeout(r, 20));
    }
    child.kill("SIGINT");
    await new Promise((r) => child.once("exit", r));
    const recs = traceEvents(JSON.parse(readFileSync(out, "utf8"))) as Rec[];
    const last = recs.at(-1)!;
    expect([last.name, last.ph, last.s]).toEqual(["interrupted", "i", "g"]);
    expect(recs.slice(0, -1).some((r) => r.name === "interrupted")).toBe(false);
    const check = checkChromeTrace(recs);
    expect(check.problems).toEqual([]);
    // The op under way is closed by the trailer, marked unfinished.
    const op = check.slices.find((s) => s.cat === "op")!;
    expect(op.args.unfinished).toBe(true);
    expect(check.slices.filter((s) => s.cat === "fault").length).toBeGreaterThan(100);
  }, 90_000);

  it("written to a pipe, where no trailer can be taken back, a whole run is whole JSON", () => {
    const out = join(dir, "piped.json");
    // The trace goes to stderr, which is the pipe; the summary on stdout is dropped.
    const run = `"${process.execPath}" "${cli}" run scenarios/dirty-log.yaml --trace /dev/stderr`;
    const sh = `${run} --trace-format chrome 2>&1 >/dev/null | cat > "${out}"`;
    expect(spawnSync("bash", ["-c", sh]).status).toBe(0);
    const recs = traceEvents(JSON.parse(readFileSync(out, "utf8"))) as Rec[];
    expect(checkChromeTrace(recs).problems).toEqual([]);
    expect(recs.some((r) => r.name === "interrupted")).toBe(false);
    expect(recs.filter((r) => r.cat === "op").length).toBeGreaterThan(0);
  });
});

describe("--trace-format: bad input is one line, exit 2", () => {
  for (const cmd of ["run", "replay"]) {
    it(`${cmd}: a format that is not jsonl or chrome, or one with no --trace`, () => {
      // Before the scenario or schedule is read: the schedule need not exist.
      const target = cmd === "run" ? "scenarios/race-shared-table.yaml" : join(dir, "no.json");
      const bad = tdpemu(cmd, target, "--trace", join(dir, "x.json"), "--trace-format", "perfetto");
      expect(bad.code).toBe(2);
      const got = "expected jsonl or chrome, got 'perfetto'";
      expect(bad.err).toBe(`tdpemu: ${cmd}: --trace-format: ${got}\n`);
      expect(existsSync(join(dir, "x.json"))).toBe(false);
      const alone = tdpemu(cmd, target, "--trace-format", "chrome");
      expect(alone.code).toBe(2);
      const want = "expected --trace <file> to write the trace to";
      expect(alone.err).toBe(`tdpemu: ${cmd}: --trace-format chrome: ${want}\n`);
    });
  }
});
