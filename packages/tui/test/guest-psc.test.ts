/**
 * The guest converts its own memory (`op: psc`), and each backend takes the kernel's path: on
 * SEV-SNP the guest rescinds its validation (PVALIDATE, validate clear) before a Page State
 * Change VMGEXIT, on TDX it makes TDG.VP.VMCALL<MapGPA> (a TD exit); KVM exits to userspace with
 * KVM_HC_MAP_GPA_RANGE, the VMM sets the attributes (zapping: BLOCK, TRACK, REMOVE on TDX) and
 * punches the pages out of guest_memfd (RMPUPDATE to the hypervisor on SNP). Back to private,
 * the request comes first and the guest accepts each page after (AUG then ACCEPT; RMPUPDATE by
 * sev_gmem_prepare then PVALIDATE).
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { RunInputError, parseScenarioText, runScenario, type TdpEvent } from "@tdpemu/core";
import { builtinRegistry } from "../src/registry.js";

const registry = builtinRegistry();

function scenario(backend: string, ops: string[], memory = "8MiB"): string {
  return [
    "name: psc",
    `vm: { memory: ${memory}, gpaw: 48, vcpus: 1 }`,
    `backend: ${backend}`,
    "schedule: { mode: round-robin, interleave: false }",
    "vcpus:",
    `  - - ${ops[0]}`,
    ...ops.slice(1).map((o) => `    - ${o}`),
  ].join("\n");
}

/** What each psc op did, as one line per call, attribute change, fault and TLB flush. */
function pscTrace(backend: string, ops: string[]) {
  const lines: string[][] = [];
  const r = runScenario(parseScenarioText(scenario(backend, ops), "psc.yaml"), {
    backend: registry.source(backend),
    onEvent: (e: TdpEvent) => {
      if (e.type === "op" && e.phase === "start") lines.push([]);
      const cur = lines.at(-1);
      if (!cur) return;
      if (e.type === "call")
        cur.push(`${e.name} ${e.status}${e.detail.includes("rescind") ? " (rescind)" : ""}`);
      else if (e.type === "attributes")
        cur.push(`attributes ${e.private ? "private" : "shared"} ${e.npages}`);
      else if (e.type === "fault") cur.push(`fault ${e.result}`);
    },
  });
  return { r, lines };
}

const SETUP = ["{ op: accept, gpa: 0x100000, count: 2 }"];
const TO_SHARED = "{ op: psc, gpa: 0x100000, size: 8KiB, to: shared }";
const TO_PRIVATE = "{ op: psc, gpa: 0x100000, size: 8KiB, to: private }";

