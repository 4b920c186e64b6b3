/**
 * The scenario parser (docs/architecture.md, "Scenarios: the guest and the host"): every kind of
 * bad input gives a ScenarioError that names the file, the line, the path inside the document and
 * what was expected; good input gives the documented values and defaults.
 */
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadScenario, parseScenarioText, ScenarioError, type Scenario } from "../src/testing.js";

const ROOT = resolve(import.meta.dirname, "../../..");
const SCENARIOS = join(ROOT, "scenarios");
const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

/** Joins lines into a document; line numbers in the tests below count from 1. */
const doc = (...lines: string[]): string => lines.join("\n") + "\n";

/** A minimal valid head: name (line 1) and vm (line 2), 1 GiB and 2 vCPUs. */
const HEAD = ["name: t", "vm: { memory: 1GiB, vcpus: 2 }"];

function parseError(text: string, file = "bad.yaml"): ScenarioError {
  try {
    parseScenarioText(text, file);
  } catch (e) {
    if (e instanceof ScenarioError) return e;
    throw new Error(`expected a ScenarioError, got ${String(e)}`);
  }
  throw new Error("expected a ScenarioError, but the scenario parsed");
}

interface Expected {
  file?: string;
  path: string;
  line?: number;
  /** What the message says was expected (or why the input is wrong). */
  detail: RegExp;
}

/** Parses `text` as `file`, expects a ScenarioError and checks every field and the message. */
function expectError(text: string, want: Expected): ScenarioError {
  const file = want.file ?? "bad.yaml";
  const e = parseError(text, file);
  expect(e).toBeInstanceOf(Error);
  expect(e.name).toBe("ScenarioError");
  expect(e.file).toBe(file);
  expect(e.path).toBe(want.path);
  expect(e.line).toBe(want.line);
  expect(e.detail).toMatch(want.detail);
  // The message is "<file>:<line>: <path>: <detail>", so one line names everything.
  const prefix = `${file}${want.line !== undefined ? `:${want.line}` : ""}: ${want.path ? `${want.path}: ` : ""}`;
  expect(
    e.message.startsWith(prefix),
    `message ${JSON.stringify(e.message)} should start with ${JSON.stringify(prefix)}`,
  ).toBe(true);
  expect(e.message).toMatch(want.detail);
  expect(e.message).not.toContain("\n");
  return e;
}

/** The scenario without its source, to compare the same content read from two files. */
/** What a scenario says, without where it was read from (its file, the line of its backend). */
function content(s: Scenario): Omit<Scenario, "source" | "backendLine"> {
  const { source: _source, backendLine: _line, ...rest } = s;
  return rest;
}

describe("scenario parser: syntax errors", () => {
  it("invalid YAML names the file and says it is not valid YAML", () => {
    const text = doc("name: t", "vm:", "  memory: 1GiB", " bad: [");
    const e = parseError(text, "broken.yaml");
    expect(e.file).toBe("broken.yaml");
    expect(e.path).toBe("");
    expect(e.message).toMatch(/^broken\.yaml(:\d+)?: not valid YAML: \S/);
    expect(e.message).not.toContain("\n");
  });

  it("invalid JSON names the file and says it is not valid JSON", () => {
    const text = doc("{", '  "name": "t"', '  "vm": { "memory": "1GiB" }', "}");
    const e = parseError(text, "broken.json");
    expect(e.file).toBe("broken.json");
    expect(e.path).toBe("");
    expect(e.message).toMatch(/^broken\.json(:\d+)?: not valid JSON: \S/);
    expect(e.message).not.toContain("\n");
  });

  it("unterminated JSON is not valid JSON", () => {
    const e = parseError(doc("{", '  "name": "t",', '  "vm": { "memory": "1GiB" }'), "cut.json");
    expect(e.message).toMatch(/^cut\.json(:\d+)?: not valid JSON: /);
  });

  it("duplicate keys are a syntax error, not a silent override", () => {
    const e = parseError(doc("name: a", "vm: { memory: 1GiB }", "name: b"));
    expect(e.message).toMatch(/^bad\.yaml(:\d+)?: not valid YAML: .*unique/i);
  });

  // BUG (src/scenario/parse.ts, parseScenarioText): syntax errors never carry a line, because
  // the document is parsed with `prettyErrors: false`, and the yaml package only fills
  // `YAMLError.linePos` when prettyErrors is on. `e.pos[0]` with the LineCounter gives it.
  it("invalid YAML names the line of the error", () => {
    const text = doc("name: t", "vm:", "  memory: 1GiB", " bad: [");
    const e = parseError(text, "broken.yaml");
    expect(e.line).toBe(4);
    expect(e.message).toMatch(/^broken\.yaml:4: not valid YAML: /);
  });

  it("invalid JSON names the line of the error", () => {
    const text = doc("{", '  "name": "t"', '  "vm": { "memory": "1GiB" }', "}");
    const e = parseError(text, "broken.json");
    expect(e.line).toBeGreaterThanOrEqual(2);
    expect(e.line).toBeLessThanOrEqual(3);
    expect(e.message).toMatch(/^broken\.json:[23]: not valid JSON: /);
  });
});

