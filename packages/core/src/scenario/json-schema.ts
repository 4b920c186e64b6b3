/**
 * The formats as JSON Schema (draft 2020-12), generated from their zod definitions: what
 * `tdpemu schema` prints and `schemas/*.schema.json` hold, so that an editor (through
 * yaml-language-server's `$schema` comment) completes and checks a scenario as it is typed. It
 * says what each field takes; what depends on the VM as a whole (an address beyond its memory) is
 * left to tdpemu's own check.
 */
import { z } from "zod";
import type { HostOpSchema } from "../backend/backend.js";
import { hostOpFormat, scenarioFormat } from "./schema.js";
import { ScheduleFileFormat } from "./schedule-file.js";
import { pluginOpSchemas } from "./plugin-ops.js";

export type JsonSchema = Record<string, unknown>;

function toJsonSchema(format: z.ZodType, title: string): JsonSchema {
  // The input side: what a file holds, before sizes become numbers and defaults are filled in.
  const s = z.toJSONSchema(format, { io: "input", target: "draft-2020-12" }) as JsonSchema;
  const { $schema, ...rest } = s;
  return { $schema, title, ...rest };
}

/** The scenario format; with `backends`, their host ops are spelled out (operands and all). */
export function scenarioJsonSchema(
  backends: readonly { name: string; hostOps?: Readonly<Record<string, HostOpSchema>> }[] = [],
): JsonSchema {
  const format = scenarioFormat(hostOpFormat(backends.flatMap((b) => pluginOpSchemas(b))));
  return toJsonSchema(format, "tdpemu scenario (format v1)");
}

export function scheduleJsonSchema(): JsonSchema {
  return toJsonSchema(
    ScheduleFileFormat.describe(
      "A recorded schedule: the choices of a run and what is needed to run it again.",
    ),
    "tdpemu schedule file (tdpemu-schedule/1)",
  );
}
