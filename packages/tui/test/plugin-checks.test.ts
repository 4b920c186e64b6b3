/**
 * A broken plugin is refused or stopped with one line that names the plugin and what was wrong
 * (the hook, the value, the member), exit 2; never a stack trace and exit 70, and never a
 * finding blamed on the core. The plugins here import nothing (the DI token is a registered
 * symbol), so they run in-process.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Report } from "@tdpemu/core";
import { afterAll, describe, expect, it } from "vitest";
import { main } from "../src/index.js";
import { captureIo as io, expectOneLine } from "./capture-io.js";

const dir = mkdtempSync(join(tmpdir(), "tdpemu-broken-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const STATS = "stats() { return { calls: {}, busy: 0, errors: {} }; }";
let n = 0;

/** A plugin module: a backend class with `body`, registered as `name` (the backend is named `backendName`). */
function plugin(
  body: string,
  opts: {
    name?: string;
    backendName?: string;
    register?: string;
    registerHost?: string;
    ctor?: string;
  } = {},
): string {
  const name = opts.name ?? `broken${++n}`;
  const file = join(dir, `${name}-${n}.mjs`);
  writeFileSync(
    file,
    `
class B {
  name = ${JSON.stringify(opts.backendName ?? name)};
  description = "a broken test plugin";
  usesMirrorRoot = false;
  hasPrivateMemory = false;
  constructor() { ${opts.ctor ?? ""} }
  ${body}
}
export const registration = {
  name: ${JSON.stringify(name)},
  description: "a broken test plugin",
  ${opts.registerHost === undefined ? "" : `registerHost: ${opts.registerHost},`}
  register(c) { ${opts.register ?? ""} c.register(Symbol.for("tdpemu.Backend"), { useClass: B }); },
};
`,
  );
  return file;
}

/** 2 MiB host pages, so that the fault path asks the backend for its largest level. */
const huge = join(dir, "huge.yaml");
writeFileSync(
  huge,
  `name: huge
vm: { memory: 64MiB, gpaw: 48, vcpus: 1, hugepages: 2MiB }
backend: plain
vcpus:
  - - { op: access, gpa: 0x0, count: 16, write: true }
`,
);

async function run(file: string, ...extra: string[]) {
  const o = io();
  const scenario = extra[0] === huge ? extra.shift()! : "scenarios/zap-refault.yaml";
  const code = await main(["run", scenario, "--backend", file, ...extra], o);
  return { code, out: o.outText(), err: o.errText() };
}

describe("checked at load", () => {
  it("a plugin without stats() is refused before anything runs", async () => {
    expectOneLine(await run(plugin("")), /plugin 'broken\d+' \(.*\.mjs\): it has no stats\(\)/);
  });

  it("a plugin named like a built-in is refused, not silently replaced by it", async () => {
    expectOneLine(
      await run(plugin(STATS, { name: "tdx" })),
      /registers 'tdx', the name of a built-in backend/,
    );
  });

  it("a registration name that differs from the backend's is refused", async () => {
    expectOneLine(
      await run(plugin(STATS, { name: "alpha", backendName: "beta" })),
      /its backend is named 'beta' but its registration 'alpha'/,
    );
  });

  it("a mirror backend must have the hooks the core calls on the mirror", async () => {
    const f = plugin(
      `${STATS} usesMirrorRoot = true; hasPrivateMemory = true; classifyFault() { return true; } setExternalSpte() { return 0; }`,
    );
    expectOneLine(
      await run(f),
      /uses a mirror root but lacks checkGuestAccess, linkExternalSpt, removeExternalSpte, freeExternalSpt/,
    );
  });

  it("mirror hooks without a mirror root are refused (the core would never call them)", async () => {
    const f = plugin(`${STATS} adoptExternalSpt() { return -1; } linkExternalSpt() { return 0; }`);
    expectOneLine(
      await run(f),
      /it has adoptExternalSpt, linkExternalSpt but no mirror root \(usesMirrorRoot\)/,
    );
  });

  it("private memory without classifyFault is refused (every access would be shared)", async () => {
    expectOneLine(
      await run(plugin(`${STATS} hasPrivateMemory = true;`)),
      /has private memory but no classifyFault/,
    );
  });

  it("a hook that is not a function, and members of the wrong type, are each named", async () => {
    const r = await run(plugin(`${STATS} flushTlb = 3; description = 7;`));
    expectOneLine(
      r,
      /'description' is 7, expected a string; hook 'flushTlb' is 3, expected a function/,
    );
  });
});

