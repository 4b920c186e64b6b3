/**
 * The report's summary of guest memory (`run --json`, `guestMemory`): what it says of a known
 * run on each backend, that it agrees GFN by GFN with a plain per-GFN reading of the same state
 * on random workloads, and that a huge sparse guest is summarised from what it uses.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  GUEST_PAGE_ACCEPTED,
  GUEST_PAGE_OWNED,
  OpError,
  RunInputError,
  guestMemory,
  mirrorView,
  parseScenarioText,
  runScenario,
  type GuestMemory,
  type GuestMemoryRange,
  type Vm,
} from "@tdpemu/core/testing";
import { main } from "../src/index.js";
import { builtinRegistry } from "../src/registry.js";
import { captureIo } from "./capture-io.js";
import { workloadArb, workloadText } from "./workload-arb.js";

const registry = builtinRegistry();

/** Launch one page, accept four, touch eight, make one 2 MiB region shared, touch two more pages. */
const KNOWN = `name: known
vm: { memory: 8MiB, vcpus: 2, hugepages: 2MiB }
schedule: { mode: round-robin, interleave: false }
host:
  - { op: populate, gpa: 0x3000, size: 4KiB }
  - { op: finalize }
vcpus:
  - - { op: accept, gpa: 0x0, count: 4 }
    - { op: access, gpa: 0x0, count: 8, write: true }
    - { op: convert, gpa: 0x200000, size: 2MiB, to: shared }
    - { op: access, gpa: 0x200000, shared: true, write: true }
  - - { op: access, gpa: 0x400000, count: 2 }
`;

function summary(text: string, backend: string): GuestMemory {
  const r = runScenario(parseScenarioText(text, "known.yaml"), {
    backend: registry.source(backend),
    guestMemory: true,
  });
  expect(r.report.invariants.violations).toEqual([]);
  return r.report.guestMemory!;
}

const range = (
  gfn: number,
  npages: number,
  priv: boolean,
  mapped: GuestMemoryRange["mapped"],
  accepted: boolean,
  owner: GuestMemoryRange["owner"],
) => ({ gfn, npages, private: priv, mapped, accepted, owner });

/** The same facts read GFN by GFN, the obvious way. */
function perGfn(vm: Vm): Omit<GuestMemoryRange, "gfn" | "npages">[] {
  const n = vm.npages;
  const mirror = new Uint8Array(n);
  const direct = new Uint8Array(n);
  const mark = (levels: Uint8Array) => (gfn: number, level: number, kind: string) => {
    if (kind === "leaf") levels.fill(level, gfn, Math.min(gfn + 512 ** (level - 1), n));
  };
  mirrorView(vm).forEach(mark(mirror));
  mirrorView(vm).forEachDirect(mark(direct));
  const out = [];
  for (let gfn = 0; gfn < n; gfn++) {
    const priv = vm.attributes.peekPrivate(gfn);
    const level = (priv && vm.backend.usesMirrorRoot ? mirror : direct)[gfn]!;
    const slot = vm.memslots.peekAll().find((s) => s.baseGfn <= gfn && gfn < s.endGfn);
    const backing = slot === undefined ? null : priv ? slot.gmem : slot.shared;
    const pfn = backing === null ? -1 : backing.peekPfn(gfn - slot!.baseGfn);
    const page = pfn < 0 ? 0 : (vm.backend.guestPage?.(vm, gfn, pfn) ?? 0);
    out.push({
      private: priv,
      mapped: ([null, "4k", "2m", "1g"] as const)[level]!,
      accepted: (page & GUEST_PAGE_ACCEPTED) !== 0,
      owner:
        (page & GUEST_PAGE_OWNED) !== 0
          ? ("guest" as const)
          : pfn < 0
            ? ("none" as const)
            : ("host" as const),
    });
  }
  return out;
}

