/** `tdpemu compare`: one scenario on every backend, side by side, headless. */
import { describe, expect, it } from "vitest";
import type { CompareRow } from "../src/compare-rows.js";
import { main, type Io } from "../src/index.js";

/** What `tdpemu compare --json` prints. */
interface CompareJson {
  scenario: string;
  backends: CompareRow[];
}

function io() {
  const out: string[] = [];
  const err: string[] = [];
  const o: Io = { out: (t) => out.push(t), err: (t) => err.push(t) };
  return { o, out: () => out.join("\n"), err: () => err.join("\n") };
}

describe("tdpemu compare", () => {
  it("runs the scenario on tdx, sev, plain and cca and prints one table", async () => {
    const x = io();
    expect(await main(["compare", "scenarios/tdx-sequential-2m.yaml"], x.o)).toBe(0);
    expect(x.out()).toMatch(/^\s+tdx\s+sev\s+plain\s+cca$/m);
    expect(x.out()).toMatch(/^faults\s+512\s+512\s+512\s+512$/m);
    expect(x.out()).toMatch(/^violations\s+0\s+0\s+0\s+0$/m);
  });

  it("tdx-convert: cca in the fourth column, its conversion costing RMI calls and no violation", async () => {
    const x = io();
    expect(await main(["compare", "scenarios/tdx-convert.yaml"], x.o)).toBe(0);
    expect(x.out()).toMatch(/^\s+tdx\s+sev\s+plain\s+cca$/m);
    expect(x.out()).toMatch(/^faults\s+24\s+24\s+-\s+24$/m);
    expect(x.out()).toMatch(/^violations\s+0\s+0\s+n\/a\s+0$/m);
    expect(x.out()).toMatch(
      /^cca calls: RMI_REC_ENTER \d+, RMI_GRANULE_DELEGATE \d+, .*RMI_DATA_CREATE_UNKNOWN 20/m,
    );
  });

  it("says where each backend's calls went: the guest's own conversion is MapGPA, AUG and ACCEPT on TDX, PVALIDATE, PSC and RMPUPDATE on SEV", async () => {
    const x = io();
    expect(await main(["compare", "scenarios/guest-convert.yaml"], x.o)).toBe(0);
    expect(x.out()).toMatch(/^backend calls\s+169\s+72\s+-\s+288$/m);
    expect(x.out()).toMatch(
      /^tdx calls: TDH\.VP\.ENTER 35, TD exit \(ACCEPT\) 24, TDG\.MEM\.PAGE\.ACCEPT 24, TDH\.MEM\.PAGE\.AUG 24, .*, and 13 more kinds$/m,
    );
    expect(x.out()).toMatch(
      /^sev calls: RMPUPDATE 34, PVALIDATE 32, ASID flush 3, VMGEXIT\(PSC\) 2, SNP_GCTX_CREATE 1$/m,
    );
    const j = io();
    expect(
      await main(["compare", "scenarios/guest-convert.yaml", "--json", "--backend", "tdx"], j.o),
    ).toBe(0);
    const rows = (JSON.parse(j.out()) as CompareJson).backends;
    expect(rows[0]?.calls).toMatchObject({ "TDG.VP.VMCALL<MapGPA>": 2, "TDH.MEM.PAGE.REMOVE": 8 });
  });

  it("a backend that refuses an op of the scenario is reported under the table, not counted as a violation", async () => {
    const x = io();
    expect(await main(["compare", "scenarios/dirty-log.yaml"], x.o)).toBe(0);
    expect(x.out()).toMatch(/^violations\s+n\/a\s+n\/a\s+0\s+n\/a$/m);
    expect(x.out()).toMatch(/^tdx: not run: .*KVM_MEM_LOG_DIRTY_PAGES is not allowed/m);
  });

  it("--json gives the rows; a missing scenario is bad input", async () => {
    const x = io();
    expect(await main(["compare", "scenarios/zap-refault.yaml", "--json"], x.o)).toBe(0);
    const r = JSON.parse(x.out()) as CompareJson;
    expect(r.backends.map((b) => b.backend)).toEqual(["tdx", "sev", "plain", "cca"]);
    const y = io();
    expect(await main(["compare"], y.o)).toBe(2);
    expect(y.err()).toMatch(/^tdpemu: compare: which scenario\?/);
  });
});