describe("exceptions from plugin code name the plugin and where", () => {
  it("register()", async () => {
    expectOneLine(
      await run(plugin(STATS, { register: "throw new RangeError('no room');" })),
      /: register\(\) threw RangeError: no room$/,
    );
  });

  it("registerHost()", async () => {
    expectOneLine(
      await run(plugin(STATS, { registerHost: "(c) => { throw new Error('no platform'); }" })),
      /: registerHost\(\) threw Error: no platform$/,
    );
  });

  it("a registerHost that is not a function", async () => {
    expectOneLine(
      await run(plugin(STATS, { registerHost: "3" })),
      /: its registration's registerHost is 3, expected a function$/,
    );
  });

  it("the backend's constructor", async () => {
    expectOneLine(
      await run(plugin(STATS, { ctor: "throw new Error('bad config');" })),
      /: its backend's constructor threw Error: bad config$/,
    );
  });

  it("a member that is a getter and throws, read at load", async () => {
    expectOneLine(
      await run(plugin(`${STATS} get flushTlb() { throw new Error("not yet"); }`)),
      /: reading its backend's members threw Error: not yet$/,
    );
  });

  it("init()", async () => {
    expectOneLine(
      await run(plugin(`${STATS} init() { null.x; }`)),
      /: init\(\) threw TypeError: Cannot read properties of null/,
    );
  });

  it("a hook in the middle of a run", async () => {
    expectOneLine(
      await run(plugin(`${STATS} flushTlb() { throw "a string"; }`)),
      /: flushTlb\(\) threw the value a string$/,
    );
  });

  it("--debug adds the plugin's stack", async () => {
    const r = await run(plugin(`${STATS} init() { null.x; }`), "--debug");
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/init\(\) threw TypeError/);
    expect(r.err).toMatch(/\n\s+at B\.init \(.*broken\d+-\d+\.mjs/);
  });
});

describe("--strict-plugin checks what hooks return", () => {
  const priv = `${STATS} hasPrivateMemory = true; classifyFault() { return true; } gmemPrepare() { return 0; }`;
  for (const [bad, shown] of [
    ["undefined", "undefined"],
    ["42", "42"],
    ['"yes"', '"yes"'],
  ] as const) {
    it(`gmemPrepare returning ${bad} is named, not taken as a retry until a livelock`, async () => {
      const f = plugin(`${priv} gmemPrepare() { return ${bad}; }`);
      expectOneLine(
        await run(f, "--strict-plugin"),
        new RegExp(
          `: gmemPrepare\\(\\) returned ${shown}; expected a status: 0, or a negative errno`,
        ),
      );
      const loose = await run(f);
      if (bad === "undefined" || bad === '"yes"') expect(loose.out).toMatch(/\[livelock\]/);
    });
  }

  for (const level of ["0", "NaN"]) {
    it(`maxMappingLevel returning ${level} is named, not blamed on the core`, async () => {
      const f = plugin(`${priv} maxMappingLevel() { return ${level}; }`);
      expectOneLine(
        await run(f, huge, "--strict-plugin"),
        new RegExp(
          `: maxMappingLevel\\(\\) returned ${level}; expected a level: 1 \\(4K\\), 2 \\(2M\\) or 3 \\(1G\\)`,
        ),
      );
    });
  }

  it("stats() returning the wrong shape is named", async () => {
    const f = plugin("stats() { return { calls: 'none' }; }");
    expectOneLine(
      await run(f, "--strict-plugin"),
      /: stats\(\) returned \{"calls":"none"\}; expected \{ calls, busy, errors \}/,
    );
  });

  it("a well-behaved plugin passes strict checking untouched", async () => {
    const r = await run(
      plugin(`${priv} maxMappingLevel() { return 1; }`),
      "--strict-plugin",
      "--json",
    );
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect((JSON.parse(r.out) as Report).stats.faults).toBeGreaterThan(0);
  });
});
