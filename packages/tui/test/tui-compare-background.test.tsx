/**
 * The comparison (`c`) runs on a thread of its own: the UI shows each backend's progress and
 * the whole's, stays responsive, and esc cancels it, leaving the view as it was.
 */
import { render } from "ink-testing-library";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { describe, expect, it } from "vitest";
import { loadScenario, type TdpEvent } from "@tdpemu/core";
import { compareOne } from "../src/compare-rows.js";
import { builtinRegistry } from "../src/registry.js";
import { RunProgress } from "../src/run-progress.js";
import { App } from "../src/ui/app.js";

const tick = () => new Promise((r) => setTimeout(r, 20));

async function frameMatching(
  ui: { lastFrame(): string | undefined },
  re: RegExp,
  ms = 30_000,
): Promise<string> {
  const end = Date.now() + ms;
  while (!re.test(ui.lastFrame() ?? "") && Date.now() < end) await tick();
  return ui.lastFrame() ?? "";
}

const BIG = "scenarios/sequential-1g.yaml";

function app(path = BIG) {
  return render(
    <App scenario={loadScenario(path)} registry={builtinRegistry()} backend="plain" frameMs={0} />,
  );
}

describe("the comparison in the background", () => {
  it("a bar per backend and overall; esc cancels, the view is back, c starts afresh", async () => {
    const ui = app();
    // The first frame, once the mount has sized the map to the terminal.
    await tick();
    await tick();
    const before = ui.lastFrame();
    ui.stdin.write("c");
    const running = await frameMatching(ui, /tdx +█+░* +\d+% {2}running/);
    for (const name of ["tdx", "sev", "plain", "cca", "overall"])
      expect(running).toMatch(new RegExp(`│ ${name} +[█░]{30} +\\d+%`));
    expect(running).toMatch(/sev +░{30} +0% {2}waiting/);
    expect(running).toContain("press esc or c to cancel it");
    ui.stdin.write("\u001B");
    expect(await frameMatching(ui, /events \(latest last\)/, 5000)).toBe(before);
    // Nothing of the cancelled run comes back: a new one starts from nothing.
    ui.stdin.write("c");
    const fresh = await frameMatching(ui, /comparison/, 5000);
    expect(fresh).toMatch(/overall +░{30} +0%/);
    expect(fresh).not.toContain("done in");
    const table = await frameMatching(ui, /faults +262144 +262144 +262144 +262144/, 120_000);
    expect(table).toMatch(/tdx +sev +plain +cca/);
    expect(table).toContain("press c or esc to go back");
    ui.stdin.write("c");
    expect(await frameMatching(ui, /events \(latest last\)/, 5000)).toBe(before);
    ui.unmount();
  }, 180_000);

  it("c again cancels too, and the UI's loop is never blocked for long while it runs", async () => {
    const ui = app();
    const lag = monitorEventLoopDelay({ resolution: 1 });
    ui.stdin.write("c");
    await frameMatching(ui, /comparison/, 5000);
    // The thread is starting and then running the largest run (TDX, 1 GiB of faults).
    lag.enable();
    await frameMatching(ui, /tdx +█{10,}/);
    await new Promise((r) => setTimeout(r, 500));
    lag.disable();
    ui.stdin.write("c");
    expect(await frameMatching(ui, /events \(latest last\)/, 5000)).toContain(
      "events (latest last)",
    );
    ui.unmount();
    // On the UI's thread, TDX's one step of 262,144 faults would hold it for the whole run:
    // measured now, as loaded as the machine is, the loop must have been held far less.
    const t0 = performance.now();
    compareOne(loadScenario(BIG), builtinRegistry(), "tdx");
    const onThread = performance.now() - t0;
    expect(lag.max / 1e6).toBeLessThan(onThread / 2);
  }, 120_000);
});

describe("the progress of a run", () => {
  it("rises from 0 to 1 with the ops, and watching it changes nothing of the row", () => {
    const registry = builtinRegistry();
    for (const path of [
      "scenarios/zap-refault.yaml",
      "scenarios/tdx-race-2m-4k.yaml",
      "scenarios/dirty-log.yaml",
    ]) {
      const scn = loadScenario(path);
      const progress = new RunProgress(scn);
      const seen: number[] = [progress.fraction()];
      const row = compareOne(scn, registry, scn.backend, undefined, (e: TdpEvent) => {
        progress.onEvent(e);
        seen.push(progress.fraction());
      });
      expect(seen[0]).toBe(0);
      expect(seen.at(-1)).toBe(1);
      for (let i = 1; i < seen.length; i++) expect(seen[i]!).toBeGreaterThanOrEqual(seen[i - 1]!);
      // Some progress shows before the end (not only 0, then 1).
      expect(seen.some((f) => f > 0 && f < 1)).toBe(true);
      expect(row.error).toBeUndefined();
      const bare = compareOne(scn, registry, scn.backend);
      expect({ ...row.values, ms: "" }).toEqual({ ...bare.values, ms: "" });
      expect(row.calls).toEqual(bare.calls);
    }
  });
});
