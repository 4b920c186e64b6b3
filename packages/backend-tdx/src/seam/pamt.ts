/**
 * The PAMT: the module's metadata for every 4 KiB granule of TDX-convertible memory (docs/tdx-module.md
 * §4): page type, owner (the TDR's PFN), BEPOCH (the TD epoch when the page was blocked) and a
 * host-priority lock. The real PAMT costs 16 bytes per page; here 10 (type, owner, BEPOCH and
 * the lock in typed arrays), per 16 MiB block of frames, made on first use, so memory the module
 * never sees costs nothing. (A block per 2 MiB cost a few microseconds to make for every 512
 * pages a TD was given.) Owners are TDR PFNs, below 2^32 on hosts up to 16 TiB, stored unsigned
 * with `OWNER_NONE` for none: a TDR at the last frame of a full 16 TiB host (PFN 2^32 - 1) would
 * own nothing, the one PFN the model cannot tell from none.
 *
 * Above the 4K entries, one 2M entry per 2 MiB region (the module's PAMT is a 1G/2M/4K
 * hierarchy, `pamt_manager.c`): a 2 MiB private page is one 2M entry of type REG, the 512 4K
 * entries under it staying NDA, and a walk to a 4K entry takes the 2M entry's lock shared on its
 * way. The 1G level is not modelled: no 1G private pages exist in the model (KVM maps private
 * memory at 4K and 2M; a raw PROMOTE at 1G is refused, see `memPagePromoteLeaf`), so no leaf
 * ever holds a 1G entry exclusively and the shared pass through it that `pamt_walk` makes first
 * could never find it busy.
 *
 * The frames of reserved areas of a TDMR (the PAMT's own, in host memory) are PT_RSVD from
 * TDH.SYS.TDMR.INIT on (`setReserved`); no TD owns them and no leaf changes them.
 *
 * Each entry is a resource of the explorer's (`SeamFootprint.pamtId`, `pamt2mId`): its readers
 * record a read, `set`/`setBepoch` a write. `nextPageOf`, `pagesOf` and `auditEntries` are for
 * checks and record nothing.
 */
import { nextSetBit } from "@tdpemu/backend-sdk";
import { SharexLock } from "./locks.js";
import { UNATTACHED_FOOTPRINT, type SeamFootprint } from "./seam-footprint.js";

export const PT_NDA = 0;
export const PT_RSVD = 1;
export const PT_REG = 3;
export const PT_TDR = 4;
export const PT_TDCX = 5;
export const PT_TDVPR = 6;
export const PT_EPT = 8;

export const PAGE_TYPE_NAMES: Record<number, string> = {
  0: "NDA",
  1: "RSVD",
  3: "REG",
  4: "TDR",
  5: "TDCX",
  6: "TDVPR",
  8: "EPT",
};

/** Types of pages a TD owns (in a block's `assigned` index): not NDA, not reserved. */
function ownable(type: number): boolean {
  return type !== PT_NDA && type !== PT_RSVD;
}

/** The owner of a page no TD owns: -1, since a TDR may sit at PFN 0. */
export const NO_TD = -1;
/** NO_TD as the owner arrays store it (`NO_TD >>> 0`). */
const OWNER_NONE = 0xffffffff;

/** An owner as stored (a Uint32Array entry) back to a TDR PFN or NO_TD. */
function ownerOf(stored: number): number {
  return stored === OWNER_NONE ? NO_TD : stored;
}

/** Frames per block: 4096 (16 MiB). */
const BLOCK_SHIFT = 12;
const BLOCK_FRAMES = 1 << BLOCK_SHIFT;
const BLOCK_MASK = BLOCK_FRAMES - 1;
/** 2M entries per block. */
const BLOCK_2M = BLOCK_FRAMES >>> 9;

