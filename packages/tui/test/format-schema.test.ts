/**
 * The formats are defined once (zod, in packages/core/src/scenario): the committed JSON Schemas
 * and docs/scenario-format.md are what `tdpemu schema` prints today, every example scenario names
 * its schema for editors and passes a standard validator (ajv), and what tdpemu refuses field by
 * field the schema refuses too.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { Ajv2020 } from "ajv/dist/2020.js";
import { parse as parseYaml } from "yaml";
import { main } from "../src/index.js";
import { captureIo as io } from "./capture-io.js";
// @ts-expect-error: a plain ES module of the repository's scripts, without types
import { GENERATED, ROOT, generate } from "../../../scripts/formats.mjs";

/** The signature `generate` has in scripts/formats.mjs, which the compiler cannot see. */
const generateFile = generate as (g: Generated) => string;
interface Generated {
  file: string;
  args?: string[];
}

/** A scenario as a hand-written file may spoil it: any key, on the file and on its ops. */
interface Spoilable {
  [key: string]: unknown;
  name?: string;
  vm: Record<string, unknown>;
  vcpus: Record<string, unknown>[][];
  host: Record<string, unknown>[];
}

/** The first op of the first vCPU's program. */
const firstOp = (s: Spoilable): Record<string, unknown> => s.vcpus[0]![0]!;