describe("scenario parser: the top level", () => {
  it("a list at the top level is not a scenario mapping", () => {
    expectError(doc("- a", "- b"), {
      path: "",
      line: 1,
      detail: /expected a scenario mapping with name, vm, vcpus, got a list/,
    });
  });

  it("a scalar at the top level is not a scenario mapping", () => {
    expectError(doc("just a string"), {
      path: "",
      line: 1,
      detail: /expected a scenario mapping.*, got "just a string"/,
    });
  });

  it("an empty file is not a scenario mapping", () => {
    const e = parseError("", "empty.yaml");
    expect(e.file).toBe("empty.yaml");
    expect(e.message).toMatch(
      /^empty\.yaml(:\d+)?: expected a scenario mapping with name, vm, vcpus, got nothing$/,
    );
  });

  it("missing name", () => {
    expectError(doc("vm: { memory: 1GiB }"), {
      path: "name",
      line: 1,
      detail: /expected a non-empty string, got nothing/,
    });
  });

  it("an empty name", () => {
    expectError(doc('name: "  "', "vm: { memory: 1GiB }"), {
      path: "name",
      line: 1,
      detail: /expected a non-empty string, got " {2}"/,
    });
  });

  it("a name that is not a string", () => {
    expectError(doc("name: [a]", "vm: { memory: 1GiB }"), {
      path: "name",
      line: 1,
      detail: /expected a non-empty string, got a list/,
    });
  });

  it("missing vm", () => {
    expectError(doc("name: t", "backend: plain"), {
      path: "",
      line: 1,
      detail: /missing key 'vm'/,
    });
  });

  it("unknown top-level key (a typo) lists the valid keys", () => {
    expectError(doc(...HEAD, "backned: plain"), {
      path: "backned",
      line: 3,
      detail:
        /unknown key \(expected one of: name, vm, backend, schedule, vcpus, host, options, inject\)/,
    });
  });

  it("a backend that is not a string", () => {
    expectError(doc(...HEAD, "backend: 7"), {
      path: "backend",
      line: 3,
      detail: /expected a backend name .*, got 7/,
    });
  });
});

describe("scenario parser: vm", () => {
  it("vm that is not a mapping", () => {
    expectError(doc("name: t", "vm: 1GiB"), {
      path: "vm",
      line: 2,
      detail: /expected a mapping with memory, gpaw, vcpus, hugepages, got "1GiB"/,
    });
  });

  it("missing vm.memory", () => {
    expectError(doc("name: t", "vm: { gpaw: 48 }"), {
      path: "vm",
      line: 2,
      detail: /missing key 'memory'/,
    });
  });

  it("bad memory size string (GB instead of GiB)", () => {
    expectError(doc("name: t", "vm: { memory: 1GB }"), {
      path: "vm.memory",
      line: 2,
      detail: /expected a size such as 4KiB, 2MiB, 1GiB, or a number of bytes, got "1GB"/,
    });
  });

  it("memory that is not a multiple of 4KiB", () => {
    expectError(doc("name: t", "vm: { memory: 4097 }"), {
      path: "vm.memory",
      line: 2,
      detail: /expected a positive multiple of 4KiB, got 0x1001/,
    });
  });

  it("zero memory", () => {
    expectError(doc("name: t", "vm: { memory: 0 }"), {
      path: "vm.memory",
      line: 2,
      detail: /expected a positive multiple of 4KiB, got 0/,
    });
  });

  it("gpaw other than 48 or 52", () => {
    expectError(doc("name: t", "vm: { memory: 1GiB, gpaw: 50 }"), {
      path: "vm.gpaw",
      line: 2,
      detail: /expected 48 or 52, got 50/,
    });
  });

  it("memory that does not fit below the shared bit", () => {
    expectError(doc("name: t", "vm: { memory: 256TiB, gpaw: 48 }"), {
      path: "vm.memory",
      line: 2,
      detail: /do not fit below the shared bit of a 48-bit GPA space/,
    });
  });

  it("vcpus 0", () => {
    expectError(doc("name: t", "vm: { memory: 1GiB, vcpus: 0 }"), {
      path: "vm.vcpus",
      line: 2,
      detail: /expected between 1 and 64 vCPUs, got 0/,
    });
  });

  it("vcpus above 64", () => {
    expectError(doc("name: t", "vm: { memory: 1GiB, vcpus: 65 }"), {
      path: "vm.vcpus",
      line: 2,
      detail: /expected between 1 and 64 vCPUs, got 65/,
    });
  });

  it("a bad hugepages value", () => {
    expectError(doc("name: t", "vm: { memory: 1GiB, hugepages: 4KiB }"), {
      path: "vm.hugepages",
      line: 2,
      detail: /expected false, true, 2MiB or 1GiB, got "4KiB"/,
    });
  });

  it("unknown key in vm", () => {
    expectError(doc("name: t", "vm:", "  memory: 1GiB", "  cpus: 2"), {
      path: "vm.cpus",
      line: 4,
      detail: /unknown key \(expected one of: memory, gpaw, vcpus, hugepages\)/,
    });
  });
});

