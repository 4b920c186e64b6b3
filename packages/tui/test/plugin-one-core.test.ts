/**
 * A plugin written outside the workspace, against the backend SDK alone, runs through the bundled
 * `tdpemu` binary with the binary's own core: its `KvmBug` is a violation (exit 1, a schedule
 * that replays), its `CallCounts` count, and its own injectables resolve in the command's
 * tsyringe container. The plugin's folder has no node_modules: every import it makes of the SDK,
 * `tsyringe` or `reflect-metadata` is linked to the command's instance.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { ScheduleFile } from "@tdpemu/core";
import { afterAll, describe, expect, it } from "vitest";
import { writeFlushLimitPlugin } from "./outside-plugin.js";
import { withoutProgress } from "./capture-io.js";

const CLI = resolve("packages/tui/dist/tdpemu.mjs");
const dir = mkdtempSync(join(tmpdir(), "tdpemu-outside-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function tdpemu(...args: string[]) {
  const p = spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", timeout: 120_000 });
  return { code: p.status, out: p.stdout, err: p.stderr };
}

const plugin = writeFlushLimitPlugin(dir, "flush-limit", 1);
// The same, with a limit no run reaches: for the commands that need a clean run.
const quiet = writeFlushLimitPlugin(dir, "flush-quiet", 1e9);

describe("a plugin outside the workspace, through the bundled binary", () => {
  it("run: the plugin's KvmBug is a kvm-bug violation, exit 1, with its injected limit", () => {
    const r = tdpemu("run", "scenarios/zap-refault.yaml", "--backend", plugin, "--strict-plugin");
    expect(r.err).toBe("");
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/backend flush-limit/);
    // zap-refault's host: 2 × 256 MiB of guest memory + 64 MiB, in 4K frames.
    expect(r.out).toMatch(
      /\[kvm-bug\] step \d+: KVM_BUG: flush-limit: flush 2 is past the limit of 1 \(host of 147456 frames\)/,
    );
  });

  it("explore writes the violating schedule, and replay reproduces it", () => {
    const out = join(dir, "violation.json");
    const e = tdpemu(
      "explore",
      "scenarios/race-shared-table.yaml",
      "--backend",
      plugin,
      "--out",
      out,
      "--strict-plugin",
    );
    expect(withoutProgress(e.err)).toBe("");
    expect(e.code).toBe(1);
    expect(e.out).toMatch(/\[kvm-bug\]/);
    expect(existsSync(out)).toBe(true);
    const schedule = JSON.parse(readFileSync(out, "utf8")) as ScheduleFile;
    expect(schedule.violations?.[0]?.check).toBe("kvm-bug");
    const r = tdpemu("replay", out, "--plugin", plugin);
    expect(r.err).toBe("");
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/flush 2 is past the limit of 1/);
  });

  it("backends lists it, with the SDK resolved from the command although the folder has none", () => {
    const r = tdpemu("backends", "--plugin", plugin);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^flush-limit .*flush-limit\.mjs/m);
  });

  it("compare runs it beside the built-ins, each on a host of its own", () => {
    const r = tdpemu("compare", "scenarios/zap-refault.yaml", "--plugin", quiet, "--json");
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    const rows = (
      JSON.parse(r.out) as { backends: { backend: string; values: Record<string, string> }[] }
    ).backends;
    expect(rows.map((x) => x.backend)).toEqual(["tdx", "sev", "plain", "cca", "flush-quiet"]);
    const mine = rows.find((x) => x.backend === "flush-quiet")!.values;
    expect(mine.violations).toBe("0");
    // Its flushes are counted as its calls, as plain's are its INVEPTs.
    expect(Number(mine["backend calls"])).toBeGreaterThan(0);
  });

  it("bench measures it", () => {
    const r = tdpemu("bench", "--plugin", quiet, "--filter", "zap-flush-quiet", "--json");
    expect(r.code).toBe(0);
    const { cases } = JSON.parse(r.out) as { cases: { name: string; value: number }[] };
    expect(cases.length).toBeGreaterThan(0);
    for (const c of cases) expect(c.value).toBeGreaterThan(0);
  });

  it("a constructor that asks for a token nobody registered: one line naming the plugin, exit 2", () => {
    const file = join(dir, "unresolved.mjs");
    writeFileSync(
      file,
      readFileSync(quiet, "utf8")
        .replaceAll("flush-quiet", "unresolved")
        .replace("registerHost(c) {", "notRegisterHost(c) {"),
    );
    const r = tdpemu("run", "scenarios/zap-refault.yaml", "--backend", file);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(
      /^tdpemu: plugin 'unresolved' \(.*unresolved\.mjs\): resolving its backend threw Error: Cannot inject the dependency .*unresolved\.limit.*\n$/,
    );
  });
});
