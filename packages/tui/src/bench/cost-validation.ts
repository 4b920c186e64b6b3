/**
 * `tdpemu bench --filter cost-validation`: the cost model beside end-to-end figures measured on
 * real machines. Each check runs a scenario written for the workload (a smaller guest), prices it
 * with the backend's table, scales the per-page cost to the published size, and reports the
 * ratio model ÷ published. The sources are cited, not copied; docs/cost-model.md says what the
 * model leaves out.
 */
import {
  VirtualTime,
  defaultCostTable,
  loadScenario,
  runScenario,
  type BackendRegistry,
} from "@tdpemu/core";
import type { Measurement } from "./cases.js";
import { repoFile } from "../checkout.js";

export interface CostCheck {
  name: string;
  scenario: string;
  backend: string;
  /** The published workload's size in 4K pages, to which the scenario's per-page cost scales. */
  pages: number;
  /** The published time, s; `bound` says it is a lower bound ("had not finished after"). */
  publishedS: number;
  bound?: "at-least";
  source: string;
  /** What the model leaves out, when model and published differ by more than 2×. */
  leavesOut: string;
}

const GiB_PAGES = 262144;

export const COST_CHECKS: readonly CostCheck[] = [
  {
    name: "tdx-eager-accept-64g",
    scenario: "scenarios/cost-tdx-eager-accept.yaml",
    backend: "tdx",
    pages: 64 * GiB_PAGES,
    publishedS: 90,
    bound: "at-least",
    source:
      "kata-containers/kata-containers issue 13535 (2026): a 64 GB TD with eager accept had not left OVMF after 90 s (under 15 s with lazy accept)",
    leavesOut:
      "OVMF's own work between accepts, and that the published figure is only a lower bound",
  },
  {
    name: "snp-validate-4k-64g",
    scenario: "scenarios/cost-snp-validate.yaml",
    backend: "sev",
    pages: 64 * GiB_PAGES,
    publishedS: 57,
    source:
      "microsoft/OHCL-Linux-Kernel pull request 50 (2025): validating 64 GiB at 4K (PVALIDATE, RMPADJUST) took about 57 s before the 2M path",
    leavesOut:
      "parallelism across the guest's 64 VPs (the model runs one vCPU; if the published run was parallel, its per-page cost is higher than the model's), and the paravisor's temporary mappings",
  },
];

export interface CostCheckResult extends CostCheck {
  perPageNs: number;
  modelS: number;
  ratio: number;
}

/** Runs every check; the headline is the worst ratio either way (1 is exact). */
export function costValidationCase(
  registry: BackendRegistry,
): Measurement & { rows: CostCheckResult[] } {
  const rows = COST_CHECKS.map((c) => {
    const scn = loadScenario(repoFile(c.scenario));
    const vt = new VirtualTime(defaultCostTable(c.backend)!);
    runScenario(scn, { backend: registry.source(c.backend), onEvent: vt.onEvent });
    const pages = scn.vcpus
      .flat()
      .reduce((n, op) => (op.op === "accept" ? n + (op.count * op.size) / 4096 : n), 0);
    const perPageNs = vt.report().elapsedNs / pages;
    const modelS = (perPageNs * c.pages) / 1e9;
    return { ...c, perPageNs, modelS, ratio: modelS / c.publishedS };
  });
  const worst = Math.max(...rows.map((r) => Math.max(r.ratio, 1 / r.ratio)));
  const extra: Record<string, number> = {};
  for (const r of rows) extra[`${r.name} ratio`] = r.ratio;
  return { value: worst, unit: "× (worst)", extra, rows };
}

/** The validation as a table: check, model, published, ratio, source. */
export function formatCostValidation(rows: readonly CostCheckResult[]): string {
  const lines = rows.map(
    (r) =>
      `${r.name.padEnd(22)} model ${r.modelS.toFixed(1).padStart(6)} s (${(r.perPageNs / 1000).toFixed(2)} µs/page)` +
      `  published ${r.bound === "at-least" ? "> " : ""}${r.publishedS} s  ratio ${r.ratio.toFixed(2)}\n` +
      `${"".padEnd(22)} source: ${r.source}` +
      (r.ratio > 2 || r.ratio < 0.5 ? `\n${"".padEnd(22)} leaves out: ${r.leavesOut}` : ""),
  );
  return ["cost model against published measurements:", ...lines].join("\n");
}
