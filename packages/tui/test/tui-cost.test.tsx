/**
 * Virtual time in the terminal UI: the status line shows the run's virtual clock on the
 * backend's platform, and the stats pane where the time went (costs/).
 */
import { render } from "ink-testing-library";
import { describe, expect, it } from "vitest";
import { loadScenario } from "@tdpemu/core";
import { builtinRegistry } from "../src/registry.js";
import { App, MainView } from "../src/ui/app.js";
import { Session } from "../src/session.js";

const tick = () => new Promise((r) => setTimeout(r, 20));

describe("terminal UI: virtual time", () => {
  it("the status line shows the virtual clock of the run on the backend's platform", async () => {
    const ui = render(
      <App
        scenario={loadScenario("scenarios/tdx-sequential-2m.yaml")}
        registry={builtinRegistry()}
        backend="tdx"
        frameMs={0}
      />,
    );
    const end = Date.now() + 10_000;
    for (let i = 0; i < 20 && !/virtual [1-9][0-9.]* (ns|µs|ms)/.test(ui.lastFrame() ?? ""); i++) {
      ui.stdin.write("s");
      await tick();
    }
    while (!/virtual [1-9][0-9.]* (ns|µs|ms)/.test(ui.lastFrame() ?? "") && Date.now() < end)
      await tick();
    expect(ui.lastFrame()).toMatch(/virtual [1-9][0-9.]* (ns|µs|ms)/);
    ui.unmount();
  });

  it("the stats pane shows where the time went, and the clock moves with the run", () => {
    const s = new Session(
      loadScenario("scenarios/tdx-sequential-2m.yaml"),
      builtinRegistry(),
      "tdx",
    );
    for (let i = 0; i < 400; i++) s.step();
    const snap = s.snapshot();
    expect(snap.cost!.table).toBe("costs/tdx-spr.yaml");
    const frame =
      render(<MainView snap={snap} focus={0} columns={160} rows={60} />).lastFrame() ?? "";
    expect(frame).toContain("cost (costs/tdx-spr.yaml)");
    expect(frame).toContain(snap.cost!.kinds[0]![0]);
    for (let i = 0; i < 400; i++) s.step();
    expect(s.snapshot().cost!.elapsed).not.toBe(snap.cost!.elapsed);
  });

  it("the cost lines take only rows the call list leaves: the view is no taller with them", () => {
    const s = new Session(
      loadScenario("scenarios/tdx-sequential-2m.yaml"),
      builtinRegistry(),
      "tdx",
    );
    for (let i = 0; i < 300; i++) s.step();
    // As the app takes it: events enough for the tallest layout, so the events pane sets the height.
    const snap = s.snapshot(256, 200, 64);
    for (const [columns, rows] of [
      [100, 30],
      [120, 40],
      [160, 60],
    ] as const) {
      const lines = (x: typeof snap) =>
        (
          render(<MainView snap={x} focus={0} columns={columns} rows={rows} />).lastFrame() ?? ""
        ).split("\n").length;
      expect(lines(snap), `${columns}x${rows}`).toBe(lines({ ...snap, cost: null }));
    }
  });

  it("a backend restart prices the run afresh", () => {
    const s = new Session(loadScenario("scenarios/zap-refault.yaml"), builtinRegistry(), "plain");
    for (let i = 0; i < 50; i++) s.step();
    expect(s.snapshot().cost!.table).toBe("costs/vmx-spr.yaml");
    s.restart();
    expect(s.snapshot().cost!.elapsed).toBe("0 ns");
  });
});
