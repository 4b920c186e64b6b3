/**
 * The terminal UI's panes and keys, rendered with ink-testing-library: each pane shows what the
 * model holds, and each key does what the help screen says.
 */
import { render } from "ink-testing-library";
import { describe, expect, it } from "vitest";
import {
  DEFAULT_SCENARIO_SOURCE,
  DEFAULT_SCENARIO_YAML,
  formatSpte,
  loadScenario,
  parseScenarioText,
} from "@tdpemu/core";
import { builtinRegistry } from "../src/registry.js";
import { App, MainView } from "../src/ui/app.js";
import { KEY_TABLE } from "../src/ui/keys.js";
import { Session } from "../src/session.js";

const tick = () => new Promise((r) => setTimeout(r, 20));

async function press(stdin: { write(s: string): void }, keys: string) {
  for (const k of keys) {
    stdin.write(k);
    await tick();
  }
}

/** The frame once it matches `re` (Ink renders asynchronously; a loaded machine may take longer than a tick). */
async function frameMatching(
  ui: { lastFrame(): string | undefined },
  re: RegExp,
  ms = 10_000,
): Promise<string> {
  const end = Date.now() + ms;
  while (!re.test(ui.lastFrame() ?? "") && Date.now() < end) await tick();
  return ui.lastFrame() ?? "";
}

function app(scenarioPath?: string, backend = "tdx") {
  const scenario = scenarioPath
    ? loadScenario(scenarioPath)
    : parseScenarioText(DEFAULT_SCENARIO_YAML, DEFAULT_SCENARIO_SOURCE);
  return render(
    <App scenario={scenario} registry={builtinRegistry()} backend={backend} frameMs={0} />,
  );
}

describe("terminal UI: panes show the model", () => {
  it("the walk pane shows the SPTE the mirror holds, in hex, with the S-EPT state beside it", async () => {
    const scenario = loadScenario("scenarios/tdx-sequential-2m.yaml");
    const s = new Session(scenario, builtinRegistry(), "tdx");
    s.stepToEvent("fault");
    const snap = s.snapshot();
    const leaf = snap.walk[0]!.rows.at(-1)!;
    // The same SPTE, read from the pool directly.
    const vm = s.run.vm;
    const pfn = vm.memslots.find(0)!.gmem!.peekPfn(0);
    // A TD's leaf: WB without IPAT (0x30, not 0x70; tdx_vm_init lets the guest's PAT apply).
    expect(leaf.hex).toMatch(new RegExp(`^0x86000000${pfn.toString(16).padStart(5, "0")}b37$`));
    expect(leaf.secure).toBe("PENDING");
    const ui = app("scenarios/tdx-sequential-2m.yaml");
    await press(ui.stdin, "n");
    expect(ui.lastFrame()).toContain(leaf.hex);
    expect(ui.lastFrame()).toContain("PENDING");
    ui.unmount();
  });

  it("the stats pane and the calls list follow the model's counters", async () => {
    const ui = app("scenarios/tdx-sequential-2m.yaml");
    await press(ui.stdin, "nnn");
    const frame = ui.lastFrame()!;
    expect(frame).toMatch(/faults\s+3/);
    expect(frame).toMatch(/TDH\.MEM\.PAGE\.AUG\s+3/);
    expect(frame).toMatch(/TDH\.MEM\.SEPT\.ADD\s+3/);
    ui.unmount();
  });

  it("the events pane lists SEAMCALLs with their status, the vCPU pane each task's op", async () => {
    const ui = app("scenarios/tdx-sequential-2m.yaml");
    await press(ui.stdin, "n");
    const frame = ui.lastFrame()!;
    expect(frame).toContain("TDH.MEM.PAGE.AUG gpa 0x0 L1 [tdx 0] page");
    expect(frame).toContain("SUCCESS");
    expect(frame).toMatch(/vcpu0\s+\S.*accept/);
    ui.unmount();
  });

  it("the GPA map colours what maps each region: private pages after ACCEPT, shared after a conversion", () => {
    const s = new Session(loadScenario("scenarios/tdx-convert.yaml"), builtinRegistry(), "tdx");
    while (s.step()) {
      /* run to the end */
    }
    const map = s.snapshot(4096).map;
    // 64 MiB in 4096 cells: 16 KiB a cell; the first cell holds private pages 0-3.
    expect(map.cellBytes).toBe(16384);
    expect(map.cells[0]).toBe("p");
    expect(map.cells[1]).toBe("p");
    expect(map.cells[10]).toBe(".");
  });
});

