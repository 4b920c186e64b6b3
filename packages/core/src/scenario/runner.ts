/**
 * The scenario runner: builds the host, the VM and its backend, turns each vCPU's ops and the
 * host's ops into coroutines, lets the scheduler run them, checks the invariants and builds the
 * report of ARCHITECTURE.md.
 *
 * Between two ops every program yields to the scheduler. With `interleave` on, each op also
 * yields at every atomic point inside, so vCPUs and the host interleave step by step.
 */
import { PAGE_SIZE } from "../arch/levels.js";
import type { Backend } from "../backend/backend.js";
import { checkInvariants, type CheckResult } from "../check/invariants.js";
import { EventSink, type TdpEvent } from "../events/events.js";
import { Clock } from "../exec/clock.js";
import type { Op } from "../exec/ctx.js";
import { DeadlockError } from "../exec/rwlock.js";
import { ReplayDivergence, Scheduler, type Task } from "../exec/scheduler.js";
import { HostMemoryExhausted } from "../mem/errors.js";
import { Host } from "../mem/host.js";
import { KvmBug, type MmuOptions } from "../mmu/tdp-mmu.js";
import { GuestLivelock, guestAcceptPage, guestAccessPage } from "../vm/guest-access.js";
import * as hostOps from "../vm/host-ops.js";
import { OpError } from "../vm/op-error.js";
import { Vm, type Vcpu } from "../vm/vm.js";
import { buildReport, type Report } from "./report.js";
import type { GuestOp, HostOp, Scenario } from "./schema.js";

/** Bad input found while running (an op the VM refuses, a host too small): exit code 2. */
export class RunInputError extends Error {
  constructor(msg: string) {
    super(msg);
    this.name = "RunInputError";
  }
}

export interface RunOptions {
  backend: Backend;
  /** Host memory in bytes; default: twice the guest memory (shared and private backing) plus 64 MiB. */
  hostMemory?: number;
  /** Receives every event of the run. */
  onEvent?: (e: TdpEvent) => void;
  /** Choices to replay, overriding the scenario's schedule mode. */
  replay?: readonly number[];
  mmu?: MmuOptions;
  /** When the invariants are checked: at the end only, or also after every op. */
  check?: "end" | "op";
}

export interface OpResult {
  who: string;
  index: number;
  op: string;
  /** What the op found: pages accessed, dirty GFNs collected, young pages, ... */
  result: Record<string, number>;
}

export interface RunResult {
  report: Report;
  vm: Vm;
  host: Host;
  choices: number[];
  results: OpResult[];
}

export function defaultHostMemory(scn: Scenario): number {
  return 2 * scn.vm.memory + 64 * 2 ** 20;
}

function hostPageLevel(scn: Scenario): 1 | 2 | 3 {
  return scn.vm.hugepages === "1GiB" ? 3 : scn.vm.hugepages === "2MiB" ? 2 : 1;
}

export function runScenario(scn: Scenario, opts: RunOptions): RunResult {
  const clock = new Clock();
  const events = new EventSink(clock);
  if (opts.onEvent) events.subscribe(opts.onEvent);
  let host: Host;
  try {
    host = new Host({ memory: opts.hostMemory ?? defaultHostMemory(scn) });
  } catch (e) {
    throw new RunInputError(`host memory: ${(e as Error).message}`);
  }
  const programs = scn.vcpus.filter((p) => p.length > 0).length + (scn.host.length > 0 ? 1 : 0);
  const interleave = scn.schedule.interleave ?? programs > 1;
  const vm = new Vm(host, {
    memory: scn.vm.memory, gpaw: scn.vm.gpaw, vcpus: scn.vm.vcpus, hostPageLevel: hostPageLevel(scn),
  }, opts.backend, { clock, events, interleave, mmu: opts.mmu });

  const results: OpResult[] = [];
  const violations: CheckResult["violations"] = [];
  let checked = 0;
  const check = (final: boolean) => {
    const r = checkInvariants(vm, { final });
    checked += r.checked;
    for (const v of r.violations) if (violations.length < 20) violations.push(v);
  };

  const tasks: Task[] = [];
  const vcpuTasks: Task[] = [];
  scn.vcpus.forEach((ops, i) => {
    const t: Task = { name: `vcpu${i}`, op: vcpuProgram(vm, vm.vcpus[i]!, ops, results, opts.check === "op" ? () => check(false) : null), done: ops.length === 0 };
    tasks.push(t);
    vcpuTasks.push(t);
  });
  if (scn.host.length > 0) {
    tasks.push({
      name: "host",
      op: hostProgram(vm, scn.host, results, () => vcpuTasks.every((t) => t.done), opts.check === "op" ? () => check(false) : null),
      done: false,
    });
  }
  const mode = opts.replay ? "replay" : scn.schedule.mode;
  if (mode === "replay" && !opts.replay) throw new RunInputError(`${scn.source}: schedule mode replay needs the schedule's choices (schedule.file)`);
  const sched = new Scheduler(mode, scn.schedule.seed, opts.replay ?? []);
  try {
    sched.run(tasks);
  } catch (e) {
    if (e instanceof HostMemoryExhausted) {
      throw new RunInputError(`${scn.source}: step ${clock.step}: ${e.message} (the host has ${host.frames.totalFrames * 4096} bytes; give it more with --host-memory)`);
    }
    if (e instanceof OpError) throw new RunInputError(`${scn.source}: step ${clock.step}: ${e.message}`);
    if (e instanceof ReplayDivergence) throw new RunInputError(`replay: ${e.message}`);
    if (e instanceof KvmBug || e instanceof GuestLivelock || e instanceof DeadlockError) {
      const kind = e instanceof KvmBug ? "kvm-bug" : e instanceof GuestLivelock ? "livelock" : "deadlock";
      violations.push({ check: kind, message: e.message, step: clock.step });
    } else {
      throw e;
    }
  }
  if (violations.length === 0) check(true);
  else checked++;
  const report = buildReport(scn, vm, clock.step, { checked, violations }, results);
  return { report, vm, host, choices: sched.choices, results };
}

