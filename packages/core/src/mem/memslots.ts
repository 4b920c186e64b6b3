/**
 * Memslots (`struct kvm_memory_slot`): a GFN range, its flags, its backing and, while dirty
 * logging is on, its dirty bitmap (one bit per page, as `KVM_GET_DIRTY_LOG` returns it).
 *
 * The memslots are shared state: the set of slots and their flags are one resource (R_SLOTS),
 * the dirty bitmaps another (R_DIRTY). Every way to reach what can change records itself into
 * the clock's recorder: the lookups, the flags, `invalid`, `dirtyBitmap`, and the setters. A
 * slot's id, range and backings never change while it exists, so reading them records nothing.
 * Checks and views between steps use `peekAll` and the `peek*` readers, which record nothing.
 */
import type { GuestBacking } from "./guest-backing.js";
import type { Clock } from "../exec/clock.js";
import { R_DIRTY, R_LPAGE, R_LPAGE_MIXED, R_SLOTS } from "../exec/footprint.js";

export interface MemslotFlags {
  /** `KVM_MEM_LOG_DIRTY_PAGES` */
  dirtyLogging: boolean;
  /** `KVM_MEM_READONLY`: mapped without host-writable. */
  readonly: boolean;
}

/** Per huge-page level, the indices set, sorted: a set of lpage_info bits as the audit compares them. */
function auditBits(sets: readonly Set<number>[]): string {
  return sets.map((s) => [...s].sort((a, b) => a - b).join(",")).join("/");
}

export class Memslot {
  private bitmap: Uint32Array | null = null;
  private isInvalid = false;
  private readonly slotFlags: MemslotFlags;
  /** Set when the slot is added to a VM's memslots: from then on its accesses are recorded. */
  private clock: Clock | null = null;
  /**
   * The guest-inhibit bits of `lpage_info` (the TDX huge-page series'
   * `hugepage_set_guest_inhibit`), per level 2 and 3: the huge pages, by index from the slot's
   * first GFN, that the guest accepted at a smaller size, so that KVM never maps them bigger
   * again. Set one way only, under the write `mmu_lock`; one resource (R_LPAGE).
   */
  private readonly inhibited: [Set<number>, Set<number>] = [new Set(), new Set()];
  /**
   * `lpage_info`'s KVM_LPAGE_MIXED_FLAG, per level 2 and 3: the huge pages (indexed as the
   * guest-inhibit bits) whose GFNs do not all have the same memory attributes, as
   * `kvm_arch_post_set_memory_attributes` last found them under the write `mmu_lock`
   * (`mmu/mixed-hugepages.ts`). A fault reads these, not the attributes: between a conversion's
   * store of the attributes and its second lock section they still say what they said before.
   * Written under the write `mmu_lock` only; a resource of their own (R_LPAGE_MIXED), so that a
   * conversion's update of them does not conflict with a guest's ACCEPT setting an inhibit bit.
   */
  private readonly mixed: [Set<number>, Set<number>] = [new Set(), new Set()];

  constructor(
    readonly id: number,
    readonly baseGfn: number,
    readonly npages: number,
    flags: MemslotFlags,
    readonly shared: GuestBacking,
    /** guest_memfd backing of private pages; null for a VM without private memory. */
    readonly gmem: GuestBacking | null,
  ) {
    this.slotFlags = { ...flags };
  }

  /** The slot joins `clock`'s VM (`Memslots.add`). */
  attach(clock: Clock | null): void {
    this.clock = clock;
  }

  get endGfn(): number {
    return this.baseGfn + this.npages;
  }

  contains(gfn: number): boolean {
    return gfn >= this.baseGfn && gfn < this.baseGfn + this.npages;
  }

  /** The slot's flags, as a fault reads them (a copy: change them by the setters). */
  get flags(): Readonly<MemslotFlags> {
    this.clock?.fp?.read(R_SLOTS);
    return this.slotFlags;
  }

  /** `KVM_MEMSLOT_INVALID`: the slot is being deleted; faults that hit it retry. */
  get invalid(): boolean {
    this.clock?.fp?.read(R_SLOTS);
    return this.isInvalid;
  }

  /** `kvm_invalidate_memslot` publishes the slot as invalid. */
  markInvalid(): void {
    this.clock?.touch(R_SLOTS);
    this.isInvalid = true;
  }

  /** The dirty bitmap while dirty logging is on, else null: whether it is on is a slot flag. */
  get dirtyBitmap(): Uint32Array | null {
    this.clock?.fp?.read(R_SLOTS);
    return this.bitmap;
  }

  /**
   * `KVM_MEM_LOG_DIRTY_PAGES` set or cleared: the flag and the bitmap (a fresh, clean one when
   * set) change together.
   */
  setDirtyLogging(on: boolean): void {
    this.clock?.touch(R_SLOTS);
    this.clock?.touch(R_DIRTY);
    this.slotFlags.dirtyLogging = on;
    this.bitmap = on ? new Uint32Array(Math.ceil(this.npages / 32)) : null;
  }

  /** Words in the dirty bitmap (32 GFNs each), or -1 if dirty logging is off. */
  dirtyWords(): number {
    const bm = this.dirtyBitmap;
    return bm ? bm.length : -1;
  }

  /** `KVM_GET_DIRTY_LOG` takes word `w` of the bitmap (GFNs from base + 32w) and clears it. */
  takeDirtyWord(w: number): number {
    this.clock?.touch(R_DIRTY);
    const bm = this.bitmap!;
    const mask = bm[w]!;
    bm[w] = 0;
    return mask;
  }

