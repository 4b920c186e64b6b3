/**
 * The packages install outside the workspace: each packs (pnpm pack, which turns `workspace:*`
 * into versions) to a tarball holding its compiled code and the fields a registry user reads,
 * and the CLI installed from the tarballs with npm into an empty folder runs a scenario there.
 * Needs the npm registry for the third-party dependencies (ink, react, tsyringe, zod ...).
 */
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const ROOT = resolve(import.meta.dirname, "../../..");
const PACKAGES = readdirSync(join(ROOT, "packages"));
const dir = mkdtempSync(join(tmpdir(), "tdpemu-pack-"));
const tarballs = join(dir, "tarballs");
const app = join(dir, "app");
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function pnpm(args: string[], cwd: string): string {
  return execFileSync("npx", ["-y", "pnpm@10.34.9", ...args], {
    cwd,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });
}

/** The fields of a packed package.json that a registry user reads, as far as this test looks. */
interface Manifest {
  license?: string;
  engines?: { node?: string };
  repository?: { directory?: string };
  /** Checked to be a string, so not assumed to be one. */
  description?: unknown;
}

/** The files of a tarball, and its package.json. */
function contents(tgz: string): { files: string[]; manifest: Manifest } {
  const files = execFileSync("tar", ["tzf", tgz], { encoding: "utf8" }).trim().split("\n");
  const json = execFileSync("tar", ["xzOf", tgz, "package/package.json"], { encoding: "utf8" });
  const manifest = JSON.parse(json) as Manifest;
  return { files, manifest };
}

describe("installable from tarballs", () => {
  beforeAll(() => {
    for (const p of PACKAGES)
      pnpm(["pack", "--pack-destination", tarballs], join(ROOT, "packages", p));
  }, 300_000);

  it("each package packs its compiled code and the fields a registry user reads, nothing else", () => {
    const tgzs = readdirSync(tarballs);
    expect(tgzs).toHaveLength(PACKAGES.length);
    for (const t of tgzs) {
      const { files, manifest } = contents(join(tarballs, t));
      expect(files, t).toContain("package/dist/index.js");
      expect(files, t).toContain("package/dist/index.d.ts");
      // pnpm pack adds the workspace's LICENSE to a package that has none of its own.
      expect(files, t).toContain("package/LICENSE");
      expect(
        files.filter((f) => !/^package\/(dist\/|package\.json$|LICENSE$)/.test(f)),
        t,
      ).toEqual([]);
      expect(
        files.filter((f) => f.endsWith(".tsbuildinfo")),
        t,
      ).toEqual([]);
      expect(manifest.license, t).toBe("MIT");
      expect(manifest.engines?.node, t).toBe(">=20.19");
      expect(manifest.repository?.directory, t).toMatch(/^packages\//);
      expect(typeof manifest.description, t).toBe("string");
      expect(JSON.stringify(manifest), t).not.toContain("workspace:");
    }
  });

  it("npm installs the CLI from them into an empty folder, and it runs a scenario there", () => {
    writeFileSync(join(dir, "package.json"), "{}");
    spawnSync("mkdir", [app]);
    writeFileSync(
      join(app, "package.json"),
      JSON.stringify({ name: "tdpemu-user", private: true }),
    );
    const tgzs = readdirSync(tarballs).map((t) => join(tarballs, t));
    const install = spawnSync("npm", ["install", "--no-audit", "--no-fund", ...tgzs], {
      cwd: app,
      encoding: "utf8",
    });
    expect(install.status, install.stderr).toBe(0);
    // A scenario of the user's own, outside the repository.
    writeFileSync(
      join(app, "mine.yaml"),
      readFileSync(join(ROOT, "scenarios/tdx-race-2m-4k.yaml"), "utf8"),
    );
    const run = spawnSync(join(app, "node_modules/.bin/tdpemu"), ["run", "mine.yaml", "--json"], {
      cwd: app,
      encoding: "utf8",
    });
    expect(run.stderr).toBe("");
    expect(run.status).toBe(0);
    const report = JSON.parse(run.stdout) as {
      backend: string;
      invariants: { violations: unknown[] };
    };
    expect(report.backend).toBe("tdx");
    expect(report.invariants.violations).toEqual([]);
    // The worker threads of `explore --jobs` start from the installed bundle too.
    const explore = spawnSync(
      join(app, "node_modules/.bin/tdpemu"),
      ["explore", "mine.yaml", "--jobs", "2", "--preemption-bound", "1"],
      { cwd: app, encoding: "utf8" },
    );
    expect(explore.stderr).toBe("");
    expect(explore.stdout).toMatch(/result +no violation/);
  }, 300_000);
});
