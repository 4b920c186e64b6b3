/**
 * A UI session: one scenario running on one backend, stepped by the UI, and the snapshots the
 * panes render. The model runs with interleaving on, so one step is one atomic point.
 *
 * Snapshots are what the UI renders, at most about 30 a second; their cost does not grow with
 * guest memory: the GPA map samples one GFN a cell, the walk is one GPA, the event list a ring.
 */
import {
  BLOCKED,
  RETRY_WAIT,
  Scheduler,
  TaskStepper,
  buildRun,
  decodeSpte,
  formatSpte,
  isLastSpte,
  isShadowPresent,
  sptIndex,
  spteToPfn,
  RunInputError,
  classifyRunError,
  type BackendRegistry,
  type BuiltRun,
  type Scenario,
  type TdpEvent,
  type Root,
  type InjectSpec,
  VirtualTime,
  defaultCostTable,
} from "@tdpemu/core";
import { describeEvent } from "./event-text.js";
import { formatNs } from "./virtual-time-option.js";

export type EventKind = "any" | "fault" | "spte" | "call" | "flush" | "hook";
export const EVENT_KINDS: EventKind[] = ["any", "fault", "spte", "call", "flush", "hook"];

export interface VcpuRow {
  id: number;
  name: string;
  state: string;
  op: string;
  gpa: string;
  steps: number;
  retries: number;
}

export interface WalkRow {
  level: number;
  index: number;
  hex: string;
  flags: string;
  kind: string;
  /** The secure side of the same entry: S-EPT state (TDX) or RMP entry (SEV). */
  secure: string;
}

export interface EventRow {
  step: number;
  /** The scheduler step it happened in (the header's count), 0 before the first: `goToStep` goes there. */
  at: number;
  /** The task that caused it (a vCPU, or the host). */
  task: string;
  /** The guest physical address it is about, or -1. */
  gpa: number;
  text: string;
  tone: "error" | "busy" | "fault" | "plain";
}

export interface Snapshot {
  scenario: string;
  backend: string;
  /** The mirror-root strategy, or null on a backend without a mirror root. */
  strategy: string | null;
  /** Whether the walk follows each new fault (`f`). */
  followFaults: boolean;
  /** The task whose events alone the events pane shows, or null for all (`t`). */
  taskFilter: string | null;
  /** Text the events shown contain (`/`), or "" for all. */
  search: string;
  /** Something refused that the user should see (`b` to a backend that refuses the run), or null. */
  notice: string | null;
  step: number;
  choices: number;
  running: boolean;
  speed: number;
  finished: boolean;
  violations: string[];
  vcpus: VcpuRow[];
  walkGpa: number;
  /** The walk's GPA was given as its shared alias (`g`): the title shows the shared bit. */
  walkShared: boolean;
  /** The GPA value of the VM's shared bit (TDX: bit gpaw-1), 0 without one. */
  sharedBit: number;
  walk: { title: string; rows: WalkRow[] }[];
  events: EventRow[];
  stats: [string, string][];
  calls: [string, number][];
  /**
   * Virtual time on the backend's platform (costs/): the longest task clock, and the biggest
   * event kinds with their share; null on a backend without a cost table.
   */
  cost: { elapsed: string; table: string; kinds: [string, string][] } | null;
  map: { cells: string; cols: number; cellBytes: number };
  runTo: EventKind;
}

const EVENT_RING = 200;
/** Steps per frame at each speed setting; the last one runs for a time budget instead. */
export const SPEEDS = [1, 4, 16, 64, 256, 1024, 4096, Infinity];
const FRAME_BUDGET_MS = 12;

interface Tracker {
  op: string;
  gpa: number;
  steps: number;
  retries: number;
}

/** How a session runs its scenario, besides the scenario itself. */
export interface SessionOptions {
  strategy?: "freeze" | "atomic-then-hook";
  unsafeNonAtomicSet?: boolean;
  /** TDX's 2 MiB private pages (default: the scenario's `options.tdxHugePages`). */
  tdxHugePages?: boolean;
  /**
   * A recorded schedule's choices (`tui <schedule.json>`, a scenario's `mode: replay`): the
   * session makes exactly these, as `replay` does, and stops where they end.
   */
  replay?: readonly number[];
  /** Interleave at every atomic point (the default; a replay: the scenario's) or only between ops, as a schedule was recorded. */
  interleave?: boolean;
  inject?: InjectSpec[];
  hostMemory?: number;
}

