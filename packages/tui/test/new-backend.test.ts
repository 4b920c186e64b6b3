/**
 * `tdpemu new-backend`: a new backend's package made in a temporary folder, outside the
 * workspace, builds with npm alone (TypeScript from the registry, the SDK's types from this
 * checkout) and runs through the bundled binary; its own test passes; bad input is one line,
 * exit 2, and writes nothing.
 */
import { spawnSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";

const CLI = resolve("packages/tui/dist/tdpemu.mjs");
const dir = mkdtempSync(join(tmpdir(), "tdpemu-new-backend-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function tdpemu(...args: string[]) {
  const p = spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", timeout: 120_000 });
  return { code: p.status, out: p.stdout, err: p.stderr };
}

function npm(cwd: string, ...args: string[]) {
  const p = spawnSync("npm", args, { cwd, encoding: "utf8", timeout: 240_000 });
  return { code: p.status, out: `${p.stdout}${p.stderr}` };
}

describe("tdpemu new-backend", () => {
  it("makes a package that builds with npm and runs through the bundled binary", () => {
    const pkg = join(dir, "glass");
    const made = tdpemu("new-backend", "glass", pkg);
    expect(made.err).toBe("");
    expect(made.code).toBe(0);
    expect(made.out).toMatch(/made the 'glass' backend in /);
    expect(readdirSync(pkg).sort()).toEqual([
      ".gitignore",
      "README.md",
      "package.json",
      "scenarios",
      "src",
      "test",
      "tsconfig.json",
    ]);
    // Its SDK is this checkout's; every hook of the contract is named in it.
    const tsconfig = readFileSync(join(pkg, "tsconfig.json"), "utf8");
    type Paths = { compilerOptions: { paths: Record<string, string[]> } };
    const { paths } = (JSON.parse(tsconfig) as Paths).compilerOptions;
    expect(paths["@tdpemu/backend-sdk"]).toEqual([resolve("packages/backend-sdk/dist/index.d.ts")]);
    const src = readFileSync(join(pkg, "src/index.ts"), "utf8");
    for (const hook of [
      "linkExternalSpt",
      "setExternalSpte",
      "removeExternalSpte",
      "freeExternalSpt",
      "gmemPrepare",
      "checkGuestAccess",
      "guestAccept",
      "directSpteChanged",
      "memoryAttributesChanged",
      "rawCall",
      "injectFault",
      "describeEntry",
      "stats",
    ]) {
      expect(src).toContain(`${hook}(`);
    }
    // The README's two commands.
    const readme = readFileSync(join(pkg, "README.md"), "utf8");
    expect(readme).toContain(
      `npm install && npm run build && node ${CLI} run scenarios/glass-demo.yaml --plugin dist/index.js\nnpm test\n`,
    );

    const install = npm(pkg, "install", "--no-audit", "--no-fund");
    expect(install.code, install.out).toBe(0);
    const build = npm(pkg, "run", "build");
    expect(build.code, build.out).toBe(0);
    expect(existsSync(join(pkg, "dist/index.js"))).toBe(true);

    const run = tdpemu(
      "run",
      join(pkg, "scenarios/glass-demo.yaml"),
      "--plugin",
      join(pkg, "dist/index.js"),
      "--strict-plugin",
    );
    expect(run.err).toBe("");
    expect(run.code).toBe(0);
    expect(run.out).toMatch(/backend glass/);
    expect(run.out).toMatch(/calls: PREPARE 32, INVALIDATE 16/);
    expect(run.out).toMatch(/no violations/);
    const listed = tdpemu("backends", "--plugin", join(pkg, "dist/index.js"));
    expect(listed.out).toMatch(/^glass\s+glass: a new confidential-VM model/m);

    const test = npm(pkg, "test");
    expect(test.code, test.out).toBe(0);
    expect(test.out).toMatch(/# pass 3/);
  }, 300_000);

  it("refuses a bad name, a built-in's name and a folder in use: one line, exit 2, nothing written", () => {
    const bad = tdpemu("new-backend", "My Tech", join(dir, "x"));
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(
      /^tdpemu: new-backend: name 'My Tech': expected a lowercase letter, then up to 30 lowercase letters, digits or '-'/,
    );
    expect(existsSync(join(dir, "x"))).toBe(false);

    const taken = tdpemu("new-backend", "cca", join(dir, "y"));
    expect(taken.code).toBe(2);
    expect(taken.err).toMatch(
      /^tdpemu: new-backend: 'cca' is a built-in backend's name \(taken: tdx, sev, plain, cca\)\n$/,
    );
    expect(existsSync(join(dir, "y"))).toBe(false);

    const used = join(dir, "used");
    mkdirSync(used);
    writeFileSync(join(used, "keep.txt"), "mine");
    const busy = tdpemu("new-backend", "other", used);
    expect(busy.code).toBe(2);
    expect(busy.err).toMatch(/exists and is not empty: give a new or empty folder/);
    expect(readdirSync(used)).toEqual(["keep.txt"]);

    const none = tdpemu("new-backend");
    expect(none.code).toBe(2);
    expect(none.err).toMatch(
      /^tdpemu: new-backend: expected a name and, optionally, a folder \(tdpemu new-backend <name> \[dir\]\), got 0 argument\(s\)/,
    );
  });
});
