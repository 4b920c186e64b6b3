/**
 * Invariant checks over a VM's tables, by a fresh walk that trusts no counter:
 * - every present leaf points to an allocated host frame owned by this VM, and to the very frame
 *   the memslot backs its GFN with (shared memory, or guest_memfd for private memory);
 * - no frame is both free and mapped: every table an SPTE points to is a live pool page of
 *   this VM at the right level, and no table is linked twice;
 * - the counters equal a recount: leaves per level and linked non-root tables;
 * - every page the VM allocated is reachable or waiting for its RCU grace period (no leak);
 * - every SPTE is well formed: bit 63 set; a non-present SPTE is exactly the empty value or
 *   FROZEN_SPTE; no leaf above 1G; W implies MMU-writable implies host-writable
 *   (`check_spte_writable_invariants`);
 * - at the end of a run, no FROZEN SPTE is left in a reachable table and no table page is
 *   half-way through being linked.
 */
import { PAGES_PER_LEVEL, sptIndex } from "../arch/levels.js";
import {
  EPT_W, HI_HOST_WRITABLE, HI_MMU_WRITABLE, HI_SUPPRESS_VE, SHADOW_NONPRESENT_HI, SHADOW_NONPRESENT_LO,
  isFrozen, isLastSpte, isShadowPresent, spteToPfn,
} from "../arch/spte.js";
import { KVM_MAX_HUGEPAGE_LEVEL } from "../arch/levels.js";
import { OWNER_FREE } from "../mem/frame-allocator.js";
import type { Vm } from "../vm/vm.js";
import type { MirrorView } from "../backend/backend.js";

export interface Violation {
  check: string;
  message: string;
  step: number;
}

export interface CheckResult {
  checked: number;
  violations: Violation[];
}

const MAX_REPORTED = 20;

/** The checks a pass runs; the last only at the end of a run. */
export const INVARIANTS = [
  "leaf-frame-owned-by-vm", "leaf-maps-backing", "frame-free-and-mapped", "table-linked-once",
  "table-role", "spte-well-formed", "stats-match-tables", "no-leaked-table", "no-frozen-spte",
] as const;

/** The mirror roots' present entries, for a backend's own checks. */
export function mirrorView(vm: Vm): MirrorView {
  const pool = vm.host.pool;
  return {
    forEach(cb) {
      const walk = (slot: number, level: number, base: number) => {
        const mem = pool.tableMem(slot);
        const off = pool.tableOff(slot);
        for (let i = 0; i < 512; i++) {
          const lo = mem[off + 2 * i]!;
          const hi = mem[off + 2 * i + 1]!;
          if (!isShadowPresent(lo)) continue;
          const gfn = base + i * PAGES_PER_LEVEL[level]!;
          const pfn = spteToPfn(lo, hi);
          if (isLastSpte(lo, level)) {
            cb(gfn, level, "leaf", pfn, -1);
          } else {
            const child = pool.pfnToSlot(pfn);
            cb(gfn, level, "table", pfn, pool.spExternal[child]!);
            walk(child, level - 1, gfn);
          }
        }
      };
      for (const root of vm.mmu.roots) if (root.mirror && !root.invalid) walk(root.slot, root.level, 0);
    },
    forEachDirect(cb) {
      const bits = vm.mmu.gfnDirectBits;
      const walk = (slot: number, level: number, base: number) => {
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
            walk(pool.pfnToSlot(spteToPfn(lo, hi)), level - 1, raw);
          }
        }
      };
      for (const root of vm.mmu.roots) if (!root.mirror && !root.invalid) walk(root.slot, root.level, 0);
    },
    inFlight: (gfn, level) => vm.mmu.isMirrorInFlight(gfn, level),
    lookup(gfn, level) {
      for (const root of vm.mmu.roots) {
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
    },
  };
}

