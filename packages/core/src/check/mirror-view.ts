/**
 * The read-only view of a VM's roots that a backend's invariant checks walk (`MirrorView`):
 * the mirror roots' present entries (what TDX compares with its S-EPT) and the direct roots'
 * (what SEV compares with its RMP).
 *
 * It is checked after every explorer step, so it is one object per VM, made on first use, and
 * its walks are methods that take the callback as an argument: nothing is allocated per check.
 */
import { PAGES_PER_LEVEL, sptIndex } from "../arch/levels.js";
import { isLastSpte, isShadowPresent, spteToPfn } from "../arch/spte.js";
import type { MirrorEntryKind, MirrorView } from "../backend/backend.js";
import type { PtPool } from "../mem/pt-pool.js";
import type { Vm } from "../vm/vm.js";

type MirrorCb = (gfn: number, level: number, kind: MirrorEntryKind, pfn: number, externalSpt: number) => void;
type DirectCb = (gfn: number, level: number, kind: MirrorEntryKind, pfn: number) => void;

class PoolMirrorView implements MirrorView {
  private readonly pool: PtPool;

  constructor(private readonly vm: Vm) {
    this.pool = vm.host.pool;
  }

  forEach(cb: MirrorCb): void {
    for (const root of this.vm.mmu.roots) if (root.mirror && !root.invalid) this.walkMirror(cb, root.slot, root.level, 0);
  }

  private walkMirror(cb: MirrorCb, slot: number, level: number, base: number): void {
    const pool = this.pool;
    const mem = pool.tableMem(slot);
    const off = pool.tableOff(slot);
    for (let i = 0; i < 512; i++) {
      const lo = mem[off + 2 * i]!;
      if (!isShadowPresent(lo)) continue;
      const hi = mem[off + 2 * i + 1]!;
      const gfn = base + i * PAGES_PER_LEVEL[level]!;
      const pfn = spteToPfn(lo, hi);
      if (isLastSpte(lo, level)) {
        cb(gfn, level, "leaf", pfn, -1);
      } else {
        const child = pool.pfnToSlot(pfn);
        cb(gfn, level, "table", pfn, pool.spExternal[child]!);
        this.walkMirror(cb, child, level - 1, gfn);
      }
    }
  }

  forEachDirect(cb: DirectCb): void {
    for (const root of this.vm.mmu.roots) if (!root.mirror && !root.invalid) this.walkDirect(cb, root.slot, root.level, 0);
  }

  private walkDirect(cb: DirectCb, slot: number, level: number, base: number): void {
    const pool = this.pool;
    const bits = this.vm.mmu.gfnDirectBits;
    const mem = pool.tableMem(slot);
    const off = pool.tableOff(slot);
    for (let i = 0; i < 512; i++) {
      const lo = mem[off + 2 * i]!;
      if (!isShadowPresent(lo)) continue;
      const hi = mem[off + 2 * i + 1]!;
      const raw = base + i * PAGES_PER_LEVEL[level]!;
      const gfn = bits !== 0 && raw >= bits ? raw - bits : raw;
      if (isLastSpte(lo, level)) cb(gfn, level, "leaf", spteToPfn(lo, hi));
      else {
        cb(gfn, level, "table", spteToPfn(lo, hi));
        this.walkDirect(cb, pool.pfnToSlot(spteToPfn(lo, hi)), level - 1, raw);
      }
    }
  }

  inFlight(gfn: number, level: number): boolean {
    return this.vm.mmu.isMirrorInFlight(gfn, level);
  }

  lookup(gfn: number, level: number): { kind: MirrorEntryKind; pfn: number; externalSpt: number } | null {
    const pool = this.pool;
    for (const root of this.vm.mmu.roots) {
      if (!root.mirror || root.invalid) continue;
      let slot = root.slot;
      for (let l = root.level; l >= level; l--) {
        const mem = pool.tableMem(slot);
        const off = pool.tableOff(slot) + 2 * sptIndex(gfn, l);
        const lo = mem[off]!;
        const hi = mem[off + 1]!;
        if (!isShadowPresent(lo)) return null;
        const leaf = isLastSpte(lo, l);
        if (l === level) {
          const pfn = spteToPfn(lo, hi);
          return leaf ? { kind: "leaf", pfn, externalSpt: -1 } : { kind: "table", pfn, externalSpt: pool.spExternal[pool.pfnToSlot(pfn)]! };
        }
        if (leaf) return null;
        slot = pool.pfnToSlot(spteToPfn(lo, hi));
      }
    }
    return null;
  }
}

const views = new WeakMap<Vm, PoolMirrorView>();

/** The mirror roots' present entries, for a backend's own checks. */
export function mirrorView(vm: Vm): MirrorView {
  let v = views.get(vm);
  if (v === undefined) {
    v = new PoolMirrorView(vm);
    views.set(vm, v);
  }
  return v;
}
