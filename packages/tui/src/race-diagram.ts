/**
 * A violating schedule as a kernel developer reads a race: one column per task, and only the
 * steps on the chain of conflicting steps that leads to the violation (`conflictChain`), each
 * as what it did (its events, as `replay --steps` prints them) or, for a step that changed no
 * table, what it read. Like the account in the TDX patch of the race it fixes:
 *
 *     vcpu 1: populating 2M private SPTE
 *     vcpu 2: populating 4K private SPTE
 *     vcpu 2: TDX SEAMCALL to update 4K protected SPTE => error
 */
import {
  conflictChain,
  resourceName,
  scheduleSteps,
  type Scenario,
  type ScheduleSteps,
} from "@tdpemu/core";
import { describeEvent } from "./event-text.js";

type StepsOptions = Parameters<typeof scheduleSteps>[1];

/** The lines of the diagram of `choices` on `scn`, or null if the schedule ends in no violation. */
export function raceDiagram(
  scn: Scenario,
  opts: StepsOptions,
  choices: readonly number[],
): string[] | null {
  const s = scheduleSteps(scn, opts, choices);
  if (s.violation === null || s.steps.length === 0) return null;
  return drawDiagram(s);
}

/**
 * The steps the diagram keeps: the chain of conflicting steps that leads to the schedule's last
 * step (`conflictChain`), ascending. The HTML report (`report/race-data.ts`) marks the same.
 */
export function raceChain(s: ScheduleSteps): number[] {
  return s.steps.length === 0 ? [] : conflictChain(s, s.steps.length - 1);
}

/**
 * What step `k` did, as the diagram prints it: its events, or for a step that changed nothing,
 * what it read.
 */
export function stepText(s: ScheduleSteps, k: number): string[] {
  const step = s.steps[k]!;
  const said = step.events.filter((e) => e.type !== "op" || e.phase !== "start").map(describeEvent);
  if (said.length > 0) return said;
  const ids = s.store.idsView;
  const kinds = s.store.kindsView;
  const read: string[] = [];
  for (
    let i = s.store.startOf(step.fp), e = i + s.store.lengthOf(step.fp);
    i < e && read.length < 2;
    i++
  ) {
    if (kinds[i] === 1) read.push(resourceName(ids[i]!));
  }
  return [read.length > 0 ? `reads ${read.join(", ")}` : "(no change)"];
}

export function drawDiagram(s: ScheduleSteps): string[] {
  const chain = raceChain(s);
  const tasks = [...new Set(chain.map((k) => s.steps[k]!.task))].sort((a, b) => a - b);
  const names = new Map(chain.map((k) => [s.steps[k]!.task, s.steps[k]!.name]));
  const width = Math.max(34, Math.min(64, Math.floor(104 / tasks.length)));
  const cell = (text: string) => text.padEnd(width);
  // A line longer than its column goes on in the next row, indented, broken at a space.
  const wrap = (text: string): string[] => {
    const rows: string[] = [];
    let rest = text;
    for (let room = width - 1; rest.length > room; room = width - 3) {
      const space = rest.lastIndexOf(" ", room);
      const cut = space > room / 2 ? space : room;
      rows.push(rest.slice(0, cut));
      rest = rest.slice(cut).trimStart();
    }
    rows.push(rest);
    return rows.map((r, i) => (i === 0 ? r : `  ${r}`));
  };
  const lines = [
    `step  ${tasks
      .map((t) => cell(names.get(t)!))
      .join("")
      .trimEnd()}`,
  ];
  for (const k of chain) {
    const col = tasks.indexOf(s.steps[k]!.task);
    stepText(s, k)
      .flatMap(wrap)
      .forEach((text, i) => {
        const row = tasks
          .map((_, c) => (c === col ? cell(text) : " ".repeat(width)))
          .join("")
          .trimEnd();
        lines.push(`${(i === 0 ? `#${k + 1}` : "").padEnd(6)}${row}`);
      });
  }
  const v = s.violation!;
  lines.push(`=> [${v.check}] ${v.message}`);
  lines.push(
    `(${chain.length} of ${s.steps.length} steps: the chain of conflicting steps that leads to the violation)`,
  );
  return lines;
}
