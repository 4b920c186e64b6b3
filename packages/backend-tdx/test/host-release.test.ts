/**
 * A discarded host's TDX module hands its PAMT blocks and S-EPT pages to the modules made after
 * it (`Host.release`): a module built from recycled storage cannot be told from a new one. The
 * PAMT reads as all NDA, unowned, epoch 0 and unlocked, S-EPT pages come back all FREE, and whole
 * runs of the race scenario report the same as on fresh storage.
 */
import { describe, expect, it } from "vitest";
import { Host, parseScenarioText, runScenario } from "@tdpemu/core/testing";
import {
  NO_TD,
  PT_NDA,
  PT_REG,
  PT_TDR,
  Pamt,
  SEPT_FREE,
  SEAM_MODULE,
  SeptPages,
  septState,
  septPageWords,
} from "../src/testing.js";
import { tdx } from "./tdx-source.js";

const MiB = 2 ** 20;

const RACE = `name: race
vm: { memory: 8MiB, gpaw: 48, vcpus: 2 }
backend: tdx
schedule: { mode: random, seed: SEED }
vcpus:
  - - { op: accept, gpa: 0x0, count: 3 }
    - { op: access, gpa: 0x0, count: 3, write: true }
  - - { op: accept, gpa: 0x1000 }
    - { op: access, gpa: 0x201000, shared: true }
host:
  - { op: zap, gpa: 0x0, size: 2MiB }
`;

describe("storage handed on by Host.release", () => {
  it("a PAMT on recycled blocks reads as a new one", () => {
    const frames = 3 * 4096;
    const a = new Pamt(frames);
    for (const pfn of [0, 5, 4095, 4096, 9000, frames - 1]) {
      a.set(pfn, PT_REG, 7);
      a.setBepoch(pfn, 3);
      a.lock(pfn).tryExclusive();
    }
    a.set(5, PT_NDA, NO_TD);
    a.release();
    const b = new Pamt(frames);
    for (let pfn = 0; pfn < frames; pfn++) {
      if (b.type(pfn) !== PT_NDA || b.owner(pfn) !== NO_TD || b.bepoch(pfn) !== 0)
        throw new Error(`granule ${pfn} kept state`);
    }
    for (const pfn of [0, 5, 4095, 4096, 9000, frames - 1]) {
      expect(b.lock(pfn).held).toBe(false);
      b.set(pfn, PT_TDR, pfn);
    }
    expect(b.nextPageOf(7, 0)).toBe(-1);
    expect([...b.pagesOf(4096)]).toEqual([[4096, PT_TDR]]);
  });

  it("S-EPT pages taken again come back all FREE", () => {
    const a = new SeptPages();
    septPageWords(a.init(10)).fill(0xdeadbeef);
    septPageWords(a.init(600)).fill(1);
    a.release();
    expect(a.get(10)).toBeUndefined();
    expect(a.count).toBe(0);
    const b = new SeptPages();
    for (const pfn of [10, 600, 11]) {
      const p = septPageWords(b.init(pfn));
      for (let i = 0; i < 512; i++) expect(septState(p[2 * i]!, p[2 * i + 1]!, 1)).toBe(SEPT_FREE);
    }
    expect(b.count).toBe(3);
  });

  it("runs on hosts made after released ones report what runs on fresh storage report", () => {
    const report = (seed: number, release: boolean) => {
      const scn = parseScenarioText(RACE.replace("SEED", String(seed)), "race.yaml");
      const r = runScenario(scn, { backend: tdx });
      const out = JSON.stringify({ report: r.report, results: r.results, choices: r.choices });
      if (release) r.host.release();
      return out;
    };
    const fresh = [1, 2, 3, 4, 5].map((seed) => report(seed, false));
    // Twice over, each run's storage handed to the next.
    for (let round = 0; round < 2; round++)
      expect([1, 2, 3, 4, 5].map((seed) => report(seed, true))).toEqual(fresh);
  });

  it("a released host's module lets go of its storage", () => {
    const host = new Host({ memory: 64 * MiB });
    tdx.prepareHost(host);
    const m = host.container.resolve(SEAM_MODULE);
    m.sept.init(3);
    m.pamt.set(3, PT_REG, 1);
    host.release();
    expect(m.sept.count).toBe(0);
    expect(m.pamt.type(3)).toBe(PT_NDA);
  });
});