function opEvent(vm: Vm, who: string, op: string, phase: "start" | "end", detail: string): void {
  if (vm.events.on) vm.events.emit({ type: "op", vm: vm.id, who, op, phase, detail });
}

function* vcpuProgram(vm: Vm, vcpu: Vcpu, ops: GuestOp[], results: OpResult[], afterOp: (() => void) | null): Op {
  const who = `vcpu${vcpu.id}`;
  for (let i = 0; i < ops.length; i++) {
    yield;
    const op = ops[i]!;
    opEvent(vm, who, op.op, "start", JSON.stringify(op));
    const result: Record<string, number> = {};
    switch (op.op) {
      case "access": {
        let ok = 0, exceptions = 0, mmio = 0;
        const base = op.gpa - (op.gpa % PAGE_SIZE);
        for (let p = 0; p < op.count; p++) {
          const o = yield* guestAccessPage(vm, vcpu, p === 0 ? op.gpa : base + p * PAGE_SIZE, op.write, op.shared);
          if (o === "ok") ok++;
          else if (o === "exception") exceptions++;
          else mmio++;
        }
        Object.assign(result, { ok, exceptions, mmio });
        break;
      }
      case "accept": {
        let ok = 0, exceptions = 0;
        for (let p = 0; p < op.count; p++) {
          const o = yield* guestAcceptPage(vm, vcpu, op.gpa + p * PAGE_SIZE);
          if (o === "ok") ok++;
          else exceptions++;
        }
        Object.assign(result, { ok, exceptions });
        break;
      }
      case "convert": {
        // MapGPA / page-state change: the guest asks, the VMM sets the attributes.
        const gfn = op.gpa / PAGE_SIZE;
        result.changed = yield* hostOps.convertMemory(vm, vcpu.ctx, gfn, gfn + op.size / PAGE_SIZE, op.to === "private");
        break;
      }
    }
    results.push({ who, index: i, op: op.op, result });
    opEvent(vm, who, op.op, "end", JSON.stringify(result));
    afterOp?.();
  }
}

function* hostProgram(vm: Vm, ops: HostOp[], results: OpResult[], vcpusDone: () => boolean, afterOp: (() => void) | null): Op {
  const ctx = vm.hostCtx;
  for (let i = 0; i < ops.length; i++) {
    yield;
    const op = ops[i]!;
    opEvent(vm, "host", op.op, "start", JSON.stringify(op));
    const result: Record<string, number> = {};
    const gfn = "gpa" in op ? op.gpa / PAGE_SIZE : 0;
    const end = "size" in op ? gfn + op.size / PAGE_SIZE : 0;
    switch (op.op) {
      case "populate": result.mapped = yield* hostOps.populate(vm, vm.hostVcpu, gfn, end); break;
      case "finalize": result.status = hostOps.finalize(vm); break;
      case "convert": result.changed = yield* hostOps.convertMemory(vm, ctx, gfn, end, op.to === "private"); break;
      case "zap": result.zapped = yield* hostOps.zapGfnRange(vm, ctx, gfn, end); break;
      case "dirty-log":
        if (op.action === "start") yield* hostOps.dirtyLogStart(vm, ctx, op.slot);
        else if (op.action === "collect") result.dirty = (yield* hostOps.dirtyLogCollect(vm, ctx, op.slot)).length;
        else result.recovered = yield* hostOps.dirtyLogStop(vm, ctx, op.slot);
        break;
      case "age": result.young = yield* hostOps.age(vm, ctx, gfn, end); break;
      case "split": result.split = yield* hostOps.split(vm, ctx, gfn, end); break;
      case "recover": result.recovered = yield* hostOps.recover(vm, ctx, gfn, end); break;
      case "delete-memslot": yield* hostOps.deleteMemslot(vm, ctx, op.slot); break;
      case "teardown":
        // The VMM destroys the VM only once its vCPU threads have stopped.
        while (!vcpusDone()) yield;
        yield* hostOps.teardown(vm, ctx, [vm.hostVcpu]);
        break;
    }
    results.push({ who: "host", index: i, op: op.op, result });
    opEvent(vm, "host", op.op, "end", JSON.stringify(result));
    afterOp?.();
  }
}
