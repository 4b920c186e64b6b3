#!/usr/bin/env node
// Faults per second and bytes per mapped 4 KiB page for the 1 GiB sequential 4K fault run on
// plain EPT (scenarios/sequential-1g.yaml), measured in one process: the median of 5 runs, and,
// for scale, the same GFNs written by a bare loop into a 4-level radix table (no events, hooks
// or checks). Run after `npx tsc -b`: node --expose-gc scripts/measure-fault-path.mjs
import { BackendRegistry, loadScenario, runScenario } from "../packages/core/dist/index.js";
import { registration } from "../packages/backend-plain/dist/index.js";

if (typeof gc !== "function") {
  console.error("run with: node --expose-gc scripts/measure-fault-path.mjs");
  process.exit(2);
}
const scn = loadScenario(new URL("../scenarios/sequential-1g.yaml", import.meta.url).pathname);
const reg = new BackendRegistry();
reg.add(registration);
const PAGES = 262144;

function bareLoop() {
  // 4-level radix over 1 GiB, 4 KiB tables as Uint32Array pairs; one root, tables allocated
  // from one pool array, entries written as (lo, hi) like the emulator's.
  const pool = new Uint32Array(1024 * 1024 * 2);
  let next = 1;
  const t0 = performance.now();
  for (let gfn = 0; gfn < PAGES; gfn++) {
    let table = 0;
    for (let level = 4; level > 1; level--) {
      const off = table * 1024 + 2 * (Math.floor(gfn / 512 ** (level - 1)) % 512);
      if (pool[off + 1] === 0) {
        pool[off] = (next << 12) | 0x907;
        pool[off + 1] = 0x80000000;
        table = next++;
      } else table = pool[off] >>> 12;
    }
    const off = table * 1024 + 2 * (gfn % 512);
    pool[off] = ((gfn << 12) | 0xb77) >>> 0;
    pool[off + 1] = 0x86000000;
  }
  return PAGES / ((performance.now() - t0) / 1000);
}

const rates = [];
const bare = [];
for (let i = 0; i < 5; i++) {
  const t0 = performance.now();
  const r = runScenario(scn, { backend: reg.create("plain") });
  const s = (performance.now() - t0) / 1000;
  if (r.report.stats.pages["4k"] !== PAGES || r.report.stats.tablePages !== 514) throw new Error("unexpected result");
  rates.push(r.report.stats.faults / s);
  bare.push(bareLoop());
}
const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];

gc(); gc();
const m0 = process.memoryUsage();
let keep = runScenario(scn, { backend: reg.create("plain") });
gc(); gc();
const m1 = process.memoryUsage();
const bytes = (m1.heapUsed + m1.arrayBuffers) - (m0.heapUsed + m0.arrayBuffers);
const fps = median(rates);
console.log(`faults/s (median of 5):           ${Math.round(fps).toLocaleString("en-US")}`);
console.log(`bare radix loop, pages/s:         ${Math.round(median(bare)).toLocaleString("en-US")}`);
console.log(`ratio fault path / bare loop:     ${(fps / median(bare)).toFixed(3)}`);
console.log(`bytes per mapped 4 KiB page:      ${(bytes / PAGES).toFixed(2)}  (heap + array buffers after GC, ${keep.report.stats.pages["4k"]} pages)`);
keep = null;