describe("scenario parser: schedule", () => {
  it("mode replay without a file", () => {
    expectError(doc(...HEAD, "schedule: { mode: replay }"), {
      path: "schedule.file",
      line: 3,
      detail: /expected the path of a schedule file \(mode replay\), got nothing/,
    });
  });

  it("a file without mode replay", () => {
    expectError(doc(...HEAD, "schedule: { mode: random, file: s.json }"), {
      path: "schedule.file",
      line: 3,
      detail: /only meaningful with mode: replay/,
    });
  });

  it("an unknown mode", () => {
    expectError(doc(...HEAD, "schedule: { mode: chaos }"), {
      path: "schedule.mode",
      line: 3,
      detail: /expected one of random, round-robin, replay, got "chaos"/,
    });
  });

  it("a negative seed", () => {
    expectError(doc(...HEAD, "schedule: { seed: -3 }"), {
      path: "schedule.seed",
      line: 3,
      detail: /expected a non-negative integer \(decimal or 0x hex\), got -3/,
    });
  });

  it("a seed that is not a number", () => {
    expectError(doc(...HEAD, "schedule: { seed: abc }"), {
      path: "schedule.seed",
      line: 3,
      detail: /expected a non-negative integer.*, got "abc"/,
    });
  });

  it("a seed of 2^32 or more", () => {
    expectError(doc(...HEAD, "schedule: { seed: 0x100000000 }"), {
      path: "schedule.seed",
      line: 3,
      detail: /expected a seed below 2\^32, got 0x100000000/,
    });
  });

  it("a fractional seed", () => {
    expectError(doc(...HEAD, "schedule: { seed: 1.5 }"), {
      path: "schedule.seed",
      line: 3,
      detail: /expected a non-negative integer.*, got 1\.5/,
    });
  });

  it("unknown key in schedule", () => {
    expectError(doc(...HEAD, "schedule: { mode: random, sead: 1 }"), {
      path: "schedule.sead",
      line: 3,
      detail: /unknown key \(expected one of: mode, seed, file, interleave\)/,
    });
  });
});

