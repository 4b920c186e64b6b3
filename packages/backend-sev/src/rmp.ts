/**
 * The Reverse Map Table (SEV-SNP, APM vol. 2 §15.36; reference §1.1): one entry per 4 KiB host
 * frame saying who owns it: assigned (guest or firmware) or hypervisor-owned, page size (a 2M
 * entry at the 2M-aligned frame governs all 512 frames), immutable, validated (the guest's
 * PVALIDATE), the owning ASID and the GPA the frame must be reached at.
 *
 * Lookup, as the hardware does it: the 2M-aligned entry first; if it is an assigned 2M entry it
 * governs the frame, otherwise the frame's own entry does. Entries live in typed arrays per
 * 2 MiB block, made on first use: 7 bytes a frame instead of the hardware's 16.
 */
export const RMP_ASSIGNED = 1;
export const RMP_PAGE_2M = 2;
export const RMP_IMMUTABLE = 4;
export const RMP_VALIDATED = 8;
export const RMP_VMSA = 16;

class RmpBlock {
  readonly flags = new Uint8Array(512);
  readonly asid = new Uint16Array(512);
  /** The GFN the frame must be reached at (GPAs below 16 TiB). */
  readonly gfn = new Uint32Array(512);
}

export interface RmpEntry {
  assigned: boolean;
  size2m: boolean;
  immutable: boolean;
  validated: boolean;
  asid: number;
  gfn: number;
  /** The frame whose entry this is (the 2M head for a 2M entry). */
  pfn: number;
}

export class Rmp {
  private readonly blocks: (RmpBlock | undefined)[] = [];

  constructor(readonly totalFrames: number) {}

  covers(pfn: number): boolean {
    return Number.isInteger(pfn) && pfn >= 0 && pfn < this.totalFrames;
  }

  private block(pfn: number, create: boolean): RmpBlock | undefined {
    const b = pfn >>> 9;
    let blk = this.blocks[b];
    if (!blk && create) {
      blk = new RmpBlock();
      this.blocks[b] = blk;
    }
    return blk;
  }

  /** The raw entry of one frame (not the lookup rule). */
  flagsOf(pfn: number): number {
    return this.block(pfn, false)?.flags[pfn & 511] ?? 0;
  }

  raw(pfn: number): RmpEntry {
    const blk = this.block(pfn, false);
    const f = blk?.flags[pfn & 511] ?? 0;
    return {
      assigned: (f & RMP_ASSIGNED) !== 0, size2m: (f & RMP_PAGE_2M) !== 0, immutable: (f & RMP_IMMUTABLE) !== 0,
      validated: (f & RMP_VALIDATED) !== 0, asid: blk?.asid[pfn & 511] ?? 0, gfn: blk?.gfn[pfn & 511] ?? 0, pfn,
    };
  }

  /** The entry that governs `pfn`: its 2M head's if that is an assigned 2M entry, else its own. */
  lookup(pfn: number): RmpEntry {
    const head = pfn - (pfn % 512);
    const hf = this.flagsOf(head);
    if ((hf & RMP_ASSIGNED) !== 0 && (hf & RMP_PAGE_2M) !== 0) return this.raw(head);
    return this.raw(pfn);
  }

  set(pfn: number, flags: number, asid: number, gfn: number): void {
    const blk = this.block(pfn, true)!;
    blk.flags[pfn & 511] = flags;
    blk.asid[pfn & 511] = asid;
    blk.gfn[pfn & 511] = gfn;
  }

  setFlags(pfn: number, flags: number): void {
    this.block(pfn, true)!.flags[pfn & 511] = flags;
  }

  /** Every assigned entry: [pfn, entry]. */
  *assigned(): Generator<RmpEntry> {
    for (let b = 0; b < this.blocks.length; b++) {
      const blk = this.blocks[b];
      if (!blk) continue;
      for (let i = 0; i < 512; i++) if (blk.flags[i]! & RMP_ASSIGNED) yield this.raw(b * 512 + i);
    }
  }
}
