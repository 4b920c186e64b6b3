/**
 * The explorer builds a VM per schedule and drops it; what the schedule allocated must die in
 * the young generation. A schedule whose objects stay reachable from the old generation (a
 * `function*` closure's prototype map did that, for every critical section and per-root walk)
 * gets promoted whole, and the search spends its time in full collections and in the kernel
 * zeroing the pages the old generation grows into.
 *
 * Measured in a child process with `--expose-gc`, against the built packages: after a full
 * collection, one schedule, then two young collections (the second promotes what survived the
 * first), the old generation may grow by a few hundred bytes (feedback, spares), not by a VM
 * (12 to 23 KiB in the scenarios below when the closures were there).
 */
import { spawnSync } from "node:child_process";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";

const url = (p: string) => pathToFileURL(resolve(p)).href;

/** Median growth of the old generation, in bytes, over single schedules of `yaml` on `backend`. */
function promotedPerSchedule(backend: "plain" | "tdx", yaml: string): number {
  const script = `
    import v8 from "node:v8";
    const core = await import(${JSON.stringify(url("packages/core/dist/index.js"))});
    const be = await import(${JSON.stringify(url(`packages/backend-${backend}/dist/index.js`))});
    const r = new core.BackendRegistry({});
    r.add(be.registration);
    const scn = core.parseScenarioText(${JSON.stringify(yaml)}, "dies-young.yaml");
    const src = r.source(${JSON.stringify(backend)});
    const one = () => {
      const b = core.buildRun(scn, { backend: src, interleave: true });
      b.host.pool.trackWrites(b.clock);
      new core.Scheduler("round-robin", 0).run(b.tasks, b.clock);
      b.host.release();
    };
    for (let i = 0; i < 300; i++) one();
    const old = () => v8.getHeapSpaceStatistics().find((s) => s.space_name === "old_space").space_used_size;
    const grew = [];
    gc(); gc();
    for (let k = 0; k < 15; k++) {
      const a = old();
      one();
      gc({ type: "minor" }); gc({ type: "minor" });
      grew.push(old() - a);
    }
    grew.sort((x, y) => x - y);
    console.log(grew[grew.length >> 1]);
  `;
  const p = spawnSync(process.execPath, ["--expose-gc", "--input-type=module", "--eval", script], {
    encoding: "utf8",
    timeout: 120_000,
  });
  if (p.status !== 0) throw new Error(`child failed (${p.status}): ${p.stderr}`);
  return Number(p.stdout.trim());
}

const ZAP_PLAIN = `
name: zap-plain
vm: { memory: 8MiB, gpaw: 48, vcpus: 1 }
backend: plain
vcpus:
  - - { op: access, gpa: 0x200000 }
host:
  - { op: zap, gpa: 0x200000, size: 4KiB }
`;

const SPLIT_TDX = `
name: split-tdx
vm: { memory: 8MiB, gpaw: 48, vcpus: 2, hugepages: 2MiB }
backend: tdx
options: { strategy: freeze, tdxHugePages: true }
vcpus:
  - - { op: accept, gpa: 0x200000, size: 2MiB }
  - - { op: accept, gpa: 0x201000 }
host:
  - { op: zap, gpa: 0x3ff000, size: 4KiB }
`;

describe("a finished schedule dies young", () => {
  it("a zap under the write lock (plain) leaves nothing for the old generation", () => {
    expect(promotedPerSchedule("plain", ZAP_PLAIN)).toBeLessThan(4096);
  });

  it("a 2M accept split by a 4K accept, and a zap (TDX), leave nothing for the old generation", () => {
    expect(promotedPerSchedule("tdx", SPLIT_TDX)).toBeLessThan(4096);
  });
});
