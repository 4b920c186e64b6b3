/**
 * Random operation sequences (fast-check): after every op the invariants hold, and at the end
 * no FROZEN SPTE is left. Runs on a VM without private memory and on one with a mirror root,
 * whose fake backend also checks that the MMU calls it in a legal order.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { TdpIter, checkInvariants, guestAccessPage, hostOps, isLastSpte, isShadowPresent, spteToPfn, type Vm } from "../src/index.js";
import { FakeMirrorBackend, MiB, makeVm, run } from "./helpers.js";

const NPAGES = (16 * MiB) / 4096; // 4096 pages: eight 2M regions

type Cmd =
  | { k: "access"; gfn: number; n: number; write: boolean; shared: boolean }
  | { k: "zap" | "split" | "recover" | "age"; gfn: number; n: number }
  | { k: "convert"; gfn: number; n: number; priv: boolean }
  | { k: "dirty"; action: "start" | "collect" | "stop" };

const gfnArb = fc.oneof(fc.integer({ min: 0, max: NPAGES - 1 }), fc.constantFrom(0, 511, 512, 1023, 2048, NPAGES - 1));
const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ k: fc.constant("access" as const), gfn: gfnArb, n: fc.integer({ min: 1, max: 600 }), write: fc.boolean(), shared: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constantFrom("zap" as const, "split" as const, "recover" as const, "age" as const), gfn: gfnArb, n: fc.integer({ min: 1, max: 2048 }) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant("convert" as const), gfn: gfnArb, n: fc.integer({ min: 1, max: 1024 }), priv: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("dirty" as const), action: fc.constantFrom("start" as const, "collect" as const, "stop" as const) }) },
);

function apply(vm: Vm, c: Cmd, mirror: boolean): void {
  const ctx = vm.hostCtx;
  const end = (g: number, n: number) => Math.min(NPAGES, g + n);
  switch (c.k) {
    case "access":
      for (let g = c.gfn; g < end(c.gfn, c.n); g++) {
        expect(run(guestAccessPage(vm, vm.vcpus[0]!, g * 4096, c.write, c.shared))).toBe("ok");
      }
      break;
    case "zap": run(hostOps.zapGfnRange(vm, ctx, c.gfn, end(c.gfn, c.n))); break;
    case "split": run(hostOps.split(vm, ctx, c.gfn, end(c.gfn, c.n))); break;
    case "recover": run(hostOps.recover(vm, ctx, c.gfn, end(c.gfn, c.n))); break;
    case "age": run(hostOps.age(vm, ctx, c.gfn, end(c.gfn, c.n))); break;
    case "convert":
      if (mirror) run(hostOps.convertMemory(vm, ctx, c.gfn, end(c.gfn, c.n), c.priv));
      break;
    case "dirty":
      if (mirror) break; // guest_memfd slots cannot log dirty pages
      if (c.action === "start") run(hostOps.dirtyLogStart(vm, ctx, 0));
      else if (c.action === "collect") { if (vm.memslots.byId(0)!.dirtyBitmap) run(hostOps.dirtyLogCollect(vm, ctx, 0)); }
      else run(hostOps.dirtyLogStop(vm, ctx, 0));
      break;
  }
}

/** The mirror root's leaves and the backend's external leaves are the same map, GFN → PFN. */
function mirrorLeaves(vm: Vm, be: FakeMirrorBackend): void {
  const kvm = new Map<number, number>();
  for (const root of vm.mmu.roots) {
    if (!root.mirror) continue;
    const it = new TdpIter(vm.host.pool);
    for (it.start(root, 1, 0, 0); it.valid && it.gfn < NPAGES; it.next()) {
      if (isShadowPresent(it.oldLo) && isLastSpte(it.oldLo, it.level)) kvm.set(it.gfn, spteToPfn(it.oldLo, it.oldHi));
    }
  }
  expect(new Map([...be.leaves].sort((a, b) => a[0] - b[0]))).toEqual(new Map([...kvm].sort((a, b) => a[0] - b[0])));
}

describe("invariants after random operation sequences", () => {
  for (const [label, mirror] of [["no private memory", false], ["mirror root (fake TDX)", true]] as const) {
    it(`hold after every op: ${label}`, () => {
      let steps = 0;
      fc.assert(
        fc.property(fc.array(cmdArb, { minLength: 1, maxLength: 25 }), fc.constantFrom<1 | 2>(1, 2), fc.boolean(), (cmds, hostPageLevel, teardown) => {
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
        }),
        { numRuns: 200, seed: 42 },
      );
      expect(steps).toBeGreaterThan(1000);
    });
  }
});
