/**
 * A new confidential-VM model is a module that exports a registration: `tdpemu backends
 * --plugin` lists it and `tdpemu run --backend <module>` runs on it, with no change to the core.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import type { Report, ScheduleFile } from "@tdpemu/core";
import { afterAll, describe, expect, it } from "vitest";
import type { CompareRow } from "../src/compare-rows.js";
import { main } from "../src/index.js";
import { captureIo as io } from "./capture-io.js";

/** The report `run --json` or `replay --json` printed. */
const reportOf = (text: string) => JSON.parse(text) as Report;
/** The rows `compare --json` printed. */
const rowsOf = (text: string) => (JSON.parse(text) as { backends: CompareRow[] }).backends;

const dir = mkdtempSync(join(tmpdir(), "tdpemu-plugin-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// A plugin needs nothing from tdpemu at import time: the DI token is Symbol.for("tdpemu.Backend").
const plugin = join(dir, "counting-backend.mjs");
writeFileSync(
  plugin,
  `
class CountingBackend {
  name = "counting";
  description = "test plugin that counts TLB flushes";
  usesMirrorRoot = false;
  hasPrivateMemory = false;
  flushes = 0;
  flushTlb() { this.flushes++; }
  stats() { return { calls: { FLUSH: this.flushes }, busy: 0, errors: {} }; }
}
export const registration = {
  name: "counting",
  description: "test plugin that counts TLB flushes",
  register(c) { c.register(Symbol.for("tdpemu.Backend"), { useClass: CountingBackend }); },
};
`,
);
const notPlugin = join(dir, "not-a-plugin.mjs");
writeFileSync(notPlugin, "export const x = 1;\n");

describe("backend plugins", () => {
  it("backends --plugin lists the plugin beside the built-ins", async () => {
    const o = io();
    expect(await main(["backends", "--plugin", plugin], o)).toBe(0);
    expect(o.outText()).toMatch(/^plain /m);
    expect(o.outText()).toMatch(/^counting .*counting-backend\.mjs/m);
  });

  it("run --backend <module path> runs the scenario on the plugin", async () => {
    const o = io();
    expect(
      await main(["run", "scenarios/zap-refault.yaml", "--backend", plugin, "--json"], o),
    ).toBe(0);
    const r = reportOf(o.outText());
    expect(r.backend).toBe("counting");
    // The plugin's flushTlb runs at each vCPU flush: one per remote request, at the next entry,
    // and one when a vCPU loads a new root.
    expect(r.backendStats.calls.FLUSH).toBe(r.stats.vcpuTlbFlushes);
    expect(r.stats.tlbFlushes).toBe(1);
    expect(r.stats.vcpuTlbFlushes).toBeGreaterThanOrEqual(2);
  });

  it("a scenario's relative backend path is taken from the scenario's folder, and schedules record the module", async () => {
    mkdirSync(join(dir, "scenarios"), { recursive: true });
    const scn = join(dir, "scenarios", "uses-plugin.yaml");
    writeFileSync(
      scn,
      readFileSync("scenarios/zap-refault.yaml", "utf8").replace(
        /^backend: plain$/m,
        "backend: ../counting-backend.mjs",
      ),
    );
    const sched = join(dir, "uses-plugin.schedule.json");
    const o = io();
    expect(await main(["run", scn, "--json", "--schedule-out", sched, "--allow-plugins"], o)).toBe(
      0,
    );
    expect(reportOf(o.outText()).backend).toBe("counting");
    expect((JSON.parse(readFileSync(sched, "utf8")) as ScheduleFile).backend).toBe(plugin);
    const r = io();
    expect(await main(["replay", sched, "--json", "--plugin", plugin], r)).toBe(0);
    expect(reportOf(r.outText()).backend).toBe("counting");
  });

  it("compare takes plugins: --plugin adds a column, --backend picks, the scenario's own plugin is in when allowed", async () => {
    const o = io();
    expect(
      await main(["compare", "scenarios/zap-refault.yaml", "--plugin", plugin, "--json"], o),
    ).toBe(0);
    const all = rowsOf(o.outText()).map((b) => b.backend);
    expect(all).toEqual(["tdx", "sev", "plain", "cca", "counting"]);
    const picked = io();
    expect(
      await main(
        [
          "compare",
          "scenarios/zap-refault.yaml",
          "--backend",
          "plain",
          "--backend",
          plugin,
          "--json",
        ],
        picked,
      ),
    ).toBe(0);
    const rows = rowsOf(picked.outText());
    expect(rows.map((b) => b.backend)).toEqual(["plain", "counting"]);
    expect(rows[1]!.values.faults).toBe(rows[0]!.values.faults);
    const own = join(dir, "scenarios", "own-plugin.yaml");
    mkdirSync(join(dir, "scenarios"), { recursive: true });
    writeFileSync(
      own,
      readFileSync("scenarios/zap-refault.yaml", "utf8").replace(
        /^backend: plain$/m,
        "backend: ../counting-backend.mjs",
      ),
    );
    const viaScenario = io();
    expect(await main(["compare", own, "--json", "--allow-plugins"], viaScenario)).toBe(0);
    expect(rowsOf(viaScenario.outText()).map((b) => b.backend)).toContain("counting");
    const bad = io();
    expect(await main(["compare", "scenarios/zap-refault.yaml", "--backend", "nope"], bad)).toBe(2);
    expect(bad.errText()).toMatch(
      /^tdpemu: compare: --backend: unknown backend 'nope' \(registered: tdx, sev, plain, cca\)$/,
    );
  });

  it("bench --plugin measures the plugin beside the built-ins", async () => {
    const o = io();
    expect(await main(["bench", "--filter=zap-counting", "--plugin", plugin, "--json"], o)).toBe(0);
    const { cases } = JSON.parse(o.outText()) as {
      cases: { name: string; value: number; unit: string }[];
    };
    expect(cases.map((c) => c.name)).toEqual(["sol", "zap-counting"]);
    expect(cases[1]!.unit).toBe("pages/s");
    expect(cases[1]!.value).toBeGreaterThan(0);
  });

  it("a module without a registration is bad input, exit 2", async () => {
    const o = io();
    expect(await main(["run", "scenarios/zap-refault.yaml", "--backend", notPlugin], o)).toBe(2);
    expect(o.errText()).toMatch(/^tdpemu: backend module .* exports no registration/);
  });
});

describe("a data file never loads code by itself", () => {
  // Importing it leaves a mark: the test can tell whether it ran at all.
  const marker = join(dir, "ran.txt");
  const sneaky = join(dir, "sneaky-backend.mjs");
  writeFileSync(
    sneaky,
    readFileSync(plugin, "utf8").replaceAll("counting", "sneaky") +
      `\nimport { appendFileSync } from "node:fs";\nappendFileSync(${JSON.stringify(marker)}, "ran\\n");\n`,
  );
  const scn = join(dir, "scenarios", "sneaky.yaml");
  mkdirSync(join(dir, "scenarios"), { recursive: true });
  writeFileSync(
    scn,
    readFileSync("scenarios/zap-refault.yaml", "utf8").replace(
      /^backend: plain$/m,
      "backend: ../sneaky-backend.mjs",
    ),
  );
  const line =
    readFileSync(scn, "utf8")
      .split("\n")
      .findIndex((l) => l.startsWith("backend:")) + 1;
  const ran = () => {
    try {
      return readFileSync(marker, "utf8").split("\n").filter(Boolean).length;
    } catch {
      return 0;
    }
  };

  for (const cmd of ["run", "explore", "compare", "tui"]) {
    it(`${cmd}: a scenario naming a module stops at its backend: line, exit 2, and the module never runs`, async () => {
      const before = ran();
      const o = io();
      expect(await main([cmd, scn], o)).toBe(2);
      expect(o.errText()).toBe(
        `tdpemu: ${scn}:${line}: backend '../sneaky-backend.mjs' is a module, and a scenario file does not load code by itself: ` +
          `give it on the command line (--plugin ${sneaky}) or allow it with --allow-plugins`,
      );
      expect(ran()).toBe(before);
    });
  }

  it("replay: a schedule naming a module runs nothing without consent; --plugin from another folder is consent", async () => {
    // A module never imported in this process before (an import runs a module once).
    const marker2 = join(dir, "ran2.txt");
    const sneaky2 = join(dir, "sneaky2-backend.mjs");
    writeFileSync(
      sneaky2,
      readFileSync(sneaky, "utf8").replace(JSON.stringify(marker), JSON.stringify(marker2)),
    );
    const sched = join(dir, "sneaky.schedule.json");
    expect(await main(["run", scn, "--schedule-out", sched, "--allow-plugins"], io())).toBe(0);
    writeFileSync(
      sched,
      readFileSync(sched, "utf8").replace(JSON.stringify(sneaky), JSON.stringify(sneaky2)),
    );
    const o = io();
    expect(await main(["replay", sched], o)).toBe(2);
    expect(o.errText()).toBe(
      `tdpemu: ${sched}: backend '${sneaky2}' is a module, and a schedule file does not load code by itself: ` +
        `give it on the command line (--plugin ${sneaky2}) or allow it with --allow-plugins`,
    );
    expect(existsSync(marker2)).toBe(false);
    // The same module, named relative to the current directory rather than by the schedule's absolute path.
    const r = io();
    expect(
      await main(["replay", sched, "--plugin", relative(process.cwd(), sneaky2), "--json"], r),
    ).toBe(0);
    expect(reportOf(r.outText()).backend).toBe("sneaky");
    expect(readFileSync(marker2, "utf8")).toBe("ran\n");
  });

  it("run: --plugin naming the same module, or --allow-plugins, lets it load", async () => {
    const a = io();
    expect(await main(["run", scn, "--plugin", sneaky, "--json"], a)).toBe(0);
    expect(reportOf(a.outText()).backend).toBe("sneaky");
    const b = io();
    expect(await main(["run", scn, "--allow-plugins", "--json"], b)).toBe(0);
    expect(reportOf(b.outText()).backend).toBe("sneaky");
  });
});
