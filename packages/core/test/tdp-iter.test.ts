import { describe, expect, it } from "vitest";
import { TdpIter, guestAccessPage, type Vm } from "../src/testing.js";
import { makeVm, run } from "./helpers.js";

/** Map the given 4K GFNs through the fault path. */
function mapGfns(vm: Vm, gfns: number[]): void {
  const v = vm.vcpus[0]!;
  for (const g of gfns) run(guestAccessPage(vm, v, g * 4096, true, false));
}

function walk(
  vm: Vm,
  minLevel: number,
  start: number,
  end: number,
  onVisit?: (it: TdpIter, n: number) => void,
): [number, number][] {
  const it = new TdpIter(vm.host.pool);
  const out: [number, number][] = [];
  for (it.start(vm.vcpus[0]!.root!, minLevel, start, 0); it.valid && it.gfn < end; it.next()) {
    out.push([it.level, it.gfn]);
    onVisit?.(it, out.length);
  }
  return out;
}

const range = (a: number, b: number) => Array.from({ length: b - a }, (_, i) => a + i);

describe("TdpIter visits entries in the kernel's order", () => {
  it("down, side, up: pre-order, every entry of a present table, level by level", () => {
    const vm = makeVm();
    mapGfns(vm, [0, 513]);
    const visits = walk(vm, 1, 0, 1024);
    expect(visits).toEqual([
      [4, 0],
      [3, 0],
      [2, 0],
      ...range(0, 512).map((g) => [1, g]),
      [2, 512],
      ...range(512, 1024).map((g) => [1, g]),
    ]);
  });

  it("min_level stops the descent", () => {
    const vm = makeVm();
    mapGfns(vm, [0, 513]);
    expect(walk(vm, 2, 0, 1024)).toEqual([
      [4, 0],
      [3, 0],
      [2, 0],
      [2, 512],
    ]);
    expect(walk(vm, 3, 0, 1024)).toEqual([
      [4, 0],
      [3, 0],
    ]);
  });

  it("a range that starts and ends mid-table visits the covering upper entries, then only its own leaves", () => {
    const vm = makeVm();
    mapGfns(vm, [0]);
    expect(walk(vm, 1, 5, 10)).toEqual([
      [4, 0],
      [3, 0],
      [2, 0],
      [1, 5],
      [1, 6],
      [1, 7],
      [1, 8],
      [1, 9],
    ]);
  });

  it("a range that crosses a table boundary steps up and over", () => {
    const vm = makeVm();
    mapGfns(vm, [510, 512]);
    expect(walk(vm, 1, 510, 514)).toEqual([
      [4, 0],
      [3, 0],
      [2, 0],
      [1, 510],
      [1, 511],
      [2, 512],
      [1, 512],
      [1, 513],
    ]);
  });

  it("non-present entries are not descended into: an empty range visits only the upper levels", () => {
    const vm = makeVm();
    mapGfns(vm, [0]);
    // 1 GiB further there is no level-2 table: the level-3 entry is visited, nothing below it.
    expect(walk(vm, 1, 512 * 512, 512 * 512 + 4)).toEqual([
      [4, 0],
      [3, 512 * 512],
    ]);
  });

  it("after a yield, the walk restarts from the root toward the GFN it had reached", () => {
    const vm = makeVm();
    mapGfns(vm, [0]);
    let yielded = false;
    const visits = walk(vm, 1, 0, 10, (it) => {
      if (!yielded && it.level === 1 && it.gfn === 6) {
        it.yielded = true;
        yielded = true;
      }
    });
    expect(visits).toEqual([
      [4, 0],
      [3, 0],
      [2, 0],
      [1, 0],
      [1, 1],
      [1, 2],
      [1, 3],
      [1, 4],
      [1, 5],
      [1, 6],
      [4, 0],
      [3, 0],
      [2, 0],
      [1, 6],
      [1, 7],
      [1, 8],
      [1, 9],
    ]);
  });

  it("stepping down re-reads the entry: a table unlinked meanwhile is not entered", () => {
    const vm = makeVm();
    mapGfns(vm, [0]);
    const it = new TdpIter(vm.host.pool);
    it.start(vm.vcpus[0]!.root!, 1, 0, 0); // at level 4, snapshot says "present table"
    // Clear the level-4 entry behind the iterator's back.
    it.mem[it.off] = 0;
    it.mem[it.off + 1] = 0x80000000;
    it.next();
    expect([it.level, it.gfn]).toEqual([4, 512 ** 3]);
  });
});