const dir = mkdtempSync(join(tmpdir(), "tdpemu-schema-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const SCENARIOS = resolve(ROOT as string, "scenarios");
const scenarioSchema = JSON.parse(
  readFileSync(resolve(ROOT as string, "schemas/scenario.schema.json"), "utf8"),
) as object;
const scheduleSchema = JSON.parse(
  readFileSync(resolve(ROOT as string, "schemas/schedule.schema.json"), "utf8"),
) as object;
const ajv = new Ajv2020({ allErrors: true, strict: false });
const validScenario = ajv.compile(scenarioSchema);
const validSchedule = ajv.compile(scheduleSchema);
const examples = readdirSync(SCENARIOS).filter((f) => f.endsWith(".yaml"));

async function tdpemu(...args: string[]) {
  const o = io();
  const code = await main(args, o);
  return { code, out: o.outText(), err: o.errText() };
}

describe("generated from the one definition", () => {
  for (const g of GENERATED as Generated[]) {
    it(`${g.file} is current (regenerate with npm run formats)`, () => {
      expect(readFileSync(resolve(ROOT as string, g.file), "utf8")).toBe(generateFile(g));
    });
  }

  it("schema scenario spells out a plugin's host ops with their operands", async () => {
    const plugin = join(dir, "marker.mjs");
    writeFileSync(
      plugin,
      `class Marker { name = "marker"; description = "m"; usesMirrorRoot = false; hasPrivateMemory = false;
      hostOps = { mark: { description: "remember a range", params: { gpa: { kind: "gpa" }, label: { kind: "string" } } } };
      runHostOp() { return 0; } stats() { return { calls: {}, busy: 0, errors: {} }; } }
      export const registration = { name: "marker", description: "m", register(c) { c.register(Symbol.for("tdpemu.Backend"), { useClass: Marker }); } };`,
    );
    const r = await tdpemu("schema", "scenario", "--plugin", plugin);
    expect(r.code).toBe(0);
    const v = new Ajv2020({ strict: false }).compile(JSON.parse(r.out) as object);
    const scn = (op: object) => ({
      name: "p",
      vm: { memory: "16MiB" },
      backend: "marker",
      host: [op],
    });
    expect(v(scn({ op: "marker.mark", gpa: "0x1000", label: "x" }))).toBe(true);
    expect(v(scn({ op: "marker.mark", gpa: "0x1000" }))).toBe(false);
    expect(v(scn({ op: "marker.mark", gpa: "0x1000", label: "x", extra: 1 }))).toBe(false);
    // The generic `<backend>.<op>` is still there for backends the schema was not told of.
    expect(v(scn({ op: "other.thing", anything: 1 }))).toBe(true);
    expect(r.out).toContain("remember a range");
  });

  it("schema with no format, or an unknown one, is one line and exit 2", async () => {
    for (const args of [["schema"], ["schema", "scenarios"]]) {
      const r = await tdpemu(...args);
      expect(r.code).toBe(2);
      expect(r.err).toMatch(
        /^tdpemu: schema: which format\? expected one of scenario, schedule, got (nothing|'scenarios')\s*$/,
      );
    }
  });
});

describe("every example scenario against the JSON Schema (ajv)", () => {
  it("there are examples, and each names the schema on its first line", () => {
    expect(examples.length).toBeGreaterThan(10);
    for (const f of examples)
      expect(readFileSync(join(SCENARIOS, f), "utf8").split("\n")[0], f).toBe(
        "# yaml-language-server: $schema=../schemas/scenario.schema.json",
      );
  });

  for (const f of examples) {
    it(`${f} is valid`, () => {
      const ok = validScenario(parseYaml(readFileSync(join(SCENARIOS, f), "utf8")));
      expect(ok, JSON.stringify(validScenario.errors)).toBe(true);
    });
  }

  it("what tdpemu refuses field by field, the schema refuses too", async () => {
    const base: Spoilable = {
      name: "t",
      vm: { memory: "1GiB", vcpus: 2 },
      vcpus: [[{ op: "access", gpa: "0x1000" }]],
      host: [{ op: "zap", gpa: 0, size: "2MiB" }],
    };
    const spoilt: [string, (s: Spoilable) => void][] = [
      [
        "an unknown key",
        (s) => {
          s.backned = "plain";
        },
      ],
      [
        "a size in GB",
        (s) => {
          s.vm.memory = "1GB";
        },
      ],
      [
        "an unknown guest op",
        (s) => {
          firstOp(s).op = "acces";
        },
      ],
      [
        "an unknown key on an op",
        (s) => {
          firstOp(s).wirte = true;
        },
      ],
      [
        "a string for a boolean",
        (s) => {
          firstOp(s).write = "yes";
        },
      ],
      [
        "a host op without a dot that is not built in",
        (s) => {
          s.host[0]!.op = "zapp";
        },
      ],
      [
        "a negative number",
        (s) => {
          firstOp(s).gpa = -1;
        },
      ],
      [
        "a missing name",
        (s) => {
          delete s.name;
        },
      ],
      [
        "an unknown strategy",
        (s) => {
          s.options = { strategy: "hope" };
        },
      ],
    ];
    expect(validScenario(base), JSON.stringify(validScenario.errors)).toBe(true);
    for (const [what, spoil] of spoilt) {
      const s = structuredClone(base);
      spoil(s);
      expect(validScenario(s), what).toBe(false);
      const f = join(dir, `${what.replaceAll(" ", "-")}.json`);
      writeFileSync(f, JSON.stringify(s));
      const r = await tdpemu("run", f);
      expect(r.code, what).toBe(2);
    }
  });
});

describe("schedule files against their JSON Schema", () => {
  it("a recorded schedule is valid, and one with a debug mode switched on by a string is not", async () => {
    const sched = join(dir, "s.json");
    const r = await tdpemu(
      "run",
      join(SCENARIOS, "race-shared-table.yaml"),
      "--schedule-out",
      sched,
    );
    expect(r.code).toBe(0);
    const s = JSON.parse(readFileSync(sched, "utf8")) as Record<string, unknown>;
    expect(validSchedule(s), JSON.stringify(validSchedule.errors)).toBe(true);
    expect(validSchedule({ ...s, mmu: { unsafeNonAtomicSet: "yes" } })).toBe(false);
    expect(validSchedule({ ...s, inject: [null] })).toBe(false);
    expect(validSchedule({ ...s, format: "tdpemu-schedule/2" })).toBe(false);
  });
});