  /** `mark_page_dirty_in_slot` */
  markDirty(gfn: number): void {
    const bm = this.dirtyBitmap;
    if (!bm) return;
    this.clock?.fp?.add(R_DIRTY);
    const rel = gfn - this.baseGfn;
    bm[rel >>> 5] = bm[rel >>> 5]! | (1 << (rel & 31));
  }

  /** `hugepage_test_guest_inhibit`: the huge page of `level` (2 or 3) over `gfn` may not be mapped at `level`. */
  guestInhibited(gfn: number, level: number): boolean {
    this.clock?.fp?.read(R_LPAGE);
    return this.inhibited[level - 2]!.has(this.hugeIndex(gfn, level));
  }

  /** `hugepage_set_guest_inhibit` */
  setGuestInhibit(gfn: number, level: number): void {
    this.clock?.touch(R_LPAGE);
    this.inhibited[level - 2]!.add(this.hugeIndex(gfn, level));
  }

  /** `hugepage_test_mixed`: the huge page of `level` (2 or 3) over `gfn` has GFNs of both kinds. */
  hugepageMixed(gfn: number, level: number): boolean {
    this.clock?.fp?.read(R_LPAGE_MIXED);
    return this.mixed[level - 2]!.has(this.hugeIndex(gfn, level));
  }

  /** `hugepage_set_mixed` (`on`) or `hugepage_clear_mixed`. */
  setHugepageMixed(gfn: number, level: number, on: boolean): void {
    this.clock?.touch(R_LPAGE_MIXED);
    const set = this.mixed[level - 2]!;
    if (on) set.add(this.hugeIndex(gfn, level));
    else set.delete(this.hugeIndex(gfn, level));
  }

  /** lpage_info's index: huge pages counted from the one over the slot's first GFN. */
  private hugeIndex(gfn: number, level: number): number {
    const span = level === 2 ? 512 : 512 * 512;
    return Math.floor(gfn / span) - Math.floor(this.baseGfn / span);
  }

  /** The guest-inhibit bits as a string, recording nothing: for the footprint audit (R_LPAGE). */
  auditLpage(): string {
    return auditBits(this.inhibited);
  }

  /** The mixed bits as a string, recording nothing: for the footprint audit (R_LPAGE_MIXED). */
  auditMixed(): string {
    return auditBits(this.mixed);
  }

  /** The state as it stands, recording nothing: for checks and the footprint audit. */
  peekFlags(): Readonly<MemslotFlags> {
    this.clock?.assertBetweenSteps("a memslot's flags");
    return this.slotFlags;
  }

  peekInvalid(): boolean {
    this.clock?.assertBetweenSteps("whether a memslot is invalid");
    return this.isInvalid;
  }

  peekDirtyBitmap(): Uint32Array | null {
    this.clock?.assertBetweenSteps("a memslot's dirty bitmap");
    return this.bitmap;
  }
}

export class Memslots {
  private slots: Memslot[] = [];
  private last: Memslot | null = null;

  constructor(private readonly clock: Clock | null = null) {}

  all(): readonly Memslot[] {
    this.clock?.fp?.read(R_SLOTS);
    return this.slots;
  }

  /** `all` without recording: for checks and views between steps. */
  peekAll(): readonly Memslot[] {
    this.clock?.assertBetweenSteps("the memslots");
    return this.slots;
  }

  byId(id: number): Memslot | undefined {
    this.clock?.fp?.read(R_SLOTS);
    return this.slots.find((s) => s.id === id);
  }

  /** `gfn_to_memslot`, with the kernel's last-used cache. */
  find(gfn: number): Memslot | null {
    this.clock?.fp?.read(R_SLOTS);
    const l = this.last;
    if (l && gfn >= l.baseGfn && gfn < l.baseGfn + l.npages) return l;
    for (const s of this.slots) {
      if (gfn >= s.baseGfn && gfn < s.baseGfn + s.npages) {
        this.last = s;
        return s;
      }
    }
    return null;
  }

  /** Adds a slot; rejects overlap and duplicate ids as `KVM_SET_USER_MEMORY_REGION` does (-EEXIST). */
  add(slot: Memslot): void {
    for (const s of this.slots) {
      if (s.id === slot.id) throw new Error(`memslot ${slot.id} already exists`);
      if (slot.baseGfn < s.endGfn && s.baseGfn < slot.endGfn) {
        throw new Error(`memslot ${slot.id} overlaps memslot ${s.id}`);
      }
    }
    this.clock?.touch(R_SLOTS);
    slot.attach(this.clock);
    this.slots.push(slot);
    this.slots.sort((a, b) => a.baseGfn - b.baseGfn);
  }

  remove(id: number): Memslot {
    const i = this.slots.findIndex((s) => s.id === id);
    if (i < 0) throw new Error(`no memslot ${id}`);
    this.clock?.touch(R_SLOTS);
    // The slot's lpage_info goes with it (kvm_arch_free_memslot).
    this.clock?.touch(R_LPAGE);
    this.clock?.touch(R_LPAGE_MIXED);
    // So does its dirty bitmap (kvm_destroy_dirty_bitmap, from kvm_free_memslot).
    if (this.slots[i]!.dirtyBitmap !== null) this.clock?.touch(R_DIRTY);
    const [s] = this.slots.splice(i, 1);
    if (this.last === s) this.last = null;
    return s!;
  }
}
