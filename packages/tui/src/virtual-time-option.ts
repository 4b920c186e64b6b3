/**
 * `--costs FILE` and virtual time on the command line: which cost table prices a run (the file
 * given, else the backend's own from costs/), and the lines that show what the run would cost.
 */
import {
  VirtualTime,
  defaultCostTable,
  loadCostTable,
  type TdpEvent,
  type VirtualTimeReport,
} from "@tdpemu/core";
import { UsageError } from "./usage-error.js";

/**
 * The virtual clocks of a run on `backend`: with `--costs`, that table (it must be for this
 * backend); else, when `wanted`, the backend's own table; null when there is none (a plugin's
 * backend without `--costs`) or it is not wanted.
 */
export function virtualTimeOption(
  cmd: string,
  costs: string | undefined,
  backend: string,
  wanted: boolean,
): VirtualTime | null {
  if (costs === undefined) {
    const t = wanted ? defaultCostTable(backend) : null;
    return t ? new VirtualTime(t) : null;
  }
  const t = loadCostTable(costs);
  if (t.backend !== backend) {
    throw new UsageError(
      `${cmd}: --costs: '${costs}' prices backend '${t.backend}', and this run is on '${backend}'`,
    );
  }
  return new VirtualTime(t);
}

/** One listener calling each given one. */
export function eventListeners(
  ...ls: (((e: TdpEvent) => void) | undefined)[]
): ((e: TdpEvent) => void) | undefined {
  const on = ls.filter((l): l is (e: TdpEvent) => void => l !== undefined);
  if (on.length === 0) return undefined;
  if (on.length === 1) return on[0];
  return (e) => {
    for (const l of on) l(e);
  };
}

/** A duration in the unit that reads best. */
export function formatNs(ns: number): string {
  if (ns >= 1e9) return `${(ns / 1e9).toFixed(2)} s`;
  if (ns >= 1e6) return `${(ns / 1e6).toFixed(2)} ms`;
  if (ns >= 1e3) return `${(ns / 1e3).toFixed(1)} µs`;
  return `${Math.round(ns)} ns`;
}

/** The biggest `n` event kinds as "label 41%". */
export function topShares(v: VirtualTimeReport, n: number): string {
  return v.kinds
    .slice(0, n)
    .map((k) => `${k.key} ${(k.share * 100).toFixed(0)}%`)
    .join(", ");
}

export function formatVirtualTime(v: VirtualTimeReport): string {
  const unpriced = Object.keys(v.unpriced);
  return [
    `virtual     ${formatNs(v.elapsedNs)} elapsed, ${formatNs(v.totalNs)} over all tasks, on ${v.table.platform} (${v.table.source})`,
    `  biggest   ${topShares(v, 3)}`,
    ...(unpriced.length > 0
      ? [`  unpriced  ${unpriced.join(", ")} (no cost in the table: the estimate is low)`]
      : []),
  ].join("\n");
}
