/**
 * Differential tests: one random workload on every backend, and what must agree between them.
 * The models differ on purpose where the technologies do; each such difference is written
 * down here, with the reason, and everything else must be equal.
 *
 * Intended differences between TDX and SEV-SNP:
 *  D1. `populate` maps the page on TDX and not on SEV-SNP. KVM pre-faults a TD's initial page
 *      into the mirror (`kvm_tdp_map_page`) before TDH.MEM.PAGE.ADD copies it in; SNP's
 *      SNP_LAUNCH_UPDATE only changes the RMP, and the first guest access faults the page in.
 *  D2. A host `zap` of private memory takes the pages from a TD (TDH.MEM.RANGE.BLOCK, TRACK,
 *      PAGE.REMOVE: the guest must accept them again) but only drops the NPT entries of an
 *      SNP guest (its RMP entries stay assigned and validated). So on TDX, after a zap, fewer
 *      pages may be accepted and owned, and later ops may see #VEs where SNP sees none.
 *  D3. `age` never sees a TD's private pages: the mirror root is not aged (KVM ages only the
 *      shared roots of a TD), while SNP's private pages sit in the one NPT and are aged.
 *  D6. A conversion zaps, on TDX, only the mappings of the kind the GFNs leave (the mirror
 *      root's when they become shared, the shared root's when they become private: KVM's
 *      attribute filter), but every mapping in the range on SEV-SNP, whose one NPT holds both
 *      kinds. So a shared page mapped before a conversion of its range to shared stays mapped on
 *      TDX only (and is refaulted on SNP at the next access).
 *  D4. With 2 MiB host pages, SNP maps private memory at 2M where the guest_memfd folio and
 *      the RMP allow it (one 2M RMP entry: the whole folio the guest's), TDX at 4K (this model
 *      has no private huge pages for TDX). Levels, mapped counts, ownership of the rest of a
 *      folio and what `split` finds differ.
 *  D7. An `accept` of a page the guest accepted already: TDX's ACCEPT returns the warning
 *      PAGE_ALREADY_ACCEPTED, which the guest takes as done (`try_accept_one` fails only on
 *      TDX_ERROR), while SNP's PVALIDATE sets CF (FAIL_NOUPDATE), on which a Linux guest
 *      terminates (`pvalidate_pages`). The pages accepted agree; SNP counts such a page as an
 *      exception where TDX counts it as done.
 * Between plain EPT and the confidential backends:
 *  D5. Plain EPT has no private memory: every GFN is shared, a conversion to private is refused
 *      (KVM_SET_MEMORY_ATTRIBUTES fails with -EINVAL), one to shared changes nothing, `accept`
 *      is a no-op that succeeds, no access raises #VE or #VC, and no page is the guest's.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  OpError,
  RunInputError,
  parseScenarioText,
  runScenario,
  type GuestMemoryRange,
  type Report,
} from "@tdpemu/core";
import { builtinRegistry } from "../src/registry.js";
import {
  convertedGfns,
  populatedGfns,
  workloadArb,
  workloadText,
  type Workload,
} from "./workload-arb.js";

const registry = builtinRegistry();

/** The report, or the refusal's message: a refused op is an answer, not a failure. */
function run(w: Workload, backend: string): Report | string {
  try {
    return runScenario(parseScenarioText(workloadText(w, backend), `${backend}.yaml`), {
      backend: registry.source(backend),
      guestMemory: true,
    }).report;
  } catch (e) {
    if (RunInputError.is(e) || OpError.is(e)) return e.message;
    throw e;
  }
}

/** Both ran or both refused; neither found a violation. */
function bothRan(a: Report | string, b: Report | string): [Report, Report] | null {
  expect(typeof a === "string").toBe(typeof b === "string");
  if (typeof a === "string" || typeof b === "string") return null;
  expect(a.invariants.violations).toEqual([]);
  expect(b.invariants.violations).toEqual([]);
  return [a, b];
}

