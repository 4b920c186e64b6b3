/**
 * Random operation sequences (fast-check): after every op the invariants hold, and at the end
 * no FROZEN SPTE is left. Runs on a VM without private memory and on one with a mirror root,
 * whose fake backend also checks that the MMU calls it in a legal order.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  TdpIter,
  checkInvariants,
  hostOps,
  isLastSpte,
  isShadowPresent,
  spteToPfn,
  type Vm,
} from "../src/testing.js";
import { FakeMirrorBackend, MiB, makeVm, run } from "./helpers.js";
import { NPAGES, apply, cmdArb } from "./random-ops.js";

/** The mirror root's leaves and the backend's external leaves are the same map, GFN → PFN. */
function mirrorLeaves(vm: Vm, be: FakeMirrorBackend): void {
  const kvm = new Map<number, number>();
  for (const root of vm.mmu.roots) {
    if (!root.mirror) continue;
    const it = new TdpIter(vm.host.pool);
    for (it.start(root, 1, 0, 0); it.valid && it.gfn < NPAGES; it.next()) {
      if (isShadowPresent(it.oldLo) && isLastSpte(it.oldLo, it.level))
        kvm.set(it.gfn, spteToPfn(it.oldLo, it.oldHi));
    }
  }
  expect(new Map([...be.leaves].sort((a, b) => a[0] - b[0]))).toEqual(
    new Map([...kvm].sort((a, b) => a[0] - b[0])),
  );
}

describe("invariants after random operation sequences", () => {
  for (const [label, mirror] of [
    ["no private memory", false],
    ["mirror root (fake TDX)", true],
  ] as const) {
    it(`hold after every op: ${label}`, () => {
      let steps = 0;
      fc.assert(
        fc.property(
          fc.array(cmdArb, { minLength: 1, maxLength: 25 }),
          fc.constantFrom<1 | 2>(1, 2),
          fc.boolean(),
          (cmds, hostPageLevel, teardown) => {
            const be = mirror ? new FakeMirrorBackend() : undefined;
            const vm = makeVm({ memory: 16 * MiB, hostPageLevel, backend: be });
            for (const c of cmds) {
              apply(vm, c, mirror);
              steps++;
              const r = checkInvariants(vm, { final: false });
              expect(r.violations, JSON.stringify(c)).toEqual([]);
              if (be) mirrorLeaves(vm, be);
            }
            if (teardown) {
              run(hostOps.teardown(vm, vm.hostCtx));
              expect(vm.mmu.stats.tablePages).toBe(0);
              expect(vm.host.pool.liveTables).toBe(0);
              if (be) expect(be.leaves.size).toBe(0);
            }
            expect(checkInvariants(vm, { final: true }).violations).toEqual([]);
          },
        ),
        { numRuns: 200, seed: 42 },
      );
      expect(steps).toBeGreaterThan(1000);
    });
  }
});