export class Session {
  run!: BuiltRun;
  /** The run's virtual clocks (costs/), or null for a backend without a cost table. */
  private vt: VirtualTime | null = null;
  private sched!: Scheduler;
  private stepper!: TaskStepper;
  private readonly enabled: number[] = [];
  private ring: EventRow[] = [];
  private trackers: Tracker[] = [];
  /** The kinds of the events the current step emitted: a step may emit several (a SEAMCALL, then an SPTE change). */
  private readonly stepKinds = new Set<string>();
  private violations: string[] = [];
  finished = false;
  running = false;
  speedIndex = 2;
  runTo: EventKind = "fault";
  walkGpa = 0;
  /** Whether `walkGpa` was given as its shared alias (see `Snapshot.walkShared`). */
  walkShared = false;
  followFaults = true;
  taskFilter: string | null = null;
  /** A refusal to show the user once (a backend `b` could not switch to), or null. */
  notice: string | null = null;
  /** Only events whose text contains this (case-insensitive): a kind ("fault"), a GPA ("0x1000"), a call. */
  search = "";
  backendName: string;

  private readonly strategy: "freeze" | "atomic-then-hook";

  constructor(
    private readonly scenario: Scenario,
    private readonly registry: BackendRegistry,
    backendName: string,
    private readonly opts: SessionOptions = {},
  ) {
    this.backendName = backendName;
    this.strategy = opts.strategy ?? scenario.options.strategy;
    if (scenario.schedule.mode === "replay" && opts.replay === undefined) {
      throw new RunInputError(
        `${scenario.source}: schedule mode replay needs the schedule's choices (schedule.file)`,
      );
    }
    this.restart();
  }

  /** Build the scenario afresh on the current backend. */
  restart(): void {
    const backend = this.registry.source(this.backendName);
    const o = this.opts;
    // The scheduler and the event list first: building the VM emits events (the VMM's calls), at step 0.
    this.sched =
      o.replay !== undefined
        ? new Scheduler("replay", this.scenario.schedule.seed, o.replay)
        : new Scheduler(this.scenario.schedule.mode, this.scenario.schedule.seed);
    this.ring = [];
    const table = defaultCostTable(this.backendName);
    this.vt = table ? new VirtualTime(table) : null;
    this.run = buildRun(this.scenario, {
      // The UI steps atomic point by atomic point; a replay keeps the interleaving its choices
      // were made with (given, or the scenario's, as `run` takes it).
      backend,
      interleave: o.interleave ?? (o.replay !== undefined ? undefined : true),
      mmu: {
        strategy: this.strategy,
        unsafeNonAtomicSet: o.unsafeNonAtomicSet ?? false,
        tdxHugePages: o.tdxHugePages ?? this.scenario.options.tdxHugePages,
      },
      inject: o.inject,
      hostMemory: o.hostMemory,
      onEvent: (e) => this.onEvent(e),
    });
    this.stepper = new TaskStepper(this.run.tasks, this.run.clock);
    this.trackers = this.run.tasks.map(() => ({ op: "", gpa: -1, steps: 0, retries: 0 }));
    this.violations = [];
    this.finished = false;
    this.walkGpa = 0;
    this.walkShared = false;
  }

  /** The next backend of the registry, same scenario, from the start. */
  cycleBackend(): void {
    const names = this.registry.list().map((b) => b.name);
    const was = this.backendName;
    this.backendName = names[(names.indexOf(was) + 1) % names.length]!;
    try {
      this.restart();
      this.notice = null;
    } catch (e) {
      // What the next backend refuses (a call to inject it does not know): stay where we were.
      if (!RunInputError.is(e)) throw e;
      this.notice = `${this.backendName}: ${e.message}`;
      this.backendName = was;
      this.restart();
    }
  }

  get speed(): number {
    return SPEEDS[this.speedIndex]!;
  }