type Page = Omit<GuestMemoryRange, "gfn" | "npages">;
function pages(r: Report): Page[] {
  return r.guestMemory!.ranges.flatMap(({ gfn: _g, npages, ...p }) =>
    Array.from({ length: npages }, () => p),
  );
}

/** The report with each accept's result given its total (done + exceptions) too (D7). */
function withAcceptTotals(r: Report): Report {
  return {
    ...r,
    ops: r.ops.map((o) =>
      o.op === "accept"
        ? {
            ...o,
            result: { ...o.result, total: Number(o.result.ok) + Number(o.result.exceptions) },
          }
        : o,
    ),
  };
}

/** Every op's outcome, by who ran it and its index, without the fields an intended difference excuses. */
function outcomes(
  r: Report,
  excused: (op: string, field: string) => boolean,
): Map<string, Record<string, number | string>> {
  return new Map(
    r.ops.map((o) => [
      `${o.who}#${o.index} ${o.op}`,
      Object.fromEntries(Object.entries(o.result).filter(([k]) => !excused(o.op, k))),
    ]),
  );
}

/** Runs per property; `TDPEMU_DIFF_RUNS=5000 TDPEMU_DIFF_SEED=n npx vitest run backends-agree` for a longer search. */
const RUNS = Number(process.env.TDPEMU_DIFF_RUNS ?? 120);
const SEED = process.env.TDPEMU_DIFF_SEED === undefined ? 0 : Number(process.env.TDPEMU_DIFF_SEED);
/** A test's time limit, grown with the runs asked for (a few ms a run, more on a loaded machine). */
const TIMEOUT = Math.max(60_000, RUNS * 200);

