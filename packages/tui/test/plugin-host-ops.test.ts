/**
 * A plugin defines host ops with the operands they take (`hostOps`, `runHostOp`); a scenario
 * writes them as `<backend>.<op>` in its host program. They are checked like built-in ops, with
 * the same one-line errors at the op's line, and run as one atomic point whose status is the
 * op's result.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Report } from "@tdpemu/core";
import { afterAll, describe, expect, it } from "vitest";
import { main } from "../src/index.js";
import { captureIo as io } from "./capture-io.js";

const dir = mkdtempSync(join(tmpdir(), "tdpemu-hostops-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const plugin = join(dir, "marker.mjs");
writeFileSync(
  plugin,
  `
class Marker {
  name = "marker";
  description = "test plugin with host ops";
  usesMirrorRoot = false;
  hasPrivateMemory = false;
  marks = [];
  hostOps = {
    mark: { description: "remember a range", params: { gpa: { kind: "gpa" }, size: { kind: "size", optional: true }, label: { kind: "string" } } },
  };
  runHostOp(vm, name, args) {
    this.marks.push(name + ":" + args.label + "@" + args.gpa + "+" + (args.size ?? 0));
    return args.label === "refuse" ? -22 : 0;
  }
  stats() { return { calls: { MARKS: this.marks.length }, busy: 0, errors: {}, }; }
}
export const registration = { name: "marker", description: "test plugin with host ops", register(c) { c.register(Symbol.for("tdpemu.Backend"), { useClass: Marker }); } };
`,
);

function scenario(hostOps: string[]): string {
  const f = join(dir, `s${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(
    f,
    [
      "name: host-ops",
      "vm: { memory: 16MiB, gpaw: 48, vcpus: 1 }",
      "backend: ./marker.mjs",
      "vcpus:",
      "  - - { op: access, gpa: 0x0, count: 4, write: true }",
      "host:",
      ...hostOps.map((o) => `  - ${o}`),
      "",
    ].join("\n"),
  );
  return f;
}

async function run(file: string, ...extra: string[]) {
  const o = io();
  const code = await main(
    ["run", file, "--json", "--strict-plugin", "--allow-plugins", ...extra],
    o,
  );
  return { code, out: o.outText(), err: o.errText() };
}

describe("a plugin's host ops", () => {
  it("run with their checked operands, and report the status as the op's result", async () => {
    const r = await run(
      scenario([
        "{ op: zap, gpa: 0x0, size: 4KiB }",
        "{ op: marker.mark, gpa: 0x2000, size: 8KiB, label: first }",
        "{ op: marker.mark, gpa: 0x1000, label: refuse }",
      ]),
    );
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    const report = JSON.parse(r.out) as Report;
    const host = report.ops.filter((o) => o.who === "host");
    expect(host.map((o) => [o.op, o.result.status])).toEqual([
      ["zap", undefined],
      ["marker.mark", 0],
      ["marker.mark", -22],
    ]);
    expect(report.backendStats.calls.MARKS).toBe(2);
  });

  for (const [what, op, re] of [
    [
      "an unknown operand",
      "{ op: marker.mark, gpa: 0x0, label: a, colour: red }",
      /:7: host\[0\]\.colour: unknown key \(expected one of: op, gpa, size, label\)$/,
    ],
    [
      "a missing operand",
      "{ op: marker.mark, gpa: 0x0 }",
      /:7: host\[0\]\.label: missing; expected a non-empty string$/,
    ],
    [
      "a GPA beyond the VM",
      "{ op: marker.mark, gpa: 0x4000000, label: a }",
      /:7: host\[0\]\.gpa: 0x4000000 is beyond the VM's memory \(0x1000000 bytes\)$/,
    ],
    [
      "a bad size",
      "{ op: marker.mark, gpa: 0x0, size: lots, label: a }",
      /:7: host\[0\]\.size: expected a size such as 4KiB, 2MiB, 1GiB, or a number of bytes, got "lots"$/,
    ],
    [
      "an op the backend does not define",
      "{ op: marker.unmark, gpa: 0x0 }",
      /:7: host\[0\]\.op: backend 'marker' defines no host op 'unmark' \(its ops: marker\.mark\)$/,
    ],
    [
      "another backend's op",
      "{ op: sealed.seal, gpa: 0x0 }",
      /:7: host\[0\]\.op: 'sealed\.seal' is an op of backend 'sealed', and this run is on 'marker'$/,
    ],
  ] as const) {
    it(`${what} is one line at the op's line, exit 2`, async () => {
      const r = await run(scenario([op]));
      expect(r.code).toBe(2);
      expect(r.err.split("\n")).toHaveLength(1);
      expect(r.err).toMatch(re);
    });
  }

  it("a built-in backend refuses a plugin's op in the same words", async () => {
    const r = await run(
      scenario(["{ op: marker.mark, gpa: 0x0, label: a }"]),
      "--backend",
      "plain",
    );
    expect(r.code).toBe(2);
    expect(r.err).toMatch(
      /host\[0\]\.op: 'marker\.mark' is an op of backend 'marker', and this run is on 'plain'$/,
    );
  });
});
