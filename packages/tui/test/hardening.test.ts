/**
 * Inputs a careful user meets, each answered in one line with exit 2 (bad input, a refused op),
 * never a stack trace: YAML aliases, unwritable traces, loose schedule files, a cut pipe, ops
 * the kernel refuses (a second populate, anything on a torn-down VM, a populate with no
 * memslot).
 */
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { BackendRegistry, PluginError, type Report } from "@tdpemu/core";
import type { ExploreReport } from "../src/commands/explore-report.js";
import { main } from "../src/index.js";
import { captureIo as io, expectOneLine } from "./capture-io.js";

const dir = mkdtempSync(join(tmpdir(), "tdpemu-hardening-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

async function tdpemu(...args: string[]) {
  const o = io();
  const code = await main(args, o);
  return { code, out: o.outText(), err: o.errText() };
}

function hostScenario(backend: string, ops: string[], vcpu: string[] = []): string {
  return (
    [
      "name: host-ops",
      "vm: { memory: 4MiB, vcpus: 1 }",
      `backend: ${backend}`,
      "schedule: { mode: round-robin, interleave: false }",
      ...(vcpu.length > 0
        ? ["vcpus:", `  - - ${vcpu[0]}`, ...vcpu.slice(1).map((o) => `    - ${o}`)]
        : []),
      "host:",
      ...ops.map((o) => `  - ${o}`),
    ].join("\n") + "\n"
  );
}

describe("YAML aliases", () => {
  it("an alias with no anchor is one line at its line", async () => {
    const f = file("alias.yaml", "vm: { memory: 4MiB }\nname: *nope\n");
    expectOneLine(
      await tdpemu("run", f),
      /alias\.yaml:2: not valid YAML: alias \*nope names no anchor set before it \(&nope\)$/,
    );
  });

  it("an alias bomb is refused, not expanded", async () => {
    const f = file(
      "bomb.yaml",
      "a: &a [1,1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nname: x\nvm: { memory: 4MiB }\n",
    );
    for (const cmd of ["run", "explore", "compare"])
      expectOneLine(
        await tdpemu(cmd, f),
        /bomb\.yaml: not valid YAML: its aliases expand to more than 100 copies/,
      );
  });
});

describe("YAML keys", () => {
  it("a map used as a key is one line at its line, and no warning reaches stderr", async () => {
    const f = file(
      "key.yaml",
      "name: x\nvm: { memory: 4MiB, vcpus: 1 }\nvcpus:\n  - - { op: access, gpa: 0x0, count }: 1\n",
    );
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.message);
    process.on("warning", onWarning);
    try {
      expectOneLine(
        await tdpemu("run", f),
        /key\.yaml:4: a map or list is used as a key; expected a name/,
      );
      await new Promise((r) => setImmediate(r));
    } finally {
      process.off("warning", onWarning);
    }
    expect(warnings).toEqual([]);
  });
});

describe("output that cannot be written", () => {
  it.runIf(existsSync("/dev/full"))("--trace to a full device is one line, exit 2", async () => {
    expectOneLine(
      await tdpemu("run", "scenarios/zap-refault.yaml", "--trace", "/dev/full"),
      /--trace: cannot write '\/dev\/full': ENOSPC$/,
    );
  });

  it("a reader that stops reading ends the output quietly, exit 0 (not 1, which is a violation's)", () => {
    const sched = join(dir, "race.json");
    const cli = resolve("packages/tui/dist/tdpemu.mjs");
    spawnSync(
      process.execPath,
      [
        cli,
        "explore",
        "scenarios/race-shared-table.yaml",
        "--unsafe-non-atomic-set",
        "--out",
        sched,
      ],
      { encoding: "utf8" },
    );
    // A reader that is gone before the first write (\`true\` exits long before Node has started),
    // so every write meets EPIPE. Then tdpemu's exit status (not the reader's), and its stderr: none.
    const q = spawnSync(
      "bash",
      [
        "-c",
        `"${process.execPath}" "${cli}" replay "${sched}" --steps 2>"${dir}/epipe.err" | true; echo \${PIPESTATUS[0]}; cat "${dir}/epipe.err"`,
      ],
      { encoding: "utf8" },
    );
    expect(q.stdout).toBe("0\n");
  });
});

describe("schedule files are checked as strictly as scenarios", () => {
  const good = () => {
    const sched = join(dir, "good.json");
    spawnSync(
      process.execPath,
      [
        resolve("packages/tui/dist/tdpemu.mjs"),
        "run",
        resolve("scenarios/race-shared-table.yaml"),
        "--schedule-out",
        sched,
      ],
      { encoding: "utf8" },
    );
    return JSON.parse(readFileSync(sched, "utf8")) as Record<string, unknown>;
  };
  const cases: [string, (s: Record<string, unknown>) => void, RegExp][] = [
    [
      "a null fault to inject",
      (s) => {
        s.inject = [null];
      },
      /"inject\[0\]": expected a mapping with call, nth, status, got nothing$/,
    ],
    [
      "a debug mode switched on by a string",
      (s) => {
        s.mmu = { unsafeNonAtomicSet: "yes" };
      },
      /"mmu\.unsafeNonAtomicSet": expected true or false, got "yes"/,
    ],
    [
      "an unknown strategy",
      (s) => {
        s.mmu = { strategy: "hope" };
      },
      /"mmu\.strategy": expected one of freeze, atomic-then-hook, got "hope"/,
    ],
    [
      "huge pages switched on by a string",
      (s) => {
        s.mmu = { tdxHugePages: "on" };
      },
      /"mmu\.tdxHugePages": expected true or false, got "on"/,
    ],
    [
      "an unknown mmu option",
      (s) => {
        s.mmu = { fast: true };
      },
      /"mmu\.fast": unknown key \(expected one of: strategy, unsafeNonAtomicSet, tdxHugePages\)$/,
    ],
    [
      "an unknown key",
      (s) => {
        s.backdoor = 1;
      },
      /"backdoor": unknown key \(expected one of: format, scenario, name, backend, seed, interleave, mmu, hostMemory, inject, violations, choices\)$/,
    ],
    [
      "a negative seed",
      (s) => {
        s.seed = -1;
      },
      /"seed": expected an integer from 0 to 2\^32-1/,
    ],
    [
      "a host memory that is not a size",
      (s) => {
        s.hostMemory = "lots";
      },
      /"hostMemory": expected a number of bytes/,
    ],
  ];
  for (const [what, spoil, re] of cases) {
    it(`${what}: one line naming the file, exit 2`, async () => {
      const s = good();
      spoil(s);
      const f = file(`${what.replaceAll(" ", "-")}.json`, JSON.stringify(s));
      expectOneLine(
        await tdpemu("replay", f),
        new RegExp(`${f.replaceAll(/[.*+?^${}()|[\]\\/]/g, "\\$&")}: ${re.source}`),
      );
    });
  }
});

/** The results of a `run --json` report's populate ops, in order. */
function populateResults(out: string): Record<string, unknown>[] {
  return (JSON.parse(out) as { ops: { op: string; result: Record<string, unknown> }[] }).ops
    .filter((o) => o.op === "populate")
    .map((o) => o.result);
}

describe("ops the kernel refuses", () => {
  it("sev: a populate the guest's fault beat is the op's -EEXIST, and explore goes on", async () => {
    // Whether the fault or the populate comes first is the schedule's choice: neither order is
    // bad input, so the search runs both to the end.
    const f = file(
      "populate-race.yaml",
      hostScenario(
        "sev",
        ["{ op: populate, gpa: 0x0, size: 4KiB }"],
        ["{ op: access, gpa: 0x0, write: true }"],
      ),
    );
    const r = await tdpemu("explore", f, "--json", "--count-traces");
    expect(r.code).toBe(0);
    const report = JSON.parse(r.out) as { exhausted: boolean; traces: number };
    expect(report.exhausted).toBe(true);
    expect(report.traces).toBeGreaterThan(1);
  });

  for (const backend of ["tdx", "sev"]) {
    it(`${backend}: a second populate of a GFN is ${backend === "tdx" ? "-EEXIST" : "-EIO (snp_launch_update over kvm_gmem_populate's -EEXIST)"} before any firmware call`, async () => {
      const f = file(
        `populate-twice-${backend}.yaml`,
        hostScenario(backend, [
          "{ op: populate, gpa: 0x0, size: 4KiB }",
          "{ op: populate, gpa: 0x0, size: 4KiB }",
        ]),
      );
      // The ioctl returns -EEXIST to the VMM (SEV: -EIO): the op's status, and the run goes on.
      const twice = await tdpemu("run", f, "--json");
      expect(twice.code).toBe(0);
      expect(populateResults(twice.out)).toEqual([
        { mapped: 1 },
        {
          mapped: 0,
          status: backend === "tdx" ? -17 : -5,
          detail: "GFN 0x0 is already populated or in use by the guest (kvm_gmem_populate)",
        },
      ]);
      const once = file(
        `populate-once-${backend}.yaml`,
        hostScenario(backend, ["{ op: populate, gpa: 0x0, size: 4KiB }"]),
      );
      const r = await tdpemu("run", once, "--json");
      expect(r.code).toBe(0);
      const calls = (JSON.parse(r.out) as Report).backendStats.calls;
      expect(calls[backend === "tdx" ? "TDH.MEM.PAGE.ADD" : "SNP_LAUNCH_UPDATE"]).toBe(1);
    });

    it(`${backend}: a populate of a page the guest already faulted in is ${backend === "tdx" ? "-EINVAL (the TD is finalized)" : "-EIO (kvm_gmem_populate's -EEXIST)"}`, async () => {
      const f = file(
        `populate-used-${backend}.yaml`,
        hostScenario(
          backend,
          ["{ op: populate, gpa: 0x0, size: 4KiB }"],
          [
            backend === "tdx"
              ? "{ op: accept, gpa: 0x0 }"
              : "{ op: access, gpa: 0x0, write: true }",
          ],
        ),
      );
      // The vCPU waits for finalize only if the host finalizes: here the guest runs first. On
      // TDX its first entry finalized the TD, and KVM_TDX_INIT_MEM_REGION refuses a finalized
      // TD before it looks at any page (tdx_vcpu_init_mem_region): the op's status.
      const r = await tdpemu("run", f, "--json");
      expect(r.code).toBe(0);
      expect(populateResults(r.out)).toEqual([
        backend === "sev"
          ? {
              mapped: 0,
              status: -5,
              detail: "GFN 0x0 is already populated or in use by the guest (kvm_gmem_populate)",
            }
          : {
              mapped: 0,
              status: -22,
              detail: "KVM_TDX_INIT_MEM_REGION: the TD is finalized already",
            },
      ]);
    });
  }

  for (const op of [
    "{ op: finalize }",
    "{ op: zap, gpa: 0x0, size: 4KiB }",
    "{ op: convert, gpa: 0x0, size: 4KiB, to: shared }",
    "{ op: age, gpa: 0x0, size: 4KiB }",
    "{ op: split, gpa: 0x0, size: 2MiB }",
    "{ op: recover, gpa: 0x0, size: 2MiB }",
    "{ op: populate, gpa: 0x0, size: 4KiB }",
    "{ op: teardown }",
  ]) {
    const name = /op: ([a-z-]+)/.exec(op)![1]!;
    it(`after teardown, ${name} is refused`, async () => {
      const f = file(`dead-${name}.yaml`, hostScenario("tdx", ["{ op: teardown }", op]));
      expectOneLine(
        await tdpemu("run", f),
        new RegExp(`step \\d+: ${name}: the VM was torn down$`),
      );
    });
  }

  it("populate after the memslot is deleted: the ioctl's errno, naming the GFN (kvm_gmem_populate's -EINVAL, which snp_launch_update returns as -EIO; a plain pre-fault -ENOENT)", async () => {
    for (const [backend, status] of [
      ["sev", -5],
      ["plain", -2],
    ] as const) {
      const f = file(
        `${backend}-deleted.yaml`,
        hostScenario(backend, ["{ op: delete-memslot }", "{ op: populate, gpa: 0x0, size: 4KiB }"]),
      );
      const r = await tdpemu("run", f, "--json");
      expect(r.code, r.err).toBe(0);
      const ops = (JSON.parse(r.out) as { ops: { result: unknown }[] }).ops;
      expect(ops[1]!.result).toEqual({ mapped: 0, status, detail: "GFN 0x0 has no memslot" });
    }
  });
});

describe("messages that name the file, the line and the setting", () => {
  it("a guest too large for any host names vm.memory and the file", async () => {
    const f = file("big.yaml", "name: big\nvm: { memory: 8TiB }\nbackend: plain\n");
    expectOneLine(
      await tdpemu("run", f),
      /big\.yaml: vm\.memory: a guest of 8796093022208 bytes needs a host of 17592253153280 bytes \(2 × its memory \+ 64MiB, in host pages\), and host memory must be between 2MiB and 16TiB/,
    );
  });

  it("an unknown backend name in a scenario names the file and line", async () => {
    const f = file("snp.yaml", "name: snp\nvm: { memory: 4MiB }\nbackend: amd-snp\n");
    expectOneLine(
      await tdpemu("run", f),
      /snp\.yaml:3: backend: unknown backend 'amd-snp' \(registered: tdx, sev, plain, cca;/,
    );
  });

  it("a missing plugin module in a scenario names the file and line", async () => {
    const f = file(
      "missing.yaml",
      "name: m\nvm: { memory: 4MiB }\nbackend: ./missing-backend.mjs\n",
    );
    expectOneLine(
      await tdpemu("run", f, "--allow-plugins"),
      /missing\.yaml:3: cannot load backend module '.*missing-backend\.mjs': Error: Cannot find module/,
    );
  });

  it("control characters from the input are shown escaped, on one line", async () => {
    const f = file("ctl.yaml", 'name: x\nvm: { memory: 4MiB }\n"bo\\x1b[31mgus\\nkey": 1\n');
    const r = await tdpemu("run", f);
    expectOneLine(r, /ctl\.yaml:3: bo\\u001b\[31mgus key: unknown key/);
    expect(r.err).not.toContain("\u001b");
  });

  it("--seed -1 says how to write a value that starts with a dash", async () => {
    expectOneLine(
      await tdpemu("run", "scenarios/zap-refault.yaml", "--seed", "-1"),
      /run: Option '--seed' argument is ambiguous\. .*use '--seed=-XYZ'/,
    );
    expectOneLine(
      await tdpemu("run", "scenarios/zap-refault.yaml", "--seed=-1"),
      /run: --seed: expected an integer from 0 to 2\^32-1, got '-1'/,
    );
  });

  it("--host-memory that is not whole 2 MiB blocks is refused, not rounded down", async () => {
    expectOneLine(
      await tdpemu("run", "scenarios/zap-refault.yaml", "--host-memory", "3MiB"),
      /--host-memory: expected a multiple of 2MiB/,
    );
  });
});

describe("bounded input", () => {
  it("a file that never ends is refused after the limit", async () => {
    expectOneLine(
      await tdpemu("run", "/dev/zero"),
      /^tdpemu: \/dev\/zero: cannot read the scenario: larger than the 4MiB a scenario file may have \(raise it with --max-input <size>\)$/,
    );
    expectOneLine(
      await tdpemu("replay", "/dev/zero"),
      /\/dev\/zero: cannot read the schedule: larger than the 4MiB/,
    );
  });

  it("--max-input lowers or raises the limit, for any command", async () => {
    const f = file(
      "padded.yaml",
      readFileSync("scenarios/zap-refault.yaml", "utf8") + "#".repeat(2000) + "\n",
    );
    expectOneLine(
      await tdpemu("run", f, "--max-input", "1KiB"),
      /larger than the 1KiB a scenario file may have/,
    );
    expect((await tdpemu("run", f, "--max-input=1MiB")).code).toBe(0);
    expectOneLine(
      await tdpemu("run", f, "--max-input", "lots"),
      /--max-input: expected a size such as 64MiB, got 'lots'/,
    );
  });

  it("a plugin whose top-level await never settles is an error after the load timeout", async () => {
    const f = file("hang.mjs", "await new Promise(() => {});\nexport const registration = {};\n");
    const r = new BackendRegistry({ loadTimeoutMs: 200 });
    await expect(r.load(f)).rejects.toThrow(PluginError);
    await expect(new BackendRegistry({ loadTimeoutMs: 200 }).load(f)).rejects.toThrow(
      /did not finish loading within 0\.2 s/,
    );
  });

  it("a plugin that throws a non-Error at import is one line", async () => {
    for (const [what, shown] of [
      ["null", "the value null"],
      ["'x'", "the value x"],
    ] as const) {
      const f = file(`throws-${shown.length}.mjs`, `throw ${what};\n`);
      expectOneLine(
        await tdpemu("backends", "--plugin", f),
        new RegExp(`cannot load backend module '.*': ${shown}$`),
      );
    }
  });
});

describe("explore --out that cannot be written", () => {
  // One thread, and threads (whose report is merged as shards' are): the same message.
  it.each([[[]], [["--jobs", "2"]]])(
    "still prints the violation and its schedule, exit 1, and the printed schedule replays (%j)",
    async (jobs) => {
      const r = await tdpemu(
        "explore",
        "scenarios/race-shared-table.yaml",
        "--unsafe-non-atomic-set",
        "--out",
        join(dir, "no-such-dir", "v.json"),
        "--json",
        ...jobs,
      );
      expect(r.code).toBe(1);
      expect(r.err).toMatch(
        /^tdpemu: explore: --out: cannot write the schedule to '.*v\.json': ENOENT; the schedule is printed instead$/,
      );
      const found = (JSON.parse(r.out) as ExploreReport).violation!;
      expect(found.file).toBeNull();
      const saved = file(`printed-${jobs.length}.json`, JSON.stringify(found.scheduleFile));
      const replay = await tdpemu("replay", saved, "--json");
      expect(replay.code).toBe(1);
      const replayed = (JSON.parse(replay.out) as Report).invariants.violations;
      expect(replayed[0]!.message).toBe(found.violations[0]!.message);
    },
  );
});

describe("guests backed by 1 GiB pages get a host that holds them", () => {
  for (const memory of ["1GiB", "4MiB"]) {
    for (const backend of ["tdx", "sev"]) {
      it(`${memory} guest on ${backend}: one private and one shared page, on the default host`, async () => {
        const priv =
          backend === "tdx" ? "{ op: accept, gpa: 0x0 }" : "{ op: access, gpa: 0x0, write: true }";
        const f = file(
          `g1-${memory}-${backend}.yaml`,
          [
            "name: g1",
            `vm: { memory: ${memory}, vcpus: 1, hugepages: 1GiB }`,
            `backend: ${backend}`,
            "vcpus:",
            `  - - ${priv}`,
            "    - { op: convert, gpa: 0x200000, size: 2MiB, to: shared }",
            "    - { op: access, gpa: 0x200000, shared: true, write: true }",
          ].join("\n") + "\n",
        );
        const r = await tdpemu("run", f, "--json");
        expect(r.err).toBe("");
        expect(r.code).toBe(0);
        expect((JSON.parse(r.out) as Report).invariants.violations).toEqual([]);
      });
    }
  }
});

describe("a trace cut short says so", () => {
  const cli = resolve("packages/tui/dist/tdpemu.mjs");

  it("a run killed mid-way leaves whole lines and a last line that says it was interrupted", async () => {
    const out = join(dir, "cut.jsonl");
    const child = spawn(
      process.execPath,
      [cli, "run", "scenarios/sequential-1g.yaml", "--trace", out],
      { stdio: "ignore" },
    );
    // Once the first chunk is on disk (the trailer alone is one line), stop it as Ctrl-C would.
    const t0 = Date.now();
    while (
      (!existsSync(out) || readFileSync(out, "utf8").split("\n").length < 1000) &&
      Date.now() - t0 < 60_000
    )
      await new Promise((r) => setTimeout(r, 50));
    child.kill("SIGINT");
    await new Promise((r) => child.once("exit", r));
    const lines = readFileSync(out, "utf8")
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l) as { type: string; events?: number });
    const last = lines.at(-1)!;
    expect(last.type).toBe("interrupted");
    expect(last.events).toBe(lines.length - 1);
    expect(lines.slice(0, -1).some((l) => l.type === "interrupted")).toBe(false);
  }, 90_000);

  it("a whole run's trace has no such line", async () => {
    const out = join(dir, "whole.jsonl");
    expect((await tdpemu("run", "scenarios/zap-refault.yaml", "--trace", out)).code).toBe(0);
    const lines = readFileSync(out, "utf8")
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l) as { type: string });
    expect(lines.at(-1)!.type).toBe("op");
    expect(lines.some((l) => l.type === "interrupted")).toBe(false);
  });
});