describe("scenario parser: guest programs", () => {
  it("unknown guest op lists the valid guest ops", () => {
    expectError(doc(...HEAD, "vcpus:", "  - - { op: acces, gpa: 0x0 }"), {
      path: "vcpus[0][0].op",
      line: 4,
      detail: /expected one of access, accept, convert, psc, rmpadjust, got "acces"/,
    });
  });

  it("a host-only op in a vCPU program is unknown there", () => {
    expectError(doc(...HEAD, "vcpus:", "  - - { op: zap, gpa: 0x0 }"), {
      path: "vcpus[0][0].op",
      line: 4,
      detail: /expected one of access, accept, convert, psc, rmpadjust, got "zap"/,
    });
  });

  it("an op without op", () => {
    expectError(doc(...HEAD, "vcpus:", "  - - { gpa: 0x0 }"), {
      path: "vcpus[0][0].op",
      line: 4,
      detail: /expected one of access, accept, convert, psc, rmpadjust, got nothing/,
    });
  });

  it("unknown key in an op lists the op's keys", () => {
    expectError(doc(...HEAD, "vcpus:", "  - - { op: access, gpa: 0x0, wirte: true }"), {
      path: "vcpus[0][0].wirte",
      line: 4,
      detail: /unknown key \(expected one of: op, gpa, count, write, shared, vmpl\)/,
    });
  });

  it("GPA beyond the VM memory on an access, with the path and the line of the op", () => {
    expectError(
      doc(
        ...HEAD,
        "vcpus:",
        "  - []",
        "  - - { op: access, gpa: 0x0 }",
        "    - { op: access, gpa: 0x40000000 }",
      ),
      {
        path: "vcpus[1][1].gpa",
        line: 6,
        detail: /0x40000000 is beyond the VM's memory \(0x40000000 bytes\)/,
      },
    );
  });

  it("a count that runs past the end of memory", () => {
    expectError(doc(...HEAD, "vcpus:", "  - - { op: access, gpa: 0x3ffff000, count: 2 }"), {
      path: "vcpus[0][0].count",
      line: 4,
      detail: /2 pages from 0x3ffff000 go beyond the VM's memory/,
    });
  });

  it("count 0", () => {
    expectError(doc(...HEAD, "vcpus:", "  - - { op: access, gpa: 0x0, count: 0 }"), {
      path: "vcpus[0][0].count",
      line: 4,
      detail: /expected at least 1 page, got 0/,
    });
  });

  it("a fractional count", () => {
    expectError(doc(...HEAD, "vcpus:", "  - - { op: accept, gpa: 0x0, count: 1.5 }"), {
      path: "vcpus[0][0].count",
      line: 4,
      detail: /expected a non-negative integer \(decimal or 0x hex\), got 1\.5/,
    });
  });

  it("missing gpa on an access", () => {
    expectError(doc(...HEAD, "vcpus:", "  - - { op: access }"), {
      path: "vcpus[0][0]",
      line: 4,
      detail: /missing key 'gpa'/,
    });
  });

  it("an unaligned gpa on accept (a page op)", () => {
    expectError(doc(...HEAD, "vcpus:", "  - - { op: accept, gpa: 0x1001 }"), {
      path: "vcpus[0][0].gpa",
      line: 4,
      detail: /expected a 4KiB-aligned guest physical address, got 0x1001/,
    });
  });

  it("an unaligned gpa on a guest convert (a range op)", () => {
    expectError(
      doc(...HEAD, "vcpus:", "  - - { op: convert, gpa: 0x1800, size: 4KiB, to: shared }"),
      {
        path: "vcpus[0][0].gpa",
        line: 4,
        detail: /expected a 4KiB-aligned guest physical address, got 0x1800/,
      },
    );
  });

  it("missing `to` on a guest convert", () => {
    expectError(doc(...HEAD, "vcpus:", "  - - { op: convert, gpa: 0x1000, size: 4KiB }"), {
      path: "vcpus[0][0].to",
      line: 4,
      detail: /expected one of private, shared, got nothing/,
    });
  });

  it("an accept of a size other than 4KiB or 2MiB, or a 2MiB accept off a 2 MiB boundary", () => {
    expectError(doc(...HEAD, "vcpus:", "  - - { op: accept, gpa: 0x0, size: 1GiB }"), {
      path: "vcpus[0][0].size",
      line: 4,
      detail: /expected 4KiB or 2MiB, got "1GiB"/,
    });
    expectError(doc(...HEAD, "vcpus:", "  - - { op: accept, gpa: 0x1000, size: 2MiB }"), {
      path: "vcpus[0][0].gpa",
      line: 4,
      detail: /expected a 2MiB-aligned guest physical address/,
    });
    expectError(
      doc(...HEAD, "vcpus:", "  - - { op: accept, gpa: 0x3fe00000, count: 2, size: 2MiB }"),
      {
        path: "vcpus[0][0].count",
        line: 4,
        detail: /2 pages of 2MiB from 0x3fe00000 go beyond the VM's memory/,
      },
    );
  });

  it("an accept at 2MiB counts 2 MiB pages; tdxHugePages is a boolean, off by default", () => {
    const s = parseScenarioText(
      doc(
        ...HEAD,
        "options: { tdxHugePages: true }",
        "vcpus:",
        "  - - { op: accept, gpa: 0x200000, count: 2, size: 2MiB }",
      ),
      "t.yaml",
    );
    expect(s.vcpus[0]![0]).toEqual({ op: "accept", gpa: 0x200000, count: 2, size: 2 * 2 ** 20 });
    expect(s.options).toEqual({ strategy: "freeze", tdxHugePages: true });
    expect(parseScenarioText(doc(...HEAD), "t.yaml").options.tdxHugePages).toBe(false);
    expectError(doc(...HEAD, "options: { tdxHugePages: 1 }"), {
      path: "options.tdxHugePages",
      line: 3,
      detail: /expected true or false, got 1/,
    });
  });

  it("write that is not a boolean", () => {
    expectError(doc(...HEAD, "vcpus:", '  - - { op: access, gpa: 0x0, write: "yes" }'), {
      path: "vcpus[0][0].write",
      line: 4,
      detail: /expected true or false, got "yes"/,
    });
  });

  it("more vCPU programs than vm.vcpus", () => {
    expectError(doc("name: t", "vm: { memory: 1GiB, vcpus: 1 }", "vcpus:", "  - []", "  - []"), {
      path: "vcpus",
      line: 4,
      detail: /2 programs for a VM with 1 vCPU\(s\) \(vm\.vcpus\)/,
    });
  });

  it("vcpus that is not a list", () => {
    expectError(doc(...HEAD, "vcpus: { op: access }"), {
      path: "vcpus",
      line: 3,
      detail: /expected a list with one list of ops per vCPU, got a mapping/,
    });
  });

  it("a vCPU program that is a single op instead of a list", () => {
    expectError(doc(...HEAD, "vcpus:", "  - { op: access, gpa: 0x0 }"), {
      path: "vcpus[0]",
      line: 4,
      detail: /expected a list of guest ops, got a mapping/,
    });
  });

  // BUG (src/scenario/parse.ts, num): the pattern /^\s*(0x[0-9a-fA-F_]+|[0-9_]+)\s*$/ accepts a
  // string of underscores only, and Number("") is 0, so `gpa: "_"` silently becomes GPA 0.
  it('a string of underscores is not a number ("_" is not GPA 0)', () => {
    expectError(doc(...HEAD, "vcpus:", '  - - { op: access, gpa: "_" }'), {
      path: "vcpus[0][0].gpa",
      line: 4,
      detail: /expected a non-negative integer/,
    });
  });
});