class PamtBlock {
  /** One buffer for the five arrays: one backing store to make (and collect) per block, not five. */
  private readonly bytes = new ArrayBuffer(BLOCK_FRAMES * 10 + (BLOCK_FRAMES >>> 3));
  readonly owner = new Uint32Array(this.bytes, 0, BLOCK_FRAMES).fill(OWNER_NONE);
  readonly bepoch = new Uint32Array(this.bytes, BLOCK_FRAMES * 4, BLOCK_FRAMES);
  /**
   * Bit `i & 31` of word `i >>> 5`: granule i is assigned (its type is not NDA or RSVD). The module
   * itself finds a TD's pages through its TDCS and S-EPT; this index is the emulator's, so
   * that the PAMT invariant (run after every explorer step) visits the few assigned granules
   * instead of every granule of the block.
   */
  readonly assigned = new Int32Array(this.bytes, BLOCK_FRAMES * 8, BLOCK_FRAMES >>> 5);
  readonly type = new Uint8Array(this.bytes, BLOCK_FRAMES * 8 + (BLOCK_FRAMES >>> 3), BLOCK_FRAMES);
  /** The page's lock: -1 exclusive, n > 0 readers, 0 free; bit 6 (64) of `hp` the host-priority bit. */
  readonly lockState = new Int8Array(
    this.bytes,
    BLOCK_FRAMES * 9 + (BLOCK_FRAMES >>> 3),
    BLOCK_FRAMES,
  );
  /** How many granules of the block are assigned. */
  nAssigned = 0;
  /** The block's 2M entries: type, owner, BEPOCH, lock (as the 4K ones). */
  readonly type2m = new Uint8Array(BLOCK_2M);
  readonly owner2m = new Uint32Array(BLOCK_2M).fill(OWNER_NONE);
  readonly bepoch2m = new Uint32Array(BLOCK_2M);
  readonly lock2m = new Int8Array(BLOCK_2M);
  /** How many of the block's 2M entries are assigned. */
  n2m = 0;
  /** Every granule written is in [lo, hi): what `clear` must reset. */
  lo = BLOCK_FRAMES;
  hi = 0;

  /** Granule `i` is about to be written. */
  touch(i: number): void {
    if (i < this.lo) this.lo = i;
    if (i >= this.hi) this.hi = i + 1;
  }

  /** Back to the state of a new block: every granule NDA, unowned, epoch 0, unlocked. */
  clear(): void {
    if (this.lo < this.hi) {
      this.type.fill(PT_NDA, this.lo, this.hi);
      this.owner.fill(OWNER_NONE, this.lo, this.hi);
      this.bepoch.fill(0, this.lo, this.hi);
      this.lockState.fill(0, this.lo, this.hi);
      this.assigned.fill(0, this.lo >>> 5, ((this.hi - 1) >>> 5) + 1);
    }
    this.type2m.fill(PT_NDA);
    this.owner2m.fill(OWNER_NONE);
    this.bepoch2m.fill(0);
    this.lock2m.fill(0);
    this.n2m = 0;
    this.nAssigned = 0;
    this.lo = BLOCK_FRAMES;
    this.hi = 0;
  }
}

/**
 * Blocks of discarded PAMTs (`release`), cleared, for the next PAMT to take instead of making
 * new ones: the explorer builds a host, and so a TDX module, for every schedule it runs, and a
 * new block (40 KiB of typed arrays, zero-filled, then swept by the collector) cost more than
 * building the rest of the TD.
 */
const SPARE_BLOCKS_MAX = 16;
const spareBlocks: PamtBlock[] = [];

/** A view of one PAMT entry's lock with the `SharexLock` interface (made per use, not stored). */
class PamtLock {
  constructor(
    private readonly state: Int8Array,
    private readonly i: number,
  ) {}

  tryShared(): boolean {
    if (this.state[this.i]! < 0) return false;
    this.state[this.i]!++;
    return true;
  }

  tryExclusive(): boolean {
    if (this.state[this.i] !== 0) return false;
    this.state[this.i] = -1;
    return true;
  }

  release(): void {
    const v = this.state[this.i]!;
    if (v === 0) throw new Error("release of a free PAMT lock");
    this.state[this.i] = v < 0 ? 0 : v - 1;
  }

  get held(): boolean {
    return this.state[this.i] !== 0;
  }

  get exclusive(): boolean {
    return this.state[this.i]! < 0;
  }
}