  /** One atomic point of whichever task the scheduler picks. False when nothing is left. */
  step(): boolean {
    if (this.finished) return false;
    const { tasks } = this.run;
    this.stepper.enabled(this.enabled);
    if (this.enabled.length === 0) {
      this.finished = true;
      if (!tasks.every((t) => t.done)) this.violations.push(this.stepper.stuck().message);
      else
        this.violations.push(
          ...this.run.check(true).violations.map((v) => `[${v.check}] ${v.message}`),
        );
      return false;
    }
    const replay = this.opts.replay;
    if (replay !== undefined && this.sched.choices.length >= replay.length) {
      // A schedule recorded up to a violation ends there: check the state it reached, as
      // `replay` does (between two steps, not at the end of a run).
      this.finished = true;
      this.violations.push(
        ...this.run.check(false).violations.map((v) => `[${v.check}] ${v.message}`),
      );
      return false;
    }
    let i = -1;
    try {
      // A replay whose choice cannot run here (its schedule was recorded on another backend)
      // ends the session with the scheduler's reason, as `replay` does.
      i = this.sched.pick(this.enabled);
      this.trackers[i]!.steps++;
      this.stepper.step(i);
    } catch (e) {
      this.finished = true;
      // As `run` and `replay` name it ("[kvm-bug] ..."), and the walk on the GPA the failing
      // task was working on.
      let found: string[];
      try {
        found = classifyRunError(e, this.scenario, this.run)?.map(
          (v) => `[${v.check}] ${v.message}`,
        ) ?? [e instanceof Error ? `${e.name}: ${e.message}` : String(e)];
      } catch (refused) {
        found = [(refused as Error).message];
      }
      this.violations.push(...found);
      const gpa = i >= 0 ? this.trackers[i]!.gpa : -1;
      if (gpa >= 0) this.walkGpa = gpa % 2 ** 47;
      return false;
    }
    return true;
  }

  /** Steps until an event of the chosen kind happens (or the run ends); at most `limit` steps. */
  stepToEvent(kind: EventKind = this.runTo, limit = 1_000_000): number {
    let n = 0;
    this.stepKinds.clear();
    while (n < limit && this.step()) {
      n++;
      if (kind === "any" ? this.stepKinds.size > 0 : this.stepKinds.has(kind)) break;
      this.stepKinds.clear();
    }
    return n;
  }

  /**
   * Back to the state after step `n` (a scheduler step: the header's count): the run is built
   * again and its first `n` choices are made again. The scheduler is deterministic (round-robin,
   * a seeded PRNG, or a replay), so the same choices come out and the state is the one that was
   * there, as rr and gdb's reverse execution give it. The walk stays where it is.
   */
  goToStep(n: number): void {
    const target = Math.max(0, n);
    const walk = this.walkGpa;
    const follow = this.followFaults;
    this.running = false;
    // Forward is stepping on; back is building again and stepping to it.
    if (target < this.sched.choices.length) this.restart();
    this.followFaults = false;
    while (this.sched.choices.length < target && this.step()) {
      /* replay */
    }
    this.followFaults = follow;
    this.walkGpa = walk;
  }

  /** The events the events pane shows: of the chosen task, containing the search text. */
  private filteredEvents(): EventRow[] {
    const task = this.taskFilter;
    const q = this.search.toLowerCase();
    if (task === null && q === "") return this.ring;
    return this.ring.filter(
      (r) =>
        (task === null || r.task === task) &&
        (q === "" || `${r.task} ${r.text}`.toLowerCase().includes(q)),
    );
  }

  /** Only this task's events in the events pane, the next task's, ..., then all again (`t`). */
  cycleTaskFilter(): void {
    const names = this.run.tasks.map((t) => t.name);
    const i = this.taskFilter === null ? -1 : names.indexOf(this.taskFilter);
    this.taskFilter = i + 1 < names.length ? names[i + 1]! : null;
  }

  /**
   * An event chosen in the events pane: back to the state after the step it happened in, the
   * walk on the GPA it is about (and no longer following faults).
   */
  selectEvent(row: EventRow): void {
    this.goToStep(row.at);
    if (row.gpa >= 0) {
      this.followFaults = false;
      this.walkGpa = row.gpa;
      this.walkShared = false;
    }
  }

  /** One step back (`p`): `goToStep` of the step before this one. */
  stepBack(): void {
    this.goToStep(this.sched.choices.length - 1);
  }

  /**
   * Steps until the run ends: at a violation (a replayed schedule from `explore` ends on the
   * step that failed) or when every task is done; at most `limit` steps. The walk follows the
   * faults, so it ends on the GPA of the last one.
   */
  runToEnd(limit = 10_000_000): number {
    let n = 0;
    while (n < limit && this.step()) n++;
    return n;
  }