describe("the summary of guest memory", () => {
  it("TDX: accepted pages are MAPPED in the S-EPT, AUG'd ones pending; only the TD's pages are the guest's", () => {
    expect(summary(KNOWN, "tdx").ranges).toEqual([
      range(0, 4, true, "4k", true, "guest"), // accepted (GFN 3 by TDH.MEM.PAGE.ADD)
      range(4, 4, true, "4k", false, "guest"), // AUG'd on access, never accepted: #VE
      range(8, 504, true, null, false, "host"), // the rest of the 2 MiB guest_memfd folio
      range(512, 512, false, "2m", false, "host"), // shared, a 2 MiB mapping of the shared alias
      range(1024, 2, true, "4k", false, "guest"),
      range(1026, 510, true, null, false, "host"),
      range(1536, 512, true, null, false, "none"), // never touched: no host page behind it
    ]);
  });

  it("SEV-SNP: validated pages are accepted; a 2 MiB RMP entry makes the whole folio the guest's", () => {
    const g = summary(KNOWN, "sev");
    expect(g.ranges).toEqual([
      range(0, 4, true, "4k", true, "guest"),
      range(4, 4, true, "4k", false, "guest"),
      range(8, 504, true, null, false, "host"),
      range(512, 512, false, "2m", false, "host"),
      range(1024, 512, true, "2m", false, "guest"), // mapped at 2M: one 2M RMP entry, not validated
      range(1536, 512, true, null, false, "none"),
    ]);
    expect(g.totals).toEqual({
      private: 1536,
      shared: 512,
      mapped: 1032,
      accepted: 4,
      guestOwned: 520,
      hostOwned: 1016,
      unbacked: 512,
    });
  });

  it("plain EPT: all shared, nothing to accept, nothing the guest's", () => {
    expect(summary(KNOWN, "plain").ranges).toEqual([
      range(0, 1536, false, "2m", false, "host"),
      range(1536, 512, false, null, false, "none"),
    ]);
  });

  it("agrees GFN by GFN with a per-GFN reading, and its ranges are maximal and cover every GFN once", () => {
    fc.assert(
      fc.property(
        workloadArb(["zap", "age", "convert", "split", "recover"]),
        fc.constantFrom("tdx", "sev", "plain"),
        (w, backend) => {
          let r;
          try {
            r = runScenario(parseScenarioText(workloadText(w, backend), "w.yaml"), {
              backend: registry.source(backend),
              guestMemory: true,
            });
          } catch (e) {
            if (RunInputError.is(e) || OpError.is(e)) return;
            throw e;
          }
          const g = r.report.guestMemory!;
          expect(g).toEqual(guestMemory(r.vm));
          const expanded = g.ranges.flatMap(({ gfn: _g, npages, ...rest }) =>
            Array.from({ length: npages }, () => rest),
          );
          expect(expanded).toEqual(perGfn(r.vm));
          let next = 0;
          for (const [i, x] of g.ranges.entries()) {
            expect(x.gfn).toBe(next);
            next += x.npages;
            if (i > 0)
              expect({ ...g.ranges[i - 1]!, gfn: 0, npages: 0 }).not.toEqual({
                ...x,
                gfn: 0,
                npages: 0,
              });
          }
          expect(next).toBe(g.pages);
          const t = g.totals;
          expect(t.private + t.shared).toBe(g.pages);
          expect(t.guestOwned + t.hostOwned + t.unbacked).toBe(g.pages);
        },
      ),
      { numRuns: 60, seed: 15 },
    );
  });

  it("a 1 TiB guest that touched one page is a handful of ranges", () => {
    const g = summary(
      "name: big\nvm: { memory: 1TiB, vcpus: 1 }\nvcpus:\n  - - { op: access, gpa: 0x40000000, count: 1 }\n",
      "plain",
    );
    expect(g.pages).toBe(2 ** 28);
    expect(g.ranges).toEqual([
      range(0, 0x40000, false, null, false, "none"),
      range(0x40000, 1, false, "4k", false, "host"),
      range(0x40001, 511, false, null, false, "host"), // the rest of its 2 MiB host block
      range(0x40200, 2 ** 28 - 0x40200, false, null, false, "none"),
    ]);
  });

  it("run --json and replay --json report it; without --json nothing is computed", async () => {
    const x = captureIo();
    expect(await main(["run", "scenarios/tdx-sequential-2m.yaml", "--json"], x)).toBe(0);
    const rep = JSON.parse(x.outText()) as { guestMemory: GuestMemory };
    expect(rep.guestMemory.totals.accepted).toBe(512);
    expect(rep.guestMemory.ranges[0]).toEqual(range(0, 512, true, "4k", true, "guest"));
    const dir = mkdtempSync(join(tmpdir(), "tdpemu-gm-"));
    try {
      const sched = join(dir, "s.json");
      expect(
        await main(["run", "scenarios/zap-refault.yaml", "--schedule-out", sched], captureIo()),
      ).toBe(0);
      const ran = captureIo();
      expect(await main(["run", "scenarios/zap-refault.yaml", "--json"], ran)).toBe(0);
      const y = captureIo();
      expect(await main(["replay", sched, "--json"], y)).toBe(0);
      const replayed = JSON.parse(y.outText()) as { guestMemory: GuestMemory };
      expect(replayed.guestMemory).toEqual(
        (JSON.parse(ran.outText()) as { guestMemory: GuestMemory }).guestMemory,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const r = runScenario(parseScenarioText(KNOWN, "known.yaml"), {
      backend: registry.source("tdx"),
    });
    expect(r.report.guestMemory).toBeUndefined();
  });
});