export class Pamt {
  private readonly blocks: (PamtBlock | undefined)[] = [];
  /**
   * Bumped by every change of a page's type or owner (`set`, `release`): what was read of them
   * at one version holds while it lasts (the module remembers its vCPU lookup by it).
   */
  version = 0;
  /**
   * Bumped by every change of the type or owner of a page that is a TDR or TDVPR page (before
   * the change): such a page read at one such version is still the same kind of page of the
   * same owner while it lasts, though PAGE.AUG changes the PAMT (and `version`) on every fault.
   */
  controlPageVersion = 0;

  /** Frames below this are in an initialized part of a TDMR (`setUsableFrames`). */
  private usable: number;

  constructor(
    /** Host frames below this are convertible memory (one TDMR covering all of host memory). */
    readonly totalFrames: number,
    private readonly fp: SeamFootprint | null = null,
  ) {
    this.usable = totalFrames;
    this.rec = fp ?? UNATTACHED_FOOTPRINT;
  }

  /** `fp`, or a footprint that never records: "recording?" is one load (`noteRead`). */
  private readonly rec: SeamFootprint;

  /** Small enough for V8 to inline everywhere: the recording itself is apart. */
  private noteRead(pfn: number): void {
    if (this.rec.fp !== null) this.recordRead(pfn);
  }

  private recordRead(pfn: number): void {
    const fp = this.fp!;
    fp.fp!.read(fp.pamtId(pfn));
  }

  /** Frames below this are in an initialized part of a TDMR, recording nothing (the footprint audit). */
  get usableFrames(): number {
    return this.usable;
  }

  inTdmr(pfn: number): boolean {
    return Number.isInteger(pfn) && pfn >= 0 && pfn < this.usable;
  }

  /**
   * Whether `pfn` is a page the module would take as a new control page: in a TDMR, NDA, in no
   * 2 MiB page, with its lock and its 2M entry's lock free. Records nothing (for
   * `SeamCore.restoreTdSetup`, which gives such pages what the leaves would).
   */
  isFreshPage(pfn: number): boolean {
    if (!this.inTdmr(pfn)) return false;
    const blk = this.blocks[pfn >>> BLOCK_SHIFT];
    if (blk === undefined) return true;
    const i = pfn & BLOCK_MASK;
    const j = i >>> 9;
    return (
      blk.type[i] === PT_NDA &&
      blk.lockState[i] === 0 &&
      blk.type2m[j] === PT_NDA &&
      blk.lock2m[j] === 0
    );
  }

  /**
   * Frames below `n` are in the initialized part of a TDMR (TDH.SYS.TDMR.INIT's progress); the
   * module refuses any other page as outside the TDMRs.
   */
  setUsableFrames(n: number): void {
    this.usable = Math.min(n, this.totalFrames);
  }

  private block(pfn: number): PamtBlock {
    const b = pfn >>> BLOCK_SHIFT;
    let blk = this.blocks[b];
    if (!blk) {
      blk = spareBlocks.pop() ?? new PamtBlock();
      // Grown densely, so the array keeps fast elements (a far index into an empty array
      // would turn it into a dictionary).
      while (this.blocks.length < b) this.blocks.push(undefined);
      this.blocks[b] = blk;
    }
    return blk;
  }

  type(pfn: number): number {
    this.noteRead(pfn);
    return this.rawType(pfn);
  }

  private rawType(pfn: number): number {
    return this.blocks[pfn >>> BLOCK_SHIFT]?.type[pfn & BLOCK_MASK] ?? PT_NDA;
  }

  owner(pfn: number): number {
    this.noteRead(pfn);
    const blk = this.blocks[pfn >>> BLOCK_SHIFT];
    return blk === undefined ? NO_TD : ownerOf(blk.owner[pfn & BLOCK_MASK]!);
  }

  /** `type(pfn)` if `owner` owns the page, else -1: one lookup where a check needs both. */
  typeIfOwnedBy(pfn: number, owner: number): number {
    this.noteRead(pfn);
    const blk = this.blocks[pfn >>> BLOCK_SHIFT];
    // A block never written is all NDA and unowned, as `type` and `owner` say.
    if (blk === undefined) return owner === NO_TD ? PT_NDA : -1;
    return blk.owner[pfn & BLOCK_MASK] === owner >>> 0 ? blk.type[pfn & BLOCK_MASK]! : -1;
  }

