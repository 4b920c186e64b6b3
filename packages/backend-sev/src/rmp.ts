/**
 * The Reverse Map Table (SEV-SNP, APM vol. 2 §15.36; docs/sev-snp.md §1.1): one entry per 4 KiB host
 * frame saying who owns it: assigned (guest or firmware) or hypervisor-owned, page size (a 2M
 * entry at the 2M-aligned frame governs all 512 frames), immutable, validated (the guest's
 * PVALIDATE), the owning ASID and the GPA the frame must be reached at.
 *
 * Lookup, as the hardware does it: the 2M-aligned entry first; if it is an assigned 2M entry it
 * governs the frame, otherwise the frame's own entry does. Entries live in typed arrays per
 * 16 MiB block of frames, made on first use: 7 bytes a frame instead of the hardware's 16. (A
 * block per 2 MiB cost a few microseconds to make for every 512 frames a guest first used.)
 *
 * The access check and guest_memfd's prepare read the RMP on every fault, so they use the
 * field readers (`governing`, `flagsOf`, `asidOf`, `gfnOf`), which allocate nothing; `lookup`
 * and `raw` give the same as an object, for checks and tools.
 *
 * Each entry is a resource of its own for the explorer (`resourceId(space, pfn)`): every reader
 * above records a read of the entries it looks at, and `set`/`setFlags`/`setVmplPerms` a write, into the
 * recorder of the clock the RMP is attached to (`attach`). Two CPUs working on different
 * frames' entries are thus independent, as they are on the hardware. `assigned` and
 * `auditEntries` record nothing: they are for checks between steps.
 */
import { resourceId, type Clock } from "@tdpemu/backend-sdk";

export const RMP_ASSIGNED = 1;
export const RMP_PAGE_2M = 2;
export const RMP_IMMUTABLE = 4;
export const RMP_VALIDATED = 8;
export const RMP_VMSA = 16;

/**
 * VMPL permissions of an entry (RMPADJUST's bits 8-11, shifted down): read, write, execute in
 * user and in supervisor mode. VMPL0 always has all of them; VMPLs 1-3 have what RMPADJUST
 * from a more privileged VMPL gave them, none after any RMPUPDATE.
 */
export const VMPL_R = 1;
export const VMPL_W = 2;
export const VMPL_XU = 4;
export const VMPL_XS = 8;
export const VMPL_ALL = 15;

/**
 * A GFN the 32-bit array cannot hold (the VMSA's, 0xFFFFFFFFF at GPA 0xFFFFFFFFF000): the array
 * holds this and `bigGfns` the GFN, so that the array stays 4 bytes a frame.
 */
const BIG_GFN = 0xffffffff;

/** Frames per block: 4096 (16 MiB). */
const BLOCK_SHIFT = 12;
const BLOCK_FRAMES = 1 << BLOCK_SHIFT;
const BLOCK_MASK = BLOCK_FRAMES - 1;

class RmpBlock {
  /** One buffer for the three arrays: one backing store per block, not three. */
  private readonly bytes = new ArrayBuffer(BLOCK_FRAMES * 7);
  readonly flags = new Uint8Array(this.bytes, 0, BLOCK_FRAMES);
  readonly asid = new Uint16Array(this.bytes, BLOCK_FRAMES, BLOCK_FRAMES);
  /** The GFN the frame must be reached at (BIG_GFN: see `Rmp.bigGfns`). */
  readonly gfn = new Uint32Array(this.bytes, BLOCK_FRAMES * 3, BLOCK_FRAMES);
  /**
   * VMPL 1-3's permissions, 4 bits each (VMPL v at bit 4 * (v - 1)); made when an entry of the
   * block first gets any, so a guest that never uses VMPLs pays nothing for them.
   */
  perms: Uint16Array | null = null;
}

export interface RmpEntry {
  assigned: boolean;
  size2m: boolean;
  immutable: boolean;
  validated: boolean;
  /** A guest save area (set by the firmware's launch update of a VMSA page, or VMPL0's RMPADJUST). */
  vmsa: boolean;
  asid: number;
  gfn: number;
  /** The frame whose entry this is (the 2M head for a 2M entry). */
  pfn: number;
}

export class Rmp {
  private readonly blocks: (RmpBlock | undefined)[] = [];
  private clock: Clock | null = null;
  private space = 0;
  /** Frame, ASID and GFN of the entry `readGoverning` read last. */
  governingPfn = 0;
  governingAsid = 0;
  governingGfn = 0;
  /** The GFNs from BIG_GFN on, by frame (a VMSA page's: one per vCPU). */
  private readonly bigGfns = new Map<number, number>();

  constructor(readonly totalFrames: number) {}