describe("scenario parser: the host program", () => {
  it("unknown host op lists the valid host ops, and says how a plugin's op is named", () => {
    expectError(doc(...HEAD, "host:", "  - { op: zapp }"), {
      path: "host[0].op",
      line: 4,
      detail:
        /expected one of populate, finalize, convert, zap, dirty-log, age, split, recover, delete-memslot, teardown, terminate, raw, or a plugin's op named <backend>\.<op>, got "zapp"/,
    });
  });

  it("an op named <backend>.<op> is a plugin's, kept with its operands and line for the backend to check", () => {
    const scn = parseScenarioText(
      [
        ...HEAD,
        "host:",
        "  - { op: zap, gpa: 0x0, size: 4KiB }",
        "  - { op: sealed.unseal, gpa: 0x1000, size: 8KiB }",
      ].join("\n"),
      "t.yaml",
    );
    expect(scn.host[1]).toEqual({
      op: "plugin",
      name: "sealed.unseal",
      args: { gpa: 0x1000, size: "8KiB" },
      at: "host[1]",
      line: 5,
    });
  });

  it("a guest-only op in the host program is unknown there", () => {
    expectError(doc(...HEAD, "host:", "  - { op: access, gpa: 0x0 }"), {
      path: "host[0].op",
      line: 4,
      detail:
        /expected one of populate, .*teardown, terminate, raw, or a plugin's op named <backend>\.<op>, got "access"/,
    });
  });

  it("a zap range that runs past the end of the VM memory", () => {
    expectError(
      doc(...HEAD, "host:", "  - { op: finalize }", "  - { op: zap, gpa: 0x3ff00000, size: 2MiB }"),
      {
        path: "host[1].size",
        line: 5,
        detail: /the range 0x3ff00000\+0x200000 goes beyond the VM's memory \(0x40000000 bytes\)/,
      },
    );
  });

  it("a zap that starts beyond the VM memory", () => {
    expectError(doc(...HEAD, "host:", "  - { op: zap, gpa: 0x80000000, size: 4KiB }"), {
      path: "host[0].gpa",
      line: 4,
      detail: /0x80000000 is beyond the VM's memory/,
    });
  });

  it("an unaligned gpa on a zap", () => {
    expectError(doc(...HEAD, "host:", "  - { op: zap, gpa: 0x1001, size: 4KiB }"), {
      path: "host[0].gpa",
      line: 4,
      detail: /expected a 4KiB-aligned guest physical address, got 0x1001/,
    });
  });

  it("a size that is not a multiple of 4KiB", () => {
    expectError(doc(...HEAD, "host:", "  - { op: age, gpa: 0x0, size: 100 }"), {
      path: "host[0].size",
      line: 4,
      detail: /expected a positive multiple of 4KiB, got 100/,
    });
  });

  it("missing `to` on a host convert", () => {
    expectError(doc(...HEAD, "host:", "  - { op: convert, gpa: 0x1000, size: 4KiB }"), {
      path: "host[0].to",
      line: 4,
      detail: /expected one of private, shared, got nothing/,
    });
  });

  it("slot other than 0 on dirty-log", () => {
    expectError(doc(...HEAD, "host:", "  - { op: dirty-log, action: start, slot: 1 }"), {
      path: "host[0].slot",
      line: 4,
      detail: /no memslot 1: format v1 gives a VM one memslot, 0/,
    });
  });

  it("slot other than 0 on delete-memslot", () => {
    expectError(doc(...HEAD, "host:", "  - { op: delete-memslot, slot: 3 }"), {
      path: "host[0].slot",
      line: 4,
      detail: /no memslot 3/,
    });
  });

  it("a bad dirty-log action", () => {
    expectError(doc(...HEAD, "host:", "  - { op: dirty-log, action: begin }"), {
      path: "host[0].action",
      line: 4,
      detail: /expected one of start, collect, stop, got "begin"/,
    });
  });

  it("unknown key on an op that takes none", () => {
    expectError(doc(...HEAD, "host:", "  - { op: teardown, now: true }"), {
      path: "host[0].now",
      line: 4,
      detail: /unknown key \(expected one of: op\)/,
    });
  });

  it("host that is not a list", () => {
    expectError(doc(...HEAD, "host: { op: finalize }"), {
      path: "host",
      line: 3,
      detail: /expected a list of host ops, got a mapping/,
    });
  });
});