  bepoch(pfn: number): number {
    this.noteRead(pfn);
    return this.blocks[pfn >>> BLOCK_SHIFT]?.bepoch[pfn & BLOCK_MASK] ?? 0;
  }

  // ------------------------------------------------------------------ the 2M level

  private noteRead2m(pfn: number): void {
    if (this.rec.fp !== null) this.recordRead2m(pfn);
  }

  private recordRead2m(pfn: number): void {
    const fp = this.fp!;
    fp.fp!.read(fp.pamt2mId(pfn));
  }

  /** The type of the 2M entry over `pfn`'s 2 MiB region: REG for a 2 MiB page, else NDA. */
  type2m(pfn: number): number {
    this.noteRead2m(pfn);
    return this.blocks[pfn >>> BLOCK_SHIFT]?.type2m[(pfn & BLOCK_MASK) >>> 9] ?? PT_NDA;
  }

  owner2m(pfn: number): number {
    this.noteRead2m(pfn);
    const blk = this.blocks[pfn >>> BLOCK_SHIFT];
    return blk === undefined ? NO_TD : ownerOf(blk.owner2m[(pfn & BLOCK_MASK) >>> 9]!);
  }

  /** The 2M entry over `pfn`: a 2 MiB page of `owner` (REG) or none (NDA); BEPOCH back to 0. */
  set2m(pfn: number, type: number, owner: number): void {
    const blk = this.setType2m(pfn, type);
    const j = (pfn & BLOCK_MASK) >>> 9;
    blk.owner2m[j] = owner;
    blk.bepoch2m[j] = 0;
  }

  /**
   * `pamt_promote`: the 2M entry takes the type and owner of the merged 4K entries, and keeps
   * the BEPOCH it had (a BLOCK of the 2 MiB page before it was demoted left one there).
   */
  promote2m(pfn: number, type: number, owner: number): void {
    const blk = this.setType2m(pfn, type);
    blk.owner2m[(pfn & BLOCK_MASK) >>> 9] = owner;
  }

  /** The 2M entry is no longer a page (PAGE.REMOVE, DEMOTE, RECLAIM): as `setNda`. */
  setNda2m(pfn: number): void {
    this.setType2m(pfn, PT_NDA);
  }

  private setType2m(pfn: number, type: number): PamtBlock {
    this.fp?.writePamt2m(pfn);
    this.version++;
    const blk = this.block(pfn);
    const j = (pfn & BLOCK_MASK) >>> 9;
    if ((blk.type2m[j] !== PT_NDA) !== (type !== PT_NDA)) blk.n2m += type !== PT_NDA ? 1 : -1;
    blk.type2m[j] = type;
    return blk;
  }

  /**
   * The 2M entry's lock taken (never spinning) and released within the step, as
   * `tryLockAndRelease` does for a 4K entry: a 4K walk passes through it shared.
   */
  tryLock2mAndRelease(pfn: number, exclusive: boolean): boolean {
    // No leaf holds a 2M entry across steps, so its reader count never wraps as a 4K entry's can.
    this.noteRead2m(pfn);
    const v = this.blocks[pfn >>> BLOCK_SHIFT]?.lock2m[(pfn & BLOCK_MASK) >>> 9] ?? 0;
    return exclusive ? v === 0 : v >= 0;
  }

  /**
   * A 4K walk's pass through the 2M entry over `pfn` (its lock taken shared and released): the
   * entry's type, or -1 if an exclusive holder keeps the walk out.
   */
  walk2m(pfn: number): number {
    this.noteRead2m(pfn);
    const blk = this.blocks[pfn >>> BLOCK_SHIFT];
    if (blk === undefined) return PT_NDA;
    const j = (pfn & BLOCK_MASK) >>> 9;
    return blk.lock2m[j]! < 0 ? -1 : blk.type2m[j]!;
  }