describe("stepping to the next event of a kind", () => {
  it("stops at every step that made a SEAMCALL, not only those whose last event was one (B1)", () => {
    const scn = loadScenario("scenarios/tdx-race-2m-4k.yaml");
    const seamcalls = (s: Session) =>
      s
        .snapshot()
        .calls.filter(([name]) => name.startsWith("TDH."))
        .reduce((a, [, n]) => a + n, 0);
    // One step at a time: the steps whose SEAMCALL count rose.
    const one = new Session(scn, builtinRegistry(), "tdx");
    let withCall = 0;
    for (let before = seamcalls(one); one.step(); before = seamcalls(one))
      if (seamcalls(one) > before) withCall++;
    // `n` with the run-to kind "call": it must stop at each of them.
    const byCall = new Session(scn, builtinRegistry(), "tdx");
    let stopsAtCall = 0;
    for (let before = seamcalls(byCall); byCall.stepToEvent("call") > 0; before = seamcalls(byCall))
      if (seamcalls(byCall) > before) stopsAtCall++;
    expect(withCall).toBeGreaterThan(5);
    expect(stopsAtCall).toBe(withCall);
  });
});

describe("the events pane as a timeline", () => {
  it("t shows one task's events at a time; every row knows its step and GPA", () => {
    const s = new Session(loadScenario("scenarios/tdx-race-2m-4k.yaml"), builtinRegistry(), "tdx");
    while (s.step()) {
      /* to the end */
    }
    const all = s.snapshot(256, 200).events;
    // Building the TD is the host's, at step 0.
    expect(all[0]).toMatchObject({ task: "host", at: 0 });
    s.cycleTaskFilter();
    expect(s.snapshot(256, 200).taskFilter).toBe("vcpu0");
    expect(s.snapshot(256, 200).events.every((e) => e.task === "vcpu0")).toBe(true);
    for (let i = 0; i < s.run.tasks.length; i++) s.cycleTaskFilter();
    expect(s.snapshot(256, 200).taskFilter).toBeNull();
    const aug = all.filter((e) => e.text.startsWith("TDH.MEM.PAGE.AUG")).at(-1)!;
    expect(aug.gpa).toBe(0x1000);
    s.selectEvent(aug);
    expect(s.snapshot().choices).toBe(aug.at);
    expect(s.walkGpa).toBe(0x1000);
  });

  it("↑ chooses an older event, enter goes to its step with the walk on its GPA", async () => {
    const ui = app("scenarios/tdx-race-2m-4k.yaml");
    await press(ui.stdin, "v");
    await press(ui.stdin, "\t\t"); // focus the events pane
    const end = Number(/ step (\d+) /.exec(ui.lastFrame()!)![1]);
    // Up until the chosen event is of an earlier step than the last.
    let chosen: RegExpExecArray | null = null;
    for (let i = 0; i < 40; i++) {
      ui.stdin.write("\u001B[A");
      await tick();
      chosen = /step (\d+) chosen, enter goes there/.exec(ui.lastFrame()!);
      if (chosen && Number(chosen[1]) < end) break;
    }
    expect(Number(chosen![1])).toBeLessThan(end);
    await press(ui.stdin, "\r");
    expect(ui.lastFrame()).toMatch(new RegExp(` step ${chosen![1]} `));
    expect(ui.lastFrame()).not.toContain("chosen, enter goes there");
    ui.unmount();
  });

  it("↑ with no event shown chooses nothing; q typed in a search is text, not quit", async () => {
    const ui = app("scenarios/tdx-race-2m-4k.yaml");
    await press(ui.stdin, "v/zzzq");
    expect(ui.lastFrame()).toContain("search the events: zzzq");
    await press(ui.stdin, "\r\t\t");
    ui.stdin.write("\u001B[A");
    await tick();
    expect(ui.lastFrame()).not.toContain("chosen");
    ui.unmount();
  });

  it("b to a backend that refuses the run stays where it was and says why; b in a replay does not crash", () => {
    const registry = builtinRegistry();
    const s = new Session(loadScenario("scenarios/tdx-sequential-2m.yaml"), registry, "tdx", {
      inject: [{ call: "TDH.MEM.PAGE.AUG", nth: 1, status: "OPERAND_BUSY", times: 1 }],
    });
    s.cycleBackend();
    expect(s.backendName).toBe("tdx");
    expect(s.snapshot().notice).toMatch(/^sev: .*inject TDH\.MEM\.PAGE\.AUG: unknown SEV call/);
    const choices: number[] = [];
    const r = new Session(loadScenario("scenarios/tdx-race-2m-4k.yaml"), registry, "tdx");
    while (r.step()) {
      /* to the end */
    }
    for (let i = 0; i < r.snapshot().choices; i++) choices.push(0);
    const replayed = new Session(loadScenario("scenarios/tdx-race-2m-4k.yaml"), registry, "tdx", {
      replay: choices,
    });
    replayed.cycleBackend(); // sev: the choices no longer fit
    while (replayed.step()) {
      /* to where the replay stops */
    }
    expect(replayed.snapshot().violations.join("\n")).toMatch(/replay: |every task finished/);
  });
});