describe("scenario parser: JSON input", () => {
  it("errors in JSON name the file, the line and the path", () => {
    const text = [
      "{",
      '  "name": "j",',
      '  "vm": { "memory": "1GiB" },',
      '  "vcpus": [',
      '    [ { "op": "access", "gpa": "0x40000000" } ]',
      "  ]",
      "}",
    ].join("\n");
    expectError(text, {
      file: "s.json",
      path: "vcpus[0][0].gpa",
      line: 5,
      detail: /0x40000000 is beyond the VM's memory \(0x40000000 bytes\)/,
    });
  });

  it("an unknown key in JSON", () => {
    const text = [
      "{",
      '  "name": "j",',
      '  "vm": { "memory": "1GiB", "gpaw": 48 },',
      '  "extra": 1',
      "}",
    ].join("\n");
    expectError(text, { file: "s.json", path: "extra", line: 4, detail: /unknown key/ });
  });
});

describe("scenario parser: loadScenario", () => {
  const dir = mkdtempSync(join(tmpdir(), "tdpemu-parse-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("a missing file: no such file", () => {
    const p = join(dir, "nope.yaml");
    expect(() => loadScenario(p)).toThrow(ScenarioError);
    try {
      loadScenario(p);
    } catch (e) {
      const se = e as ScenarioError;
      expect(se.file).toBe(p);
      expect(se.message).toBe(`${p}: cannot read the scenario: no such file`);
    }
  });

  it("a directory is not a scenario file", () => {
    expect(() => loadScenario(dir)).toThrow(
      new RegExp(`^${escapeRe(dir)}: cannot read the scenario: is a directory`),
    );
  });

  it("errors in a loaded file name the file path and the line", () => {
    const p = join(dir, "bad-op.yaml");
    writeFileSync(p, doc(...HEAD, "vcpus:", "  - - { op: access, gpa: 0x0, count: 0 }"));
    expect(() => loadScenario(p)).toThrow(
      new RegExp(
        `^${escapeRe(p)}:4: vcpus\\[0\\]\\[0\\]\\.count: expected at least 1 page, got 0$`,
      ),
    );
  });

  it("a loaded file records its source", () => {
    const p = join(dir, "ok.yaml");
    writeFileSync(p, doc(...HEAD));
    expect(loadScenario(p).source).toBe(p);
  });
});

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

