/**
 * Fixtures for the SEV backend's tests: a SEV VM on a host, the guest's accesses and PVALIDATEs
 * run to the end, the frames guest_memfd gives a GFN, and the hands of a malicious host on the
 * NPT (read and overwrite an entry of the direct root with TdpIter).
 */
import {
  Host,
  TdpIter,
  backendSource,
  Vm,
  guestAcceptPage,
  guestAccessPage,
  isLastSpte,
  isShadowPresent,
  makeLeafHi,
  makeLeafLo,
  runToEnd,
  spteToPfn,
  type AccessOutcome,
} from "@tdpemu/core/testing";
import { registration, type SevBackend } from "../src/testing.js";

export const MiB = 2 ** 20;

/** The `sev` backend as the command makes it: from its registration, through the containers. */
export const sev = backendSource(registration);

/** A SevBackend for a VM on `host`, resolved through the host's container (its RMP and ASIDs). */
export function newSev(host: Host): SevBackend {
  return sev.create(host) as SevBackend;
}

export interface SevFixture {
  host: Host;
  vm: Vm;
  be: SevBackend;
}

export interface SevVmOptions {
  host?: Host;
  hostPageLevel?: 1 | 2;
  memory?: number;
  vcpus?: number;
}

/** A SEV VM (all memory private, as it starts) with one vCPU. */
export function makeSevVm(o: SevVmOptions = {}): SevFixture {
  const host = o.host ?? new Host({ memory: 256 * MiB });
  const be = newSev(host);
  const vm = new Vm(
    host,
    {
      memory: o.memory ?? 32 * MiB,
      gpaw: 48,
      vcpus: o.vcpus ?? 1,
      hostPageLevel: o.hostPageLevel ?? 1,
    },
    be,
  );
  return { host, vm, be };
}

/** One guest access of the page at `gpa` by vCPU 0: private (C=1) unless `shared`. */
export function access(vm: Vm, gpa: number, write: boolean, shared = false): AccessOutcome {
  return runToEnd(guestAccessPage(vm, vm.vcpus[0]!, gpa, write, shared));
}

/** PVALIDATE of the 4K page at `gpa` by vCPU 0. */
export function accept(vm: Vm, gpa: number): AccessOutcome {
  return runToEnd(guestAcceptPage(vm, vm.vcpus[0]!, gpa));
}

/** The guest_memfd frame of `gfn`, or -1 if its host page is not populated. */
export function gmemPfn(vm: Vm, gfn: number): number {
  const slot = vm.memslots.find(gfn);
  return slot?.gmem?.peekPfn(gfn - slot.baseGfn) ?? -1;
}

/** The shared-memory frame of `gfn`, or -1. */
export function sharedPfn(vm: Vm, gfn: number): number {
  const slot = vm.memslots.find(gfn);
  return slot?.shared.peekPfn(gfn - slot.baseGfn) ?? -1;
}

export interface NptLeaf {
  level: number;
  /** The leaf's base GFN and the frame it maps (the base frame for a huge leaf). */
  gfn: number;
  pfn: number;
  lo: number;
  hi: number;
}

/** The leaf of vCPU 0's direct root that translates `gfn`, or null if none. */
export function nptLeaf(vm: Vm, gfn: number): NptLeaf | null {
  const root = vm.vcpus[0]!.root;
  if (root === null) return null;
  const it = new TdpIter(vm.host.pool);
  it.start(root, 1, gfn, 0);
  for (;;) {
    if (!it.valid || !isShadowPresent(it.oldLo)) return null;
    if (isLastSpte(it.oldLo, it.level))
      return {
        level: it.level,
        gfn: it.gfn,
        pfn: spteToPfn(it.oldLo, it.oldHi),
        lo: it.oldLo,
        hi: it.oldHi,
      };
    it.next();
  }
}

export interface SpteWrite {
  level: number;
  oldLo: number;
  oldHi: number;
  /** Puts the entry back as it was. */
  restore(): void;
}

/**
 * The malicious host: overwrite the entry at `level` on the walk of `gfn` in vCPU 0's direct
 * root (the tables above it must exist) with a writable leaf for `pfn`, behind KVM's back.
 */
export function writeNptLeaf(vm: Vm, gfn: number, level: number, pfn: number): SpteWrite {
  const root = vm.vcpus[0]!.root;
  if (root === null) throw new Error("vCPU 0 has no root yet");
  const it = new TdpIter(vm.host.pool);
  it.start(root, 1, gfn, 0);
  while (it.level > level) {
    if (!isShadowPresent(it.oldLo) || isLastSpte(it.oldLo, it.level))
      throw new Error(`no table at level ${it.level} on the walk of gfn 0x${gfn.toString(16)}`);
    it.next();
  }
  const mem = it.mem;
  const off = it.off;
  const oldLo = mem[off]!;
  const oldHi = mem[off + 1]!;
  mem[off] = makeLeafLo(pfn, level, true, false);
  mem[off + 1] = makeLeafHi(pfn, true);
  // A store behind the MMU's back: the walkers' path caches must hear of it, as they hear of
  // every store through TdpMmu.writeSpte.
  if (level > 1) vm.host.pool.upperWrites++;
  return {
    level,
    oldLo,
    oldHi,
    restore() {
      mem[off] = oldLo;
      mem[off + 1] = oldHi;
      if (level > 1) vm.host.pool.upperWrites++;
    },
  };
}