  /** What one UI frame advances while running: `speed` steps, or a time budget at the top speed. */
  advanceFrame(): void {
    if (!this.running || this.finished) return;
    if (this.speed === Infinity) {
      const t0 = performance.now();
      while (performance.now() - t0 < FRAME_BUDGET_MS) {
        for (let i = 0; i < 256; i++) if (!this.step()) return;
      }
      return;
    }
    for (let i = 0; i < this.speed; i++) if (!this.step()) return;
  }

  /** What the run has cost so far on the backend's platform, for the status line and stats. */
  private costView(): Snapshot["cost"] {
    if (this.vt === null) return null;
    const r = this.vt.report();
    return {
      elapsed: formatNs(r.elapsedNs),
      table: r.table.source,
      kinds: r.kinds.map((k) => [k.key, `${formatNs(k.ns)} ${(k.share * 100).toFixed(0)}%`]),
    };
  }

  private onEvent(e: TdpEvent): void {
    this.vt?.onEvent(e);
    this.stepKinds.add(e.type);
    if (e.type === "op" && e.phase === "start") {
      const t = this.taskOf(e.who);
      if (t) {
        t.op = e.op;
        try {
          t.gpa = (JSON.parse(e.detail) as { gpa?: number }).gpa ?? -1;
        } catch {
          t.gpa = -1;
        }
      }
    }
    if (e.type === "fault") {
      const t = this.trackers[e.vcpu];
      if (t) {
        t.gpa = e.gpa;
        if (e.result === "retry") t.retries++;
      }
      if (this.followFaults) {
        this.walkGpa = e.gpa % 2 ** 47;
        this.walkShared = false;
      }
    }
    if (e.type === "access") {
      const t = this.trackers[e.vcpu];
      if (t) t.gpa = e.gpa;
    }
    // Only the kinds a person reads; CPU A/D updates and table bookkeeping would drown the rest.
    if (e.type === "spte" && e.by === "cpu-a/d") return;
    if (e.type === "table" && (e.action === "alloc" || e.action === "free")) return;
    let tone: EventRow["tone"] = "plain";
    // A backend's call says how it went (`tone`); one that does not is shown plain.
    if (e.type === "call" && e.tone !== undefined && e.tone !== "ok")
      tone = e.tone === "exception" ? "fault" : e.tone;
    if (e.type === "fault") tone = e.result === "retry" ? "busy" : "fault";
    if (e.type === "hook" && e.result !== 0) tone = "busy";
    this.ring.push({
      step: e.step,
      at: this.sched.choices.length,
      task: e.task,
      gpa: eventGpa(e),
      text: describeEvent(e),
      tone,
    });
    if (this.ring.length > EVENT_RING) this.ring.splice(0, this.ring.length - EVENT_RING);
  }

  private taskOf(who: string): Tracker | undefined {
    const i = this.run.tasks.findIndex((t) => t.name === who);
    return i >= 0 ? this.trackers[i] : undefined;
  }

  // ------------------------------------------------------------------ snapshots

