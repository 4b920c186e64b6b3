/**
 * A run's events as records of the Chrome Trace Event Format, which Perfetto's UI and
 * chrome://tracing open: a track per task (the host, each vCPU), a slice per op and per fault,
 * an instant per architectural call and TLB flush, and a counter of the leaf SPTEs present at
 * each level. Records are handed out one by one, so memory stays bounded by the number of tasks.
 *
 * Time: the emulator has no wall clock, so the N-th event of the run (counting from 0, the N-th
 * line of the same run's JSONL trace) occupies the microseconds [N, N+1). An instant sits at
 * N + 0.5, a slice spans the cells of its first to its last event, so a slice that starts or
 * ends at an event never touches the instants or slices of its neighbours.
 *
 * An op has a start and an end event: a B/E pair, written as they come. A fault has only its end
 * event (the fault path emits nothing when a fault begins, and its speed is not to be traded for
 * a trace), so its slice, an X event, is written at its end and starts at the first event its
 * task emitted since the task's previous boundary: the op's start, the end of a fault or of a
 * guest access. An exception raised to the guest (a TD exit on an EPT violation, a #NPF) starts
 * a fault too, so what the guest did before it stays out of the slice. The fault's slice thus
 * lies between the boundaries, inside its op.
 */
import { isLastSpte, isShadowPresent, type TdpEvent } from "@tdpemu/core";

/** One record of the format; `ph`: B/E begin, end; X complete; i instant; C counter; M metadata. */
export interface ChromeEvent {
  name: string;
  cat?: string;
  ph: "B" | "E" | "X" | "i" | "C" | "M";
  ts: number;
  pid: number;
  tid: number;
  dur?: number;
  s?: "t" | "p" | "g";
  args?: object;
}

export interface ChromeTraceMeta {
  /** The process's name in the viewer: the scenario and the backend. */
  process: string;
  /** The tasks of the run, in the order their tracks are shown: "host", "vcpu0", ... */
  tasks: readonly string[];
}

const PID = 1;
const COUNTER = "mapped pages (leaf SPTEs)";
const LEVEL_NAMES = ["", "4K", "2M", "1G"] as const;

interface Track {
  tid: number;
  /** The op whose B has been written and whose E has not. */
  openOp: string | null;
  /** The index of the first event since the task's last boundary, or -1. */
  faultStart: number;
}

export class ChromeTraceEvents {
  private readonly tracks = new Map<string, Track>();
  /** The index of the next event: the number of events seen. */
  private index = 0;
  /** Present leaf SPTEs by level, over every root, mirror or direct. */
  private readonly leaves = [0, 0, 0, 0, 0, 0];
  /** The index of the latest change of `leaves` not yet written, or -1. */
  private counterAt = -1;
  private readonly hostTid: number;

  constructor(
    private readonly out: (r: ChromeEvent) => void,
    meta: ChromeTraceMeta,
  ) {
    this.hostTid = this.track("host").tid;
    const process = { name: meta.process };
    this.out({ name: "process_name", ph: "M", ts: 0, pid: PID, tid: this.hostTid, args: process });
    for (const t of meta.tasks) this.track(t);
    this.out(this.counter(0));
  }

  get events(): number {
    return this.index;
  }

