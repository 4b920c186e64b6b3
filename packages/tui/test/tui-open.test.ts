/**
 * `tdpemu tui` opens what explore finds: a schedule file, or a scenario whose schedule is
 * `mode: replay`, is replayed exactly (B2); `--seed`, `--inject` and `--strategy` act as for
 * `run`; what the run refuses is one line before the UI starts (B5), not an error screen.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createElement } from "react";
import { render } from "ink-testing-library";
import { afterAll, describe, expect, it } from "vitest";
import { loadScenario } from "@tdpemu/core";
import { main } from "../src/index.js";
import { builtinRegistry } from "../src/registry.js";
import { openSchedule } from "../src/schedule-source.js";
import { Session } from "../src/session.js";
import { App } from "../src/ui/app.js";
import { captureIo, expectOneLine } from "./capture-io.js";

const dir = mkdtempSync(join(tmpdir(), "tdpemu-tui-open-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function tdpemu(...args: string[]) {
  const io = captureIo();
  const code = await main(args, io);
  return { code, out: io.outText(), err: io.errText() };
}

/** Steps a session to its end; returns its violations. */
function finish(s: Session): string[] {
  while (s.step()) {
    /* to the end */
  }
  return s.snapshot().violations;
}

describe("the UI opens a recorded schedule", () => {
  it("replays what explore found, to the step that failed, with the violation replay reports", async () => {
    const sched = join(dir, "race.json");
    expect(
      (
        await tdpemu(
          "explore",
          "scenarios/race-shared-table.yaml",
          "--unsafe-non-atomic-set",
          "--out",
          sched,
        )
      ).code,
    ).toBe(1);
    const replayed = await tdpemu("replay", sched, "--json");
    const expected = (
      JSON.parse(replayed.out) as {
        invariants: { violations: { check: string; message: string }[] };
        steps: number;
      }
    ).invariants.violations;
    expect(expected.length).toBeGreaterThan(0);
    const registry = builtinRegistry();
    const opened = await openSchedule(sched, registry, false);
    const s = new Session(opened.scn, registry, opened.backend, {
      strategy: opened.sched.mmu.strategy,
      unsafeNonAtomicSet: opened.sched.mmu.unsafeNonAtomicSet,
      replay: opened.sched.choices,
      interleave: opened.sched.interleave,
    });
    expect(finish(s)).toEqual(expected.map((v) => `[${v.check}] ${v.message}`));
    expect(s.snapshot().choices).toBe(opened.sched.choices.length);
  });

  it("a scenario with schedule mode replay is replayed, not run round-robin (B2)", async () => {
    const sched = join(dir, "race2.json");
    expect(
      (
        await tdpemu(
          "explore",
          "scenarios/race-shared-table.yaml",
          "--unsafe-non-atomic-set",
          "--out",
          sched,
        )
      ).code,
    ).toBe(1);
    // The same scenario, told to replay that schedule (and with the buggy kernel of the recording).
    const text = (await import("node:fs"))
      .readFileSync("scenarios/race-shared-table.yaml", "utf8")
      .replace(/^schedule:.*$/m, `schedule: { mode: replay, file: ${sched} }`);
    const scnPath = join(dir, "replaying.yaml");
    writeFileSync(scnPath, text);
    expect(text).toMatch(/mode: replay/);
    const run = await tdpemu("run", scnPath, "--unsafe-non-atomic-set", "--json");
    expect(run.code).toBe(1);
    const s = new Session(loadScenario(scnPath), builtinRegistry(), "plain", {
      unsafeNonAtomicSet: true,
      replay: (await openSchedule(sched, builtinRegistry(), false)).sched.choices,
    });
    const runViolations = (
      JSON.parse(run.out) as { invariants: { violations: { check: string; message: string }[] } }
    ).invariants.violations;
    expect(finish(s)).toEqual(runViolations.map((v) => `[${v.check}] ${v.message}`));
  });

  it("one key (v) runs the race explore found with atomic-then-hook to the failing TDH.MEM.PAGE.AUG", async () => {
    const sched = join(dir, "2m4k.json");
    expect(
      (
        await tdpemu(
          "explore",
          "scenarios/tdx-race-2m-4k.yaml",
          "--strategy",
          "atomic-then-hook",
          "--out",
          sched,
        )
      ).code,
    ).toBe(1);
    const registry = builtinRegistry();
    const opened = await openSchedule(sched, registry, false);
    const session = new Session(opened.scn, registry, opened.backend, {
      strategy: opened.sched.mmu.strategy,
      replay: opened.sched.choices,
      interleave: opened.sched.interleave,
    });
    const ui = render(
      createElement(App, {
        scenario: opened.scn,
        registry,
        backend: opened.backend,
        session,
        frameMs: 0,
      }),
    );
    ui.stdin.write("v");
    const end = Date.now() + 10_000;
    while (!/violations:/.test(ui.lastFrame() ?? "") && Date.now() < end)
      await new Promise((r) => setTimeout(r, 20));
    const frame = ui.lastFrame() ?? "";
    expect(frame).toMatch(/violations: \[kvm-bug\] .*TDH\.MEM\.PAGE\.AUG failed/);
    // The walk is on the GPA the failing vCPU was accepting.
    expect(session.walkGpa).toBe(0x1000);
    expect(frame).toMatch(/walk of GPA 0x1000/);
    expect(frame).toMatch(/TDH\.MEM\.PAGE\.AUG.*: (?!SUCCESS)/);
    expect(frame).toMatch(new RegExp(`step ${opened.sched.choices.length} `));
    ui.unmount();
  });

  it("a schedule file cannot be changed from the command line", async () => {
    const sched = join(dir, "plain.json");
    expect((await tdpemu("run", "scenarios/zap-refault.yaml", "--schedule-out", sched)).code).toBe(
      0,
    );
    for (const opt of [
      ["--seed", "3"],
      ["--backend", "sev"],
      ["--strategy", "freeze"],
      ["--inject", "TDH.MEM.PAGE.AUG:1:OPERAND_BUSY"],
    ]) {
      expectOneLine(
        await tdpemu("tui", sched, ...opt),
        new RegExp(`tui: ${opt[0]}: a schedule file is replayed as it was recorded`),
      );
    }
  });
});

