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
import { gfnWithoutDirectBits } from "../arch/gpa.js";
import { KVM_MAX_HUGEPAGE_LEVEL, PAGES_PER_LEVEL, gfnRoundForLevel } from "../arch/levels.js";
import {
  EPT_W,
  HI_HOST_WRITABLE,
  HI_MMU_WRITABLE,
  HI_SUPPRESS_VE,
  SHADOW_NONPRESENT_HI,
  SHADOW_NONPRESENT_LO,
  isFrozen,
  isLastSpte,
  isShadowPresent,
  spteToPfn,
} from "../arch/spte.js";
import type { Backend } from "../backend/backend.js";
import { FootprintRecorder, resourceName } from "../exec/footprint.js";
import { OWNER_FREE } from "../mem/frame-allocator.js";
import { OCCUPANCY_WORDS } from "../mem/pt-pool.js";
import { nextSetBit } from "../mem/typed-arrays.js";
import type { Vm } from "../vm/vm.js";
import { VisitLog, checkWithVisitLog, mirrorView } from "./mirror-view.js";

export { mirrorView } from "./mirror-view.js";

export interface Violation {
  check: string;
  message: string;
  /** The scheduler step after which it was found (`Clock.tick`), as explore, replay and the UI count. */
  step: number;
}

export interface CheckResult {
  checked: number;
  violations: Violation[];
}

const MAX_REPORTED = 20;

type BackendCheck = NonNullable<Backend["checkInvariants"]>;

/** The checks a pass runs; the last only at the end of a run. */
export const INVARIANTS = [
  "leaf-frame-owned-by-vm",
  "leaf-maps-backing",
  "frame-free-and-mapped",
  "table-linked-once",
  "table-role",
  "spte-well-formed",
  "stats-match-tables",
  "no-leaked-table",
  "no-frozen-spte",
] as const;

/**
 * One pass over a VM's tables. The explorer checks after every step of hundreds of thousands of
 * short-lived VMs, so passes reuse one walker and its scratch state: "linked already" is a stamp
 * per pool slot (the stamp moves on every pass, so nothing is cleared), and the walk is a
 * method, not a closure made per pass.
 */
class TableWalk {
  private readonly pages = new Float64Array(6);
  private tables = 0;
  private linked = 0;
  /** Inside the table of a huge leaf being split: its leaves are not accounted yet. */
  private unaccounted = 0;
  private linkingNow = 0;
  /** `seenAt[slot] === stamp`: the table is linked in this pass. */
  private seenAt = new Int32Array(0);
  private stamp = 0;
  private final = false;
  /** The pass only looks for what the end of a run adds (`run`'s `endOnly`; `frozenEntry`). */
  private endOnly = false;
  private step = 0;
  private violations: Violation[] = [];
  /** The present entries of the valid roots met by this pass, for the backend's checks. */
  private readonly log = new VisitLog();
  /** The root being walked is valid (its entries go to `log`). */
  private logging = false;

  private vm!: Vm;

  private fail(check: string, message: string): void {
    if (this.violations.length < MAX_REPORTED)
      this.violations.push({ check, message, step: this.step });
  }

  /** Marks `slot` linked; false if it already was in this pass. */
  private see(slot: number): boolean {
    if (this.seenAt[slot] === this.stamp) return false;
    this.seenAt[slot] = this.stamp;
    this.linked++;
    return true;
  }

  /**
   * `endOnly`: the state is the one a pass without `final` found clean, so only what `final`
   * adds can fail (FROZEN entries, pages never linked): the counters, the leak count and the
   * backend's checks, which would say what they said then, are not redone. `skipBackend`: what
   * the backend's checks read is what they found clean before (`Clock.backendCheckVersion`), so
   * they are not run again, and the walk keeps no log for them.
   */
  run(vm: Vm, final: boolean, endOnly = false, skipBackend = false): CheckResult {
    this.vm = vm;
    const mmu = vm.mmu;
    const pool = vm.host.pool;
    this.final = final;
    this.endOnly = endOnly;
    this.step = vm.clock.tick;
    this.violations = [];
    this.pages.fill(0);
    this.tables = 0;
    this.linked = 0;
    this.linkingNow = 0;
    this.unaccounted = 0;
    this.log.clear();
    if (this.seenAt.length < pool.capacity) this.seenAt = new Int32Array(pool.capacity);
    if (++this.stamp === 0x7fffffff) {
      this.seenAt.fill(0);
      this.stamp = 1;
    }

    for (const root of mmu.peekRoots()) {
      if (!pool.isLive(root.slot)) {
        this.fail(
          "frame-free-and-mapped",
          `root ${root.slot} is in the root list but its page is free`,
        );
        continue;
      }
      this.see(root.slot);
      // Only a backend with checks of its own reads the log.
      this.logging =
        !skipBackend && !root.peekInvalid() && vm.backend.checkInvariants !== undefined;
      this.walk(root.slot, root.level, 0, root.mirror);
    }

    if (!endOnly) this.checkCounts();
    if (final && mmu.inFlightSps !== 0)
      this.fail(
        "no-leaked-table",
        `${mmu.inFlightSps} table pages allocated and never linked or freed`,
      );
    const backendCheck = vm.backend.checkInvariants?.bind(vm.backend);
    if (!endOnly && !skipBackend && backendCheck && !vm.peekDead()) {
      for (const v of this.backendFindings(vm, backendCheck)) this.fail(v.check, v.message);
    }
    this.log.clear();
    return {
      checked: final ? INVARIANTS.length : INVARIANTS.length - 1,
      violations: this.violations,
    };
  }

