/**
 * Host ops a plugin backend defines (`Backend.hostOps`, named `<backend>.<op>`): their operands
 * become a zod schema built from the backend's `HostOpSchema`, so that they are checked with the
 * same words as built-in ops and appear in the JSON Schema `tdpemu schema scenario --plugin`
 * prints.
 */
import { z } from "zod";
import type { HostOpParamKind, HostOpSchema } from "../backend/backend.js";
import { bool, mapping, num, show, size, text } from "./schema-kit.js";
import { LineCtx, type Ctx } from "./parse.js";
import type { Scenario } from "./schema.js";

const PARAM_KINDS: Readonly<Record<HostOpParamKind, string>> = {
  gpa: "a guest physical address inside the VM (decimal or 0x hex)",
  size: "a size such as 4KiB, 2MiB, or a number of bytes",
  count: "a count, 1 or more",
  number: "a non-negative integer (decimal or 0x hex)",
  string: "a non-empty string",
  boolean: "true or false",
};

function operand(
  kind: HostOpParamKind,
  optional: boolean,
): z.ZodType<number | string | boolean | undefined> {
  const o = { missing: `missing; expected ${PARAM_KINDS[kind]}` };
  const leaf: z.ZodType<number | string | boolean> = (() => {
    switch (kind) {
      case "gpa":
      case "number":
        return num(PARAM_KINDS[kind], o);
      case "size":
        return size(o);
      case "count":
        return num(PARAM_KINDS.count, o).refine((n) => n >= 1, {
          error: (iss) => `expected ${PARAM_KINDS.count}, got ${show(iss.input)}`,
        });
      case "string":
        return text(PARAM_KINDS.string, o);
      case "boolean":
        return optional
          ? bool()
          : z.boolean({
              error: (iss) =>
                iss.input === undefined
                  ? o.missing
                  : `expected true or false, got ${show(iss.input)}`,
            });
    }
  })();
  return optional ? leaf.optional() : leaf;
}

/** The schema of the op `<backend>.<name>` as a scenario writes it. */
export function pluginOpSchema(backend: string, name: string, schema: HostOpSchema) {
  const shape: Record<string, z.ZodType> = { op: z.literal(`${backend}.${name}`) };
  for (const [k, p] of Object.entries(schema.params))
    shape[k] = operand(p.kind, p.optional === true);
  return mapping(shape, `a ${backend}.${name} op`).describe(schema.description);
}

/** Every host op a backend defines, by its name in a scenario, with its format. */
export function pluginOpSchemas(backend: {
  name: string;
  hostOps?: Readonly<Record<string, HostOpSchema>>;
}) {
  return Object.entries(backend.hostOps ?? {}).map(([name, s]) => ({
    name: `${backend.name}.${name}`,
    format: pluginOpSchema(backend.name, name, s),
  }));
}

/**
 * Checks the scenario's plugin host ops against `backend`'s schema (`Backend.hostOps`) and fills
 * each op's `values`, or throws a `ScenarioError` at the op's line: an op of another backend,
 * one the backend does not define, an unknown or missing operand, an operand of the wrong kind.
 * Called when a run is built, once the backend is known.
 */
export function checkPluginOps(
  scn: Scenario,
  backend: { name: string; hostOps?: Readonly<Record<string, HostOpSchema>> },
): void {
  for (const op of scn.host) {
    if (op.op !== "plugin") continue;
    const c: Ctx = new LineCtx(scn.source, op.line);
    const dot = op.name.indexOf(".");
    const owner = op.name.slice(0, dot);
    const short = op.name.slice(dot + 1);
    if (owner !== backend.name)
      c.fail(
        [op.at, "op"],
        `'${op.name}' is an op of backend '${owner}', and this run is on '${backend.name}'`,
      );
    const schema =
      backend.hostOps && Object.hasOwn(backend.hostOps, short)
        ? backend.hostOps[short]!
        : undefined;
    if (!schema) {
      const known = Object.keys(backend.hostOps ?? {}).map((k) => `${backend.name}.${k}`);
      c.fail(
        [op.at, "op"],
        `backend '${backend.name}' defines no host op '${short}' (its ops: ${known.join(", ") || "none"})`,
      );
    }
    const r = pluginOpSchema(backend.name, short, schema).safeParse({ op: op.name, ...op.args });
    if (!r.success) c.failIssues(r.error, [op.at]);
    const { op: _name, ...values } = r.data as Record<string, number | string | boolean>;
    for (const [k, p] of Object.entries(schema.params)) {
      const v = values[k];
      if (p.kind === "gpa" && typeof v === "number" && v >= scn.vm.memory) {
        c.fail([op.at, k], `${show(v)} is beyond the VM's memory (${show(scn.vm.memory)} bytes)`);
      }
    }
    op.values = values;
  }
}