export function checkInvariants(vm: Vm, opts: { final: boolean }): CheckResult {
  const mmu = vm.mmu;
  const pool = vm.host.pool;
  const frames = vm.host.frames;
  const step = vm.clock.step;
  const violations: Violation[] = [];
  const fail = (check: string, message: string) => {
    if (violations.length < MAX_REPORTED) violations.push({ check, message, step });
  };
  const pages = [0, 0, 0, 0, 0, 0];
  let tables = 0;
  const seen = new Set<number>();
  let linkingNow = 0;

  const bits = mmu.gfnDirectBits;
  const privateInDirect = vm.backend.hasPrivateMemory && !vm.backend.usesMirrorRoot;
  const checkBacking = (gfn: number, level: number, pfn: number, mirror: boolean) => {
    const slot = vm.memslots.find(gfn);
    if (!slot) {
      fail("leaf-maps-backing", `leaf at gfn 0x${gfn.toString(16)} level ${level} has no memslot`);
      return;
    }
    const priv = mirror || (privateInDirect && vm.attributes.isPrivate(gfn));
    const backing = priv ? slot.gmem : slot.shared;
    const want = backing ? backing.peekPfn(gfn - slot.baseGfn) : -1;
    if (want < 0 || want - (want % PAGES_PER_LEVEL[level]!) !== pfn) {
      fail("leaf-maps-backing", `leaf at gfn 0x${gfn.toString(16)} level ${level} maps frame 0x${pfn.toString(16)}; the ${priv ? "guest_memfd" : "shared memory"} backing has ${want < 0 ? "no frame" : `0x${want.toString(16)}`}`);
    }
  };

  const walk = (slot: number, level: number, baseGfn: number, mirror: boolean) => {
    const mem = pool.tableMem(slot);
    const off = pool.tableOff(slot);
    const span = PAGES_PER_LEVEL[level]!;
    for (let i = 0; i < 512; i++) {
      const lo = mem[off + 2 * i]!;
      const hi = mem[off + 2 * i + 1]!;
      const rawGfn = baseGfn + i * span;
      // A direct root of a VM with a shared bit holds shared GFNs at their aliased index; the
      // kernel's GFNs (`iter->gfn`, `sp->gfn`) never include the bit.
      const gfn = !mirror && bits !== 0 && rawGfn >= bits ? rawGfn - bits : rawGfn;
      if (isFrozen(lo, hi)) {
        if (opts.final) fail("no-frozen-spte", `FROZEN_SPTE left at gfn 0x${gfn.toString(16)} level ${level}${mirror ? " (mirror)" : ""}`);
        continue;
      }
      if (!isShadowPresent(lo)) {
        if (lo !== SHADOW_NONPRESENT_LO || hi !== SHADOW_NONPRESENT_HI) {
          fail("spte-well-formed", `non-present SPTE 0x${hi.toString(16).padStart(8, "0")}${lo.toString(16).padStart(8, "0")} at gfn 0x${gfn.toString(16)} level ${level} is neither empty nor FROZEN`);
        }
        continue;
      }
      if ((hi & HI_SUPPRESS_VE) === 0) fail("spte-well-formed", `present SPTE at gfn 0x${gfn.toString(16)} level ${level} lacks bit 63`);
      const pfn = spteToPfn(lo, hi);
      if (isLastSpte(lo, level)) {
        if (level > KVM_MAX_HUGEPAGE_LEVEL) fail("spte-well-formed", `leaf at level ${level} (gfn 0x${gfn.toString(16)})`);
        if (((lo & EPT_W) !== 0 && (hi & HI_MMU_WRITABLE) === 0) || ((hi & HI_MMU_WRITABLE) !== 0 && (hi & HI_HOST_WRITABLE) === 0)) {
          fail("spte-well-formed", `leaf at gfn 0x${gfn.toString(16)} level ${level} breaks W ⇒ MMU-writable ⇒ host-writable`);
        }
        pages[level]!++;
        const owner = frames.ownerOfPfn(pfn);
        if (owner === OWNER_FREE) fail("frame-free-and-mapped", `leaf at gfn 0x${gfn.toString(16)} level ${level} maps free frame 0x${pfn.toString(16)}`);
        else if (owner !== vm.owner) fail("leaf-frame-owned-by-vm", `leaf at gfn 0x${gfn.toString(16)} maps frame 0x${pfn.toString(16)} owned by ${owner}, not VM ${vm.owner}`);
        else checkBacking(gfn, level, pfn, mirror);
        continue;
      }
      const child = pool.pfnToSlot(pfn);
      if (child < 0 || !pool.isLive(child)) {
        fail("frame-free-and-mapped", `table entry at gfn 0x${gfn.toString(16)} level ${level} points to frame 0x${pfn.toString(16)}, which is not a live table page`);
        continue;
      }
      if (seen.has(child)) {
        fail("table-linked-once", `table page ${child} is linked more than once (again at gfn 0x${gfn.toString(16)} level ${level})`);
        continue;
      }
      // A mirror table published before its backend call returned (strategy atomic-then-hook) is
      // still being linked: KVM accounts it once the call is done.
      const linking = mirror && mmu.isMirrorInFlight(gfn, level);
      seen.add(child);
      if (linking) linkingNow++;
      if (pool.spOwner[child] !== vm.id || pool.spLevel[child] !== level - 1 || pool.spGfn[child] !== gfn) {
        fail("table-role", `table page ${child} at gfn 0x${gfn.toString(16)} level ${level - 1} says owner ${pool.spOwner[child]}, level ${pool.spLevel[child]}, gfn 0x${pool.spGfn[child]!.toString(16)}`);
      }
      if (!linking) tables++;
      walk(child, level - 1, rawGfn, mirror);
    }
  };

  for (const root of mmu.roots) {
    if (!pool.isLive(root.slot)) {
      fail("frame-free-and-mapped", `root ${root.slot} is in the root list but its page is free`);
      continue;
    }
    seen.add(root.slot);
    walk(root.slot, root.level, 0, root.mirror);
  }

  for (let level = 1; level <= 3; level++) {
    if (pages[level] !== mmu.stats.pages[level]) {
      fail("stats-match-tables", `pages at level ${level}: counter ${mmu.stats.pages[level]}, tables hold ${pages[level]}`);
    }
  }
  if (tables !== mmu.stats.tablePages) fail("stats-match-tables", `tablePages: counter ${mmu.stats.tablePages}, tables hold ${tables}`);

  let live = 0;
  for (let s = 0; s < pool.capacity; s++) if (pool.spLive[s] === 1 && pool.spOwner[s] === vm.id) live++;
  const expected = seen.size - linkingNow + mmu.deferredFrees + mmu.inFlightSps;
  if (live !== expected) {
    fail("no-leaked-table", `VM holds ${live} table pages; ${seen.size} are reachable, ${mmu.deferredFrees} wait for a grace period and ${mmu.inFlightSps} are being linked`);
  }
  if (opts.final && mmu.inFlightSps !== 0) fail("no-leaked-table", `${mmu.inFlightSps} table pages allocated and never linked or freed`);
  if (vm.backend.checkInvariants && !vm.dead) {
    for (const v of vm.backend.checkInvariants(vm, mirrorView(vm))) fail(v.check, v.message);
  }
  return { checked: opts.final ? INVARIANTS.length : INVARIANTS.length - 1, violations };
}
