/**
 * `tdpemu schema scenario|schedule [--plugin m.js]... [--markdown example.yaml...]`: a format as
 * JSON Schema, generated from its one definition. Scenario schemas spell out the host ops of every
 * backend known to the command (the built-in ones' and the plugins' given); `--markdown` prints the
 * scenario format's reference (docs/scenario-format.md) with the given scenarios as examples.
 */
import { readFileSync } from "node:fs";
import {
  loadScenario,
  scenarioFormatMarkdown,
  scenarioJsonSchema,
  scheduleJsonSchema,
} from "@tdpemu/core";
import { parseCommandArgs } from "../cli-options.js";
import { builtinRegistry, loadPlugins } from "../registry.js";
import { UsageError } from "../usage-error.js";
import type { Io } from "../io.js";

const FORMATS = ["scenario", "schedule"];

export async function schemaCommand(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parseCommandArgs("schema", args, {
    plugin: { type: "string", multiple: true },
    markdown: { type: "boolean" },
  });
  const [format, ...examples] = positionals;
  if (format === undefined || !FORMATS.includes(format)) {
    throw new UsageError(
      `schema: which format? expected one of ${FORMATS.join(", ")}, got ${format === undefined ? "nothing" : `'${format}'`}`,
    );
  }
  const markdown = values.flags.has("markdown");
  if (examples.length > 0 && !markdown)
    throw new UsageError(
      `schema: unexpected argument '${examples[0]}' (example scenarios go with --markdown)`,
    );
  if (format === "schedule") {
    if (markdown || values.lists.plugin)
      throw new UsageError("schema schedule: --markdown and --plugin describe scenarios only");
    io.out(JSON.stringify(scheduleJsonSchema(), null, 2));
    return 0;
  }
  if (markdown) {
    if (values.lists.plugin)
      throw new UsageError(
        "schema scenario --markdown: the reference describes the built-in format; --plugin goes with the JSON Schema",
      );
    io.out(
      scenarioFormatMarkdown(
        examples.map((file) => ({
          title: loadScenario(file).name,
          file,
          text: readFileSync(file, "utf8"),
        })),
      ).trimEnd(),
    );
    return 0;
  }
  const registry = builtinRegistry();
  await loadPlugins(registry, values.lists.plugin ?? []);
  const backends = registry
    .list()
    .map((b) => ({ name: b.name, hostOps: registry.hostOpsOf(b.name) }));
  io.out(JSON.stringify(scenarioJsonSchema(backends), null, 2));
  return 0;
}
