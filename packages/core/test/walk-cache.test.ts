/**
 * The walkers' path caches (`WalkOut` for the hardware walk, `TdpIter.startAtLeaf` for KVM's
 * walk) are exact: after any sequence of operations, a walk that uses its cache ends exactly
 * where a walk from the root ends. And the fault path counts the same steps with and without
 * them.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  TdpIter,
  WalkOut,
  eptWalk,
  guestAccessPage,
  hostOps,
  type Root,
  type Vm,
} from "../src/testing.js";
import { FakeMirrorBackend, MiB, makeVm, run } from "./helpers.js";
import { NPAGES, apply, cmdArb } from "./random-ops.js";

/** GFNs in a few 2M regions, so walks come back to regions whose tables changed meanwhile. */
const PROBES = [0, 1, 511, 512, 700, 1023, 2048, 2049, NPAGES - 1];

interface Walkers {
  out: WalkOut;
  iter: TdpIter;
}

/** Walks down from the root, as `tdp_iter` does, until the last level or a leaf. */
function walkDown(it: TdpIter, root: Root, gfn: number, bits: number): void {
  for (it.start(root, 1, gfn, bits); it.valid && it.level > 1; it.next()) {
    if ((it.oldLo & 0x800) === 0 || (it.oldLo & 0x80) !== 0) break;
  }
}

/**
 * One pair of walkers per probe and root kind, kept across operations: each cache holds the path
 * its probe took before the last operation, which is what a stale cache would reuse.
 */
function compareWalks(vm: Vm, walkers: Map<string, Walkers>): void {
  const pool = vm.host.pool;
  const bits = vm.mmu.gfnDirectBits;
  for (const root of vm.mmu.roots) {
    const rootBits = root.mirror ? 0 : bits;
    for (const gfn of PROBES) {
      const key = `${root.mirror}:${gfn}`;
      let w = walkers.get(key);
      if (!w) walkers.set(key, (w = { out: new WalkOut(), iter: new TdpIter(pool) }));
      // The hardware walk (direct roots only: the CPU never walks a mirror root).
      if (!root.mirror) {
        const plain = new WalkOut();
        const want = eptWalk(pool, root.slot, root.level, gfn + rootBits, false, null, plain);
        const got = eptWalk(pool, root.slot, root.level, gfn + rootBits, false, null, w.out);
        expect(
          { r: got, pfn: got === 0 ? w.out.pfn : 0, level: got === 0 ? w.out.level : 0 },
          `eptWalk gfn ${gfn}`,
        ).toEqual({
          r: want,
          pfn: want === 0 ? plain.pfn : 0,
          level: want === 0 ? plain.level : 0,
        });
      }
      // KVM's walk: a cached start must land where stepping down from the root lands.
      const fresh = new TdpIter(pool);
      walkDown(fresh, root, gfn, rootBits);
      if (w.iter.startAtLeaf(root, gfn, rootBits)) {
        expect(
          fresh.level,
          `iter gfn ${gfn}: the cache jumped to a leaf the root walk does not reach`,
        ).toBe(1);
        expect([w.iter.gfn, w.iter.tableSlot, w.iter.off, w.iter.oldLo, w.iter.oldHi]).toEqual([
          fresh.gfn,
          fresh.tableSlot,
          fresh.off,
          fresh.oldLo,
          fresh.oldHi,
        ]);
      }
      walkDown(w.iter, root, gfn, rootBits);
    }
  }
}

describe("walk caches", () => {
  for (const [label, mirror] of [
    ["no private memory", false],
    ["mirror root (fake TDX)", true],
  ] as const) {
    it(`a cached walk ends where a walk from the root ends, after any operations: ${label}`, () => {
      fc.assert(
        fc.property(
          fc.array(cmdArb, { minLength: 1, maxLength: 20 }),
          fc.constantFrom<1 | 2>(1, 2),
          (cmds, hostPageLevel) => {
            const vm = makeVm({
              memory: 16 * MiB,
              hostPageLevel,
              backend: mirror ? new FakeMirrorBackend() : undefined,
            });
            const w = new Map<string, Walkers>();
            for (const c of cmds) {
              apply(vm, c, mirror);
              compareWalks(vm, w);
            }
          },
        ),
        { numRuns: 150, seed: 7 },
      );
    });
  }

  it("a table replaced by a huge page (recovery after dirty logging) is not walked through from a cache", () => {
    const vm = makeVm({ memory: 16 * MiB, hostPageLevel: 2 });
    const walkers = new Map<string, Walkers>();
    run(hostOps.dirtyLogStart(vm, vm.hostCtx, 0));
    for (let g = 0; g < 1024; g++) run(guestAccessPage(vm, vm.vcpus[0]!, g * 4096, true, false));
    compareWalks(vm, walkers);
    run(hostOps.dirtyLogStop(vm, vm.hostCtx, 0));
    run(hostOps.recover(vm, vm.hostCtx, 0, 1024));
    expect(vm.mmu.stats.pages[2]).toBe(2);
    compareWalks(vm, walkers);
    // And the vCPU's own walkers: the next accesses find the huge leaves, with no fault.
    const faults = vm.mmu.stats.faults;
    for (let g = 0; g < 1024; g += 100)
      run(guestAccessPage(vm, vm.vcpus[0]!, g * 4096, true, false));
    expect(vm.mmu.stats.faults).toBe(faults);
  });

  it("the fault path counts the same steps whether or not its walks hit the cache", () => {
    const stepsFor = (useCache: boolean): number[] => {
      const vm = makeVm({ memory: 16 * MiB });
      const counts: number[] = [];
      for (let g = 0; g < 1200; g++) {
        // Without the cache every walk starts from the root: a changed upper-write count defeats it.
        if (!useCache) vm.host.pool.upperWrites++;
        const before = vm.clock.step;
        run(guestAccessPage(vm, vm.vcpus[0]!, g * 4096, true, false));
        counts.push(vm.clock.step - before);
        if (g === 600) run(hostOps.zapGfnRange(vm, vm.hostCtx, 0, 1024));
      }
      return counts;
    };
    expect(stepsFor(true)).toEqual(stepsFor(false));
  });
});
