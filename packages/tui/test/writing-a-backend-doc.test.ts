/**
 * docs/writing-a-backend.md shows a complete plugin and a scenario for it: this test copies both
 * out of the page into a folder outside the workspace and runs them through the bundled binary,
 * so that the page stays true.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Report } from "@tdpemu/core";
import { afterAll, describe, expect, it } from "vitest";
import { withoutProgress } from "./capture-io.js";

const CLI = resolve("packages/tui/dist/tdpemu.mjs");
const page = readFileSync("docs/writing-a-backend.md", "utf8");
const dir = mkdtempSync(join(tmpdir(), "tdpemu-doc-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The fenced blocks the page marks `<!-- example: FILE -->`, written to `dir`. */
const examples = [...page.matchAll(/<!-- example: (\S+) -->\n```\w+\n([\s\S]*?)```/g)].map(
  ([, file, text]) => {
    writeFileSync(join(dir, file!), text!);
    return file!;
  },
);

function tdpemu(...args: string[]) {
  const p = spawnSync(process.execPath, [CLI, ...args], {
    encoding: "utf8",
    timeout: 120_000,
    cwd: dir,
  });
  return { code: p.status, out: p.stdout, err: p.stderr };
}

describe("docs/writing-a-backend.md", () => {
  it("marks the plugin and its scenario as examples", () => {
    expect(examples).toEqual(["sealed-backend.mjs", "sealed.yaml"]);
  });

  it("the plugin loads, and run gives what the page says: SEAL 32, UNSEAL 16, no violations", () => {
    const b = tdpemu("backends", "--plugin", "./sealed-backend.mjs");
    expect(b.err).toBe("");
    expect(b.out).toMatch(/^sealed .*sealed-backend\.mjs/m);
    const r = tdpemu(
      "run",
      "sealed.yaml",
      "--plugin",
      "./sealed-backend.mjs",
      "--strict-plugin",
      "--json",
    );
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    const report = JSON.parse(r.out) as Report;
    expect(report.backend).toBe("sealed");
    expect(report.backendStats.calls).toEqual({ SEAL: 32, UNSEAL: 16 });
    expect(report.invariants.violations).toEqual([]);
    expect(page).toContain("SEAL 32, UNSEAL 16, no violations");
  });

  it("explore, compare and bench take it as the page shows", () => {
    const e = tdpemu(
      "explore",
      "sealed.yaml",
      "--plugin",
      "./sealed-backend.mjs",
      "--max-schedules",
      "2000",
      "--strict-plugin",
    );
    expect(withoutProgress(e.err)).toBe("");
    expect(e.code).toBe(0);
    expect(e.out).toMatch(/no violation in the first 2,000 schedules/);
    const c = tdpemu("compare", "sealed.yaml", "--allow-plugins", "--json");
    expect(c.err).toBe("");
    const rows = (JSON.parse(c.out) as { backends: { backend: string }[] }).backends;
    expect(rows.map((x) => x.backend)).toEqual(["tdx", "sev", "plain", "cca", "sealed"]);
    const bench = tdpemu(
      "bench",
      "--plugin",
      "./sealed-backend.mjs",
      "--filter=zap-sealed",
      "--json",
    );
    expect(bench.code).toBe(0);
    const { cases } = JSON.parse(bench.out) as { cases: { name: string }[] };
    expect(cases.map((x) => x.name)).toEqual(["sol", "zap-sealed"]);
  });
});