describe("searching the events", () => {
  it("/ then text shows only the events containing it; enter keeps it, esc clears it", async () => {
    const ui = app("scenarios/tdx-race-2m-4k.yaml");
    await press(ui.stdin, "v/aug");
    const frame = ui.lastFrame()!;
    expect(frame).toContain("search the events: aug");
    expect(frame).toContain('containing "aug"');
    const rows = frame.split("\n").filter((l) => /^│ +\d+ (host|vcpu\d) /.test(l));
    expect(rows.length).toBeGreaterThan(0);
    for (const r of rows) expect(r).toMatch(/TDH\.MEM\.PAGE\.AUG/);
    await press(ui.stdin, "\r");
    expect(ui.lastFrame()).toContain('containing "aug"');
    expect(ui.lastFrame()).toContain("space run/pause");
    await press(ui.stdin, "/");
    ui.stdin.write("\u001B");
    await tick();
    await tick();
    expect(ui.lastFrame()).not.toContain("containing");
    ui.unmount();
  });
});

describe("going to a step", () => {
  it(": , a number and enter go there, forward or back; esc cancels", async () => {
    const ui = app("scenarios/tdx-race-2m-4k.yaml");
    await press(ui.stdin, ":12");
    expect(ui.lastFrame()).toContain("go to step: 12");
    await press(ui.stdin, "\r");
    expect(ui.lastFrame()).toMatch(/ step 12 {2}paused/);
    await press(ui.stdin, ":5\r");
    expect(ui.lastFrame()).toMatch(/ step 5 {2}paused/);
    await press(ui.stdin, ":9");
    ui.stdin.write("\u001B");
    await tick();
    await tick();
    expect(ui.lastFrame()).toMatch(/ step 5 {2}paused/);
    expect(ui.lastFrame()).not.toContain("go to step");
    ui.unmount();
  });
});

describe("stepping back", () => {
  it("p returns to the state of the step before: the same tables, stats, tasks and events", () => {
    for (const backend of ["tdx", "sev", "plain"]) {
      const s = new Session(
        loadScenario("scenarios/tdx-race-2m-4k.yaml"),
        builtinRegistry(),
        backend,
      );
      const seen = [];
      for (let i = 0; i < 25 && s.step(); i++) seen.push(s.snapshot());
      const state = (x: ReturnType<Session["snapshot"]>) => ({
        choices: x.choices,
        step: x.step,
        walk: x.walk,
        stats: x.stats,
        calls: x.calls,
        vcpus: x.vcpus,
        events: x.events,
        map: x.map,
      });
      s.stepBack();
      expect(state(s.snapshot())).toEqual(state(seen.at(-2)!));
      expect(seen.length).toBeGreaterThan(3);
      const k = seen.length >> 1;
      s.goToStep(k + 1);
      expect(state(s.snapshot())).toEqual(state(seen[k]!));
      // And forward again from there, as before.
      s.step();
      expect(state(s.snapshot())).toEqual(state(seen[k + 1]!));
    }
  });
});