describe("the UI's command line checks what the run would refuse, before the UI starts", () => {
  it("an unknown call to inject is one line, not an error screen (B5)", async () => {
    const f = join(dir, "inject.yaml");
    writeFileSync(
      f,
      "name: x\nvm: { memory: 4MiB, vcpus: 1 }\nbackend: tdx\ninject:\n  - { call: TDH.NOPE, nth: 1, status: OPERAND_BUSY }\nvcpus:\n  - - { op: access, gpa: 0x0 }\n",
    );
    expectOneLine(await tdpemu("tui", f), /inject TDH\.NOPE: unknown TDX call 'TDH\.NOPE'/);
    expectOneLine(
      await tdpemu(
        "tui",
        "scenarios/zap-refault.yaml",
        "--backend",
        "tdx",
        "--inject",
        "TDH.NOPE:1:OPERAND_BUSY",
      ),
      /inject TDH\.NOPE: unknown TDX call/,
    );
  });

  it("--seed is checked as run checks it; a good command line gets as far as the terminal", async () => {
    expectOneLine(
      await tdpemu("tui", "scenarios/zap-refault.yaml", "--seed=-1"),
      /tui: --seed: expected an integer from 0 to 2\^32-1/,
    );
    expectOneLine(
      await tdpemu(
        "tui",
        resolve("scenarios/zap-refault.yaml"),
        "--seed",
        "5",
        "--strategy",
        "freeze",
      ),
      /tui: the terminal UI needs a terminal/,
    );
  });
});
