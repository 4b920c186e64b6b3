/**
 * The guest's view of its memory at the end of a run, for the report (`run --json`,
 * `guestMemory`): per GFN range, whether the memory attributes make it private or shared
 * (`KVM_MEMORY_ATTRIBUTE_PRIVATE`), the level it is mapped at in the root that serves that
 * attribute (the mirror root for a private GFN on a VM with one, else the direct root), whether
 * the guest has accepted it (TDX) or validated it (SEV-SNP), and who owns the frame behind it.
 * Runs on different backends can then be compared page by page.
 *
 * It is made between steps (after the run) and records nothing: the attributes, memslots and
 * backings are read with their `peek` accessors, the tables through the checks' `MirrorView`,
 * and the backend through `guestPage`, which records nothing by contract.
 */
import { PAGES_PER_LEVEL } from "../arch/levels.js";
import { GUEST_PAGE_ACCEPTED, GUEST_PAGE_OWNED } from "../backend/backend.js";
import { mirrorView } from "../check/mirror-view.js";
import type { Vm } from "../vm/vm.js";

/** A leaf's level as the report's page counts spell it. */
const LEVEL_NAMES = [null, "4k", "2m", "1g"] as const;
type MappedLevel = (typeof LEVEL_NAMES)[number];

/** Who owns the frame behind a GFN: the guest (the host cannot read it), the host, or no frame is allocated. */
export type PageOwner = "guest" | "host" | "none";

export interface GuestMemoryRange {
  /** The first GFN of the range, and how many GFNs it holds (all alike in every field). */
  gfn: number;
  npages: number;
  private: boolean;
  /** The level of the leaf that maps these GFNs in the root serving their attribute, or null. */
  mapped: MappedLevel;
  /** The guest may use them as private memory without accepting them first. */
  accepted: boolean;
  owner: PageOwner;
}

export interface GuestMemory {
  /** GFNs in the VM's memory. */
  pages: number;
  /** Pages of each kind; the owners sum to `pages`, as do `private` and `shared`. */
  totals: {
    private: number;
    shared: number;
    mapped: number;
    accepted: number;
    guestOwned: number;
    hostOwned: number;
    unbacked: number;
  };
  /** Maximal runs of GFNs alike in every field, in GFN order, covering every GFN once. */
  ranges: GuestMemoryRange[];
}

/**
 * The leaves of one kind of root as runs of GFNs mapped at one level, in GFN order (a walk
 * visits entries in GFN order; leaves that touch at the same level are one run). `at` answers
 * for GFNs asked in increasing order.
 */
class LeafRuns {
  private readonly starts: number[] = [];
  private readonly ends: number[] = [];
  private readonly levels: number[] = [];
  private sorted = true;
  private i = 0;
  /** What `at` found: the level mapping the GFN (0 for none), and the next GFN where that may change. */
  level = 0;
  until = 0;

  add(gfn: number, level: number, limit: number): void {
    const end = Math.min(gfn + PAGES_PER_LEVEL[level]!, limit);
    if (gfn >= end) return;
    const k = this.starts.length - 1;
    if (k >= 0 && this.ends[k] === gfn && this.levels[k] === level) {
      this.ends[k] = end;
      return;
    }
    if (k >= 0 && this.starts[k]! > gfn) this.sorted = false;
    this.starts.push(gfn);
    this.ends.push(end);
    this.levels.push(level);
  }

  /** Two valid roots of one kind (rare, and only between an invalidation and its reload) may interleave. */
  finish(): void {
    if (this.sorted) return;
    const order = this.starts.map((_, i) => i).sort((a, b) => this.starts[a]! - this.starts[b]!);
    for (const a of [this.starts, this.ends, this.levels]) {
      const copy = a.slice();
      order.forEach((j, i) => (a[i] = copy[j]!));
    }
  }

  at(gfn: number, limit: number): void {
    while (this.i < this.starts.length && this.ends[this.i]! <= gfn) this.i++;
    if (this.i === this.starts.length) {
      this.level = 0;
      this.until = limit;
    } else if (this.starts[this.i]! <= gfn) {
      this.level = this.levels[this.i]!;
      this.until = Math.min(this.ends[this.i]!, limit);
    } else {
      this.level = 0;
      this.until = Math.min(this.starts[this.i]!, limit);
    }
  }
}