  /** A view of a 2M entry's lock (for tests). */
  lock2m(pfn: number): SharexLock {
    return new PamtLock(this.block(pfn).lock2m, (pfn & BLOCK_MASK) >>> 9) as unknown as SharexLock;
  }

  /**
   * The TD a call naming page `pfn` is made for when its caller does not say (whose counters,
   * events and injected faults it goes to): the owner of an assigned page, of its 2 MiB page if
   * it is in one; a TDR's own TD; none for a free page, whatever owner it had last. Not the
   * module's: its calls carry no such thing.
   */
  callOwner(pfn: number): number {
    const big = this.type2m(pfn) !== PT_NDA;
    const type = big ? PT_REG : this.type(pfn);
    if (type === PT_TDR) return pfn;
    if (!ownable(type)) return NO_TD;
    return big ? this.owner2m(pfn) : this.owner(pfn);
  }

  /** Whether any 4K entry of the 2 MiB region from `pfn` is assigned (records nothing: for the checks). */
  anyAssigned4k(pfn: number): boolean {
    const blk = this.blocks[pfn >>> BLOCK_SHIFT];
    if (blk === undefined) return false;
    const w = (pfn & BLOCK_MASK) >>> 5;
    for (let i = w; i < w + 16; i++) if (blk.assigned[i] !== 0) return true;
    return false;
  }

  /** The PAMT entry of a leaf page at TDX `level` (0: the 4K entry, 1: the 2M entry): its BEPOCH. */
  leafBepoch(pfn: number, level: number): number {
    if (level === 0) return this.bepoch(pfn);
    this.noteRead2m(pfn);
    return this.blocks[pfn >>> BLOCK_SHIFT]?.bepoch2m[(pfn & BLOCK_MASK) >>> 9] ?? 0;
  }

  setLeafBepoch(pfn: number, level: number, epoch: number): void {
    if (level === 0) return this.setBepoch(pfn, epoch);
    this.fp?.writePamt2m(pfn);
    this.block(pfn).bepoch2m[(pfn & BLOCK_MASK) >>> 9] = epoch;
  }

  /** The lock of the PAMT entry of a leaf page at TDX `level`, as `tryLockAndRelease`. */
  tryLockLeafAndRelease(pfn: number, level: number, exclusive: boolean): boolean {
    return level === 0
      ? this.tryLockAndRelease(pfn, exclusive)
      : this.tryLock2mAndRelease(pfn, exclusive);
  }

  /** The PAMT entry of a leaf page at TDX `level` becomes `type` of `owner`. */
  setLeaf(pfn: number, level: number, type: number, owner: number): void {
    if (level === 0) this.set(pfn, type, owner);
    else this.set2m(pfn, type, owner);
  }

  /** `setNda` or `setNda2m` for a leaf page at TDX `level`. */
  setLeafNda(pfn: number, level: number): void {
    if (level === 0) this.setNda(pfn);
    else this.setNda2m(pfn);
  }

  /**
   * The first PFN of the lowest 2 MiB page at or above `from` that `owner` has (a 2M entry of
   * type REG), or -1; records nothing (for the checks).
   */
  next2mPageOf(owner: number, from: number): number {
    const blocks = this.blocks;
    if (from < 0) from = 0;
    for (let b = from >>> BLOCK_SHIFT; b < blocks.length; b++) {
      const blk = blocks[b];
      if (blk === undefined || blk.n2m === 0) continue;
      const start = b === from >>> BLOCK_SHIFT ? ((from & BLOCK_MASK) + 511) >>> 9 : 0;
      for (let j = start; j < BLOCK_2M; j++)
        if (blk.type2m[j] !== PT_NDA && blk.owner2m[j] === owner >>> 0)
          return b * BLOCK_FRAMES + j * 512;
    }
    return -1;
  }

  /** A view of the page's lock (allocated: for tests and tools; SEAMCALLs use `tryLockAndRelease`). */
  lock(pfn: number): SharexLock {
    const blk = this.block(pfn);
    blk.touch(pfn & BLOCK_MASK);
    return new PamtLock(blk.lockState, pfn & BLOCK_MASK) as unknown as SharexLock;
  }

