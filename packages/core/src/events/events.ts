/**
 * The typed event stream: every SPTE change, table link and free, backend hook and architectural
 * call, TLB flush, fault and scenario op, each stamped with the step number at which it happened
 * and the task that took that step (a vCPU, or the host).
 *
 * Emitting is guarded by `sink.on` at every call site, so a run with no listener builds no event
 * objects: the fault path stays free of per-step allocation.
 */
import type { Clock } from "../exec/clock.js";

/**
 * How an architectural call went, for a reader: done (ok), contended and to be retried (busy),
 * failed (error), or an exception raised to the guest (exception). The UI colours by it.
 */
export type EventTone = "ok" | "busy" | "error" | "exception";

export type FaultResult =
  "fixed" | "spurious" | "retry" | "emulate" | "memory-fault-exit" | "write-protected";

/**
 * What every event carries: the scheduler step it happened in (`Clock.tick`: 1 for the first
 * step, 0 while the VM is built) and the task that took it ("vcpu0", "host").
 */
interface EventStamp {
  step: number;
  task: string;
}

export type TdpEvent = EventStamp &
  (
    | {
        type: "spte";
        step: number;
        vm: number;
        table: number;
        index: number;
        mirror: boolean;
        level: number;
        gfn: number;
        oldLo: number;
        oldHi: number;
        newLo: number;
        newHi: number;
        by: string;
      }
    | {
        type: "table";
        step: number;
        vm: number;
        action: "alloc" | "link" | "unlink" | "free" | "leak";
        slot: number;
        pfn: number;
        level: number;
        gfn: number;
        mirror: boolean;
      }
    | {
        type: "root";
        step: number;
        vm: number;
        action: "alloc" | "invalidate" | "free";
        root: number;
        level: number;
        mirror: boolean;
      }
    | {
        type: "hook";
        step: number;
        vm: number;
        hook: string;
        gfn: number;
        level: number;
        result: number;
      }
    | {
        type: "call";
        step: number;
        vm: number;
        name: string;
        detail: string;
        status: string;
        tone?: EventTone;
        /** The status came from fault injection, not from the call. */
        injected?: boolean;
      }
    | { type: "flush"; step: number; vm: number; reason: string; gfn: number; level: number }
    | {
        type: "fault";
        step: number;
        vm: number;
        vcpu: number;
        gpa: number;
        write: boolean;
        private: boolean;
        result: FaultResult;
        level: number;
      }
    | {
        type: "access";
        step: number;
        vm: number;
        vcpu: number;
        gpa: number;
        write: boolean;
        private: boolean;
        result: string;
      }
    | {
        type: "attributes";
        step: number;
        vm: number;
        gfn: number;
        npages: number;
        private: boolean;
      }
    | {
        /**
         * `mmu_lock` taken by a task that had to wait for it, `after` the task whose release let
         * it in: what virtual time needs to advance the waiter to that release. Emitted only
         * while someone listens, and only for a wait (never on the fault path's own taking).
         */
        type: "lock";
        step: number;
        vm: number;
        mode: "read" | "write";
        after: string;
      }
    | {
        type: "op";
        step: number;
        vm: number;
        who: string;
        op: string;
        phase: "start" | "end";
        detail: string;
      }
  );

type DistributiveOmit<T, K extends keyof T> = T extends unknown ? Omit<T, K> : never;
export type TdpEventInput = DistributiveOmit<TdpEvent, "step" | "task">;

export type EventListener = (e: TdpEvent) => void;

export class EventSink {
  /** True while anyone listens; call sites test it before building an event. */
  on = false;
  private listeners: EventListener[] = [];

  constructor(private readonly clock: Clock) {}

  subscribe(fn: EventListener): () => void {
    this.listeners.push(fn);
    this.on = true;
    return () => {
      this.listeners = this.listeners.filter((l) => l !== fn);
      this.on = this.listeners.length > 0;
    };
  }

  emit(e: TdpEventInput): void {
    const ev = e as TdpEvent;
    ev.step = this.clock.tick;
    ev.task = this.clock.task;
    for (const l of this.listeners) l(ev);
  }
}
