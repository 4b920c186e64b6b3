/**
 * Random host and guest operations for property tests (fast-check): guest accesses, zaps,
 * splits, recoveries, aging, conversions and dirty logging over a 16 MiB guest.
 */
import fc from "fast-check";
import { expect } from "vitest";
import { guestAccessPage, hostOps, type Vm } from "../src/testing.js";
import { MiB, run } from "./helpers.js";

export const NPAGES = (16 * MiB) / 4096; // 4096 pages: eight 2M regions

export type Cmd =
  | { k: "access"; gfn: number; n: number; write: boolean; shared: boolean }
  | { k: "zap" | "split" | "recover" | "age"; gfn: number; n: number }
  | { k: "convert"; gfn: number; n: number; priv: boolean }
  | { k: "dirty"; action: "start" | "collect" | "stop" };

const gfnArb = fc.oneof(
  fc.integer({ min: 0, max: NPAGES - 1 }),
  fc.constantFrom(0, 511, 512, 1023, 2048, NPAGES - 1),
);
export const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      k: fc.constant("access" as const),
      gfn: gfnArb,
      n: fc.integer({ min: 1, max: 600 }),
      write: fc.boolean(),
      shared: fc.boolean(),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constantFrom("zap" as const, "split" as const, "recover" as const, "age" as const),
      gfn: gfnArb,
      n: fc.integer({ min: 1, max: 2048 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constant("convert" as const),
      gfn: gfnArb,
      n: fc.integer({ min: 1, max: 1024 }),
      priv: fc.boolean(),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant("dirty" as const),
      action: fc.constantFrom("start" as const, "collect" as const, "stop" as const),
    }),
  },
);

export function apply(vm: Vm, c: Cmd, mirror: boolean): void {
  const ctx = vm.hostCtx;
  const end = (g: number, n: number) => Math.min(NPAGES, g + n);
  switch (c.k) {
    case "access":
      for (let g = c.gfn; g < end(c.gfn, c.n); g++) {
        expect(run(guestAccessPage(vm, vm.vcpus[0]!, g * 4096, c.write, c.shared))).toBe("ok");
      }
      break;
    case "zap":
      run(hostOps.zapGfnRange(vm, ctx, c.gfn, end(c.gfn, c.n)));
      break;
    case "split":
      run(hostOps.split(vm, ctx, c.gfn, end(c.gfn, c.n)));
      break;
    case "recover":
      run(hostOps.recover(vm, ctx, c.gfn, end(c.gfn, c.n)));
      break;
    case "age":
      run(hostOps.age(vm, ctx, c.gfn, end(c.gfn, c.n)));
      break;
    case "convert":
      if (mirror) run(hostOps.convertMemory(vm, ctx, c.gfn, end(c.gfn, c.n), c.priv));
      break;
    case "dirty":
      if (mirror) break; // guest_memfd slots cannot log dirty pages
      if (c.action === "start") run(hostOps.dirtyLogStart(vm, ctx, 0));
      else if (c.action === "collect") {
        if (vm.memslots.byId(0)!.dirtyBitmap) run(hostOps.dirtyLogCollect(vm, ctx, 0));
      } else run(hostOps.dirtyLogStop(vm, ctx, 0));
      break;
  }
}
