/**
 * The scenario runner: builds the host, the VM and its backend, turns each vCPU's ops and the
 * host's ops into coroutines, lets the scheduler run them, checks the invariants and builds the
 * report (docs/architecture.md, "The JSON report").
 *
 * Between two ops every program yields to the scheduler. With `interleave` on, each op also
 * yields at every atomic point inside, so vCPUs and the host interleave step by step.
 */
import { PAGE_SIZE } from "../arch/levels.js";
import type { Backend } from "../backend/backend.js";
import type { BackendSource } from "../backend/backend-source.js";
import { CLOCK, EVENTS, type Configure } from "../backend/containers.js";
import { checkInvariants, type CheckResult, type Violation } from "../check/invariants.js";
import { EventSink, type TdpEvent } from "../events/events.js";
import { BLOCKED, type Op } from "../exec/ctx.js";
import { DeadlockError, LockdepError } from "../exec/rwlock.js";
import { R_FINALIZED } from "../exec/footprint.js";
import { SharedFlag } from "../exec/shared-flag.js";
import { ReplayDivergence, Scheduler, isTaskDone, type Task } from "../exec/scheduler.js";
import { Clock, UnrecordedAccess } from "../exec/clock.js";
import { HostMemoryExhausted } from "../mem/errors.js";
import { Host } from "../mem/host.js";
import { KvmBug, type MmuOptions } from "../mmu/tdp-mmu.js";
import {
  AccessTally,
  GuestLivelock,
  guestAcceptPage,
  guestAccessRange,
  guestRmpAdjustPage,
} from "../vm/guest-access.js";
import { guestPageStateChange } from "../vm/guest-psc.js";
import * as hostOps from "../vm/host-ops.js";
import { OpError } from "../vm/op-error.js";
import { Vm, type Vcpu } from "../vm/vm.js";
import { guestMemory } from "./guest-memory.js";
import { buildReport, type Report } from "./report.js";
import type { GuestOp, HostOp, InjectSpec, Scenario } from "./schema.js";
import { ErrorOfKind, errorKind } from "../error-kind.js";
import { checkPluginOps } from "./plugin-ops.js";

/** Bad input found while running (an op the VM refuses, a host too small): exit code 2. */
export class RunInputError extends ErrorOfKind("RunInputError") {}

export interface RunOptions {
  /**
   * Where the VM's backend comes from: a registered source (`BackendRegistry.source`), resolved
   * in the VM's container under the run's host; or an instance the caller made, for a backend
   * that needs nothing from the containers (the core's tests' own).
   */
  backend: BackendSource | Backend;
  /**
   * Registrations added to the host's container after the backend's host-wide parts and before
   * anything is resolved from it: a test substitutes a part here (a recording `EVENTS` sink, a
   * TDX module that fails on cue).
   */
  configureHost?: Configure;
  /** The same for the VM's container, after the backend's registration. */
  configureVm?: Configure;
  /** Host memory in bytes; default `defaultHostMemory`: twice the guest memory plus 64 MiB, in host pages. */
  hostMemory?: number;
  /** Receives every event of the run. */
  onEvent?: (e: TdpEvent) => void;
  /** Choices to replay, overriding the scenario's schedule mode. */
  replay?: readonly number[];
  /** Interleave at every atomic point (true) or only between ops (false); default from the scenario. */
  interleave?: boolean;
  /** Called after every scheduler step with the task that took it. */
  onStep?: (task: string, step: number) => void;
  /** Faults to inject besides the scenario's own (`--inject`). */
  inject?: InjectSpec[];
  mmu?: MmuOptions;
  /** When the invariants are checked: at the end only, or also after every op. */
  check?: "end" | "op";
  /** Add the summary of guest memory (`Report.guestMemory`) to the report: a pass over every GFN. */
  guestMemory?: boolean;
}

export interface OpResult {
  who: string;
  index: number;
  op: string;
  /** What the op found: pages accessed, dirty GFNs collected, young pages, ... */
  result: Record<string, number | string>;
}

export interface RunResult {
  report: Report;
  /** Whether the run interleaved at every atomic point (recorded in schedule files). */
  interleave: boolean;
  vm: Vm;
  host: Host;
  choices: number[];
  results: OpResult[];
}

/**
 * Twice the guest memory (shared and private backing) and 64 MiB for tables and control pages,
 * each rounded up to the host page size: a guest backed by 1 GiB pages gets its backing in
 * 1 GiB-aligned runs, which the blocks below the first one cannot hold.
 */
