/**
 * A cost table (`costs/*.yaml`): what each event the model counts costs on one platform, in
 * nanoseconds, each entry with its source or the derivation of its estimate. The format is a zod
 * schema, checked with the scenario's words and line numbers.
 */
import { z } from "zod";
import { LineCounter, parseDocument } from "yaml";
import { mapping, oneOf, show, text } from "../scenario/schema-kit.js";
import { Ctx, ScenarioError } from "../scenario/parse.js";
import { readInputFile } from "../scenario/input-file.js";
import { BUILTIN_COST_TABLES } from "./builtin-costs.js";

const CostEntryFormat = mapping(
  {
    ns: z
      .number({ error: (iss) => `expected a cost in nanoseconds, got ${show(iss.input)}` })
      .min(0, {
        error: (iss) => `expected a cost in nanoseconds, 0 or more, got ${show(iss.input)}`,
      }),
    label: text("what the event is, in words").optional(),
    kind: oneOf(["measured", "derived", "estimate"]).describe(
      "measured: a published figure for this event; derived: arithmetic on one; estimate: no published figure",
    ),
    source: text(
      "where the figure comes from: a paper's table, a document, a commit, or the estimate's derivation",
    ),
    note: text("a note").optional(),
  },
  "a mapping with ns, kind, source",
);

export const CostTableFormat = mapping(
  {
    platform: text("the platform the figures are for"),
    backend: text("the backend the table is for (tdx, sev, plain, cca or a plugin's name)"),
    events: z.record(z.string(), CostEntryFormat, {
      error: (iss) => `expected a mapping from event names to costs, got ${show(iss.input)}`,
    }),
  },
  "a cost table with platform, backend, events",
);

export type CostTable = z.output<typeof CostTableFormat> & { source: string };
export type CostEntry = CostTable["events"][string];

/** Reads a cost table; a bad one is a `ScenarioError` naming the file, line and path. */
export function parseCostTable(yamlText: string, file: string): CostTable {
  const lines = new LineCounter();
  const doc = parseDocument(yamlText, {
    lineCounter: lines,
    prettyErrors: false,
    uniqueKeys: true,
  });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    throw new ScenarioError(
      file,
      "",
      `not valid YAML: ${e.message.split("\n")[0]}`,
      lines.linePos(e.pos[0]).line,
    );
  }
  const c: Ctx = new Ctx(file, doc, lines);
  const r = CostTableFormat.safeParse(doc.toJS({ maxAliasCount: 100 }));
  if (!r.success) c.failIssues(r.error);
  return { ...r.data, source: file };
}

/** Reads the cost table at `path` (`--costs FILE`). */
export function loadCostTable(path: string): CostTable {
  const t = readInputFile(
    path,
    "cost table",
    (why) => new ScenarioError(path, "", `cannot read the cost table: ${why}`),
  );
  return parseCostTable(t, path);
}

/** The cost tables tdpemu comes with (costs/*.yaml), parsed once. */
let builtins: CostTable[] | null = null;

export function builtinCostTables(): CostTable[] {
  builtins ??= Object.entries(BUILTIN_COST_TABLES).map(([file, t]) => parseCostTable(t, file));
  return builtins;
}

/** The table a backend is priced by unless `--costs` says otherwise; null for a plugin's. */
export function defaultCostTable(backend: string): CostTable | null {
  return builtinCostTables().find((t) => t.backend === backend) ?? null;
}
