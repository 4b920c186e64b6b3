/**
 * Every event says which task caused it (a vCPU, or the host): in `--trace`, in the UI's events
 * pane, and so in what `replay --steps` groups under each step's task.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadScenario } from "@tdpemu/core";
import { main } from "../src/index.js";
import { builtinRegistry } from "../src/registry.js";
import { Session } from "../src/session.js";
import { describeEvent } from "../src/event-text.js";
import { captureIo } from "./capture-io.js";

const dir = mkdtempSync(join(tmpdir(), "tdpemu-attr-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("events carry their task", () => {
  it("in --trace: the VMM's calls are the host's, a fault's SEAMCALLs the faulting vCPU's", async () => {
    const trace = join(dir, "t.jsonl");
    expect(
      await main(["run", "scenarios/tdx-race-2m-4k.yaml", "--trace", trace], captureIo()),
    ).toBe(0);
    const events = readFileSync(trace, "utf8")
      .trimEnd()
      .split("\n")
      .map(
        (l) =>
          JSON.parse(l) as {
            type: string;
            task: string;
            name?: string;
            vcpu?: number;
            who?: string;
          },
      );
    expect(events.every((e) => e.task === "host" || /^vcpu\d$/.test(e.task))).toBe(true);
    expect(events.find((e) => e.name === "TDH.MNG.CREATE")!.task).toBe("host");
    const augs = events.filter((e) => e.name === "TDH.MEM.PAGE.AUG");
    expect(augs.length).toBeGreaterThan(0);
    expect(augs.every((e) => /^vcpu\d$/.test(e.task))).toBe(true);
    // A fault is the vCPU's own; an op's start and end are its program's.
    for (const e of events) {
      if (e.type === "fault") expect(e.task).toBe(`vcpu${e.vcpu}`);
      if (e.type === "op") expect(e.task).toBe(e.who);
    }
  });

  it("replay --steps shows the VM's build under #0, the host's, before the first step", async () => {
    const sched = join(dir, "race.json");
    expect(
      await main(["run", "scenarios/tdx-race-2m-4k.yaml", "--schedule-out", sched], captureIo()),
    ).toBe(0);
    const io = captureIo();
    expect(await main(["replay", sched, "--steps"], io)).toBe(0);
    const lines = io.outText().split("\n");
    expect(lines[0]).toBe("#0 host: the VM is built");
    const first = lines.findIndex((l) => l.startsWith("#1 "));
    expect(lines.slice(1, first).some((l) => l.includes("TDH.MNG.CREATE"))).toBe(true);
    expect(
      lines.slice(first).some((l) => l.startsWith("    ") && l.includes("TDH.MNG.CREATE")),
    ).toBe(false);
  });

  it("SEV's RMP instructions say their GPA, frame and size", async () => {
    const trace = join(dir, "sev.jsonl");
    expect(await main(["run", "scenarios/sev-hugepages.yaml", "--trace", trace], captureIo())).toBe(
      0,
    );
    const calls = readFileSync(trace, "utf8")
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l) as { type: string; name?: string; detail?: string })
      .filter((e) => e.type === "call");
    const detail = (name: string) => calls.filter((e) => e.name === name).map((e) => e.detail!);
    expect(detail("RMPUPDATE").length).toBeGreaterThan(0);
    for (const d of detail("RMPUPDATE"))
      expect(d).toMatch(
        /^(gpa 0x[0-9a-f]+ pfn 0x[0-9a-f]+|pfn 0x[0-9a-f]+ to the (hypervisor|firmware)) (4K|2M)$/,
      );
    expect(detail("PVALIDATE").length).toBeGreaterThan(0);
    for (const d of detail("PVALIDATE")) expect(d).toMatch(/^gpa 0x[0-9a-f]+ pfn 0x[0-9a-f]+ 4K$/);
    for (const d of detail("PSMASH")) expect(d).toMatch(/^pfn 0x[0-9a-f]+ 2M$/);
  });

  it("an injected status is marked as injected, and busy is not an error", async () => {
    const trace = join(dir, "inj.jsonl");
    const io = captureIo();
    expect(
      await main(
        [
          "run",
          "scenarios/tdx-sequential-2m.yaml",
          "--inject",
          "TDH.MEM.PAGE.AUG:1:OPERAND_BUSY",
          "--trace",
          trace,
          "--json",
        ],
        io,
      ),
    ).toBe(0);
    const augs = readFileSync(trace, "utf8")
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l) as { name?: string; status?: string; injected?: boolean })
      .filter((e) => e.name === "TDH.MEM.PAGE.AUG");
    expect(augs[0]).toMatchObject({ status: "OPERAND_BUSY", injected: true });
    expect(augs.slice(1).every((e) => e.injected === undefined)).toBe(true);
    expect(describeEvent(augs[0] as never)).toMatch(/: OPERAND_BUSY \(injected\)$/);
    const report = JSON.parse(io.outText()) as {
      backendStats: { busy: number; errors: Record<string, number> };
    };
    expect(report.backendStats.busy).toBe(1);
    expect(report.backendStats.errors).toEqual({});
    // SEV's injected RMP statuses too: the refused RMPUPDATE is marked, the next one is not.
    const sevTrace = join(dir, "sev-inj.jsonl");
    const sevIo = captureIo();
    expect(
      await main(
        [
          "run",
          "scenarios/sev-hugepages.yaml",
          "--inject",
          "RMPUPDATE:1:FAIL_INUSE",
          "--trace",
          sevTrace,
          "--json",
        ],
        sevIo,
      ),
    ).toBe(0);
    // The guest context's RMPUPDATE, made with the VM, comes first; the injected nth counts after it.
    const updates = readFileSync(sevTrace, "utf8")
      .trimEnd()
      .split("\n")
      .map(
        (l) =>
          JSON.parse(l) as { name?: string; status?: string; injected?: boolean; detail?: string },
      )
      .filter((e) => e.name === "RMPUPDATE" && !e.detail!.includes("to the firmware"));
    expect(updates.slice(0, 2).map((e) => [e.status, e.injected === true])).toEqual([
      ["FAIL_INUSE", true],
      ["SUCCESS", false],
    ]);
    const sevReport = JSON.parse(sevIo.outText()) as {
      backendStats: { busy: number; errors: Record<string, number> };
    };
    // RMPUPDATE's FAIL_INUSE is an error, not retried contention: Linux's rmpupdate() retries
    // only FAIL_OVERLAP (the fault is retried here, the model's departure: docs/architecture.md).
    expect(sevReport.backendStats).toMatchObject({ busy: 0, errors: { FAIL_INUSE: 1 } });
  });

  it("in the UI's events pane, one column per row", () => {
    const s = new Session(loadScenario("scenarios/tdx-race-2m-4k.yaml"), builtinRegistry(), "tdx");
    while (s.step()) {
      /* to the end */
    }
    const rows = s.snapshot().events;
    expect(rows.length).toBeGreaterThan(0);
    const tasks = new Set(rows.map((r) => r.task));
    expect([...tasks].every((t) => ["host", "vcpu0", "vcpu1"].includes(t))).toBe(true);
    expect(tasks.has("vcpu0") && tasks.has("vcpu1")).toBe(true);
    for (const r of rows.filter((x) => x.text.startsWith("fault ")))
      expect(r.task).toMatch(/^vcpu\d$/);
  });
});