  /**
   * The backend's own checks. A pass that found nothing wrong descended into every table an
   * entry links, as the view's own walks do, so its log is what they would find; otherwise they
   * walk. While the footprint audit records what the checks read (the clock has a recorder then,
   * and only then), a backend that says its checks ignore guest memory is held to it: their reads
   * are recorded apart, and one of guest memory state fails the audit.
   */
  private backendFindings(vm: Vm, check: BackendCheck): { check: string; message: string }[] {
    const clock = vm.clock;
    const outer = clock.fp;
    if (outer === null || !clock.backendIgnoresGuestMemory) return this.runBackendCheck(vm, check);
    const own = new FootprintRecorder();
    clock.setRecorder(own);
    let found: { check: string; message: string }[];
    try {
      found = this.runBackendCheck(vm, check);
    } finally {
      clock.setRecorder(outer);
    }
    for (const id of own.touched()) {
      outer.read(id);
      if (clock.isGuestMemory(id))
        this.fail(
          "footprint-audit",
          `the backend's checks read ${resourceName(id)}, guest memory state they say they do not read (checkIgnoresGuestMemory)`,
        );
    }
    return found;
  }

  private runBackendCheck(vm: Vm, check: BackendCheck): { check: string; message: string }[] {
    return this.violations.length === 0 && !this.log.overflowed
      ? checkWithVisitLog(vm, this.log, check)
      : check(vm, mirrorView(vm));
  }

  /** The counters against the recount of the walk, and the VM's pool pages against those it can account for. */
  private checkCounts(): void {
    const vm = this.vm;
    const mmu = vm.mmu;
    const pool = vm.host.pool;
    const pages = this.pages;
    for (let level = 1; level <= 3; level++) {
      if (pages[level] !== mmu.stats.pages[level]) {
        this.fail(
          "stats-match-tables",
          `pages at level ${level}: counter ${mmu.stats.pages[level]}, tables hold ${pages[level]}`,
        );
      }
    }
    if (this.tables !== mmu.stats.tablePages)
      this.fail(
        "stats-match-tables",
        `tablePages: counter ${mmu.stats.tablePages}, tables hold ${this.tables}`,
      );

    let live = 0;
    const spLive = pool.spLive;
    const spOwner = pool.spOwner;
    // Slots never allocated are not live: the count stops at the last one ever used.
    const used = pool.slotsUsed;
    const id = vm.id;
    for (let s = 0; s < used; s++) if (spLive[s] === 1 && spOwner[s] === id) live++;
    const expected = this.linked - this.linkingNow + mmu.deferredFrees + mmu.inFlightSps;
    if (live !== expected) {
      this.fail(
        "no-leaked-table",
        `VM holds ${live} table pages; ${this.linked} are reachable, ${mmu.deferredFrees} wait for a grace period and ${mmu.inFlightSps} are being linked`,
      );
    }
  }