  snapshot(mapCells = 256, events = 12, mapCols = 64): Snapshot {
    const { vm, tasks, clock } = this.run;
    const s = vm.mmu.stats;
    const bs = vm.backend.stats();
    const vcpus: VcpuRow[] = tasks.map((t, i) => ({
      id: i,
      name: t.name,
      state: this.taskState(i),
      op: this.trackers[i]!.op,
      gpa: this.trackers[i]!.gpa >= 0 ? `0x${this.trackers[i]!.gpa.toString(16)}` : "",
      steps: this.trackers[i]!.steps,
      retries: this.trackers[i]!.retries,
    }));
    return {
      scenario: this.scenario.name,
      backend: this.backendName,
      // The freeze protocol is about the mirror root: nothing to say on a backend without one.
      strategy: this.run.vm.backend.usesMirrorRoot ? this.strategy : null,
      followFaults: this.followFaults,
      step: clock.step,
      choices: this.sched.choices.length,
      running: this.running,
      speed: this.speed,
      finished: this.finished,
      violations: this.violations,
      vcpus,
      walkGpa: this.walkGpa,
      walkShared: this.walkShared,
      sharedBit: this.sharedBit(),
      walk: this.walkTables(),
      events: this.filteredEvents().slice(-events),
      taskFilter: this.taskFilter,
      search: this.search,
      notice: this.notice,
      stats: [
        ["pages 4k/2m/1g", `${s.pages[1]}/${s.pages[2]}/${s.pages[3]}`],
        ["table pages", String(s.tablePages)],
        ["faults", String(s.faults)],
        ["retries", String(s.faultRetries)],
        ["spurious", String(s.spuriousFaults)],
        ["TLB flushes", String(s.tlbFlushes)],
        ["vCPU flushes", String(s.vcpuTlbFlushes)],
        ["zapped leaves", String(s.zappedLeaves)],
        ["leaked pages", String(s.leakedPages)],
        ["busy", String(bs.busy)],
        [
          "errors",
          Object.entries(bs.errors)
            .map(([k, n]) => `${k} ${n}`)
            .join(", ") || "none",
        ],
        ...(vm.backend.extraStats?.(vm) ?? []),
      ],
      calls: Object.entries(bs.calls).sort((a, b) => b[1] - a[1]),
      cost: this.costView(),
      map: this.gpaMap(mapCells, mapCols),
      runTo: this.runTo,
    };
  }

  private taskState(i: number): string {
    const t = this.run.tasks[i]!;
    if (t.done) return "done";
    if (this.stepper.tracker.waiting(i)) {
      const kind = this.stepper.tracker.waitKind[i];
      return kind === BLOCKED ? "blocked" : kind === RETRY_WAIT ? "retrying" : "waiting";
    }
    const vcpu = this.run.vm.vcpus[i];
    if (!vcpu) return "running";
    if (vcpu.ctx.lockMode === 1) return "in KVM (read lock)";
    if (vcpu.ctx.lockMode === 2) return "in KVM (write lock)";
    if (vcpu.ctx.rcuNest > 0) return "in KVM (RCU)";
    return "running";
  }

  /** The GPA value of the shared bit, 0 on a VM without one (`GpaLimits.sharedBit`). */
  sharedBit(): number {
    return this.run.vm.mmu.gfnDirectBits * 4096;
  }

  /** The guest's memory in bytes: GPAs below it can be walked. */
  get memory(): number {
    return this.run.vm.config.memory;
  }

  /**
   * The walk on `gpa` (`g`), given as itself or as its shared alias, and no longer following
   * faults: the walk is the same either way, only its title says which was asked for.
   */
  jumpTo(gpa: number, shared: boolean): void {
    this.followFaults = false;
    this.walkGpa = gpa;
    this.walkShared = shared && this.sharedBit() > 0;
  }

  /** The GPA of the walk pane, by 4 KiB or 2 MiB steps. */
  moveWalk(delta: number): void {
    this.followFaults = false;
    const max = this.run.vm.config.memory - 4096;
    this.walkGpa = Math.min(max, Math.max(0, this.walkGpa - (this.walkGpa % 4096) + delta));
  }

  private roots(): { direct: Root | null; mirror: Root | null } {
    let direct: Root | null = null;
    let mirror: Root | null = null;
    for (const r of this.run.vm.mmu.peekRoots()) {
      if (r.peekInvalid()) continue;
      if (r.mirror) mirror ??= r;
      else direct ??= r;
    }
    return { direct, mirror };
  }

  private walkRoot(
    root: Root,
    rawGfn: number,
    secure: (gfn: number, level: number, lo: number, hi: number) => string,
  ): WalkRow[] {
    const pool = this.run.host.pool;
    const rows: WalkRow[] = [];
    let slot = root.slot;
    for (let level = root.level; level >= 1; level--) {
      const index = sptIndex(rawGfn, level);
      const mem = pool.tableMem(slot);
      const off = pool.tableOff(slot) + 2 * index;
      const lo = mem[off]!;
      const hi = mem[off + 1]!;
      const d = decodeSpte(lo, hi, level);
      rows.push({
        level,
        index,
        hex: formatSpte(lo, hi),
        flags: d.flags.filter((f) => f !== "SUPPRESS_VE" && f !== "MMU_PRESENT").join(" "),
        kind: d.kind,
        secure: secure(rawGfn, level, lo, hi),
      });
      if (!isShadowPresent(lo) || isLastSpte(lo, level)) break;
      slot = pool.pfnToSlot(spteToPfn(lo, hi));
    }
    return rows;
  }