class Summary {
  readonly totals = {
    private: 0,
    shared: 0,
    mapped: 0,
    accepted: 0,
    guestOwned: 0,
    hostOwned: 0,
    unbacked: 0,
  };
  readonly ranges: GuestMemoryRange[] = [];
  private cur: GuestMemoryRange | null = null;

  add(
    gfn: number,
    npages: number,
    priv: boolean,
    level: number,
    accepted: boolean,
    owner: PageOwner,
  ): void {
    const t = this.totals;
    if (priv) t.private += npages;
    else t.shared += npages;
    if (level !== 0) t.mapped += npages;
    if (accepted) t.accepted += npages;
    if (owner === "guest") t.guestOwned += npages;
    else if (owner === "host") t.hostOwned += npages;
    else t.unbacked += npages;
    const mapped = LEVEL_NAMES[level] ?? null;
    const c = this.cur;
    if (
      c !== null &&
      c.private === priv &&
      c.mapped === mapped &&
      c.accepted === accepted &&
      c.owner === owner
    ) {
      c.npages += npages;
    } else {
      this.cur = { gfn, npages, private: priv, mapped, accepted, owner };
      this.ranges.push(this.cur);
    }
  }
}

/**
 * The summary, in time and memory proportional to what the guest uses, not to its size: a
 * 1 TiB guest that touched one page is summarised from its one leaf, its one host page and its
 * attribute runs. Only the GFNs of populated host pages are asked of the backend one by one.
 */
export function guestMemory(vm: Vm): GuestMemory {
  const n = vm.npages;
  const view = mirrorView(vm);
  const direct = new LeafRuns();
  view.forEachDirect((gfn, level, kind) => {
    if (kind === "leaf") direct.add(gfn, level, n);
  });
  direct.finish();
  const mirror = vm.backend.usesMirrorRoot ? new LeafRuns() : direct;
  if (mirror !== direct) {
    view.forEach((gfn, level, kind) => {
      if (kind === "leaf") mirror.add(gfn, level, n);
    });
    mirror.finish();
  }
  const slots = vm.memslots.peekAll();
  const attrs = vm.attributes;
  const backend = vm.backend;
  const out = new Summary();
  let slotIdx = 0;
  for (let gfn = 0; gfn < n;) {
    // Memslots are few and sorted by GFN: walk them along with the GFNs.
    while (slotIdx < slots.length && slots[slotIdx]!.endGfn <= gfn) slotIdx++;
    const next = slotIdx < slots.length ? slots[slotIdx]! : null;
    const slot = next !== null && next.baseGfn <= gfn ? next : null;
    // The segment [gfn, end): one memslot (or none), one attribute, one leaf run (or none).
    let end = Math.min(slot !== null ? slot.endGfn : next !== null ? next.baseGfn : n, n);
    const priv = attrs.peekPrivate(gfn);
    end = attrs.peekRunEnd(gfn, end);
    // A private GFN is served by the mirror root on a VM with one, else by the direct root.
    const leaves = priv ? mirror : direct;
    leaves.at(gfn, end);
    end = leaves.until;
    const level = leaves.level;
    const backing = slot === null ? null : priv ? slot.gmem : slot.shared;
    if (backing === null) {
      out.add(gfn, end - gfn, priv, level, false, "none");
      gfn = end;
      continue;
    }
    const base = slot!.baseGfn;
    const pfn0 = backing.peekPfn(gfn - base);
    if (pfn0 < 0) {
      const e = base + backing.peekNextPopulated(gfn - base, end - base);
      out.add(gfn, e - gfn, priv, level, false, "none");
      gfn = e;
      continue;
    }
    // A populated host page: its frames are consecutive; the backend answers for each.
    const e = Math.min(end, base + backing.hostPageEnd(gfn - base));
    for (let g = gfn; g < e; g++) {
      const page = backend.guestPage?.(vm, g, pfn0 + (g - gfn)) ?? 0;
      out.add(
        g,
        1,
        priv,
        level,
        (page & GUEST_PAGE_ACCEPTED) !== 0,
        (page & GUEST_PAGE_OWNED) !== 0 ? "guest" : "host",
      );
    }
    gfn = e;
  }
  return { pages: n, totals: out.totals, ranges: out.ranges };
}