export function defaultHostMemory(scn: Scenario): number {
  const page = scn.vm.hugepages === "1GiB" ? 2 ** 30 : 2 * 2 ** 20;
  const up = (n: number) => Math.ceil(n / page) * page;
  return up(64 * 2 ** 20) + 2 * up(scn.vm.memory);
}

function hostPageLevel(scn: Scenario): 1 | 2 | 3 {
  return scn.vm.hugepages === "1GiB" ? 3 : scn.vm.hugepages === "2MiB" ? 2 : 1;
}

/** A scenario built and ready to run: the VM, its programs as tasks, and its checks. */
export interface BuiltRun {
  scenario: Scenario;
  vm: Vm;
  host: Host;
  clock: Clock;
  tasks: Task[];
  results: OpResult[];
  /** Whether the VMM has finalized the VM (`R_FINALIZED`): the vCPU tasks wait for it. */
  finalized: SharedFlag;
  /**
   * Invariant violations of the current state (`final` at the end of the run); `skipBackend`
   * leaves out the backend's own checks (`checkInvariants`).
   */
  check(final: boolean, skipBackend?: boolean): CheckResult;
  /**
   * Moves with every change an invariant check may see (the clock's `checkVersion` and the
   * host's `generation`): the explorer skips the check after a step that left it alone.
   */
  checkVersion: () => number;
  /** The same for what the backend's own checks read (`Clock.backendCheckVersion`). */
  backendCheckVersion: () => number;
}

/** Builds the host, the VM and one task per program, without running anything. */
export function buildRun(scn: Scenario, opts: RunOptions): BuiltRun {
  let host: Host;
  try {
    host = new Host({ memory: opts.hostMemory ?? defaultHostMemory(scn) });
  } catch (e) {
    // Say which setting asked for it: the guest's size, through the default host, or --host-memory.
    throw new RunInputError(
      opts.hostMemory === undefined
        ? `${scn.source}: vm.memory: a guest of ${scn.vm.memory} bytes needs a host of ${defaultHostMemory(scn)} bytes (2 × its memory + 64MiB, in host pages), and ${(e as Error).message}`
        : `--host-memory: ${(e as Error).message}`,
    );
  }
  // The run's clock and event bus are the host's: its one VM and the backend's platform parts
  // see the same ones.
  const clock = new Clock();
  host.container.register(CLOCK, { useValue: clock });
  host.container.register(EVENTS, { useValue: new EventSink(clock) });
  const source = isBackendSource(opts.backend) ? opts.backend : null;
  source?.prepareHost(host);
  opts.configureHost?.(host.container);
  const events = host.container.resolve(EVENTS);
  if (opts.onEvent) events.subscribe(opts.onEvent);
  const backend =
    source === null ? (opts.backend as Backend) : source.create(host, opts.configureVm);
  // A plugin's host ops are checked against its schema now that the backend is known.
  checkPluginOps(scn, backend);
  const programs = scn.vcpus.filter((p) => p.length > 0).length + (scn.host.length > 0 ? 1 : 0);
  const interleave = opts.interleave ?? scn.schedule.interleave ?? programs > 1;
  const vm = new Vm(
    host,
    {
      memory: scn.vm.memory,
      gpaw: scn.vm.gpaw,
      vcpus: scn.vm.vcpus,
      hostPageLevel: hostPageLevel(scn),
      tdxHugePages: opts.mmu?.tdxHugePages ?? scn.options.tdxHugePages,
    },
    backend,
    { clock, events, interleave, mmu: { strategy: scn.options.strategy, ...opts.mmu } },
  );
  for (const f of [...scn.inject, ...(opts.inject ?? [])]) {
    if (f.backend !== undefined && f.backend !== backend.name) continue;
    if (!backend.injectFault)
      throw new RunInputError(
        `${scn.source}: inject: backend '${backend.name}' has no fault injection`,
      );
    try {
      backend.injectFault(vm, f);
    } catch (e) {
      throw new RunInputError(`${scn.source}: inject ${f.call}: ${(e as Error).message}`);
    }
  }

  const results: OpResult[] = [];
  const checkOp =
    opts.check === "op"
      ? () => {
          // The check looks from inside the step that ended the op, as an observer.
          const r = vm.clock.observe(() => checkInvariants(vm, { final: false }));
          if (r.violations.length > 0) throw new InvariantViolation(r.violations);
        }
      : null;
  const tasks: Task[] = [];
  const vcpuTasks: Task[] = [];
  // The VMM starts its vCPUs only once the VM is finalized, if the host program finalizes it.
  const start = new SharedFlag(vm.clock, R_FINALIZED, !scn.host.some((op) => op.op === "finalize"));
  scn.vcpus.forEach((ops, i) => {
    const t: Task = {
      name: `vcpu${i}`,
      op: vcpuProgram(vm, vm.vcpus[i]!, ops, results, checkOp, start),
      done: ops.length === 0,
      ctx: vm.vcpus[i]!.ctx,
    };
    tasks.push(t);
    vcpuTasks.push(t);
  });
  if (scn.host.length > 0) {
    // The teardown waits for each vCPU task to finish: it reads their completion, one resource each.
    const vcpusDone = () => {
      let all = true;
      for (let i = 0; i < vcpuTasks.length; i++)
        if (!isTaskDone(vcpuTasks, i, vm.clock)) all = false;
      return all;
    };
    tasks.push({
      name: "host",
      op: hostProgram(vm, scn.host, results, vcpusDone, checkOp, start),
      done: false,
      ctx: vm.hostCtx,
    });
  }
  return {
    scenario: scn,
    vm,
    host,
    clock,
    tasks,
    results,
    finalized: start,
    check: (final, skipBackend) => checkInvariants(vm, { final, skipBackend }),
    checkVersion: () => clock.checkVersion + host.generation,
    backendCheckVersion: () => clock.backendCheckVersion + host.generation,
  };
}