describe("backends agree on a random workload, but for the differences they are meant to have", () => {
  it(
    "TDX and SEV-SNP, 4 KiB pages, no zap: every op's outcome, and every page but the ones populate or a conversion left mapped (D1, D3, D6, D7)",
    () => {
      fc.assert(
        fc.property(
          workloadArb(["age", "convert", "split", "recover"], fc.constant(false)),
          (w) => {
            const both = bothRan(run(w, "tdx"), run(w, "sev"));
            if (both === null) return;
            const [tdx, sev] = both;
            // D3, and D7: an accept's split between done and exceptions (its total must agree).
            const excused = (op: string, field: string) =>
              (op === "age" && field === "young") || (op === "accept" && field !== "total");
            const [ot, os] = [
              outcomes(withAcceptTotals(tdx), excused),
              outcomes(withAcceptTotals(sev), excused),
            ];
            expect(ot).toEqual(os);
            for (const o of tdx.ops.filter((x) => x.op === "accept")) {
              const s = sev.ops.find((x) => x.who === o.who && x.index === o.index)!;
              // D7 only ever turns a TDX success into an SNP exception, never the other way.
              expect(Number(s.result.exceptions)).toBeGreaterThanOrEqual(
                Number(o.result.exceptions),
              );
            }
            const populated = populatedGfns(w);
            const converted = convertedGfns(w);
            const [pt, ps] = [pages(tdx), pages(sev)];
            let mappedOnlyOnTdx = 0;
            for (let gfn = 0; gfn < pt.length; gfn++) {
              const [t, s] = [pt[gfn]!, ps[gfn]!];
              if (t.mapped !== s.mapped) {
                // D1: a page populate mapped on TDX that the SNP guest never touched; D6: a page a
                // conversion left mapped on TDX only.
                const why = populated.has(gfn) || converted.has(gfn);
                expect({ gfn, why, tdx: t.mapped, sev: s.mapped }).toEqual({
                  gfn,
                  why: true,
                  tdx: "4k",
                  sev: null,
                });
                mappedOnlyOnTdx++;
              }
              expect({ gfn, ...t, mapped: null }).toEqual({ gfn, ...s, mapped: null });
            }
            const [tt, ts] = [tdx.guestMemory!.totals, sev.guestMemory!.totals];
            expect({ ...tt, mapped: tt.mapped - mappedOnlyOnTdx }).toEqual(ts);
            expect(tdx.stats.pages["4k"] - mappedOnlyOnTdx).toBe(sev.stats.pages["4k"]);
          },
        ),
        { numRuns: RUNS, seed: SEED + 1501 },
      );
    },
    TIMEOUT,
  );

  it(
    "TDX and SEV-SNP, any host op and page size: the same attributes; TDX accepts and owns no page SEV-SNP does not (D2, D4)",
    () => {
      fc.assert(
        fc.property(workloadArb(["zap", "age", "convert", "split", "recover"]), (w) => {
          const both = bothRan(run(w, "tdx"), run(w, "sev"));
          if (both === null) return;
          const [tdx, sev] = both;
          const [pt, ps] = [pages(tdx), pages(sev)];
          for (let gfn = 0; gfn < pt.length; gfn++) {
            const [t, s] = [pt[gfn]!, ps[gfn]!];
            expect({ gfn, private: t.private }).toEqual({ gfn, private: s.private });
            if (t.accepted) expect({ gfn, accepted: s.accepted }).toEqual({ gfn, accepted: true });
            if (t.owner === "guest")
              expect({ gfn, owner: s.owner }).toEqual({ gfn, owner: "guest" });
            // Whatever is shared is the host's (or not allocated yet) on both.
            if (!t.private) expect([t.owner, s.owner].every((o) => o !== "guest")).toBe(true);
          }
          // Ops that do not depend on what is mapped or accepted agree exactly.
          const fixed = (r: Report) =>
            r.ops.filter((o) => o.op === "convert" || o.op === "populate" || o.op === "finalize");
          expect(fixed(tdx)).toEqual(fixed(sev));
        }),
        { numRuns: RUNS, seed: SEED + 1502 },
      );
    },
    TIMEOUT,
  );

  it(
    "plain EPT runs what TDX runs but conversions to private, all of it shared, every access and accept succeeding (D5)",
    () => {
      fc.assert(
        fc.property(workloadArb(["zap", "age", "convert", "split", "recover"]), (w) => {
          const tdx = run(w, "tdx");
          const plain = run(w, "plain");
          if (typeof tdx === "string") return;
          if (
            w.vcpus.flat().some((o) => o.op === "convert" && o.toPrivate) ||
            w.host.some((h) => h.kind === "convert" && h.toPrivate)
          ) {
            expect(plain).toMatch(
              /has no private memory: KVM_SET_MEMORY_ATTRIBUTES\(PRIVATE\) fails with -EINVAL/,
            );
            return;
          }
          expect(plain).not.toBeTypeOf("string");
          const p = plain as Report;
          expect(p.invariants.violations).toEqual([]);
          const g = p.guestMemory!;
          expect(g.totals).toMatchObject({
            private: 0,
            shared: g.pages,
            accepted: 0,
            guestOwned: 0,
          });
          for (const o of p.ops) {
            if (o.op === "access") expect(o.result).toMatchObject({ exceptions: 0, mmio: 0 });
            if (o.op === "accept") expect(o.result).toMatchObject({ exceptions: 0 });
            if (o.op === "convert") expect(o.result).toEqual({ changed: 0 });
          }
          // The same ops ran, and guest ops covered the same pages.
          const covered = (r: Report) =>
            r.ops
              .map(
                (o) =>
                  `${o.who}#${o.index} ${o.op} ${o.op === "access" || o.op === "accept" ? Number(o.result.ok) + Number(o.result.exceptions) : ""}`,
              )
              .sort();
          expect(covered(p)).toEqual(covered(tdx));
          // Every page the TD has shared and mapped, plain maps too.
          const [pt, pp] = [pages(tdx), pages(p)];
          for (let gfn = 0; gfn < pt.length; gfn++) {
            if (!pt[gfn]!.private && pt[gfn]!.mapped !== null)
              expect({ gfn, mapped: pp[gfn]!.mapped !== null }).toEqual({ gfn, mapped: true });
          }
        }),
        { numRuns: RUNS, seed: SEED + 1503 },
      );
    },
    TIMEOUT,
  );
});