  private walkTables(): { title: string; rows: WalkRow[] }[] {
    const { direct, mirror } = this.roots();
    const vm = this.run.vm;
    const be = vm.backend;
    const gfn = Math.floor(this.walkGpa / 4096);
    const out: { title: string; rows: WalkRow[] }[] = [];
    const bits = vm.mmu.gfnDirectBits;
    // What the backend says of each entry (TDX: its S-EPT state; SEV: the RMP entry), if anything.
    const describe =
      (root: "mirror" | "direct") => (g: number, level: number, lo: number, hi: number) => {
        if (!be.describeEntry) return "";
        const present = isShadowPresent(lo);
        return be.describeEntry(vm, root, g, level, {
          present,
          leaf: present && isLastSpte(lo, level),
          pfn: present ? spteToPfn(lo, hi) : 0,
        });
      };
    if (mirror)
      out.push({
        title: be.walkTitle?.(vm, "mirror") ?? "mirror root (private)",
        rows: this.walkRoot(mirror, gfn, describe("mirror")),
      });
    if (direct) {
      const title = be.walkTitle?.(vm, "direct") ?? (bits ? "direct root (shared alias)" : "EPT");
      const describeDirect = describe("direct");
      out.push({
        title,
        rows: this.walkRoot(direct, gfn + bits, (g, level, lo, hi) =>
          describeDirect(g - bits, level, lo, hi),
        ),
      });
    }
    return out;
  }

  /**
   * The guest's memory as cells, each sampled at its first GFN: '.' unmapped, 's' shared,
   * 'p' private 4K, 'P' private 2M or larger, or what the backend says of a mirrored page
   * (`mapCell`: TDX's '?' pending and 'b' blocked).
   */
  private gpaMap(cells: number, cols: number): Snapshot["map"] {
    const { direct, mirror } = this.roots();
    const mem = this.run.vm.config.memory;
    const cellBytes = Math.max(4096, Math.ceil(mem / cells / 4096) * 4096);
    const n = Math.ceil(mem / cellBytes);
    const bits = this.run.vm.mmu.gfnDirectBits;
    const attrs = this.run.vm.attributes;
    let out = "";
    for (let c = 0; c < n; c++) {
      const gfn = (c * cellBytes) / 4096;
      let ch = ".";
      const m = mirror ? this.leafLevel(mirror, gfn) : 0;
      if (m > 0) {
        ch = this.run.vm.backend.mapCell?.(this.run.vm, gfn, m) ?? (m > 1 ? "P" : "p");
      } else if (direct) {
        const d = this.leafLevel(direct, gfn + bits);
        if (d > 0) ch = !mirror && attrs.isPrivate(gfn) ? (d > 1 ? "P" : "p") : "s";
      }
      out += ch;
    }
    return { cells: out, cols: Math.min(cols, n), cellBytes };
  }

  private leafLevel(root: Root, rawGfn: number): number {
    const pool = this.run.host.pool;
    let slot = root.slot;
    for (let level = root.level; level >= 1; level--) {
      const mem = pool.tableMem(slot);
      const off = pool.tableOff(slot) + 2 * sptIndex(rawGfn, level);
      const lo = mem[off]!;
      if (!isShadowPresent(lo)) return 0;
      if (isLastSpte(lo, level)) return level;
      slot = pool.pfnToSlot(spteToPfn(lo, mem[off + 1]!));
    }
    return 0;
  }
}

/** The GPA an event is about, or -1: a fault's or access's, a call's operand, an entry's GFN. */
function eventGpa(e: TdpEvent): number {
  switch (e.type) {
    case "fault":
    case "access":
      return e.gpa % 2 ** 47;
    case "spte":
    case "table":
    case "hook":
    case "attributes":
      return (e.gfn * 4096) % 2 ** 47;
    case "call": {
      const m = /gpa (0x[0-9a-f]+)/.exec(e.detail);
      return m ? Number(m[1]) % 2 ** 47 : -1;
    }
    default:
      return -1;
  }
}

export {
  COMPARE_COLUMNS,
  compareBackends,
  formatCompare,
  type CompareRow,
} from "./compare-rows.js";
