/**
 * Schedule files: a recorded run (its choices) and everything needed to run it again exactly:
 * the scenario (a path relative to the schedule file), the backend, the MMU's debug options,
 * the host size and whether ops interleaved step by step. `tdpemu replay` and a scenario's
 * `schedule: { mode: replay, file: ... }` read them.
 */
import { writeFileSync } from "node:fs";
import { readInputFile } from "./input-file.js";
import { dirname, isAbsolute, relative, resolve } from "node:path";
import type { MmuOptions } from "../mmu/tdp-mmu.js";
import { z } from "zod";
import { InjectListFormat, STRATEGIES, type InjectSpec } from "./schema.js";
import { bool, issueDetail, list, mapping, num, oneOf, show, text } from "./schema-kit.js";
import { pathText } from "./parse.js";
import { ErrorOfKind } from "../error-kind.js";

export const SCHEDULE_FORMAT = "tdpemu-schedule/1";

export interface ScheduleFile {
  format: typeof SCHEDULE_FORMAT;
  /** The scenario file, relative to the schedule file's folder. */
  scenario: string;
  name: string;
  backend: string;
  seed: number;
  interleave: boolean;
  mmu: MmuOptions;
  hostMemory?: number;
  /** Faults injected besides the scenario's own. */
  inject?: InjectSpec[];
  /** What the run found, for the reader; replay recomputes it. */
  violations?: { check: string; message: string; step: number }[];
  choices: number[];
}

export class ScheduleFileError extends ErrorOfKind("ScheduleFileError") {}

/** What `scenario` says for the built-in default scenario. */
export const BUILTIN_SCENARIO = "<built-in default>";

/** What a schedule file holds, before it is written (`scenarioPath` becomes `scenario`). */
export type ScheduleContent = Omit<ScheduleFile, "format" | "scenario"> & {
  scenarioPath: string | null;
};

/**
 * The text of a schedule file for `path` (its scenario relative to it), or with `path` null, one
 * that stands anywhere (the scenario by its absolute path): what `explore` prints when it cannot
 * write the file, so that the schedule it found is not lost.
 */
export function scheduleFileText(path: string | null, s: ScheduleContent): string {
  const { scenarioPath, ...rest } = s;
  const scenario =
    scenarioPath === null
      ? BUILTIN_SCENARIO
      : path === null
        ? resolve(scenarioPath)
        : relative(dirname(resolve(path)), resolve(scenarioPath));
  const file: ScheduleFile = { format: SCHEDULE_FORMAT, scenario, ...rest };
  return JSON.stringify(file, null, 1) + "\n";
}

export function saveScheduleFile(path: string, s: ScheduleContent): void {
  try {
    writeFileSync(path, scheduleFileText(path, s));
  } catch (e) {
    throw new ScheduleFileError(
      `cannot write the schedule to '${path}': ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
}

const mmuFormat = mapping(
  {
    strategy: oneOf(STRATEGIES).optional(),
    unsafeNonAtomicSet: bool().optional(),
    tdxHugePages: bool().optional(),
  },
  'an object such as { "strategy": "freeze" }',
);

/**
 * The schedule file's format. It is checked as strictly as a scenario: a schedule from elsewhere
 * must not switch on a debug mode by a value that only looks like one ("unsafeNonAtomicSet": "yes").
 */
export const ScheduleFileFormat = mapping(
  {
    format: z.literal(SCHEDULE_FORMAT, {
      error: () => `expected a schedule with "format": "${SCHEDULE_FORMAT}"`,
    }),
    /** The scenario file, relative to the schedule file's folder. */
    scenario: text("the path of the scenario file"),
    name: z.string({ error: (iss) => `expected a string, got ${show(iss.input)}` }).prefault(""),
    backend: text("a backend name or module path"),
    seed: num("an integer from 0 to 2^32-1")
      .refine((n) => n <= 0xffffffff, {
        error: (iss) => `expected an integer from 0 to 2^32-1, got ${show(iss.input)}`,
      })
      .prefault(0),
    interleave: bool(),
    mmu: mmuFormat.prefault({}),
    hostMemory: num("a number of bytes")
      .refine((n) => n > 0, {
        error: (iss) => `expected a number of bytes, got ${show(iss.input)}`,
      })
      .optional(),
    /** Faults injected besides the scenario's own. */
    inject: InjectListFormat.optional(),
    /** What the run found, for the reader; replay recomputes it. */
    violations: list(
      mapping(
        { check: z.string(), message: z.string(), step: z.number().int().min(0) },
        "a violation with check, message, step",
      ),
      "a list",
    ).optional(),
    choices: list(
      z
        .number()
        .int({ error: () => "expected a list of task indexes" })
        .min(0, { error: () => "expected a list of task indexes" }),
      "a list of task indexes",
    ),
  },
  "a schedule object",
);

/** Reads and checks a schedule file; `scenario` comes back as a path usable from here. */
export function loadScheduleFile(path: string): ScheduleFile {
  const text = readInputFile(
    path,
    "schedule",
    (why) => new ScheduleFileError(`${path}: cannot read the schedule: ${why}`),
  );
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new ScheduleFileError(
      `${path}: cannot read the schedule: not valid JSON: ${(e as Error).message.split("\n")[0]}`,
    );
  }
  // The format first: a JSON file that is no schedule at all says so, not which key it lacks.
  if (
    typeof data !== "object" ||
    data === null ||
    (data as { format?: unknown }).format !== SCHEDULE_FORMAT
  ) {
    throw new ScheduleFileError(`${path}: expected a schedule with "format": "${SCHEDULE_FORMAT}"`);
  }
  const r = ScheduleFileFormat.safeParse(data);
  if (!r.success) {
    const { path: at, detail } = issueDetail(r.error.issues[0]!);
    throw new ScheduleFileError(`${path}: ${at.length > 0 ? `"${pathText(at)}": ` : ""}${detail}`);
  }
  const f = r.data;
  return {
    format: SCHEDULE_FORMAT,
    scenario:
      f.scenario === BUILTIN_SCENARIO || isAbsolute(f.scenario)
        ? f.scenario
        : resolve(dirname(path), f.scenario),
    name: f.name,
    backend: f.backend,
    seed: f.seed,
    interleave: f.interleave,
    mmu: f.mmu,
    hostMemory: f.hostMemory,
    inject: f.inject,
    violations: f.violations,
    choices: f.choices,
  };
}