describe("a guest-initiated conversion", () => {
  it("on SEV-SNP: PVALIDATE rescinds, the PSC VMGEXIT, KVM_HC_MAP_GPA_RANGE, attributes, RMPUPDATE to shared; back: request, prepare, PVALIDATE", () => {
    const { r, lines } = pscTrace("sev", [...SETUP, TO_SHARED, TO_PRIVATE]);
    expect(r.report.invariants.violations).toEqual([]);
    expect(lines[1]).toEqual([
      "PVALIDATE SUCCESS (rescind)",
      "PVALIDATE SUCCESS (rescind)",
      "VMGEXIT(PSC) exit",
      "KVM_HC_MAP_GPA_RANGE exit to userspace",
      "attributes shared 2",
      "RMPUPDATE SUCCESS",
      "RMPUPDATE SUCCESS",
    ]);
    expect(lines[2]).toEqual([
      "VMGEXIT(PSC) exit",
      "KVM_HC_MAP_GPA_RANGE exit to userspace",
      "attributes private 2",
      "RMPUPDATE SUCCESS",
      "fault fixed",
      "PVALIDATE SUCCESS",
      "RMPUPDATE SUCCESS",
      "fault fixed",
      "PVALIDATE SUCCESS",
    ]);
    expect(r.report.ops.slice(1).map((o) => o.result)).toEqual([
      { changed: 2, pages: 2, exceptions: 0 },
      { changed: 2, pages: 2, exceptions: 0 },
    ]);
  });

  it("on SEV-SNP, 64 entries a request (VMGEXIT_PSC_MAX_ENTRY): 65 pages are two batches, each given up, requested and converted before the next; a TD asks once", () => {
    const setup = "{ op: accept, gpa: 0x100000, count: 65 }";
    const toShared = "{ op: psc, gpa: 0x100000, size: 260KiB, to: shared }";
    const { r, lines } = pscTrace("sev", [setup, toShared]);
    expect(r.report.invariants.violations).toEqual([]);
    const kinds = lines[1]!.filter((l) => !l.startsWith("RMPUPDATE"));
    expect(kinds).toEqual([
      ...Array<string>(64).fill("PVALIDATE SUCCESS (rescind)"),
      "VMGEXIT(PSC) exit",
      "KVM_HC_MAP_GPA_RANGE exit to userspace",
      "attributes shared 64",
      "PVALIDATE SUCCESS (rescind)",
      "VMGEXIT(PSC) exit",
      "KVM_HC_MAP_GPA_RANGE exit to userspace",
      "attributes shared 1",
    ]);
    expect(r.report.ops[1]!.result).toEqual({ changed: 65, pages: 65, exceptions: 0 });
    const td = pscTrace("tdx", [setup, toShared]);
    expect(td.lines[1]!.filter((l) => l.includes("MapGPA") || l.includes("MAP_GPA_RANGE"))).toEqual(
      ["TDG.VP.VMCALL<MapGPA> TD exit", "KVM_HC_MAP_GPA_RANGE exit to userspace"],
    );
  });

  it("on TDX: MapGPA (a TD exit), KVM_HC_MAP_GPA_RANGE, BLOCK/TRACK/REMOVE, attributes; back: request, then AUG and ACCEPT per page", () => {
    const { r, lines } = pscTrace("tdx", [...SETUP, TO_SHARED, TO_PRIVATE]);
    expect(r.report.invariants.violations).toEqual([]);
    const removal = [
      "TDH.MEM.RANGE.BLOCK SUCCESS",
      "TDH.MEM.TRACK SUCCESS",
      "TDH.MEM.PAGE.REMOVE SUCCESS",
      "TDH.PHYMEM.PAGE.WBINVD SUCCESS",
    ];
    expect(lines[1]).toEqual([
      "TDG.VP.VMCALL<MapGPA> TD exit",
      "KVM_HC_MAP_GPA_RANGE exit to userspace",
      ...removal,
      ...removal,
      "attributes shared 2",
    ]);
    const acceptOne = [
      "TDH.VP.ENTER SUCCESS",
      "TDG.MEM.PAGE.ACCEPT TD exit (ept-violation)",
      "TDH.MEM.PAGE.AUG SUCCESS",
      "fault fixed",
      "TDH.VP.ENTER SUCCESS",
      "TDG.MEM.PAGE.ACCEPT SUCCESS",
    ];
    expect(lines[2]).toEqual([
      "TDH.VP.ENTER SUCCESS",
      "TDG.VP.VMCALL<MapGPA> TD exit",
      "KVM_HC_MAP_GPA_RANGE exit to userspace",
      "attributes private 2",
      ...acceptOne,
      ...acceptOne.slice(1),
    ]);
  });

  it("the guest that rescinds a page it never validated stops there (FAIL_NOUPDATE is fatal to it), and nothing is converted", () => {
    const { r, lines } = pscTrace("sev", ["{ op: access, gpa: 0x100000, write: true }", TO_SHARED]);
    expect(r.report.ops[1]!.result).toEqual({ changed: 0, pages: 0, exceptions: 1 });
    // The access faulted the page in (sev_gmem_prepare) and took a #VC: it was never validated.
    expect(lines[0]).toEqual(["RMPUPDATE SUCCESS", "fault fixed", "#VC raised"]);
    // So the rescind finds Validated clear already: CF=1, and the guest goes no further.
    expect(lines[1]).toEqual(["PVALIDATE FAIL_NOUPDATE (rescind)"]);
    expect(r.vm.attributes.peekPrivate(0x100)).toBe(true);
    expect(r.report.invariants.violations).toEqual([]);
  });

  it("scenarios/guest-convert.yaml runs on TDX and SEV-SNP, each with its own calls", () => {
    const path = new URL("../../../scenarios/guest-convert.yaml", import.meta.url).pathname;
    const text = readFileSync(path, "utf8");
    const calls: Record<string, Record<string, number>> = {};
    for (const be of ["tdx", "sev"]) {
      const r = runScenario(parseScenarioText(text, path), { backend: registry.source(be) });
      expect(r.report.invariants.violations).toEqual([]);
      expect(r.report.ops.map((o) => o.result.exceptions ?? 0)).toEqual([0, 0, 0, 0, 0, 0]);
      calls[be] = r.report.backendStats.calls;
    }
    expect(calls.tdx).toMatchObject({
      "TDG.VP.VMCALL<MapGPA>": 2,
      "TDH.MEM.PAGE.REMOVE": 8,
      "TDG.MEM.PAGE.ACCEPT": 24,
    });
    expect(calls.sev).toMatchObject({ "VMGEXIT(PSC)": 2, PVALIDATE: 32, RMPUPDATE: 34 });
  });

  it("at 2MiB over 4K mappings, each guest falls back to 4K pages (pvalidate_pages, try_accept_one) and finishes", () => {
    for (const be of ["sev", "tdx"]) {
      const r = runScenario(
        parseScenarioText(
          scenario(be, [
            "{ op: accept, gpa: 0x200000, count: 512 }",
            "{ op: psc, gpa: 0x200000, size: 2MiB, to: shared, pagesize: 2MiB }",
            "{ op: psc, gpa: 0x200000, size: 2MiB, to: private, pagesize: 2MiB }",
            "{ op: access, gpa: 0x200000, count: 512, write: true }",
          ]),
          "p2m.yaml",
        ),
        { backend: registry.source(be) },
      );
      expect(r.report.invariants.violations).toEqual([]);
      // To shared, SNP's 2M rescind over 4K entries is FAIL_SIZEMISMATCH, then 512 4K ones work
      // (a TD rescinds nothing); back to private the 2M validate or accept fails on the size
      // and 512 4K ones work.
      expect(r.report.ops[1]!.result).toEqual({
        changed: 512,
        pages: be === "sev" ? 512 : 0,
        exceptions: 0,
      });
      expect(r.report.ops[2]!.result).toEqual({ changed: 512, pages: 512, exceptions: 0 });
      expect(r.report.ops[3]!.result).toMatchObject({ ok: 512, exceptions: 0 });
    }
  });

  it("bad input is named: a page size other than 4KiB or 2MiB, a range not made of whole pages, a VMPL op where there are none", () => {
    const bad = (op: string) => () => parseScenarioText(scenario("sev", [op]), "bad.yaml");
    expect(bad("{ op: psc, gpa: 0x0, size: 8KiB, to: shared, pagesize: 8KiB }")).toThrow(
      /vcpus\[0\]\[0\]\.pagesize: expected 4KiB or 2MiB/,
    );
    expect(bad("{ op: psc, gpa: 0x1000, size: 2MiB, to: shared, pagesize: 2MiB }")).toThrow(
      /vcpus\[0\]\[0\]\.gpa: expected an address aligned to the page size/,
    );
    expect(bad("{ op: psc, gpa: 0x200000, size: 3MiB, to: shared, pagesize: 2MiB }")).toThrow(
      /vcpus\[0\]\[0\]\.size: expected a multiple of the page size/,
    );
    expect(bad("{ op: psc, gpa: 0x0, size: 8KiB, to: sideways }")).toThrow(
      /vcpus\[0\]\[0\]\.to: expected one of private, shared/,
    );
    expect(() =>
      runScenario(
        parseScenarioText(
          scenario("plain", ["{ op: psc, gpa: 0x0, size: 8KiB, to: private }"]),
          "p.yaml",
        ),
        { backend: registry.source("plain") },
      ),
    ).toThrow(RunInputError);
    // VMPLs are SEV-SNP's: an op at another level on a backend without them, or RMPADJUST there.
    for (const be of ["plain", "tdx"]) {
      expect(() =>
        runScenario(
          parseScenarioText(scenario(be, ["{ op: access, gpa: 0x0, vmpl: 1 }"]), "v.yaml"),
          { backend: registry.source(be) },
        ),
      ).toThrow(new RegExp(`backend '${be}' has no VMPLs; vmpl 1 needs SEV-SNP`));
      expect(() =>
        runScenario(
          parseScenarioText(
            scenario(be, ["{ op: rmpadjust, gpa: 0x0, target: 1, perms: r }"]),
            "v.yaml",
          ),
          { backend: registry.source(be) },
        ),
      ).toThrow(new RegExp(`rmpadjust: backend '${be}' has no RMPADJUST`));
    }
    expect(bad("{ op: rmpadjust, gpa: 0x0, target: 5, perms: r }")).toThrow(
      /vcpus\[0\]\[0\]\.target: expected a VMPL from 0 to 3/,
    );
    expect(bad("{ op: rmpadjust, gpa: 0x0, target: 1, perms: rq }")).toThrow(
      /vcpus\[0\]\[0\]\.perms: expected permissions as letters r, w and x/,
    );
    expect(bad("{ op: access, gpa: 0x0, vmpl: 4 }")).toThrow(
      /vcpus\[0\]\[0\]\.vmpl: expected a VMPL from 0 to 3/,
    );
  });
});
