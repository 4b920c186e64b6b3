/**
 * The `ui-frame` case: one frame of the terminal UI. Apart from the other cases because it
 * loads the UI (ink and React), which no other command or case needs: `tdpemu bench` imports
 * this file only when the case runs.
 */
import { createElement } from "react";
import { render } from "ink-testing-library";
import { parseScenarioText, type BackendRegistry } from "@tdpemu/core";
import { Session } from "../session.js";
import { MainView } from "../ui/app.js";
import { sequential, type Measurement } from "./cases.js";

/** One UI frame (snapshot + Ink render) with `pages` mapped pages: ms. */
export function uiFrameCase(registry: BackendRegistry, pages: number): Measurement {
  const scn = parseScenarioText(sequential("4GiB", pages, "plain", false), "bench.yaml");
  const s = new Session(scn, registry, "plain");
  s.run.vm.setInterleave(false);
  while (s.step()) {
    /* fill memory */
  }
  const ui = render(createElement(MainView, { snap: s.snapshot(), focus: 0 }));
  const times: number[] = [];
  for (let i = 0; i < 40; i++) {
    s.moveWalk(4096);
    const t0 = performance.now();
    ui.rerender(createElement(MainView, { snap: s.snapshot(), focus: i % 5 }));
    if (!ui.lastFrame()) throw new Error("nothing rendered");
    times.push(performance.now() - t0);
  }
  ui.unmount();
  times.sort((a, b) => a - b);
  return {
    value: times[times.length >> 1]!,
    unit: "ms/frame",
    extra: { "mapped pages": s.run.vm.mmu.stats.pages[1]! },
  };
}