describe("scenario parser: good input", () => {
  it("hex numbers as YAML ints", () => {
    const s = parseScenarioText(
      doc(
        "name: t",
        "vm: { memory: 0x40000000 }",
        "vcpus:",
        "  - - { op: access, gpa: 0x1000, count: 0x10 }",
      ),
      "h.yaml",
    );
    expect(s.vm.memory).toBe(GiB);
    expect(s.vcpus[0]![0]).toEqual({
      op: "access",
      gpa: 0x1000,
      count: 16,
      write: false,
      shared: false,
      vmpl: 0,
    });
  });

  it("hex numbers as JSON strings", () => {
    const text = JSON.stringify({
      name: "t",
      vm: { memory: "0x40000000" },
      vcpus: [[{ op: "accept", gpa: "0x1000", count: "0x2" }]],
      host: [{ op: "zap", gpa: "0x200000", size: "0x1000" }],
      schedule: { seed: "0x10" },
    });
    const s = parseScenarioText(text, "h.json");
    expect(s.vm.memory).toBe(GiB);
    expect(s.vcpus[0]![0]).toEqual({ op: "accept", gpa: 0x1000, count: 2, size: 4096 });
    expect(s.host[0]).toEqual({ op: "zap", gpa: 0x200000, size: 0x1000 });
    expect(s.schedule.seed).toBe(16);
  });

  it("sizes 4KiB, 2MiB, 1GiB", () => {
    const s = parseScenarioText(
      doc(
        "name: t",
        "vm: { memory: 1GiB }",
        "host:",
        "  - { op: zap, gpa: 0x0, size: 4KiB }",
        "  - { op: age, gpa: 0x0, size: 2MiB }",
        "  - { op: recover, gpa: 0x0, size: 1GiB }",
      ),
      "s.yaml",
    );
    expect(s.vm.memory).toBe(GiB);
    expect(s.host.map((o) => ("size" in o ? o.size : -1))).toEqual([4096, 2 * MiB, GiB]);
  });

  it("defaults: count 1, write false, shared false, backend tdx, round-robin seed 0, vm gpaw 48, vcpus 1, no huge pages", () => {
    const s = parseScenarioText(
      doc("name: t", "vm: { memory: 2MiB }", "vcpus:", "  - - { op: access, gpa: 0x0 }"),
      "d.yaml",
    );
    expect(s.backend).toBe("tdx");
    expect(s.schedule).toEqual({ mode: "round-robin", seed: 0 });
    expect(s.vm).toEqual({ memory: 2 * MiB, gpaw: 48, vcpus: 1, hugepages: false });
    expect(s.vcpus).toEqual([
      [{ op: "access", gpa: 0, count: 1, write: false, shared: false, vmpl: 0 }],
    ]);
    expect(s.host).toEqual([]);
    expect(s.source).toBe("d.yaml");
    expect(s.name).toBe("t");
  });

  it("a schedule mapping without mode or seed gets round-robin and seed 0", () => {
    const s = parseScenarioText(doc(...HEAD, "schedule: { interleave: false }"), "d.yaml");
    expect(s.schedule).toEqual({ mode: "round-robin", seed: 0, interleave: false });
  });

  it("replay with a file keeps the file", () => {
    const s = parseScenarioText(
      doc(...HEAD, "schedule: { mode: replay, file: run.schedule.json }"),
      "d.yaml",
    );
    expect(s.schedule).toEqual({ mode: "replay", seed: 0, file: "run.schedule.json" });
  });

  it("hugepages: true means 2MiB; 1GiB and false are kept", () => {
    const t = parseScenarioText(doc("name: t", "vm: { memory: 1GiB, hugepages: true }"), "h.yaml");
    expect(t.vm.hugepages).toBe("2MiB");
    expect(
      parseScenarioText(doc("name: t", "vm: { memory: 1GiB, hugepages: 1GiB }"), "h.yaml").vm
        .hugepages,
    ).toBe("1GiB");
    expect(
      parseScenarioText(doc("name: t", "vm: { memory: 1GiB, hugepages: false }"), "h.yaml").vm
        .hugepages,
    ).toBe(false);
  });

  it("host range ops default their range; required ones default size to 4KiB", () => {
    const s = parseScenarioText(
      doc(
        "name: t",
        "vm: { memory: 64MiB }",
        "host:",
        "  - { op: age }",
        "  - { op: zap, gpa: 0x1000 }",
        "  - { op: dirty-log, action: start }",
      ),
      "r.yaml",
    );
    expect(s.host).toEqual([
      { op: "age", gpa: 0, size: 64 * MiB },
      { op: "zap", gpa: 0x1000, size: 4096 },
      { op: "dirty-log", action: "start", slot: 0 },
    ]);
  });

  it("an access at an unaligned gpa is allowed (only page and range ops need alignment)", () => {
    const s = parseScenarioText(
      doc(...HEAD, "vcpus:", "  - - { op: access, gpa: 0x1234, write: true, shared: true }"),
      "u.yaml",
    );
    expect(s.vcpus[0]![0]).toEqual({
      op: "access",
      gpa: 0x1234,
      count: 1,
      write: true,
      shared: true,
      vmpl: 0,
    });
  });

  it("an empty vCPU program (null) is an empty list", () => {
    const s = parseScenarioText(
      doc(...HEAD, "vcpus:", "  -", "  - - { op: access, gpa: 0x0 }"),
      "n.yaml",
    );
    expect(s.vcpus[0]).toEqual([]);
    expect(s.vcpus[1]).toHaveLength(1);
  });

  it("JSON input parses the same as the equivalent YAML", () => {
    const yaml = doc(
      "name: two-vcpus",
      "vm: { memory: 1GiB, gpaw: 52, vcpus: 2, hugepages: 2MiB }",
      "backend: plain",
      "schedule: { mode: random, seed: 7, interleave: true }",
      "vcpus:",
      "  - - { op: accept, gpa: 0x0, count: 512 }",
      "    - { op: access, gpa: 0x0, count: 512, write: true }",
      "  - - { op: access, gpa: 0x200000, shared: true }",
      "    - { op: convert, gpa: 0x400000, size: 2MiB, to: shared }",
      "host:",
      "  - { op: populate, gpa: 0x0, size: 4KiB }",
      "  - { op: finalize }",
      "  - { op: convert, gpa: 0x1000, size: 4KiB, to: shared }",
      "  - { op: dirty-log, action: collect, slot: 0 }",
      "  - { op: split, gpa: 0x0, size: 2MiB }",
      "  - { op: delete-memslot }",
      "  - { op: teardown }",
    );
    const json = JSON.stringify(
      {
        name: "two-vcpus",
        vm: { memory: "1GiB", gpaw: 52, vcpus: 2, hugepages: "2MiB" },
        backend: "plain",
        schedule: { mode: "random", seed: 7, interleave: true },
        vcpus: [
          [
            { op: "accept", gpa: "0x0", count: 512 },
            { op: "access", gpa: 0, count: 512, write: true },
          ],
          [
            { op: "access", gpa: "0x200000", shared: true },
            { op: "convert", gpa: "0x400000", size: "2MiB", to: "shared" },
          ],
        ],
        host: [
          { op: "populate", gpa: "0x0", size: "4KiB" },
          { op: "finalize" },
          { op: "convert", gpa: 4096, size: 4096, to: "shared" },
          { op: "dirty-log", action: "collect", slot: 0 },
          { op: "split", gpa: 0, size: "2MiB" },
          { op: "delete-memslot" },
          { op: "teardown" },
        ],
      },
      null,
      2,
    );
    const fromYaml = parseScenarioText(yaml, "s.yaml");
    const fromJson = parseScenarioText(json, "s.json");
    expect(fromJson.source).toBe("s.json");
    expect(content(fromJson)).toEqual(content(fromYaml));
    expect(fromYaml.vm).toEqual({ memory: GiB, gpaw: 52, vcpus: 2, hugepages: "2MiB" });
    expect(fromYaml.host).toHaveLength(7);
  });

  const files = readdirSync(SCENARIOS)
    .filter((f) => f.endsWith(".yaml"))
    .sort();

  it("there are example scenarios", () => {
    expect(files.length).toBeGreaterThan(0);
  });

  it.each(files)("scenarios/%s parses", (f) => {
    const p = join(SCENARIOS, f);
    const s = loadScenario(p);
    expect(s.source).toBe(p);
    expect(s.name.length).toBeGreaterThan(0);
    expect(s.vcpus.length).toBeLessThanOrEqual(s.vm.vcpus);
    expect(s.vm.memory % 4096).toBe(0);
  });
});

describe("a .json file must be JSON", () => {
  it("rejects what only YAML allows: comments, trailing commas, bare words", () => {
    for (const text of [
      '{ "name": "t", "vm": { "memory": "1GiB" }, }',
      '{ "name": "t", # comment\n "vm": { "memory": "1GiB" } }',
      "{ name: t, vm: { memory: 1GiB } }",
    ]) {
      expect(() => parseScenarioText(text, "s.json")).toThrow(/s\.json(:\d+)?: not valid JSON/);
    }
    // The same text is fine as YAML.
    expect(parseScenarioText("{ name: t, vm: { memory: 1GiB } }", "s.yaml").vm.memory).toBe(
      2 ** 30,
    );
  });
});