  private walk(slot: number, level: number, baseGfn: number, mirror: boolean): void {
    const pool = this.vm.host.pool;
    const mem = pool.tableMem(slot);
    const off = pool.tableOff(slot);
    if (pool.tracksWrites) {
      // The pool knows which entries are not empty (the explorer's pools): those, in order.
      const occupancy = pool.occupancy;
      const words = slot * OCCUPANCY_WORDS;
      for (
        let i = nextSetBit(occupancy, words, OCCUPANCY_WORDS, 0);
        i >= 0;
        i = nextSetBit(occupancy, words, OCCUPANCY_WORDS, i + 1)
      ) {
        const lo = mem[off + 2 * i]!;
        const hi = mem[off + 2 * i + 1]!;
        const rawGfn = baseGfn + i * PAGES_PER_LEVEL[level]!;
        if (this.endOnly) this.frozenEntry(lo, hi, level, rawGfn, mirror);
        else this.entry(lo, hi, level, rawGfn, mirror);
      }
      return;
    }
    // Locals, not the imported bindings, in the loop: V8 reloads those on every iteration.
    const emptyLo = SHADOW_NONPRESENT_LO;
    const emptyHi = SHADOW_NONPRESENT_HI;
    for (let i = 0; i < 512; i++) {
      const lo = mem[off + 2 * i]!;
      const hi = mem[off + 2 * i + 1]!;
      // Most entries are empty: nothing to check, and nothing to compute for them.
      if (lo === emptyLo && hi === emptyHi) continue;
      const rawGfn = baseGfn + i * PAGES_PER_LEVEL[level]!;
      if (this.endOnly) this.frozenEntry(lo, hi, level, rawGfn, mirror);
      else this.entry(lo, hi, level, rawGfn, mirror);
    }
  }

  /**
   * An entry on the end-of-run walk of a state found clean (`endOnly`): every entry was checked
   * then, so only what the end adds is looked for, a FROZEN_SPTE left in a reachable table (the
   * explorer runs this at the end of every schedule; the entries' full checks made it a sixth of
   * the time of its checks).
   */
  private frozenEntry(
    lo: number,
    hi: number,
    level: number,
    rawGfn: number,
    mirror: boolean,
  ): void {
    if (isFrozen(lo, hi)) {
      this.frozenLeft(
        mirror ? rawGfn : gfnWithoutDirectBits(rawGfn, this.vm.mmu.gfnDirectBits),
        level,
        mirror,
      );
      return;
    }
    if (!isShadowPresent(lo) || isLastSpte(lo, level)) return;
    const pool = this.vm.host.pool;
    const child = pool.pfnToSlot(spteToPfn(lo, hi));
    // Seen once, as in the full walk: the clean state links no table twice, but a walk that
    // trusted that would loop on a state that did.
    if (child >= 0 && pool.isLive(child) && this.see(child))
      this.walk(child, level - 1, rawGfn, mirror);
  }

  private frozenLeft(gfn: number, level: number, mirror: boolean): void {
    this.fail(
      "no-frozen-spte",
      `FROZEN_SPTE left at gfn 0x${gfn.toString(16)} level ${level}${mirror ? " (mirror)" : ""}`,
    );
  }

