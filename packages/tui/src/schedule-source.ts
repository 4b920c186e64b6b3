/**
 * Opening a recorded schedule (`replay`, and `tui <schedule.json>`): its scenario, with the seed
 * it was recorded with, and its backend, loaded only with the user's consent when it is a module.
 */
import {
  BUILTIN_SCENARIO,
  DEFAULT_SCENARIO_SOURCE,
  DEFAULT_SCENARIO_YAML,
  loadScenario,
  loadScheduleFile,
  parseScenarioText,
  readInputFile,
  type BackendRegistry,
  type Scenario,
  type ScheduleFile,
} from "@tdpemu/core";
import { resolveBackend } from "./registry.js";

export interface OpenedSchedule {
  sched: ScheduleFile;
  scn: Scenario;
  backend: string;
}

export async function openSchedule(
  path: string,
  registry: BackendRegistry,
  allowPlugins: boolean,
): Promise<OpenedSchedule> {
  const sched = loadScheduleFile(path);
  const scn =
    sched.scenario === BUILTIN_SCENARIO
      ? parseScenarioText(DEFAULT_SCENARIO_YAML, DEFAULT_SCENARIO_SOURCE)
      : loadScenario(sched.scenario);
  // The seed the schedule was recorded with, which `run --seed` may have set: not the scenario's.
  scn.schedule.seed = sched.seed;
  const backend = await resolveBackend(registry, sched.backend, {
    file: path,
    what: "schedule",
    allowPlugins,
  });
  return { sched, scn, backend };
}

/**
 * Whether `path` names a schedule file rather than a scenario: a JSON object with a `format`
 * key (a scenario has none). Anything unreadable is left for the scenario loader to report.
 */
export function isScheduleFile(path: string): boolean {
  if (!/\.json$/i.test(path)) return false;
  try {
    const data = JSON.parse(readInputFile(path, "schedule", (why) => new Error(why))) as unknown;
    return typeof data === "object" && data !== null && !Array.isArray(data) && "format" in data;
  } catch {
    return false;
  }
}
