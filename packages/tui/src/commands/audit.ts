/**
 * `tdpemu audit <scenario>`: the scenario under the footprint, commutation and trace-state
 * audits (`auditScenario` in core), which hold what each step records to what it does. Exit 1
 * on a finding (or a violation an audit's search stopped at), 0 when all are clean.
 */
import { auditScenario, loadScenario, type AuditScenarioResult } from "@tdpemu/core";
import {
  PLUGIN_OPTIONS,
  countOption,
  hostMemoryOption,
  injectOptions,
  mmuOptions,
  parseCommandArgs,
} from "../cli-options.js";
import { grouped } from "../grouped.js";
import type { Io } from "../io.js";
import { scenarioBackend } from "../registry.js";
import { UsageError } from "../usage-error.js";

export async function auditCommand(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parseCommandArgs("audit", args, {
    ...PLUGIN_OPTIONS,
    backend: { type: "string" },
    walks: { type: "string" },
    seed: { type: "string" },
    "max-depth": { type: "string" },
    "max-schedules": { type: "string" },
    "trace-schedules": { type: "string" },
    "preemption-bound": { type: "string" },
    json: { type: "boolean" },
    "host-memory": { type: "string" },
    "unsafe-non-atomic-set": { type: "boolean" },
    "tdx-huge-pages": { type: "boolean" },
    strategy: { type: "string" },
    inject: { type: "string", multiple: true },
  });
  if (positionals.length !== 1)
    throw new UsageError("audit: which scenario? (tdpemu audit scenarios/<name>.yaml)");
  const scn = loadScenario(positionals[0]!);
  const walks = countOption("audit", "walks", values.walks, 1) ?? 8;
  const seed = countOption("audit", "seed", values.seed, 0) ?? 1;
  const maxDepth = countOption("audit", "max-depth", values["max-depth"], 1) ?? 400;
  const maxSchedules = countOption("audit", "max-schedules", values["max-schedules"], 1) ?? 200;
  const traceSchedules =
    countOption("audit", "trace-schedules", values["trace-schedules"], 0) ?? 1000;
  const preemptionBound =
    countOption("audit", "preemption-bound", values["preemption-bound"], 0, true) ?? 1;
  const hostMemory = hostMemoryOption("audit", values["host-memory"]);
  const mmu = mmuOptions("audit", values, scn);
  const inject = injectOptions("audit", values.lists.inject);
  const { registry, name: backend } = await scenarioBackend(values, scn);
  let lastWalkLine = performance.now();
  const r = auditScenario(scn, {
    backend: registry.source(backend),
    hostMemory,
    mmu,
    inject,
    maxSchedules,
    traceSchedules,
    preemptionBound,
    walks,
    seed,
    maxDepth,
    // A large guest is slow under the footprint audit (it copies the shared state around every
    // step): say how far it is, on stderr, as explore does.
    onProgress: (p) =>
      io.err(`audited ${grouped(p.schedules)} schedules, ${grouped(p.steps)} steps`),
    onWalk: (taken) => {
      const now = performance.now();
      if (now - lastWalkLine < 2000) return;
      lastWalkLine = now;
      io.err(`walked ${taken} of ${walks}`);
    },
  });
  const clean =
    r.footprint.violation === null &&
    r.commutation.findings.length === 0 &&
    (r.traces?.violation ?? null) === null;
  if (values.flags.has("json")) {
    io.out(
      JSON.stringify(
        {
          scenario: scn.name,
          backend,
          footprint: {
            ...r.footprint,
            preemptionBound: Number.isFinite(preemptionBound) ? preemptionBound : null,
          },
          commutation: { seed, maxDepth, ...r.commutation },
          traces: r.traces,
          clean,
        },
        null,
        2,
      ),
    );
  } else printAudit(io, scn.name, backend, r, preemptionBound, seed, maxDepth);
  return clean ? 0 : 1;
}

function printAudit(
  io: Io,
  name: string,
  backend: string,
  r: AuditScenarioResult,
  bound: number,
  seed: number,
  maxDepth: number,
): void {
  const f = r.footprint;
  const c = r.commutation;
  io.out(`scenario    ${name}  (backend ${backend})`);
  const searched =
    `${grouped(f.schedules)} schedules, ${grouped(f.steps)} steps explored under the footprint audit ` +
    `(${Number.isFinite(bound) ? `preemption bound ${bound}` : "no preemption bound"}, ${f.exhausted ? "exhausted" : "a sample"})`;
  if (f.violation === null) io.out(`footprints  ${searched}: every change recorded`);
  else if (f.violation.check === "footprint-audit")
    io.out(`footprints  ${searched}:\n  step ${f.violation.step}: ${f.violation.message}`);
  else
    io.out(
      `footprints  ${searched}, stopped at a violation the audit did not find (the steps after it were not audited):\n  [${f.violation.check}] step ${f.violation.step}: ${f.violation.message}`,
    );
  const cut =
    c.cutWalks === 0
      ? ""
      : `; ${c.cutWalks} stopped at ${maxDepth} steps with tasks still to run (--max-depth)`;
  const walked =
    `${c.walks} walk${c.walks === 1 ? "" : "s"} (seed ${seed}${cut}): ${grouped(c.states)} states with two tasks or more enabled, ` +
    `${grouped(c.pairs)} pairs of steps run in both orders, ${grouped(c.independent)} with independent footprints`;
  if (c.findings.length === 0) io.out(`commutes    ${walked}: all commute`);
  else io.out(`commutes    ${walked}:\n${c.findings.map((x) => `  ${x}`).join("\n")}`);
  const t = r.traces;
  if (t !== null) {
    const searched =
      `${grouped(t.schedules)} schedules without reduction ` +
      `(${Number.isFinite(bound) ? `preemption bound ${bound}` : "no preemption bound"}, ${t.exhausted ? "exhausted" : "a sample"}): ` +
      `${grouped(t.traces)} traces, ${grouped(t.compared)} run in two orders or more`;
    if (t.violation === null) io.out(`traces      ${searched}, each ending in one state`);
    else if (t.violation.check === "footprint-audit")
      io.out(
        `traces      ${searched}:\n  ${t.violation.message}\n  the schedule that ended apart: [${t.apart!.second.join(", ")}]`,
      );
    else
      io.out(
        `traces      ${searched}, stopped at a violation the audit did not find:\n  [${t.violation.check}] step ${t.violation.step}: ${t.violation.message}`,
      );
  }
  const found =
    (f.violation?.check === "footprint-audit" ? 1 : 0) +
    c.findings.length +
    (t?.violation?.check === "footprint-audit" ? 1 : 0);
  const stopped = f.violation ?? t?.violation ?? null;
  const result =
    found > 0
      ? `${found} finding${found === 1 ? "" : "s"}: steps record less than they touch`
      : stopped !== null
        ? `no finding, but a [${stopped.check}] violation stopped an audit's search`
        : "clean";
  io.out(`result      ${result}`);
}