describe("terminal UI: keys", () => {
  it("s steps one atomic point: the step counter moves and the walk changes after a fault", async () => {
    const ui = app("scenarios/tdx-sequential-2m.yaml");
    const before = ui.lastFrame()!;
    expect(before).toMatch(/ step 0 /);
    await press(ui.stdin, "s");
    expect(ui.lastFrame()).toMatch(/ step 1 /);
    await press(ui.stdin, "n");
    expect(ui.lastFrame()).toContain("leaf");
    ui.unmount();
  });

  it("k chooses the kind n runs to; + and - change the speed", async () => {
    const ui = app();
    expect(ui.lastFrame()).toContain("run-to fault");
    await press(ui.stdin, "k");
    expect(ui.lastFrame()).toContain("run-to spte");
    expect(ui.lastFrame()).toContain("speed 16/frame");
    await press(ui.stdin, "+");
    expect(ui.lastFrame()).toContain("speed 64/frame");
    await press(ui.stdin, "--");
    expect(ui.lastFrame()).toContain("speed 4/frame");
    ui.unmount();
  });

  it("b restarts the same scenario on the next backend; the strategy shows only where there is a mirror root", async () => {
    const ui = app();
    expect(ui.lastFrame()).toMatch(/default on tdx {2}strategy freeze {2}step/);
    await press(ui.stdin, "b");
    expect(ui.lastFrame()).toMatch(/default on sev {2}step/);
    await press(ui.stdin, "b");
    expect(ui.lastFrame()).toMatch(/default on plain {2}step/);
    expect(ui.lastFrame()).not.toContain("strategy");
    ui.unmount();
  });

  it("r restarts the scenario, paused; f turns following faults off and on, and the walk says which", async () => {
    const ui = app("scenarios/tdx-sequential-2m.yaml");
    expect(ui.lastFrame()).toContain("· follows faults (f)");
    await press(ui.stdin, "nn");
    expect(ui.lastFrame()).not.toMatch(/ step 0 /);
    const stepOf = () => Number(/ step (\d+) /.exec(ui.lastFrame()!)![1]);
    const at = stepOf();
    await press(ui.stdin, "p");
    expect(stepOf()).toBe(at - 1);
    await press(ui.stdin, "r");
    expect(ui.lastFrame()).toMatch(/ step 0 {2}paused/);
    await press(ui.stdin, "f");
    expect(ui.lastFrame()).toContain("· fixed (f follows)");
    await press(ui.stdin, "n");
    expect(ui.lastFrame()).toContain("walk of GPA 0x0 · fixed");
    await press(ui.stdin, "f");
    expect(ui.lastFrame()).toContain("· follows faults (f)");
    ui.unmount();
  });

  it("] and [ move the walk by a page; { and } by 2 MiB", async () => {
    const ui = app();
    await press(ui.stdin, "]]");
    expect(ui.lastFrame()).toContain("walk of GPA 0x2000");
    await press(ui.stdin, "}");
    expect(ui.lastFrame()).toContain("walk of GPA 0x202000");
    await press(ui.stdin, "[{");
    expect(ui.lastFrame()).toContain("walk of GPA 0x1000");
    ui.unmount();
  });

  it("? shows every key of the help; c shows the comparison on every backend", async () => {
    const ui = app("scenarios/zap-refault.yaml", "plain");
    // Wide enough that no line of the list is cut.
    Object.defineProperty(ui.stdout, "columns", { value: 220, configurable: true });
    ui.stdout.emit("resize");
    await press(ui.stdin, "?");
    for (const b of KEY_TABLE) expect(ui.lastFrame()).toContain(b.does);
    // What the keys do now, in this state.
    expect(ui.lastFrame()).toContain("(now: to the next fault event)");
    expect(ui.lastFrame()).toContain("(now: at the start)");
    expect(ui.lastFrame()).toContain("(now: all tasks)");
    await press(ui.stdin, "?");
    expect(ui.lastFrame()).toContain("events (latest last)");
    await press(ui.stdin, "c");
    const frame = await frameMatching(ui, /faults\s+\d+\s+\d+\s+\d+/);
    expect(frame).toContain("comparison");
    expect(frame).toMatch(/tdx\s+sev\s+plain/);
    expect(frame).toMatch(/faults\s+1536\s+1536\s+1536/);
    ui.unmount();
  });

  it("keys typed faster than frames act on the view the previous key made", async () => {
    const ui = app("scenarios/zap-refault.yaml", "plain");
    const soon = () => new Promise((r) => setImmediate(r));
    for (const k of "??c") {
      ui.stdin.write(k);
      await soon();
    }
    const frame = await frameMatching(ui, /comparison/, 3000);
    expect(frame).toContain("comparison");
    // From the comparison, "c" closes it and "?" typed right after opens the help.
    for (const k of "c?") {
      ui.stdin.write(k);
      await soon();
    }
    expect(await frameMatching(ui, /run to the next event of the chosen kind/, 3000)).toContain(
      "run to the next event of the chosen kind",
    );
    ui.unmount();
  });

  it("tab moves the focus between panes", async () => {
    const ui = app();
    expect(ui.lastFrame()).toContain("▶ vCPUs and host");
    await press(ui.stdin, "\t");
    expect(ui.lastFrame()).toContain("▶ walk of GPA");
    expect(ui.lastFrame()).not.toContain("▶ vCPUs and host");
    ui.unmount();
  });

  it("at the minimum, 100x30, the whole view fits: no more lines than rows, every pane there (B4)", async () => {
    for (const path of [
      "scenarios/tdx-race-2m-4k.yaml",
      "scenarios/zap-refault.yaml",
      "scenarios/sev-hugepages.yaml",
    ]) {
      const ui = render(
        <App
          scenario={loadScenario(path)}
          registry={builtinRegistry()}
          backend={path.includes("sev") ? "sev" : "tdx"}
          frameMs={0}
          columns={100}
          rows={30}
        />,
      );
      await press(ui.stdin, "nnv");
      const frame = ui.lastFrame()!;
      expect(frame.split("\n").length).toBeLessThanOrEqual(30);
      for (const title of [
        "tdpemu  ",
        "vCPUs and host",
        "walk of GPA",
        "events (latest last)",
        "stats",
        "GPA map",
        "space run/pause",
      ])
        expect(frame).toContain(title);
      ui.unmount();
    }
  });

  it("many long violations still fit: one line each, three at most and a count", () => {
    const s = new Session(loadScenario("scenarios/tdx-race-2m-4k.yaml"), builtinRegistry(), "tdx");
    while (s.step()) {
      /* to the end */
    }
    const snap = {
      ...s.snapshot(96, 120, 96),
      violations: Array.from(
        { length: 15 },
        (_, i) => `[check-${i}] ${"a long message ".repeat(20)}`,
      ),
    };
    const ui = render(<MainView snap={snap} focus={0} columns={100} rows={30} />);
    const frame = ui.lastFrame()!;
    // The header and the status line are the App's two other lines.
    expect(frame.split("\n").length).toBeLessThanOrEqual(28);
    expect(frame).toContain("… and 12 more");
    ui.unmount();
  });

  it("a terminal smaller than the layout gets a clear message", () => {
    const prev = { c: process.stdout.columns, r: process.stdout.rows };
    const scenario = parseScenarioText(DEFAULT_SCENARIO_YAML, DEFAULT_SCENARIO_SOURCE);
    const ui = render(
      <App scenario={scenario} registry={builtinRegistry()} backend="tdx" frameMs={0} />,
    );
    // ink-testing-library's stdout is 100 columns wide; make it a real 80x24 terminal.
    Object.defineProperty(ui.stdout, "columns", { value: 80, configurable: true });
    Object.defineProperty(ui.stdout, "rows", { value: 24, configurable: true });
    ui.stdout.emit("resize");
    return tick().then(() => {
      expect(ui.lastFrame()).toContain("needs a terminal of at least 100x30; this one is 80x24");
      ui.unmount();
      void prev;
    });
  });
});

describe("the walk pane reads the live tables", () => {
  it("an empty root shows the empty SPTE; after a fixed fault, the leaf the fault made", () => {
    const s = new Session(loadScenario("scenarios/zap-refault.yaml"), builtinRegistry(), "plain");
    s.step();
    expect(s.snapshot().walk).toEqual([]); // no root before the first guest entry
    let rows = s.snapshot().walk[0]?.rows ?? [];
    for (let i = 0; i < 50 && rows.at(-1)?.kind !== "leaf"; i++) {
      s.stepToEvent("fault");
      rows = s.snapshot().walk[0]!.rows;
    }
    expect(rows.map((r) => r.level)).toEqual([4, 3, 2, 1]);
    expect(rows.at(-1)!.kind).toBe("leaf");
    s.moveWalk(2 ** 30 - 4096 - s.walkGpa); // far away: nothing mapped below the root
    expect(s.snapshot().walk[0]!.rows.at(-1)!.hex).toBe(formatSpte(0, 0x80000000));
  });
});
