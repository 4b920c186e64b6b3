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
import { STRATEGIES, type InjectSpec } from "./schema.js";
import { parseInjectList } from "./parse.js";
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
export type ScheduleContent = Omit<ScheduleFile, "format" | "scenario"> & { scenarioPath: string | null };

/**
 * The text of a schedule file for `path` (its scenario relative to it), or with `path` null, one
 * that stands anywhere (the scenario by its absolute path): what `explore` prints when it cannot
 * write the file, so that the schedule it found is not lost.
 */
export function scheduleFileText(path: string | null, s: ScheduleContent): string {
  const { scenarioPath, ...rest } = s;
  const scenario = scenarioPath === null ? BUILTIN_SCENARIO : path === null ? resolve(scenarioPath) : relative(dirname(resolve(path)), resolve(scenarioPath));
  const file: ScheduleFile = { format: SCHEDULE_FORMAT, scenario, ...rest };
  return JSON.stringify(file, null, 1) + "\n";
}

export function saveScheduleFile(path: string, s: ScheduleContent): void {
  try {
    writeFileSync(path, scheduleFileText(path, s));
  } catch (e) {
    throw new ScheduleFileError(`cannot write the schedule to '${path}': ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

const SCHEDULE_KEYS = ["format", "scenario", "name", "backend", "seed", "interleave", "mmu", "hostMemory", "inject", "violations", "choices"];

function checkMmu(mmu: unknown, bad: (what: string) => Error): asserts mmu is MmuOptions {
  if (typeof mmu !== "object" || mmu === null || Array.isArray(mmu)) throw bad(`"mmu": expected an object such as { "strategy": "freeze" }`);
  const m = mmu as Record<string, unknown>;
  for (const k of Object.keys(m)) if (k !== "strategy" && k !== "unsafeNonAtomicSet" && k !== "tdxHugePages") throw bad(`"mmu": unknown key "${k}" (expected strategy, unsafeNonAtomicSet, tdxHugePages)`);
  if (m.strategy !== undefined && !(STRATEGIES as readonly unknown[]).includes(m.strategy)) throw bad(`"mmu.strategy": expected one of ${STRATEGIES.join(", ")}, got ${JSON.stringify(m.strategy)}`);
  if (m.tdxHugePages !== undefined && typeof m.tdxHugePages !== "boolean") throw bad(`"mmu.tdxHugePages": expected true or false, got ${JSON.stringify(m.tdxHugePages)}`);
  if (m.unsafeNonAtomicSet !== undefined && typeof m.unsafeNonAtomicSet !== "boolean") throw bad(`"mmu.unsafeNonAtomicSet": expected true or false, got ${JSON.stringify(m.unsafeNonAtomicSet)}`);
}

/** Reads and checks a schedule file; `scenario` comes back as a path usable from here. */
export function loadScheduleFile(path: string): ScheduleFile {
  const text = readInputFile(path, "schedule", (why) => new ScheduleFileError(`${path}: cannot read the schedule: ${why}`));
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new ScheduleFileError(`${path}: cannot read the schedule: not valid JSON: ${(e as Error).message.split("\n")[0]}`);
  }
  const f = data as Partial<ScheduleFile>;
  const bad = (what: string) => new ScheduleFileError(`${path}: ${what}`);
  if (typeof f !== "object" || f === null || f.format !== SCHEDULE_FORMAT) throw bad(`expected a schedule with "format": "${SCHEDULE_FORMAT}"`);
  if (typeof f.scenario !== "string") throw bad(`"scenario": expected the path of the scenario file`);
  if (typeof f.backend !== "string") throw bad(`"backend": expected a backend name or module path`);
  if (!Array.isArray(f.choices) || !f.choices.every((c) => Number.isInteger(c) && c >= 0)) throw bad(`"choices": expected a list of task indexes`);
  if (typeof f.interleave !== "boolean") throw bad(`"interleave": expected true or false`);
  // The rest is checked as strictly as a scenario: a schedule from elsewhere must not switch on
  // a debug mode by a value that only looks like one ("unsafeNonAtomicSet": "yes").
  const unknown = Object.keys(f).filter((k) => !SCHEDULE_KEYS.includes(k));
  if (unknown.length > 0) throw bad(`unknown key "${unknown[0]}" (a schedule has ${SCHEDULE_KEYS.join(", ")})`);
  if (f.name !== undefined && typeof f.name !== "string") throw bad(`"name": expected a string`);
  if (f.seed !== undefined && !(Number.isInteger(f.seed) && f.seed >= 0 && f.seed <= 0xffffffff)) throw bad(`"seed": expected an integer from 0 to 2^32-1`);
  if (f.hostMemory !== undefined && !(Number.isSafeInteger(f.hostMemory) && f.hostMemory > 0)) throw bad(`"hostMemory": expected a number of bytes`);
  if (f.mmu !== undefined) checkMmu(f.mmu, bad);
  if (f.violations !== undefined && !Array.isArray(f.violations)) throw bad(`"violations": expected a list`);
  const inject = f.inject === undefined ? undefined : parseInjectList(path, f.inject);
  return {
    format: SCHEDULE_FORMAT,
    scenario: f.scenario === BUILTIN_SCENARIO || isAbsolute(f.scenario) ? f.scenario : resolve(dirname(path), f.scenario),
    name: String(f.name ?? ""),
    backend: f.backend,
    seed: Number(f.seed ?? 0),
    interleave: f.interleave,
    mmu: f.mmu ?? {},
    hostMemory: f.hostMemory,
    inject,
    violations: f.violations,
    choices: f.choices,
  };
}