  /** The GFN in slot `i` of `blk`, which holds frame `pfn`. */
  private gfnIn(blk: RmpBlock, i: number, pfn: number): number {
    const g = blk.gfn[i]!;
    return g === BIG_GFN ? this.bigGfns.get(pfn)! : g;
  }

  /**
   * Accesses are recorded into `clock`'s recorder from now on, in a resource space of its own
   * (the RMP is the machine's; a run attaches it to the clock of its VM).
   */
  attach(clock: Clock): void {
    if (this.clock === clock) return;
    this.clock = clock;
    this.space = clock.newResourceSpace();
  }

  /** The resource of frame `pfn`'s entry. */
  entryId(pfn: number): number {
    return resourceId(this.space, pfn);
  }

  private noteRead(pfn: number): void {
    const fp = this.clock?.fp;
    if (fp) fp.read(resourceId(this.space, pfn));
  }

  private noteWrite(pfn: number): void {
    const c = this.clock;
    if (c === null) return;
    // The id is made only while recording; otherwise a write only bumps the state version.
    if (c.fp === null) c.bump();
    else c.touch(resourceId(this.space, pfn));
  }

  covers(pfn: number): boolean {
    return Number.isInteger(pfn) && pfn >= 0 && pfn < this.totalFrames;
  }

  private block(pfn: number, create: boolean): RmpBlock | undefined {
    const b = pfn >>> BLOCK_SHIFT;
    let blk = this.blocks[b];
    if (!blk && create) {
      blk = new RmpBlock();
      // Grown densely, so the array keeps fast elements (a far index into an empty array
      // would turn it into a dictionary).
      while (this.blocks.length < b) this.blocks.push(undefined);
      this.blocks[b] = blk;
    }
    return blk;
  }

  /** The raw entry of one frame (not the lookup rule). */
  flagsOf(pfn: number): number {
    this.noteRead(pfn);
    return this.block(pfn, false)?.flags[pfn & BLOCK_MASK] ?? 0;
  }

  asidOf(pfn: number): number {
    this.noteRead(pfn);
    return this.block(pfn, false)?.asid[pfn & BLOCK_MASK] ?? 0;
  }

  gfnOf(pfn: number): number {
    this.noteRead(pfn);
    const blk = this.block(pfn, false);
    return blk === undefined ? 0 : this.gfnIn(blk, pfn & BLOCK_MASK, pfn);
  }

  /**
   * The entry that governs `pfn` (see `governing`), read with one block lookup: returns its
   * flags, and leaves its frame, ASID and GFN in `governingPfn`, `governingAsid` and
   * `governingGfn` (fields, not an object, so that the access check allocates nothing). The
   * access check and guest_memfd's prepare read the RMP this way on every fault; a 2M head
   * shares its block with every frame it governs, so one lookup serves both entries.
   */
  readGoverning(pfn: number): number {
    // Frames below 2^32 by shift and mask; anything else by the field readers, as ever.
    if (pfn >>> 0 !== pfn) return this.readGoverningSlow(pfn);
    // The head's entry is read; the frame's own too unless the head is an assigned 2M entry.
    // Recorded as both: one more read, never a missed one.
    if (this.clock !== null && this.clock.fp !== null) {
      this.noteRead(pfn - (pfn % 512));
      this.noteRead(pfn);
    }
    const blk = this.blocks[pfn >>> BLOCK_SHIFT];
    if (blk === undefined) {
      this.governingPfn = pfn;
      this.governingAsid = 0;
      this.governingGfn = 0;
      return 0;
    }
    let i = pfn & BLOCK_MASK;
    const head = i - (i % 512);
    const hf = blk.flags[head]!;
    if ((hf & RMP_ASSIGNED) !== 0 && (hf & RMP_PAGE_2M) !== 0) {
      this.governingPfn = pfn - (pfn % 512);
      i = head;
    } else {
      this.governingPfn = pfn;
    }
    this.governingAsid = blk.asid[i]!;
    const g = blk.gfn[i]!;
    this.governingGfn = g === BIG_GFN ? this.bigGfns.get(this.governingPfn)! : g;
    return blk.flags[i]!;
  }

  private readGoverningSlow(pfn: number): number {
    const g = this.governing(pfn);
    this.governingPfn = g;
    this.governingAsid = this.asidOf(g);
    this.governingGfn = this.gfnOf(g);
    return this.flagsOf(g);
  }

  /** The frame whose entry governs `pfn`: its 2M head if that is an assigned 2M entry, else `pfn` itself. */
  governing(pfn: number): number {
    const head = pfn - (pfn % 512);
    const hf = this.flagsOf(head);
    return (hf & RMP_ASSIGNED) !== 0 && (hf & RMP_PAGE_2M) !== 0 ? head : pfn;
  }

