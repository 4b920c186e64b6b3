/**
 * How far a headless run of a scenario is, from its events: the UI's comparison draws it as a
 * progress bar. The number of steps a run takes is known only at its end, so progress is
 * measured in the guest memory its ops cover: an op counts for the bytes it spans (a page for
 * an op without a range), done when it ends, and in part while it runs, by the highest GPA its
 * task's events have reached inside its range (a 1 GiB access is one op, and one step when the
 * run does not interleave).
 */
import type { GuestOp, HostOp, Scenario, TdpEvent } from "@tdpemu/core";

const PAGE = 4096;
/** The shared bit is bit 47 or 51: both are multiples of 2^47. */
const SHARED = 2 ** 47;

interface Program {
  /** Bytes each op spans, and where its range starts. */
  extent: number[];
  start: number[];
  /** Ops ended, their bytes, and the part of the running op reached. */
  ended: number;
  doneBytes: number;
  reached: number;
}

function span(op: GuestOp | HostOp): { start: number; extent: number } {
  const start = "gpa" in op && typeof op.gpa === "number" ? op.gpa : 0;
  if ("count" in op) return { start, extent: op.count * ("size" in op ? op.size : PAGE) };
  if ("size" in op) return { start, extent: op.size };
  return { start, extent: PAGE };
}

export class RunProgress {
  private readonly programs = new Map<string, Program>();
  private readonly total: number;

  constructor(scn: Scenario) {
    const add = (task: string, ops: readonly (GuestOp | HostOp)[]) => {
      if (ops.length === 0) return;
      const spans = ops.map(span);
      this.programs.set(task, {
        extent: spans.map((s) => s.extent),
        start: spans.map((s) => s.start),
        ended: 0,
        doneBytes: 0,
        reached: 0,
      });
    };
    scn.vcpus.forEach((ops, i) => add(`vcpu${i}`, ops));
    add("host", scn.host);
    let total = 0;
    for (const p of this.programs.values()) total += p.extent.reduce((a, b) => a + b, 0);
    this.total = total;
  }

  /** The run's events, as `RunOptions.onEvent` gives them. */
  readonly onEvent = (e: TdpEvent): void => {
    if (e.type === "op") {
      const p = this.programs.get(e.who);
      if (p === undefined || e.phase !== "end") return;
      p.doneBytes += p.extent[p.ended] ?? 0;
      p.ended++;
      p.reached = 0;
      return;
    }
    let gpa: number;
    if (e.type === "fault" || e.type === "access") gpa = e.gpa % SHARED;
    else if (e.type === "spte" || e.type === "hook") gpa = (e.gfn * PAGE) % SHARED;
    else return;
    const p = this.programs.get(e.task);
    if (p === undefined) return;
    const at = gpa + PAGE - (p.start[p.ended] ?? 0);
    const extent = p.extent[p.ended] ?? 0;
    if (at > p.reached && at <= extent) p.reached = at;
  };

  /** From 0 to 1: 1 once every op has ended. */
  fraction(): number {
    if (this.total === 0) return 1;
    let done = 0;
    for (const p of this.programs.values()) done += p.doneBytes + p.reached;
    return Math.min(1, done / this.total);
  }
}