  /**
   * Takes the page's lock (never spinning) and releases it again, as a leaf does within its one
   * step: true if it could be taken, and the lock left as `PamtLock`'s take and release leave it.
   */
  tryLockAndRelease(pfn: number, exclusive: boolean): boolean {
    this.noteRead(pfn);
    // A frame whose block was never made has its lock free: nothing to make for a look.
    const blk = this.blocks[pfn >>> BLOCK_SHIFT];
    if (blk === undefined) return true;
    const state = blk.lockState;
    const i = pfn & BLOCK_MASK;
    const v = state[i]!;
    if (exclusive) return v === 0;
    if (v < 0) return false;
    // Taken shared, 127 readers wrap the Int8 to -128, which the release reads as exclusive and
    // frees: the lock ends at 0.
    if (v === 127) {
      this.fp?.write(this.fp.pamtId(pfn));
      blk.touch(i);
      state[i] = 0;
    }
    return true;
  }

  /**
   * The page becomes `type` for `owner` with BEPOCH 0, as PAGE.AUG, PAGE.ADD and SEPT.ADD write
   * it (`set_pamt_entry_owner`, `bepoch.raw = 0`), and DEMOTE its 512 new 4K entries
   * (`pamt_demote`).
   */
  set(pfn: number, type: number, owner: number): void {
    const blk = this.setType(pfn, type);
    const i = pfn & BLOCK_MASK;
    blk.owner[i] = owner;
    blk.bepoch[i] = 0;
  }

  /**
   * The page becomes `type` for `owner`, its BEPOCH left as it was: the control-page leaves
   * (MNG.CREATE, MNG.ADDCX, VP.CREATE, VP.ADDCX) and DEMOTE's new S-EPT page write the type and
   * owner only. A frame freed after a BLOCK keeps that BEPOCH, which RDMD shows again for an
   * S-EPT page.
   */
  setTypeOwner(pfn: number, type: number, owner: number): void {
    const blk = this.setType(pfn, type);
    blk.owner[pfn & BLOCK_MASK] = owner;
  }

  /**
   * The page is no longer assigned: every leaf that frees one (PAGE.REMOVE, SEPT.REMOVE, PROMOTE's
   * merged entries, PHYMEM.PAGE.RECLAIM) writes `pt = PT_NDA` and nothing else, so the owner and
   * BEPOCH stay, and TDH.PHYMEM.PAGE.RDMD reports the owner until the page is assigned again.
   */
  setNda(pfn: number): void {
    this.setType(pfn, PT_NDA);
  }

  private setType(pfn: number, type: number): PamtBlock {
    this.fp?.writePamt(pfn);
    this.version++;
    const blk = this.block(pfn);
    const i = pfn & BLOCK_MASK;
    const before = blk.type[i];
    if (before === PT_TDVPR || before === PT_TDR) this.controlPageVersion++;
    blk.touch(i);
    const was = ownable(blk.type[i]!);
    const is = ownable(type);
    if (was !== is) {
      blk.assigned[i >>> 5]! ^= 1 << (i & 31);
      blk.nAssigned += is ? 1 : -1;
    }
    blk.type[i] = type;
    return blk;
  }

  /**
   * TDH.SYS.TDMR.INIT's marking of frames [from, to) of a reserved area (`pamt_4kb_init`:
   * PT_RSVD, no owner): in bulk and recording nothing, since the host's bring-up runs before any
   * VM exists. No leaf ever changes such an entry again, and no TD owns it (it is not in
   * `assigned`).
   */
  setReserved(from: number, to: number): void {
    this.version++;
    for (let pfn = from; pfn < to;) {
      const blk = this.block(pfn);
      const lo = pfn & BLOCK_MASK;
      const hi = Math.min(BLOCK_FRAMES, lo + (to - pfn));
      blk.touch(lo);
      blk.touch(hi - 1);
      blk.type.fill(PT_RSVD, lo, hi);
      blk.owner.fill(OWNER_NONE, lo, hi);
      pfn += hi - lo;
    }
  }