  /** The checks of one non-empty SPTE at `rawGfn` (its index in the table, shared bit included). */
  private entry(lo: number, hi: number, level: number, rawGfn: number, mirror: boolean): void {
    const vm = this.vm;
    const mmu = vm.mmu;
    const pool = vm.host.pool;
    const gfn = mirror ? rawGfn : gfnWithoutDirectBits(rawGfn, mmu.gfnDirectBits);
    if (isFrozen(lo, hi)) {
      if (this.final) this.frozenLeft(gfn, level, mirror);
      return;
    }
    if (!isShadowPresent(lo)) {
      this.fail(
        "spte-well-formed",
        `non-present SPTE 0x${hi.toString(16).padStart(8, "0")}${lo.toString(16).padStart(8, "0")} at gfn 0x${gfn.toString(16)} level ${level} is neither empty nor FROZEN`,
      );
      return;
    }
    if ((hi & HI_SUPPRESS_VE) === 0)
      this.fail(
        "spte-well-formed",
        `present SPTE at gfn 0x${gfn.toString(16)} level ${level} lacks bit 63`,
      );
    const pfn = spteToPfn(lo, hi);
    if (isLastSpte(lo, level)) {
      if (level > KVM_MAX_HUGEPAGE_LEVEL)
        this.fail("spte-well-formed", `leaf at level ${level} (gfn 0x${gfn.toString(16)})`);
      if (
        ((lo & EPT_W) !== 0 && (hi & HI_MMU_WRITABLE) === 0) ||
        ((hi & HI_MMU_WRITABLE) !== 0 && (hi & HI_HOST_WRITABLE) === 0)
      ) {
        this.fail(
          "spte-well-formed",
          `leaf at gfn 0x${gfn.toString(16)} level ${level} breaks W ⇒ MMU-writable ⇒ host-writable`,
        );
      }
      if (this.unaccounted === 0) this.pages[level]!++;
      if (this.logging) this.log.add(gfn, level, true, pfn, -1, mirror);
      const owner = vm.host.frames.ownerOfPfn(pfn);
      if (owner === OWNER_FREE)
        this.fail(
          "frame-free-and-mapped",
          `leaf at gfn 0x${gfn.toString(16)} level ${level} maps free frame 0x${pfn.toString(16)}`,
        );
      else if (owner !== vm.owner)
        this.fail(
          "leaf-frame-owned-by-vm",
          `leaf at gfn 0x${gfn.toString(16)} maps frame 0x${pfn.toString(16)} owned by ${owner}, not VM ${vm.owner}`,
        );
      else this.checkBacking(gfn, level, pfn, mirror);
      return;
    }
    const child = pool.pfnToSlot(pfn);
    if (child < 0 || !pool.isLive(child)) {
      this.fail(
        "frame-free-and-mapped",
        `table entry at gfn 0x${gfn.toString(16)} level ${level} points to frame 0x${pfn.toString(16)}, which is not a live table page`,
      );
      return;
    }
    if (!this.see(child)) {
      this.fail(
        "table-linked-once",
        `table page ${child} is linked more than once (again at gfn 0x${gfn.toString(16)} level ${level})`,
      );
      return;
    }
    // A mirror table published before its backend call returned (strategy atomic-then-hook), or
    // a huge leaf being split, is still being linked: KVM accounts it once the call is done, and
    // a split's 512 leaves with it.
    // A table being merged into a huge leaf is still the table KVM accounts.
    const resizing = mirror ? mmu.mirrorResizing(gfn, level) : 0;
    const linking = mirror && resizing !== 2 && mmu.isMirrorInFlight(gfn, level);
    if (linking) this.linkingNow++;
    const splitting = resizing === 1;
    if (
      pool.spOwner[child] !== vm.id ||
      pool.spLevel[child] !== level - 1 ||
      pool.spGfn[child] !== gfn
    ) {
      this.fail(
        "table-role",
        `table page ${child} at gfn 0x${gfn.toString(16)} level ${level - 1} says owner ${pool.spOwner[child]}, level ${pool.spLevel[child]}, gfn 0x${pool.spGfn[child]!.toString(16)}`,
      );
    }
    if (!linking) this.tables++;
    if (this.logging) this.log.add(gfn, level, false, pfn, pool.spExternal[child]!, mirror);
    if (splitting) this.unaccounted++;
    this.walk(child, level - 1, rawGfn, mirror);
    if (splitting) this.unaccounted--;
  }

  private checkBacking(gfn: number, level: number, pfn: number, mirror: boolean): void {
    const vm = this.vm;
    const slot = vm.memslots.find(gfn);
    if (!slot) {
      this.fail(
        "leaf-maps-backing",
        `leaf at gfn 0x${gfn.toString(16)} level ${level} has no memslot`,
      );
      return;
    }
    const privateInDirect = vm.backend.hasPrivateMemory && !vm.backend.usesMirrorRoot;
    const priv = mirror || (privateInDirect && vm.attributes.peekPrivate(gfn));
    const backing = priv ? slot.gmem : slot.shared;
    const want = backing ? backing.peekPfn(gfn - slot.baseGfn) : -1;
    // `gfnRoundForLevel` aligns a frame number as it does a GFN (integer masks, not `%` on a
    // double, which V8 compiles to a call: it was a fifth of an explorer's checks).
    if (want < 0 || gfnRoundForLevel(want, level) !== pfn) {
      this.fail(
        "leaf-maps-backing",
        `leaf at gfn 0x${gfn.toString(16)} level ${level} maps frame 0x${pfn.toString(16)}; the ${priv ? "guest_memfd" : "shared memory"} backing has ${want < 0 ? "no frame" : `0x${want.toString(16)}`}`,
      );
    }
  }
}

/** The walker not in use; a pass that starts while another runs (none does today) makes its own. */
let idle: TableWalk | null = new TableWalk();

function pass(vm: Vm, final: boolean, endOnly: boolean, skipBackend = false): CheckResult {
  const w = idle ?? new TableWalk();
  idle = null;
  try {
    return w.run(vm, final, endOnly, skipBackend);
  } finally {
    idle = w;
  }
}

/**
 * The invariants of `vm`'s state. `skipBackend`: the backend's own checks found what they read
 * clean before and it has not changed since (the explorer's `backendCheckVersion`).
 */
export function checkInvariants(
  vm: Vm,
  opts: { final: boolean; skipBackend?: boolean },
): CheckResult {
  return pass(vm, opts.final, false, opts.skipBackend === true);
}

/**
 * The end-of-run check of a state that `checkInvariants(vm, { final: false })` has found clean
 * and that has not changed since: it finds what the full end-of-run check would, and only
 * redoes the checks that hold at the end of a run alone.
 */
export function checkEndOfRun(vm: Vm): CheckResult {
  return pass(vm, true, true);
}
