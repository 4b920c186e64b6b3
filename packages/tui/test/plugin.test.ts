/**
 * A new confidential-VM model is a module that exports a registration: `tdpemu backends
 * --plugin` lists it and `tdpemu run --backend <module>` runs on it, with no change to the core.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { main, type Io } from "../src/index.js";

const dir = mkdtempSync(join(tmpdir(), "tdpemu-plugin-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function io(): Io & { outText: () => string; errText: () => string } {
  const out: string[] = [];
  const err: string[] = [];
  return { out: (t) => out.push(t), err: (t) => err.push(t), outText: () => out.join("\n"), errText: () => err.join("\n") };
}

// A plugin needs nothing from tdpemu at import time: the DI token is Symbol.for("tdpemu.Backend").
const plugin = join(dir, "counting-backend.mjs");
writeFileSync(plugin, `
class CountingBackend {
  name = "counting";
  description = "test plugin that counts TLB flushes";
  usesMirrorRoot = false;
  hasPrivateMemory = false;
  flushes = 0;
  flushTlb() { this.flushes++; }
  stats() { return { calls: { FLUSH: this.flushes }, busy: 0, errors: {} }; }
}
export const registration = {
  name: "counting",
  description: "test plugin that counts TLB flushes",
  register(c) { c.register(Symbol.for("tdpemu.Backend"), { useClass: CountingBackend }); },
};
`);
const notPlugin = join(dir, "not-a-plugin.mjs");
writeFileSync(notPlugin, "export const x = 1;\n");

describe("backend plugins", () => {
  it("backends --plugin lists the plugin beside the built-ins", async () => {
    const o = io();
    expect(await main(["backends", "--plugin", plugin], o)).toBe(0);
    expect(o.outText()).toMatch(/^plain /m);
    expect(o.outText()).toMatch(/^counting .*counting-backend\.mjs/m);
  });

  it("run --backend <module path> runs the scenario on the plugin", async () => {
    const o = io();
    expect(await main(["run", "scenarios/zap-refault.yaml", "--backend", plugin, "--json"], o)).toBe(0);
    const r = JSON.parse(o.outText());
    expect(r.backend).toBe("counting");
    // The plugin's flushTlb runs at each vCPU flush: one per remote request, at the next entry,
    // and one when a vCPU loads a new root.
    expect(r.backendStats.calls.FLUSH).toBe(r.stats.vcpuTlbFlushes);
    expect(r.stats.tlbFlushes).toBe(1);
    expect(r.stats.vcpuTlbFlushes).toBeGreaterThanOrEqual(2);
  });

  it("a module without a registration is bad input, exit 2", async () => {
    const o = io();
    expect(await main(["run", "scenarios/zap-refault.yaml", "--backend", notPlugin], o)).toBe(2);
    expect(o.errText()).toMatch(/^tdpemu: backend module .* exports no registration/);
  });
});
