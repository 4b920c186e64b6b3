/**
 * Test fixtures: backends that live only in the core's tests (the core never imports a backend
 * package), and a VM factory.
 */
import {
  ACCESS_FAULT,
  ACCESS_OK,
  EBUSY,
  Host,
  Vm,
  emptyBackendStats,
  gpaToGfn,
  runToEnd,
  sharedGfnBit,
  type Backend,
  type BackendStats,
  type BackendVm,
  type Level,
  type Op,
  type StepMachine,
} from "../src/testing.js";

/** A VM without private memory: what the plain backend is, without importing it. */
export function bareBackend(): Backend {
  const stats = emptyBackendStats();
  return {
    name: "bare",
    description: "test backend without hooks",
    usesMirrorRoot: false,
    hasPrivateMemory: false,
    stats: () => stats,
  };
}

/** `bareBackend` with private memory: a fault is private when the access says so, as on TDX. */
export function privateBackend(): Backend {
  return {
    ...bareBackend(),
    hasPrivateMemory: true,
    classifyFault: (_vm: BackendVm, _gpa: number, privateAccess: boolean) => privateAccess,
  };
}

/**
 * A mirror-root backend in the shape of TDX, small enough to check the MMU against: it keeps
 * its own "external" table (GFN → PFN for leaves, a set of linked tables per level) and fails
 * loudly when the MMU calls it out of order (a leaf before its parent table, a removal of
 * something never added).
 */
export class FakeMirrorBackend implements Backend {
  readonly name = "fake-mirror";
  readonly description = "test mirror backend";
  readonly usesMirrorRoot = true;
  readonly hasPrivateMemory = true;
  readonly leaves = new Map<number, number>();
  readonly leafLevel = new Map<number, number>();
  /** Linked external tables, keyed by `${level}:${gfn}` of the entry that points to them. */
  readonly tables = new Set<string>();
  readonly calls: string[] = [];
  readonly counters: BackendStats = emptyBackendStats();
  /** Make the next n leaf adds fail with EBUSY. */
  failNextSet = 0;
  /** Make table frees fail (the page is then leaked). */
  failFree = false;
  private nextExt = 1;

  gfnDirectBits(vm: BackendVm): number {
    return sharedGfnBit(vm.config.gpaw);
  }

  classifyFault(_vm: BackendVm, _gpa: number, privateAccess: boolean): boolean {
    return privateAccess;
  }

  /** 4K only, as TDX in mainline: a huge mirror leaf would need a split hook. */
  maxMappingLevel(): Level {
    return 1;
  }

  /** External pages handed out and not yet given back. */
  readonly liveExternal = new Set<number>();

  allocExternalSpt(): number {
    const h = this.nextExt++;
    this.liveExternal.add(h);
    return h;
  }

  releaseExternalSpt(_vm: BackendVm, h: number): void {
    if (!this.liveExternal.delete(h))
      throw new Error(`external page ${h} released twice or never allocated`);
  }

  private count(name: string): void {
    this.calls.push(name);
    this.counters.calls[name] = (this.counters.calls[name] ?? 0) + 1;
  }

  /** The external table that must exist for an entry at (gfn, level): the parent's, unless level is the root's child. */
  private parentLinked(gfn: number, level: number, rootLevel: number): boolean {
    if (level >= rootLevel) return true;
    const span = 512 ** level;
    return this.tables.has(`${level + 1}:${gfn - (gfn % span)}`);
  }

  linkExternalSpt(vm: BackendVm, gfn: number, level: Level): number {
    this.count("link");
    const rootLevel = vm.config.gpaw > 48 ? 5 : 4;
    if (!this.parentLinked(gfn, level, rootLevel))
      throw new Error(`link at ${level}:${gfn} before its parent`);
    this.tables.add(`${level}:${gfn}`);
    return 0;
  }

  setExternalSpte(vm: BackendVm, gfn: number, level: Level, pfn: number): number {
    this.count("set");
    if (this.failNextSet > 0) {
      this.failNextSet--;
      this.counters.busy++;
      return EBUSY;
    }
    const rootLevel = vm.config.gpaw > 48 ? 5 : 4;
    if (!this.parentLinked(gfn, level, rootLevel))
      throw new Error(`leaf at ${level}:${gfn} before its table`);
    if (this.leaves.has(gfn)) throw new Error(`leaf ${gfn} set twice`);
    this.leaves.set(gfn, pfn);
    this.leafLevel.set(gfn, level);
    return 0;
  }

  removeExternalSpte(
    _vm: BackendVm,
    gfn: number,
    _level: Level,
    pfn: number,
  ): number | StepMachine {
    this.count("remove");
    if (this.leaves.get(gfn) !== pfn)
      throw new Error(`remove of leaf ${gfn} (pfn ${pfn}) that was never set`);
    this.leaves.delete(gfn);
    this.leafLevel.delete(gfn);
    return 0;
  }

  freeExternalSpt(): number {
    this.count("free");
    return this.failFree ? -5 : 0;
  }

  checkGuestAccess(
    _vm: BackendVm,
    _vcpu: number,
    gpa: number,
    _write: boolean,
    privateAccess: boolean,
  ): number {
    if (!privateAccess) return -1;
    const gfn = gpaToGfn(gpa);
    for (let level = 1; level <= 3; level++) {
      const base = gfn - (gfn % 512 ** (level - 1));
      if (this.leafLevel.get(base) === level) return ACCESS_OK;
    }
    return ACCESS_FAULT;
  }

  stats(): BackendStats {
    return this.counters;
  }
}

export interface TestVmOptions {
  memory?: number;
  hostMemory?: number;
  hostPageLevel?: 1 | 2 | 3;
  gpaw?: 48 | 52;
  vcpus?: number;
  backend?: Backend;
}

export function makeVm(o: TestVmOptions = {}): Vm {
  const memory = o.memory ?? 64 * 2 ** 20;
  const host = new Host({ memory: o.hostMemory ?? 2 * memory + 64 * 2 ** 20 });
  return new Vm(
    host,
    { memory, gpaw: o.gpaw ?? 48, vcpus: o.vcpus ?? 1, hostPageLevel: o.hostPageLevel ?? 1 },
    o.backend ?? bareBackend(),
  );
}

/** Backend pages the VM's vCPUs hold in their external-SPT caches (`mmu_external_spt_cache`). */
export function cachedExternalSpts(vm: Vm): number {
  return [...vm.vcpus, vm.hostVcpu].reduce((n, v) => n + v.ctx.externalSptCache, 0);
}

export function run<R>(op: Op<R>): R {
  return runToEnd(op);
}

export const MiB = 2 ** 20;
export const GiB = 2 ** 30;

/** Two vCPUs faulting neighbouring pages under one empty table: the race of the shared table. */
export const RACE = `
name: race
vm: { memory: 4MiB, vcpus: 2 }
backend: plain
schedule: { mode: random, seed: 1 }
vcpus:
  - - { op: access, gpa: 0x0, write: true }
  - - { op: access, gpa: 0x1000, write: true }
`;
