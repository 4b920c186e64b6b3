/**
 * A schedule's run as the HTML race report shows it, gathered apart from the page so that it can
 * be checked without a browser: one lane per task, every step in global order with its SPTE
 * changes and backend calls, and the chain of conflicting steps the text diagram draws
 * (`raceChain` in race-diagram.ts: the same steps, not computed a second way).
 */
import {
  decodeSpte,
  formatSpte,
  type EventTone,
  type ScheduleSteps,
  type TdpEvent,
} from "@tdpemu/core";
import { describeEvent } from "../event-text.js";
import { raceChain, stepText } from "../race-diagram.js";

/** One SPTE value, as the CLI prints it (16 hex digits) and decoded as the UI's walk decodes it. */
export interface SpteValue {
  hex: string;
  kind: string;
  pfn: string | null;
  flags: string[];
}

export interface SpteChange {
  /** How it was written: cmpxchg, store, ... (the event's `by`). */
  by: string;
  mirror: boolean;
  level: number;
  gfn: string;
  gpa: string;
  old: SpteValue;
  new: SpteValue;
  /** The line `replay --steps` prints for it. */
  text: string;
}

/** A SEAMCALL, RMP instruction or RMI command, with the status it returned. */
export interface BackendCall {
  name: string;
  detail: string;
  status: string;
  tone: EventTone | "none";
  injected: boolean;
  text: string;
}

export interface RunStep {
  /** The step's number as the CLI counts them (#1 is the first). */
  n: number;
  lane: number;
  /** The op the step began, if it began one ("accept gpa 0x1000"). */
  began: string | null;
  sptes: SpteChange[];
  calls: BackendCall[];
  /** Its other events (faults, hooks, tables, flushes, ...), as `replay --steps` prints them. */
  other: string[];
  /** For a step that changed nothing: what it read, as the text diagram says it. */
  reads: string | null;
  /** Its place on the chain of conflicting steps (1 is the earliest), or null off the chain. */
  chain: number | null;
  /**
   * The last step, in a run that ends in a violation: the step that failed, or after which the
   * final check or the deadlock detection found it. The chain ends there.
   */
  failing: boolean;
  /** Another task took the step before (a context switch, in global order). */
  switched: boolean;
}

export interface RaceRun {
  /** One lane per task of the run (each vCPU, and the host if it has a program), by index. */
  lanes: string[];
  steps: RunStep[];
  /** The step numbers on the chain of conflicting steps, ascending; empty without a violation. */
  chain: number[];
  violation: { check: string; message: string; step: number } | null;
}

function spteValue(lo: number, hi: number, level: number): SpteValue {
  const d = decodeSpte(lo, hi, level);
  const pfn = d.pfn === null ? null : hex(d.pfn);
  return { hex: formatSpte(lo, hi), kind: d.kind, pfn, flags: d.flags };
}

const hex = (x: number) => `0x${x.toString(16)}`;

function spteChange(e: TdpEvent & { type: "spte" }): SpteChange {
  return {
    by: e.by,
    mirror: e.mirror,
    level: e.level,
    gfn: hex(e.gfn),
    gpa: hex(e.gfn * 4096),
    old: spteValue(e.oldLo, e.oldHi, e.level),
    new: spteValue(e.newLo, e.newHi, e.level),
    text: describeEvent(e),
  };
}

function backendCall(e: TdpEvent & { type: "call" }): BackendCall {
  return {
    name: e.name,
    detail: e.detail,
    status: e.status,
    tone: e.tone ?? "none",
    injected: e.injected === true,
    text: describeEvent(e),
  };
}

/**
 * An op as the scenario names it: `accept gpa 0x1000 count 1 size 4096` from its event's JSON
 * detail (addresses in hex, as everywhere else on the page).
 */
export function opText(op: string, detail: string): string {
  let fields: unknown;
  try {
    fields = JSON.parse(detail);
  } catch {
    return detail === "" ? op : `${op} ${detail}`;
  }
  if (typeof fields !== "object" || fields === null || Array.isArray(fields)) return op;
  const value = (k: string, v: unknown) =>
    typeof v === "number" && k === "gpa" ? hex(v) : typeof v === "string" ? v : JSON.stringify(v);
  const parts = Object.entries(fields).filter(([k]) => k !== "op");
  return [op, ...parts.map(([k, v]) => `${k} ${value(k, v)}`)].join(" ");
}

/**
 * The run of `s` (what `scheduleSteps` recorded), with its chain marked when it ends in a
 * violation.
 */
export function raceRun(s: ScheduleSteps): RaceRun {
  const chain = s.violation === null ? [] : raceChain(s);
  const place = new Map(chain.map((k, i) => [k, i + 1]));
  const failing = s.violation !== null ? s.steps.length - 1 : -1;
  const steps = s.steps.map((step, k): RunStep => {
    const sptes: SpteChange[] = [];
    const calls: BackendCall[] = [];
    const other: string[] = [];
    let began: string | null = null;
    for (const e of step.events) {
      if (e.type === "spte") sptes.push(spteChange(e));
      else if (e.type === "call") calls.push(backendCall(e));
      else if (e.type === "op" && e.phase === "start") began = opText(e.op, e.detail);
      else other.push(describeEvent(e));
    }
    const said = sptes.length + calls.length + other.length > 0;
    return {
      n: k + 1,
      lane: step.task,
      began,
      sptes,
      calls,
      other,
      reads: said ? null : (stepText(s, k)[0] ?? null),
      chain: place.get(k) ?? null,
      failing: k === failing,
      switched: k > 0 && s.steps[k - 1]!.task !== step.task,
    };
  });
  const v = s.violation;
  return {
    lanes: [...s.tasks],
    steps,
    chain: chain.map((k) => k + 1),
    violation: v === null ? null : { check: v.check, message: v.message, step: v.step },
  };
}
