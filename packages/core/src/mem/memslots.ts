/**
 * Memslots (`struct kvm_memory_slot`): a GFN range, its flags, its backing and, while dirty
 * logging is on, its dirty bitmap (one bit per page, as `KVM_GET_DIRTY_LOG` returns it).
 */
import type { GuestBacking } from "./guest-backing.js";
import { R_DIRTY, type FootprintRecorder } from "../exec/footprint.js";

export interface MemslotFlags {
  /** `KVM_MEM_LOG_DIRTY_PAGES` */
  dirtyLogging: boolean;
  /** `KVM_MEM_READONLY`: mapped without host-writable. */
  readonly: boolean;
}

export class Memslot {
  dirtyBitmap: Uint32Array | null = null;
  /** `KVM_MEMSLOT_INVALID`: the slot is being deleted; faults that hit it retry. */
  invalid = false;

  constructor(
    readonly id: number,
    readonly baseGfn: number,
    readonly npages: number,
    readonly flags: MemslotFlags,
    readonly shared: GuestBacking,
    /** guest_memfd backing of private pages; null for a VM without private memory. */
    readonly gmem: GuestBacking | null,
  ) {}

  get endGfn(): number {
    return this.baseGfn + this.npages;
  }

  contains(gfn: number): boolean {
    return gfn >= this.baseGfn && gfn < this.baseGfn + this.npages;
  }

  /** `mark_page_dirty_in_slot` */
  markDirty(gfn: number, fp?: FootprintRecorder | null): void {
    const bm = this.dirtyBitmap;
    if (!bm) return;
    fp?.add(R_DIRTY);
    const rel = gfn - this.baseGfn;
    bm[rel >>> 5] = bm[rel >>> 5]! | (1 << (rel & 31));
  }
}

export class Memslots {
  private slots: Memslot[] = [];
  private last: Memslot | null = null;

  all(): readonly Memslot[] {
    return this.slots;
  }

  byId(id: number): Memslot | undefined {
    return this.slots.find((s) => s.id === id);
  }

  /** `gfn_to_memslot`, with the kernel's last-used cache. */
  find(gfn: number): Memslot | null {
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
    this.slots.push(slot);
    this.slots.sort((a, b) => a.baseGfn - b.baseGfn);
  }

  remove(id: number): Memslot {
    const i = this.slots.findIndex((s) => s.id === id);
    if (i < 0) throw new Error(`no memslot ${id}`);
    const [s] = this.slots.splice(i, 1);
    if (this.last === s) this.last = null;
    return s!;
  }
}
