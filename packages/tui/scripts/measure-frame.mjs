#!/usr/bin/env node
// The render cost of one UI frame with one million mapped 4 KiB pages: the median over 30 frames
// of snapshot() (what the model gives the UI) and of rendering it with Ink to a string, against
// the same with a handful of pages, to show the cost does not grow with mapped memory.
// Run after `npx tsc -b`: node packages/tui/scripts/measure-frame.mjs
import { createElement } from "react";
import { render } from "ink-testing-library";
import { parseScenarioText } from "@tdpemu/core";
import { builtinRegistry } from "../dist/registry.js";
import { MainView } from "../dist/ui/app.js";
import { Session } from "../dist/session.js";

function scenario(pages) {
  return parseScenarioText(`
name: frame-${pages}
vm: { memory: 4GiB, vcpus: 1 }
backend: plain
schedule: { mode: round-robin, interleave: false }
vcpus:
  - - { op: access, gpa: 0x0, count: ${pages}, write: true }
`, "frame.yaml");
}

const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];

function measure(pages) {
  const scn = scenario(pages);
  const registry = builtinRegistry();
  const s = new Session(scn, registry, "plain");
  s.run.vm.setInterleave(false); // fill memory fast: each op runs whole
  while (s.step()) { /* run */ }
  const mapped = s.run.vm.mmu.stats.pages[1];
  const snapMs = [];
  for (let i = 0; i < 30; i++) {
    const t0 = performance.now();
    s.snapshot();
    snapMs.push(performance.now() - t0);
  }
  // One frame: a snapshot and its panes re-rendered by Ink to the terminal's string, as the UI
  // does 30 times a second (the walk moves each frame so every frame has new content).
  const ui = render(createElement(MainView, { snap: s.snapshot(), focus: 0 }));
  const frameMs = [];
  for (let i = 0; i < 60; i++) {
    s.moveWalk(4096);
    const t0 = performance.now();
    ui.rerender(createElement(MainView, { snap: s.snapshot(), focus: i % 5 }));
    if (!ui.lastFrame()) throw new Error("nothing rendered");
    frameMs.push(performance.now() - t0);
  }
  ui.unmount();
  return { mapped, snapshot: median(snapMs), frame: median(frameMs) };
}

measure(16); // warm-up: JIT and Yoga
const small = measure(16);
const big = measure(1 << 20);
console.log(`mapped pages            ${small.mapped.toLocaleString("en-US").padStart(12)}  ${big.mapped.toLocaleString("en-US").padStart(12)}`);
console.log(`snapshot, ms (median)   ${small.snapshot.toFixed(3).padStart(12)}  ${big.snapshot.toFixed(3).padStart(12)}`);
console.log(`frame (snapshot+Ink), ms${small.frame.toFixed(3).padStart(12)}  ${big.frame.toFixed(3).padStart(12)}`);
console.log(`ratio big/small snapshot: ${(big.snapshot / small.snapshot).toFixed(2)}`);