  event = (e: TdpEvent): void => {
    const i = this.index++;
    const t = this.track(e.task);
    if (t.faultStart < 0) t.faultStart = i;
    switch (e.type) {
      case "op":
        if (e.phase === "start") {
          t.openOp = e.op;
          const op = JSON.parse(e.detail) as unknown;
          this.emit(this.op(t, "B", e.op, i, { step: e.step, op }));
        } else if (t.openOp !== null) {
          const result = JSON.parse(e.detail) as unknown;
          this.emit(this.op(t, "E", t.openOp, i + 1, { step: e.step, result }));
          t.openOp = null;
        }
        t.faultStart = -1;
        break;
      case "fault": {
        const args = {
          gpa: `0x${e.gpa.toString(16)}`,
          write: e.write,
          private: e.private,
          result: e.result,
          level: e.level,
          vcpu: e.vcpu,
          step: e.step,
        };
        const ts = t.faultStart;
        const name = `fault ${e.result}`;
        this.emit({ name, cat: "fault", ph: "X", ts, dur: i + 1 - ts, pid: PID, tid: t.tid, args });
        t.faultStart = -1;
        break;
      }
      case "access":
        t.faultStart = -1;
        break;
      case "call": {
        if (e.tone === "exception") t.faultStart = i;
        const args: Record<string, unknown> = { status: e.status, detail: e.detail, step: e.step };
        if (e.tone !== undefined) args.tone = e.tone;
        if (e.injected) args.injected = true;
        this.emit(this.instant(t, e.name, "call", i, args));
        break;
      }
      case "flush": {
        const args = { reason: e.reason, gfn: e.gfn, level: e.level, step: e.step };
        this.emit(this.instant(t, "TLB flush", "flush", i, args));
        break;
      }
      case "spte": {
        const before = isShadowPresent(e.oldLo) && isLastSpte(e.oldLo, e.level);
        const after = isShadowPresent(e.newLo) && isLastSpte(e.newLo, e.level);
        if (before !== after) {
          this.leaves[e.level]! += after ? 1 : -1;
          this.counterAt = i;
        }
        break;
      }
      default:
        break;
    }
  };

  /**
   * What a trace ending now must add: the E of every op still open (the run stopped inside it),
   * marked unfinished, and the counter's latest value. `interrupted` adds a global instant that
   * says the command ended before the run did, for a trailer. The trace ends with these, so
   * nothing is changed.
   */
  closing(interrupted: boolean): ChromeEvent[] {
    const end = this.index + 1;
    const recs: ChromeEvent[] = [];
    if (this.counterAt >= 0) recs.push(this.counter(this.counterAt + 0.5));
    for (const t of this.tracks.values()) {
      if (t.openOp !== null) recs.push(this.op(t, "E", t.openOp, end, { unfinished: true }));
    }
    if (interrupted) {
      const args = { events: this.index, reason: "the command ended before the run did" };
      const tid = this.hostTid;
      recs.push({ name: "interrupted", ph: "i", s: "g", ts: end, pid: PID, tid, args });
    }
    return recs;
  }

  /** A task's track, named by metadata the first time the task is met. */
  private track(task: string): Track {
    let t = this.tracks.get(task);
    if (t === undefined) {
      const vcpu = /^vcpu(\d+)$/.exec(task);
      // The host is the process's main thread (tid = pid); vCPU n is thread n + 2.
      let tid = task === "host" ? PID : vcpu ? Number(vcpu[1]) + 2 : 0;
      const used = new Set([...this.tracks.values()].map((x) => x.tid));
      if (tid === 0 || used.has(tid)) tid = Math.max(PID + 1, ...used) + 1;
      t = { tid, openOp: null, faultStart: -1 };
      this.tracks.set(task, t);
      this.out({ name: "thread_name", ph: "M", ts: 0, pid: PID, tid, args: { name: task } });
      // The host's track first, then the vCPUs in order, then any other task.
      const index = task === "host" ? 0 : vcpu ? Number(vcpu[1]) + 1 : tid;
      const sort = { sort_index: index };
      this.out({ name: "thread_sort_index", ph: "M", ts: 0, pid: PID, tid, args: sort });
    }
    return t;
  }

  /** Writes `r`, after the counter's pending value: one sample per run of SPTE changes. */
  private emit(r: ChromeEvent): void {
    if (this.counterAt >= 0) {
      this.out(this.counter(this.counterAt + 0.5));
      this.counterAt = -1;
    }
    this.out(r);
  }

  private op(t: Track, ph: "B" | "E", name: string, ts: number, args: object): ChromeEvent {
    return { name, cat: "op", ph, ts, pid: PID, tid: t.tid, args };
  }

  private instant(t: Track, name: string, cat: string, i: number, args: object): ChromeEvent {
    return { name, cat, ph: "i", s: "t", ts: i + 0.5, pid: PID, tid: t.tid, args };
  }

  private counter(ts: number): ChromeEvent {
    const args: Record<string, number> = {};
    for (let level = 1; level < LEVEL_NAMES.length; level++) {
      args[LEVEL_NAMES[level]!] = this.leaves[level]!;
    }
    return { name: COUNTER, ph: "C", ts, pid: PID, tid: this.hostTid, args };
  }
}