/** A source rather than an instance: a backend has no `prepareHost`. */
export function isBackendSource(b: BackendSource | Backend): b is BackendSource {
  return (
    typeof (b as BackendSource).prepareHost === "function" &&
    typeof (b as BackendSource).create === "function"
  );
}

/** Thrown by `--check op` when an op leaves the VM in a state that breaks an invariant. */
export class InvariantViolation extends ErrorOfKind("InvariantViolation") {
  constructor(readonly violations: Violation[]) {
    super(violations.map((v) => v.message).join("; "));
  }
}

/**
 * What an error thrown by a step means for a run: a violation the run found (a KVM_BUG, a
 * deadlock, a livelock, a lock not held where lockdep would assert it, a step reading state its
 * footprint does not hold), or bad input (rethrown as `RunInputError`). Anything else is a bug of
 * the emulator and propagates.
 */
export function classifyRunError(e: unknown, scn: Scenario, built: BuiltRun): Violation[] | null {
  const step = built.clock.tick;
  if (HostMemoryExhausted.is(e)) {
    throw new RunInputError(
      `${scn.source}: step ${step}: ${e.message} (the host has ${built.host.frames.totalFrames * 4096} bytes; give it more with --host-memory)`,
    );
  }
  if (OpError.is(e)) throw new RunInputError(`${scn.source}: step ${step}: ${e.message}`);
  if (ReplayDivergence.is(e)) throw new RunInputError(`replay: ${e.message}`);
  if (InvariantViolation.is(e)) return e.violations;
  if (KvmBug.is(e)) return [{ check: "kvm-bug", message: e.message, step }];
  if (GuestLivelock.is(e)) return [{ check: "livelock", message: e.message, step }];
  if (DeadlockError.is(e)) return [{ check: "deadlock", message: e.message, step }];
  if (LockdepError.is(e)) return [{ check: "lockdep", message: e.message, step }];
  if (UnrecordedAccess.is(e)) return [{ check: "footprint-audit", message: e.message, step }];
  return null;
}

export function runScenario(scn: Scenario, opts: RunOptions): RunResult {
  const built = buildRun(scn, opts);
  const { vm, host, clock, tasks, results } = built;
  const violations: Violation[] = [];
  let checked = 0;
  const mode = opts.replay ? "replay" : scn.schedule.mode;
  if (mode === "replay" && !opts.replay)
    throw new RunInputError(
      `${scn.source}: schedule mode replay needs the schedule's choices (schedule.file)`,
    );
  const sched = new Scheduler(mode, scn.schedule.seed, opts.replay ?? []);
  let complete = false;
  try {
    complete = sched.run(
      tasks,
      clock,
      opts.onStep ? (t) => opts.onStep!(t.name, sched.choices.length) : undefined,
    );
  } catch (e) {
    const v = classifyRunError(e, scn, built);
    if (v === null) throw e;
    violations.push(...v);
  }
  if (violations.length === 0) {
    // A replay that stops early (a schedule recorded up to a violation) is checked as the
    // explorer checked it: the state between two steps, not the end of a run.
    const r = built.check(complete);
    checked += r.checked;
    violations.push(...r.violations);
  } else {
    checked++;
  }
  const report = buildReport(scn, vm, clock.step, { checked, violations }, results, complete);
  if (opts.guestMemory) report.guestMemory = guestMemory(vm);
  return { report, vm, host, choices: sched.choices, results, interleave: vm.hostCtx.interleave };
}

