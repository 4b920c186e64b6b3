/**
 * A plugin written outside the workspace, against the backend SDK alone, runs through the bundled
 * `tdpemu` binary with the binary's own core: its `KvmBug` is a violation (exit 1, a schedule
 * that replays), its `CallCounts` count, and its own injectables resolve in the command's
 * tsyringe container. The plugin's folder has no node_modules: every import it makes of the SDK,
 * `tsyringe` or `reflect-metadata` is linked to the command's instance.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";

const CLI = resolve("packages/tui/dist/tdpemu.mjs");
const dir = mkdtempSync(join(tmpdir(), "tdpemu-outside-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function tdpemu(...args: string[]) {
  const p = spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", timeout: 120_000 });
  return { code: p.status, out: p.stdout, err: p.stderr };
}

// The flush that counts past the limit is a KVM bug. The limit is the plugin's own injectable,
// injected into the backend's constructor by the command's container (decorators applied by
// hand: a plain .mjs file has no decorator syntax).
const plugin = join(dir, "flush-limit.mjs");
writeFileSync(plugin, `
import { BACKEND, CallCounts, KvmBug, emptyBackendStats } from "@tdpemu/backend-sdk";
import { inject, injectable } from "tsyringe";

const LIMIT = "flush-limit.limit";

class FlushLimitBackend {
  name = "flush-limit";
  description = "test plugin: a KVM bug at the flush past its limit";
  usesMirrorRoot = false;
  hasPrivateMemory = false;
  calls = new CallCounts(["FLUSH"]);
  constructor(limit) { this.limit = limit; }
  flushTlb() {
    if (this.calls.add(0) > this.limit) throw new KvmBug("flush-limit: flush " + this.calls.get(0) + " is past the limit of " + this.limit);
  }
  stats() { return { ...emptyBackendStats(), calls: this.calls.record() }; }
}
inject(LIMIT)(FlushLimitBackend, undefined, 0);
injectable()(FlushLimitBackend);

export const registration = {
  name: "flush-limit",
  description: "test plugin: a KVM bug at the flush past its limit",
  register(c) {
    c.register(LIMIT, { useValue: 1 });
    c.register(BACKEND, { useClass: FlushLimitBackend });
  },
};
`);

describe("a plugin outside the workspace, through the bundled binary", () => {
  it("run: the plugin's KvmBug is a kvm-bug violation, exit 1, with its injected limit", () => {
    const r = tdpemu("run", "scenarios/zap-refault.yaml", "--backend", plugin, "--strict-plugin");
    expect(r.err).toBe("");
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/backend flush-limit/);
    expect(r.out).toMatch(/\[kvm-bug\] step \d+: KVM_BUG: flush-limit: flush 2 is past the limit of 1/);
  });

  it("explore writes the violating schedule, and replay reproduces it", () => {
    const out = join(dir, "violation.json");
    const e = tdpemu("explore", "scenarios/race-shared-table.yaml", "--backend", plugin, "--out", out, "--strict-plugin");
    expect(e.err).toBe("");
    expect(e.code).toBe(1);
    expect(e.out).toMatch(/\[kvm-bug\]/);
    expect(existsSync(out)).toBe(true);
    expect(JSON.parse(readFileSync(out, "utf8")).violations[0].check).toBe("kvm-bug");
    const r = tdpemu("replay", out);
    expect(r.err).toBe("");
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/flush 2 is past the limit of 1/);
  });

  it("backends lists it, with the SDK resolved from the command although the folder has none", () => {
    const r = tdpemu("backends", "--plugin", plugin);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^flush-limit .*flush-limit\.mjs/m);
  });
});
