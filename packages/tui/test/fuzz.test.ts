/**
 * The fuzzer, on a short budget (CI's share of `pnpm fuzz`): the checked-in corpus of malformed
 * files and a few seconds of random workloads, broken files and CLI misuse, each answered with
 * exit 0, 1 or 2, one line on error, no stack trace, and the same answer twice.
 */
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { main, type Io } from "../src/index.js";
import { fuzz, keepFindingInputs, withoutTimes } from "../src/fuzz/fuzz.js";
import { soakCase } from "../src/bench/cases.js";
import { builtinRegistry } from "../src/registry.js";

const dir = mkdtempSync(join(tmpdir(), "tdpemu-fuzz-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A stand-in `main` that answers at once; a throw rejects, as one in the real, async main does. */
const mainOf = (answer: (argv: string[], io: Io) => number) => (argv: string[], io: Io) =>
  new Promise<number>((resolve) => resolve(answer(argv, io)));

describe("tdpemu fuzz", () => {
  it("the corpus has at least 200 malformed files", () => {
    expect(readdirSync("fuzz/corpus").length).toBeGreaterThanOrEqual(200);
  });

  it("corpus and 10 s of generated cases: no crash, no slow case, nothing nondeterministic", async () => {
    const r = await fuzz({ seed: 7, budgetMs: 10_000, corpus: "fuzz/corpus", dir, main });
    expect(r.crashes).toEqual([]);
    expect(r.violations).toEqual([]);
    expect(r.nondeterministic).toEqual([]);
    expect(r.slow).toEqual([]);
    expect(r.byKind.corpus).toBeGreaterThanOrEqual(200);
    for (const k of ["workload", "malformed", "misuse"]) expect(r.byKind[k]).toBeGreaterThan(10);
    // Every kind of answer occurs: clean runs, violations or refusals, bad input.
    expect(r.exits["0"]).toBeGreaterThan(0);
    expect(r.exits["2"]).toBeGreaterThan(0);
    expect(Object.keys(r.exits).every((c) => ["0", "1", "2"].includes(c))).toBe(true);
  }, 120_000);

  it("a crash, a stack trace or a second answer that differs is a finding", async () => {
    let n = 0;
    const flaky = mainOf((argv, io) => {
      n++;
      if (argv[0] === "run" && argv[1]!.includes("workload")) throw new TypeError("boom");
      if (argv[0] === "run") {
        io.err(`tdpemu: bad\n    at x (y.js:1:1)`);
        return 2;
      }
      io.out(`answer ${n}`);
      return 0;
    });
    const r = await fuzz({ seed: 3, budgetMs: 300, dir, main: flaky });
    expect(r.crashes.some((f) => f.kind === "workload" && /TypeError: boom/.test(f.what))).toBe(
      true,
    );
    expect(
      r.crashes.some((f) => f.kind === "malformed" && /a stack trace|not one line/.test(f.what)),
    ).toBe(true);
    expect(r.nondeterministic.some((f) => f.kind === "misuse")).toBe(true);
  });

  it("a valid workload that ends in a violation, and a warning on the process's stderr, are findings", async () => {
    const broken = mainOf((argv, io) => {
      if (argv[0] === "run" && argv[1]!.includes("workload")) {
        io.out(
          JSON.stringify({
            invariants: {
              violations: [{ check: "pamt-consistent", message: "page 0x5 owned twice" }],
            },
          }),
        );
        return 1;
      }
      if (argv[0] === "run") {
        process.emitWarning("Keys with collection values will be stringified");
        io.err("tdpemu: bad");
        return 2;
      }
      return 0;
    });
    const r = await fuzz({ seed: 4, budgetMs: 300, dir, main: broken });
    expect(r.violations.length).toBeGreaterThan(0);
    expect(r.violations[0]!.what).toBe("[pamt-consistent] page 0x5 owned twice");
    expect(
      r.crashes.some(
        (f) =>
          f.kind === "malformed" && /a warning on stderr: Keys with collection values/.test(f.what),
      ),
    ).toBe(true);
    // The inputs of the findings outlive the fuzzer's temporary files.
    const kept = join(dir, "kept");
    expect(keepFindingInputs(r.violations, dir, kept)).toBe(r.violations.length);
    expect(readdirSync(kept).sort()).toEqual(r.violations.map((f) => basename(f.argv[1]!)).sort());
  });

  it("times and rates do not count as differences", () => {
    expect(withoutTimes("faults      262144  (retries 0, spurious 0; 1,259,250 faults/s)")).toBe(
      withoutTimes("faults      262144  (retries 0, spurious 0; 180,287 faults/s)"),
    );
    expect(withoutTimes("explored    3 schedules, 9 steps in 0.52 s (6 schedules/s)")).toBe(
      withoutTimes("explored    3 schedules, 9 steps in 1.50 s (2 schedules/s)"),
    );
    expect(withoutTimes('"seconds": 0.5, "ms": "61.2"')).toBe(
      withoutTimes('"seconds": 1.25, "ms": "7.0"'),
    );
    // A quick run shows no rate, a slow one does (on a loaded machine, the same run can be both).
    expect(withoutTimes("faults      512  (retries 0, spurious 0)")).toBe(
      withoutTimes("faults      512  (retries 0, spurious 0; 9,868 faults/s)"),
    );
    // compare's table is as wide as its widest cell, and the ms row's cells vary.
    expect(withoutTimes("faults   512     512\nms      9.1   102.4")).toBe(
      withoutTimes("faults   512    512\nms      9.1   12.4"),
    );
    // explore's progress lines, one every 2 s, come as often as the machine's load makes them.
    expect(
      withoutTimes("explored 1,915 schedules, 697,932 steps, 954/s\nresult      no violation"),
    ).toBe(withoutTimes("result      no violation"));
    expect(withoutTimes("faults 512")).not.toBe(withoutTimes("faults 513"));
  });

  for (const b of ["tdx", "sev", "plain", "cca"]) {
    it(`the soak's workloads on ${b} run clean with invariants after every op (a short soak)`, () => {
      const m = soakCase(builtinRegistry(), b, 3000);
      expect(m.extra!.steps).toBeGreaterThanOrEqual(3000);
      expect(m.extra!.workloads).toBeGreaterThan(m.extra!.refused!);
    });
  }
});