/** An op's start or end event, with `detail` as JSON; nothing is serialized when no one listens. */
function opEvent(vm: Vm, who: string, op: string, phase: "start" | "end", detail: object): void {
  if (vm.events.on)
    vm.events.emit({ type: "op", vm: vm.id, who, op, phase, detail: JSON.stringify(detail) });
}

function* vcpuProgram(
  vm: Vm,
  vcpu: Vcpu,
  ops: GuestOp[],
  results: OpResult[],
  afterOp: (() => void) | null,
  start: SharedFlag,
): Op {
  const who = `vcpu${vcpu.id}`;
  while (!start.get()) yield BLOCKED;
  let vmpl = 0;
  for (let i = 0; i < ops.length; i++) {
    yield;
    const op = ops[i]!;
    // The vCPU's first KVM_RUN loads its roots (kvm_mmu_load) before the guest runs anything.
    // The load ends in the step the op begins in: an op whose first atomic point is at its start
    // (a conversion's slots_lock) then takes it in the same step, after the load. That step may
    // block on the lock having loaded the roots; its footprint, the wait set, holds both. No
    // order is lost: the load touches mmu_lock (for read), the roots, the vCPU's own cache and
    // the table pool's free list (its top-up), and the vCPU's TLB-flush request, which commute
    // with everything a slots_lock holder does before its mmu_lock write section.
    if (i === 0 && vm.rootsStale(vcpu)) yield* vm.reloadRoots(vcpu, true, true);
    // The vCPU runs the op at its VMPL (an SVSM setup switches levels through the SVSM; the
    // model keeps one VMSA per vCPU and only the level changes).
    const opVmpl = "vmpl" in op ? op.vmpl : 0;
    if (opVmpl !== vmpl) {
      if (!vm.backend.enterVmpl)
        throw new OpError(
          `vcpu${vcpu.id} op ${i} (${op.op}): backend '${vm.backend.name}' has no VMPLs; vmpl ${opVmpl} needs SEV-SNP`,
        );
      vm.backend.enterVmpl(vm, vcpu.id, opVmpl);
      vmpl = opVmpl;
    }
    opEvent(vm, who, op.op, "start", op);
    const result: Record<string, number | string> = {};
    switch (op.op) {
      case "access": {
        const tally = new AccessTally();
        yield* guestAccessRange(vm, vcpu, op.gpa, op.count, op.write, op.shared, tally);
        Object.assign(result, { ok: tally.ok, exceptions: tally.exceptions, mmio: tally.mmio });
        break;
      }
      case "accept": {
        let ok = 0,
          exceptions = 0;
        const level = op.size === PAGE_SIZE ? 1 : 2;
        for (let p = 0; p < op.count; p++) {
          const o = yield* guestAcceptPage(vm, vcpu, op.gpa + p * op.size, level);
          if (o === "ok") ok++;
          else exceptions++;
        }
        Object.assign(result, { ok, exceptions });
        break;
      }
      case "convert": {
        // MapGPA / page-state change: the guest asks, the VMM sets the attributes.
        const gfn = op.gpa / PAGE_SIZE;
        result.changed = yield* hostOps.convertMemory(
          vm,
          vcpu.ctx,
          gfn,
          gfn + op.size / PAGE_SIZE,
          op.to === "private",
          vcpu.id,
          true,
        );
        break;
      }
      case "rmpadjust": {
        let ok = 0,
          exceptions = 0;
        const level = op.size === PAGE_SIZE ? 1 : 2;
        for (let p = 0; p < op.count; p++) {
          const o = yield* guestRmpAdjustPage(
            vm,
            vcpu,
            op.gpa + p * op.size,
            level,
            op.target,
            op.perms,
            op.vmsa,
          );
          if (o === "ok") ok++;
          else exceptions++;
        }
        Object.assign(result, { ok, exceptions });
        break;
      }
      case "psc": {
        const r = yield* guestPageStateChange(
          vm,
          vcpu,
          op.gpa / PAGE_SIZE,
          op.size / PAGE_SIZE,
          op.to === "private",
          op.pageSize === PAGE_SIZE ? 1 : 2,
        );
        Object.assign(result, r);
        break;
      }
    }
    results.push({ who, index: i, op: op.op, result });
    opEvent(vm, who, op.op, "end", result);
    afterOp?.();
  }
}

