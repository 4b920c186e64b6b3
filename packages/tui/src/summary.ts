/** The human summary of a run (without `--json`). */
import type { Report } from "@tdpemu/core";

function entries(r: Record<string, number | string>): string {
  const e = Object.entries(r).filter(([, n]) => n !== 0 && n !== "");
  return e.length === 0 ? "none" : e.map(([k, n]) => `${k} ${n}`).join(", ");
}

export function formatSummary(r: Report, extra: { seconds: number }): string {
  const s = r.stats;
  // A rate over a few milliseconds says nothing; show it for runs long enough to mean something.
  const rate =
    extra.seconds >= 0.05
      ? `; ${Math.round(s.faults / extra.seconds).toLocaleString("en-US")} faults/s`
      : "";
  const lines = [
    `scenario    ${r.scenario}  (backend ${r.backend}, seed ${r.seed}, ${r.steps} atomic points)`,
    `faults      ${s.faults}  (retries ${s.faultRetries}, spurious ${s.spuriousFaults}${rate})`,
    `pages       4k ${s.pages["4k"]}, 2m ${s.pages["2m"]}, 1g ${s.pages["1g"]}`,
    `tables      ${s.tablePages} linked table pages`,
    `flushes     ${s.tlbFlushes} remote TLB flushes requested, ${s.vcpuTlbFlushes} done by vCPUs at entry, ${s.zappedLeaves} leaves zapped, ${s.leakedPages} pages leaked` +
      (s.leakedPages > 0 ? ` (${entries(s.leakCauses)})` : ""),
    `backend     calls: ${entries(r.backendStats.calls)}; busy ${r.backendStats.busy}; errors: ${entries(r.backendStats.errors)}`,
    `invariants  ${r.invariants.checked} checked, ` +
      (r.invariants.violations.length === 0
        ? "no violations"
        : `${r.invariants.violations.length} violation(s):`),
  ];
  for (const v of r.invariants.violations)
    lines.push(`  [${v.check}] step ${v.step}: ${v.message}`);
  if (!r.complete) lines.push("stopped     before the programs ended");
  if (r.ops.length > 0 && r.ops.length <= 40) {
    lines.push("ops");
    for (const o of r.ops)
      lines.push(`  ${o.who.padEnd(6)} #${o.index} ${o.op.padEnd(14)} ${entries(o.result)}`);
  }
  return lines.join("\n");
}