  raw(pfn: number): RmpEntry {
    this.noteRead(pfn);
    const blk = this.block(pfn, false);
    const f = blk?.flags[pfn & BLOCK_MASK] ?? 0;
    return {
      assigned: (f & RMP_ASSIGNED) !== 0,
      size2m: (f & RMP_PAGE_2M) !== 0,
      immutable: (f & RMP_IMMUTABLE) !== 0,
      validated: (f & RMP_VALIDATED) !== 0,
      vmsa: (f & RMP_VMSA) !== 0,
      asid: blk?.asid[pfn & BLOCK_MASK] ?? 0,
      gfn: blk === undefined ? 0 : this.gfnIn(blk, pfn & BLOCK_MASK, pfn),
      pfn,
    };
  }

  /** The entry that governs `pfn`: its 2M head's if that is an assigned 2M entry, else its own. */
  lookup(pfn: number): RmpEntry {
    return this.raw(this.governing(pfn));
  }

  set(pfn: number, flags: number, asid: number, gfn: number): void {
    this.noteWrite(pfn);
    const blk = this.block(pfn, true)!;
    blk.flags[pfn & BLOCK_MASK] = flags;
    blk.asid[pfn & BLOCK_MASK] = asid;
    if (blk.gfn[pfn & BLOCK_MASK] === BIG_GFN) this.bigGfns.delete(pfn);
    // Every RMPUPDATE leaves VMPLs 1-3 without permissions.
    if (blk.perms !== null) blk.perms[pfn & BLOCK_MASK] = 0;
    if (gfn >= BIG_GFN) this.bigGfns.set(pfn, gfn);
    blk.gfn[pfn & BLOCK_MASK] = Math.min(gfn, BIG_GFN);
  }

  /** The permissions VMPL `vmpl` has on frame `pfn`'s entry (VMPL_*; VMPL0 has them all). */
  vmplPerms(pfn: number, vmpl: number): number {
    this.noteRead(pfn);
    if (vmpl === 0) return VMPL_ALL;
    const p = this.block(pfn, false)?.perms?.[pfn & BLOCK_MASK] ?? 0;
    return (p >>> (4 * (vmpl - 1))) & VMPL_ALL;
  }

  /** Sets VMPL `vmpl`'s (1-3) permissions on frame `pfn`'s entry (RMPADJUST, PSMASH). */
  setVmplPerms(pfn: number, vmpl: number, perms: number): void {
    this.noteWrite(pfn);
    const blk = this.block(pfn, true)!;
    blk.perms ??= new Uint16Array(BLOCK_FRAMES);
    const shift = 4 * (vmpl - 1);
    const i = pfn & BLOCK_MASK;
    blk.perms[i] = (blk.perms[i]! & ~(VMPL_ALL << shift)) | ((perms & VMPL_ALL) << shift);
  }

  setFlags(pfn: number, flags: number): void {
    this.noteWrite(pfn);
    this.block(pfn, true)!.flags[pfn & BLOCK_MASK] = flags;
  }

  /** Every assigned entry (recording nothing: for checks; inside a step it fails). */
  *assigned(): Generator<RmpEntry> {
    this.clock?.assertBetweenSteps("the RMP's assigned entries");
    for (let b = 0; b < this.blocks.length; b++) {
      const blk = this.blocks[b];
      if (!blk) continue;
      for (let i = 0; i < BLOCK_FRAMES; i++) {
        if ((blk.flags[i]! & RMP_ASSIGNED) === 0) continue;
        const f = blk.flags[i]!;
        yield {
          assigned: true,
          size2m: (f & RMP_PAGE_2M) !== 0,
          immutable: (f & RMP_IMMUTABLE) !== 0,
          validated: (f & RMP_VALIDATED) !== 0,
          vmsa: (f & RMP_VMSA) !== 0,
          asid: blk.asid[i]!,
          gfn: this.gfnIn(blk, i, b * BLOCK_FRAMES + i),
          pfn: b * BLOCK_FRAMES + i,
        };
      }
    }
  }

  /** Every entry that is not all zero, under its resource id (recording nothing: for the footprint audit). */
  auditEntries(out: Map<number, string | number>): void {
    for (let b = 0; b < this.blocks.length; b++) {
      const blk = this.blocks[b];
      if (!blk) continue;
      for (let i = 0; i < BLOCK_FRAMES; i++) {
        const perms = blk.perms?.[i] ?? 0;
        if (blk.flags[i] === 0 && blk.asid[i] === 0 && blk.gfn[i] === 0 && perms === 0) continue;
        out.set(
          resourceId(this.space, b * BLOCK_FRAMES + i),
          `${blk.flags[i]}/${blk.asid[i]}/${this.gfnIn(blk, i, b * BLOCK_FRAMES + i)}/${perms}`,
        );
      }
    }
  }
}
