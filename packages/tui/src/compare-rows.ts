/**
 * The comparison of `tdpemu compare` and of the UI's `c`: the scenario run headless on each
 * backend, one row each, and the table that puts them side by side.
 */
import {
  VirtualTime,
  defaultCostTable,
  runScenario,
  type BackendRegistry,
  type MmuOptions,
  type Scenario,
  type TdpEvent,
  type VirtualTimeReport,
} from "@tdpemu/core";
import { eventListeners, formatNs, topShares } from "./virtual-time-option.js";

/** One row of the comparison: the scenario run headless on one backend. */
export interface CompareRow {
  backend: string;
  values: Record<string, string>;
  /** Why the scenario could not run on this backend (an op it refuses), if it could not. */
  error?: string;
  /** The backend's calls by name (SEAMCALLs, RMP instructions, exits), most frequent first. */
  calls?: Record<string, number>;
  /** What the run would cost on the backend's platform (its table in costs/), if it has one. */
  virtualTime?: VirtualTimeReport;
}

export const COMPARE_COLUMNS = [
  "atomic points",
  "faults",
  "retries",
  "spurious",
  "pages 4k/2m/1g",
  "table pages",
  "TLB flushes",
  "zapped",
  "leaked",
  "backend calls",
  "busy",
  "errors",
  "violations",
  "est. time",
  "est. per fault",
  "est. per page accepted",
  "ms",
];

/** The 4K pages the scenario's guests accept (accept ops), what "per page accepted" divides by. */
function pagesAccepted(scn: Scenario): number {
  let n = 0;
  for (const prog of scn.vcpus)
    for (const op of prog) if (op.op === "accept") n += (op.count * op.size) / 4096;
  return n;
}

/** Runs the scenario on every registered backend, or on `only` (`tdpemu compare`). */
export function compareBackends(
  scn: Scenario,
  registry: BackendRegistry,
  mmu?: MmuOptions,
  only?: string[],
): CompareRow[] {
  return (only ?? registry.list().map((b) => b.name)).map((name) =>
    compareOne(scn, registry, name, mmu),
  );
}

/**
 * The scenario run headless on one backend: one row of the comparison. `onEvent` watches the
 * run (the UI's progress bars); the row is the same with it or without.
 */
export function compareOne(
  scn: Scenario,
  registry: BackendRegistry,
  name: string,
  mmu?: MmuOptions,
  onEvent?: (e: TdpEvent) => void,
): CompareRow {
  const t0 = performance.now();
  let values: Record<string, string>;
  let error: string | undefined;
  let calls: Record<string, number> | undefined;
  let virtualTime: VirtualTimeReport | undefined;
  try {
    const table = defaultCostTable(name);
    const vt = table ? new VirtualTime(table) : null;
    const listen = eventListeners(onEvent, vt?.onEvent);
    const r = runScenario(scn, {
      backend: registry.source(name),
      mmu,
      ...(listen ? { onEvent: listen } : {}),
    }).report;
    virtualTime = vt?.report();
    const accepted = pagesAccepted(scn);
    calls = Object.fromEntries(
      Object.entries(r.backendStats.calls).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])),
    );
    const s = r.stats;
    values = {
      "atomic points": String(r.steps),
      faults: String(s.faults),
      retries: String(s.faultRetries),
      spurious: String(s.spuriousFaults),
      "pages 4k/2m/1g": `${s.pages["4k"]}/${s.pages["2m"]}/${s.pages["1g"]}`,
      "table pages": String(s.tablePages),
      "TLB flushes": String(s.tlbFlushes),
      "vCPU flushes": String(s.vcpuTlbFlushes),
      zapped: String(s.zappedLeaves),
      leaked: String(s.leakedPages),
      "backend calls": String(Object.values(r.backendStats.calls).reduce((a, b) => a + b, 0)),
      busy: String(r.backendStats.busy),
      errors: String(Object.values(r.backendStats.errors).reduce((a, b) => a + b, 0)),
      violations: String(r.invariants.violations.length),
      "est. time": virtualTime ? formatNs(virtualTime.elapsedNs) : "-",
      "est. per fault":
        virtualTime && s.faults > 0 ? formatNs(virtualTime.totalNs / s.faults) : "-",
      "est. per page accepted":
        virtualTime && accepted > 0 ? formatNs(virtualTime.totalNs / accepted) : "-",
      ms: (performance.now() - t0).toFixed(1),
    };
  } catch (e) {
    values = Object.fromEntries(COMPARE_COLUMNS.map((c) => [c, "-"]));
    values.violations = "n/a";
    error = (e as Error).message;
  }
  return {
    backend: name,
    values,
    error,
    ...(calls ? { calls } : {}),
    ...(virtualTime ? { virtualTime } : {}),
  };
}

/** How many of a backend's calls `formatCompare` names, the most frequent first. */
const COMPARE_CALLS_SHOWN = 8;

/** The comparison as a plain-text table (backends as columns). */
export function formatCompare(scn: Scenario, rows: CompareRow[]): string {
  const w0 = Math.max(...COMPARE_COLUMNS.map((c) => c.length));
  const widths = rows.map((r) =>
    Math.max(r.backend.length, ...COMPARE_COLUMNS.map((c) => r.values[c]!.length)),
  );
  const line = (label: string, cells: string[]) =>
    label.padEnd(w0) + "  " + cells.map((c, i) => c.padStart(widths[i]!)).join("  ");
  const notes = rows.filter((r) => r.error).map((r) => `${r.backend}: not run: ${r.error}`);
  // Where each backend's calls went: the counts above say how many, these say which.
  const calls = rows
    .filter((r) => r.calls && Object.keys(r.calls).length > 0)
    .map((r) => {
      const all = Object.entries(r.calls!);
      const shown = all
        .slice(0, COMPARE_CALLS_SHOWN)
        .map(([n, k]) => `${n} ${k}`)
        .join(", ");
      const more = all.length - COMPARE_CALLS_SHOWN;
      return `${r.backend} calls: ${shown}${more > 0 ? `, and ${more} more kinds` : ""}`;
    });
  // Where the estimated time goes, and what it is priced by.
  const time = rows
    .filter((r) => r.virtualTime && r.virtualTime.kinds.length > 0)
    .map(
      (r) => `${r.backend} time: ${topShares(r.virtualTime!, 3)} (${r.virtualTime!.table.source})`,
    );
  return [
    `scenario ${scn.name}`,
    line(
      "",
      rows.map((r) => r.backend),
    ),
    ...COMPARE_COLUMNS.map((c) =>
      line(
        c,
        rows.map((r) => r.values[c]!),
      ),
    ),
    ...calls,
    ...time,
    ...notes,
  ].join("\n");
}