  setBepoch(pfn: number, epoch: number): void {
    this.fp?.writePamt(pfn);
    const blk = this.block(pfn);
    blk.touch(pfn & BLOCK_MASK);
    blk.bepoch[pfn & BLOCK_MASK] = epoch;
  }

  /**
   * Gives the blocks, cleared, to the PAMTs made after this one (see `spareBlocks`): for the
   * module of a host that is being discarded. The PAMT reads as all NDA afterwards.
   */
  release(): void {
    this.version++;
    this.controlPageVersion++;
    for (const blk of this.blocks) {
      if (blk === undefined || spareBlocks.length >= SPARE_BLOCKS_MAX) continue;
      blk.clear();
      spareBlocks.push(blk);
    }
    this.blocks.length = 0;
  }

  /**
   * The lowest PFN at or above `from` that is assigned (not NDA) to `owner`, or -1: the TD's
   * pages in ascending order, by `for (p = next(o, 0); p >= 0; p = next(o, p + 1))`, with
   * nothing allocated (the PAMT invariant runs after every explorer step).
   */
  nextPageOf(owner: number, from: number): number {
    const blocks = this.blocks;
    if (from < 0) from = 0;
    for (let b = from >>> BLOCK_SHIFT; b < blocks.length; b++) {
      const blk = blocks[b];
      if (blk === undefined || blk.nAssigned === 0) continue;
      const start = b === from >>> BLOCK_SHIFT ? from & BLOCK_MASK : 0;
      const assigned = blk.assigned;
      const owners = blk.owner;
      const stored = owner >>> 0;
      for (
        let i = nextSetBit(assigned, 0, assigned.length, start);
        i >= 0;
        i = nextSetBit(assigned, 0, assigned.length, i + 1)
      ) {
        if (owners[i] === stored) return b * BLOCK_FRAMES + i;
      }
    }
    return -1;
  }

  /** Every granule assigned to `owner` with its type, in ascending PFN order (for tests and tools). */
  *pagesOf(owner: number): Generator<[pfn: number, type: number]> {
    for (let p = this.nextPageOf(owner, 0); p >= 0; p = this.nextPageOf(owner, p + 1))
      yield [p, this.rawType(p)];
  }

  /** Every entry not in its initial state, under its resource id (recording nothing: for the footprint audit). */
  auditEntries(out: Map<number, string | number>): void {
    if (this.fp === null) return;
    for (let b = 0; b < this.blocks.length; b++) {
      const blk = this.blocks[b];
      if (blk === undefined) continue;
      // The reserved entries TDMR.INIT left (a thousand and more per TDMR) count as one entry,
      // under the first's id: a change to any of them changes the count.
      let reserved = 0;
      let firstReserved = -1;
      for (let i = blk.lo; i < blk.hi; i++) {
        const initial =
          blk.owner[i] === OWNER_NONE && blk.bepoch[i] === 0 && blk.lockState[i] === 0;
        // An entry as a new block has it is not listed: a change to it shows as its appearance.
        if (initial && blk.type[i] === PT_NDA) continue;
        if (initial && blk.type[i] === PT_RSVD) {
          if (reserved++ === 0) firstReserved = i;
          continue;
        }
        out.set(
          this.fp.pamtId(b * BLOCK_FRAMES + i),
          `${blk.type[i]}/${blk.owner[i]}/${blk.bepoch[i]}/${blk.lockState[i]}`,
        );
      }
      if (reserved > 0)
        out.set(this.fp.pamtId(b * BLOCK_FRAMES + firstReserved), `${reserved} reserved`);
      for (let j = 0; j < BLOCK_2M; j++) {
        if (
          blk.type2m[j] === PT_NDA &&
          blk.owner2m[j] === OWNER_NONE &&
          blk.bepoch2m[j] === 0 &&
          blk.lock2m[j] === 0
        )
          continue;
        out.set(
          this.fp.pamt2mId(b * BLOCK_FRAMES + j * 512),
          `2M ${blk.type2m[j]}/${blk.owner2m[j]}/${blk.bepoch2m[j]}/${blk.lock2m[j]}`,
        );
      }
    }
  }
}