function* hostProgram(
  vm: Vm,
  ops: HostOp[],
  results: OpResult[],
  vcpusDone: () => boolean,
  afterOp: (() => void) | null,
  start: SharedFlag,
): Op {
  const ctx = vm.hostCtx;
  for (let i = 0; i < ops.length; i++) {
    yield;
    const op = ops[i]!;
    // The VM's file descriptor is gone: no ioctl reaches it. A raw call is the untrusted host
    // going around KVM to the firmware, which still answers.
    const opName = op.op === "plugin" ? op.name : op.op;
    if (vm.dead && op.op !== "raw") throw new OpError(`${opName}: the VM was torn down`);
    opEvent(vm, "host", opName, "start", op);
    const result: Record<string, number | string> = {};
    const gfn = "gpa" in op && op.gpa !== undefined ? op.gpa / PAGE_SIZE : 0;
    const end = "size" in op ? gfn + op.size / PAGE_SIZE : 0;
    switch (op.op) {
      case "populate": {
        // KVM_TDX_INIT_MEM_REGION / KVM_SEV_SNP_LAUNCH_UPDATE stop at the first page the
        // firmware refuses and return its errno to the VMM: the op's status.
        const r = yield* hostOps.populate(vm, vm.hostVcpu, gfn, end, op.measure, true);
        result.mapped = r.mapped;
        if (r.status !== 0) {
          result.status = r.status;
          if (r.detail) result.detail = r.detail;
        }
        break;
      }
      case "finalize":
        result.status = hostOps.finalize(vm);
        start.raise();
        break;
      case "convert":
        result.changed = yield* hostOps.convertMemory(
          vm,
          ctx,
          gfn,
          end,
          op.to === "private",
          -1,
          true,
        );
        break;
      case "zap":
        result.zapped = yield* hostOps.zapGfnRange(vm, ctx, gfn, end);
        break;
      case "dirty-log":
        if (op.action === "start") yield* hostOps.dirtyLogStart(vm, ctx, op.slot, true);
        else if (op.action === "collect")
          result.dirty = (yield* hostOps.dirtyLogCollect(vm, ctx, op.slot, true)).length;
        else result.recovered = yield* hostOps.dirtyLogStop(vm, ctx, op.slot, true);
        break;
      case "age":
        result.young = yield* hostOps.age(vm, ctx, gfn, end);
        break;
      case "split":
        result.split = yield* hostOps.split(vm, ctx, gfn, end, true);
        break;
      case "recover":
        result.recovered = yield* hostOps.recover(vm, ctx, gfn, end);
        break;
      case "delete-memslot":
        yield* hostOps.deleteMemslot(vm, ctx, op.slot, true);
        break;
      case "raw": {
        if (!vm.backend.rawCall)
          throw new OpError(`raw ${op.call}: backend '${vm.backend.name}' takes no raw calls`);
        vm.clock.step++;
        let r: { status: string; detail: string };
        try {
          r = vm.backend.rawCall(vm, op.call, {
            gpa: op.gpa,
            level: op.level,
            page: op.page,
            vcpu: op.vcpu,
            field: op.field,
            value: op.value,
            mask: op.mask,
          });
        } catch (e) {
          // tdpemu's own errors keep their kind (a KVM_BUG, a step reading what it did not
          // record, a lock assertion): only the backend's complaint about its operands is input.
          if (errorKind(e) !== undefined) throw e;
          throw new OpError(`raw ${op.call}: ${(e as Error).message}`);
        }
        result.status = r.status;
        result.detail = r.detail;
        break;
      }
      case "plugin": {
        // The backend's own ioctl: one atomic point; its operands were checked when the run was built.
        const name = op.name.slice(op.name.indexOf(".") + 1);
        if (!vm.backend.runHostOp)
          throw new OpError(`${op.name}: backend '${vm.backend.name}' runs no host ops`);
        vm.clock.step++;
        result.status = vm.backend.runHostOp(vm, name, op.values!);
        break;
      }
      case "teardown":
      case "terminate":
        // The VMM destroys the VM only once its vCPU threads have stopped (and terminates it
        // only then: KVM_TDX_TERMINATE_VM's trylock of every vCPU would fail with -EBUSY).
        while (!vcpusDone()) yield BLOCKED;
        if (op.op === "terminate") result.status = hostOps.terminate(vm);
        yield* hostOps.teardown(vm, ctx, [vm.hostVcpu]);
        break;
    }
    results.push({ who: "host", index: i, op: opName, result });
    opEvent(vm, "host", opName, "end", result);
    afterOp?.();
  }
}
