/**
 * `explore --every-state`: the invariants checked in every state of every trace, also those
 * only another order of a trace's independent steps passes through. On the MMU's own code: a
 * check over two SPTEs that a host's aging and a vCPU's fault write in independent steps fails
 * only in the order the reduced search does not run.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  SPTE_ACCESSED,
  TaskStepper,
  buildRun,
  classifyRunError,
  explore,
  exploreEveryState,
  exploreScenario,
  isLastSpte,
  loadScenario,
  isShadowPresent,
  parseScenarioText,
  spteToPfn,
  type ExploreSystem,
  type Vm,
} from "@tdpemu/core/testing";
import { main } from "../src/index.js";
import { builtinRegistry } from "../src/registry.js";
import { captureIo, expectOneLine } from "./capture-io.js";

async function explorePrint(...args: string[]) {
  const o = captureIo();
  const code = await main(["explore", ...args], o);
  return { code, out: o.outText(), err: o.errText() };
}

describe("explore --every-state", () => {
  it("says how many more states it checked, and that none of them violates an invariant", async () => {
    const r = await explorePrint("scenarios/race-shared-table.yaml", "--every-state");
    expect(r.code).toBe(0);
    expect(r.out).toMatch(
      /^states {6}[1-9][\d,]* more checked: those other orders of the same steps pass through \(--every-state\)$/m,
    );
    expect(r.out).toMatch(/^result {6}no violation in any state; the space is exhausted$/m);
    const j = await explorePrint("scenarios/race-shared-table.yaml", "--every-state", "--json");
    const report = JSON.parse(j.out) as { otherStates: number; violation: unknown };
    expect(report.otherStates).toBeGreaterThan(0);
    expect(report.violation).toBeNull();
    // The HTML verdict carries the figure too.
    const dir = mkdtempSync(join(tmpdir(), "tdpemu-every-"));
    const page = join(dir, "verdict.html");
    const h = await explorePrint(
      "scenarios/race-shared-table.yaml",
      "--every-state",
      "--json",
      "--report",
      page,
    );
    expect(h.code).toBe(0);
    const html = readFileSync(page, "utf8");
    expect(html).toContain(
      `<tr><td>other states checked (--every-state)</td><td class="num">${report.otherStates.toLocaleString("en-US")}</td></tr>`,
    );
    expect(html).toContain("no violation in any state; the space is exhausted");
    rmSync(dir, { recursive: true, force: true });
    // Without it, the result says where the invariants were checked.
    const plain = await explorePrint("scenarios/race-shared-table.yaml", "--json");
    expect((JSON.parse(plain.out) as { otherStates: unknown }).otherStates).toBeNull();
    const text = await explorePrint("scenarios/race-shared-table.yaml", "--split-depth", "0");
    expect(text.out).toMatch(
      /^result {6}no violation; the space is exhausted \(in the states its schedules passed; --every-state checks every state\)$/m,
    );
  });

  it.each([
    ["race-shared-table", "plain"],
    ["race-shared-table", "sev"],
    ["tdx-race-2m-4k", "tdx"],
    ["tdx-race-2m-4k", "sev"],
    ["convert-race", "tdx"],
    ["tdx-terminate", "tdx"],
  ])(
    "%s on %s: no invariant fails in any state of any trace",
    (name, backend) => {
      const r = exploreScenario(loadScenario(`scenarios/${name}.yaml`), {
        backend: builtinRegistry().source(backend),
        everyState: true,
      });
      expect(r.violation?.violations ?? null).toBeNull();
      expect(r.exhausted).toBe(true);
      expect(r.otherStates).toBeGreaterThan(0);
    },
    120_000,
  );

  it("runs in one thread: with --jobs or --shard it is bad input (exit 2)", async () => {
    expectOneLine(
      await explorePrint("scenarios/race-shared-table.yaml", "--every-state", "--jobs", "2"),
      /explore: --every-state and --jobs\/--shard: the states are checked in one thread/,
    );
    expectOneLine(
      await explorePrint("scenarios/race-shared-table.yaml", "--every-state", "--shard", "0/2"),
      /explore: --every-state and --jobs\/--shard/,
    );
  });

  /** The leaf SPTE that maps `gfn` in a valid root, or null. */
  function leaf(vm: Vm, gfn: number): number | null {
    const pool = vm.host.pool;
    for (const root of vm.mmu.peekRoots()) {
      if (root.peekInvalid()) continue;
      let slot = root.slot;
      for (let level = root.level; level >= 1; level--) {
        const i = Math.floor(gfn / 512 ** (level - 1)) % 512;
        const mem = pool.tableMem(slot);
        const off = pool.tableOff(slot);
        const lo = mem[off + 2 * i]!;
        const hi = mem[off + 2 * i + 1]!;
        if (!isShadowPresent(lo)) break;
        if (isLastSpte(lo, level)) return lo;
        slot = pool.pfnToSlot(spteToPfn(lo, hi));
      }
    }
    return null;
  }

  it("finds, on the MMU's own code, a two-SPTE check that fails only in an order the search does not run", () => {
    // vCPU 0 touches GPA 0, maps 0x5000, touches 0 again; the host ages GPA 0. The host's clear
    // of GFN 0's accessed bit and vCPU 0's store of GFN 5's leaf are independent steps.
    const scn = parseScenarioText(
      `
name: age-heal
vm: { memory: 4MiB, gpaw: 48, vcpus: 1, hugepages: false }
backend: plain
vcpus:
  - - { op: access, gpa: 0x0, write: true }
    - { op: access, gpa: 0x5000, write: true }
    - { op: access, gpa: 0x0, write: true }
host:
  - { op: age, gpa: 0x0, size: 4KiB }
`,
      "age-heal.yaml",
    );
    const registry = builtinRegistry();
    const make = (): ExploreSystem => {
      const built = buildRun(scn, { backend: registry.source("plain"), interleave: true });
      built.host.pool.trackWrites(built.clock);
      // Once vCPU 0's first access is done, GFN 0's leaf is young or GFN 5 is mapped.
      const twoSptes = () => {
        const first = built.results.some((r) => r.who === "vcpu0" && r.index === 0);
        const gfn0 = leaf(built.vm, 0);
        return first && gfn0 !== null && (gfn0 & SPTE_ACCESSED) === 0 && leaf(built.vm, 5) === null
          ? [
              {
                check: "two-sptes",
                message: "GFN 0 is old and GFN 5 unmapped",
                step: built.clock.tick,
              },
            ]
          : [];
      };
      return {
        tasks: built.tasks,
        clock: built.clock,
        setRecorder: (fp) => {
          built.host.pool.fp = fp;
        },
        check: (final, skip) => [...built.check(final, skip).violations, ...twoSptes()],
        classify: (e) => classifyRunError(e, scn, built)?.[0] ?? null,
        release: () => built.host.release(),
      };
    };
    const reduced = explore(make, { algorithm: "optimal", countTraces: true });
    expect(reduced.exhausted).toBe(true);
    expect(reduced.violation).toBeNull();
    const every = exploreEveryState(make, { algorithm: "optimal" });
    expect(every.violation?.violations.map((v) => v.check)).toEqual(["two-sptes"]);
    // Its schedule reaches the state.
    const sys = make();
    const stepper = new TaskStepper(sys.tasks, sys.clock);
    for (const c of every.violation!.choices) stepper.step(c);
    expect(sys.check(false).map((v) => v.check)).toContain("two-sptes");
    sys.release?.();
  });
});
