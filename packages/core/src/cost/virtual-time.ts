/**
 * Virtual time: each task (a vCPU, the host) carries a clock that advances by the cost of every
 * event it performs, priced by a cost table. The events are the run's own (`TdpEvent`): backend
 * calls by name (SEAMCALLs, RMP instructions, RMI commands, exits), faults by kind and mapping
 * size, remote TLB flushes. A task that waited for `mmu_lock` is advanced to the clock of the
 * task whose release let it in (that task's clock when the waiter takes the lock: work it did
 * after the release counts too, an overestimate). Not modelled: overlap inside one task, caches,
 * and waits on anything but `mmu_lock` (a retry after a lost cmpxchg costs its events only).
 */
import type { TdpEvent } from "../events/events.js";
import type { CostTable } from "./cost-table.js";

/** The cost table's key for an event, or null for an event that costs nothing of its own. */
export function costKey(e: TdpEvent): string | null {
  switch (e.type) {
    case "call":
      return e.name;
    case "flush":
      return "flush";
    case "fault": {
      // A fault that mapped a page pays for that page at its size; the others pay the handler.
      const size = e.result === "fixed" ? (e.level === 2 ? "-2m" : e.level === 3 ? "-1g" : "") : "";
      return `fault${e.private ? "-private" : ""}${size}`;
    }
    default:
      return null;
  }
}

export interface VirtualTimeReport {
  /** The cost table used: its platform and file. */
  table: { platform: string; source: string };
  /** Each task's clock at the end, ns. */
  tasks: Record<string, number>;
  /** The longest clock: the run's elapsed time if the tasks ran in parallel, ns. */
  elapsedNs: number;
  /** All events' costs added: the CPU time (the clocks without their lock waits), ns. */
  totalNs: number;
  /** Each event kind: how many, what they cost together, their share of the total. */
  kinds: { key: string; label: string; count: number; ns: number; share: number }[];
  /** Events the table has no cost for (a run with any is incomplete), by key. */
  unpriced: Record<string, number>;
  /** Time each task spent waiting for `mmu_lock` (in its clock, not in `kinds`), ns. */
  lockWaits: Record<string, number>;
}

export class VirtualTime {
  private readonly clocks = new Map<string, number>();
  private readonly byKind = new Map<string, { count: number; ns: number }>();
  private readonly unpriced = new Map<string, number>();
  private readonly waits = new Map<string, number>();

  constructor(readonly table: CostTable) {}

  /** The event listener a run is given (`RunOptions.onEvent`). */
  readonly onEvent = (e: TdpEvent): void => {
    if (e.type === "lock") {
      // The waiter's clock catches up with the release it waited for.
      const own = this.clocks.get(e.task) ?? 0;
      const holder = this.clocks.get(e.after) ?? 0;
      if (holder > own) {
        this.clocks.set(e.task, holder);
        this.waits.set(e.task, (this.waits.get(e.task) ?? 0) + holder - own);
      }
      return;
    }
    const key = costKey(e);
    if (key === null) return;
    const cost = this.table.events[key];
    if (cost === undefined) {
      this.unpriced.set(key, (this.unpriced.get(key) ?? 0) + 1);
      return;
    }
    this.clocks.set(e.task, (this.clocks.get(e.task) ?? 0) + cost.ns);
    const k = this.byKind.get(key);
    if (k) {
      k.count++;
      k.ns += cost.ns;
    } else this.byKind.set(key, { count: 1, ns: cost.ns });
  };

  report(): VirtualTimeReport {
    const tasks = Object.fromEntries([...this.clocks].sort(([a], [b]) => a.localeCompare(b)));
    const totalNs = [...this.byKind.values()].reduce((a, k) => a + k.ns, 0);
    const kinds = [...this.byKind]
      .map(([key, k]) => ({
        key,
        label: this.table.events[key]?.label ?? key,
        count: k.count,
        ns: k.ns,
        share: totalNs > 0 ? k.ns / totalNs : 0,
      }))
      .sort((a, b) => b.ns - a.ns || a.key.localeCompare(b.key));
    return {
      table: { platform: this.table.platform, source: this.table.source },
      tasks,
      elapsedNs: Math.max(0, ...this.clocks.values()),
      totalNs,
      kinds,
      unpriced: Object.fromEntries(this.unpriced),
      lockWaits: Object.fromEntries(this.waits),
    };
  }
}
