/**
 * What each SEAMCALL reads and writes of the module's state, recorded for the explorer into the
 * clock the module is attached to (`SeamCore.attach`), one resource per piece the module keeps
 * apart: each S-EPT entry, each PAMT entry, each vCPU's TDVPR state, each page's plaintext, and
 * per TD its state (lifecycle, op state, fatal, configuration, TDCX, vCPUs), its TLB epoch, the
 * two per-parity counts of vCPUs in guest mode, its child count, MRTD and its three locks. Two
 * calls are then independent exactly when they touch different pieces, as two CPUs running them
 * at once on the real module would not contend (AUGs of different GPAs, a VP.ENTER and a TRACK
 * of another TD...).
 *
 * The state's classes (`SeptPages`, `Pamt`, `Td`, `TdVcpu`, `SharexLock`, `SeamCore`) record
 * through this object in their accessors; leaf code never calls it.
 */
import { resourceId, type Clock, type FootprintRecorder } from "@tdpemu/backend-sdk";

// The pieces of a TD's state, each a resource of its own (`tdId`).
export const TD_STATE = 0;
export const TD_EPOCH = 1;
/** TD_REFCOUNT + parity: the vCPUs in guest mode that entered in an even / odd epoch. */
export const TD_REFCOUNT = 2;
export const TD_CHILDREN = 4;
export const TD_MRTD = 5;
export const TD_TREE_LOCK = 6;
export const TD_OPSTATE_LOCK = 7;
export const TD_EPOCH_LOCK = 8;
/**
 * One resource space per part, indexed by the TDR's PFN: a PFN takes the whole 2^32 of an index
 * space on a 16 TiB host, so the parts cannot share one (TDRs 2^28 apart would alias, and a part
 * the checks read could land in a space said to be unread).
 */
export const TD_PART_COUNT = TD_EPOCH_LOCK + 1;

/**
 * The platform resource of the module's bring-up state and the frames its TDMRs make usable
 * (`SysState`, `Pamt.inTdmr`). Every leaf reads them, the dispatcher's SYS_READY check first,
 * and none records the read: the host kernel brings the module up before any VM exists, and
 * nothing changes them after (the bring-up leaves a scenario calls raw are refused). No write
 * of it is ever recorded either, so the footprint audit fails any step that changes them.
 */
export const PLATFORM_SYS = 0x7fffffff;

/** Index spaces are 2^32 wide: an S-EPT page at a PFN from 2^23 on shares one resource per entry index (coarser, never unsound). */
const SEPT_PFN_LIMIT = 2 ** 23;

export class SeamFootprint {
  private clock: Clock | null = null;
  /** The clock's recorder, kept here by the clock (`shareRecorder`): null while nothing records. */
  fp: FootprintRecorder | null = null;
  private septSpace = 0;
  private pamtSpace = 0;
  private pamt2mSpace = 0;
  /** The first of TD_PART_COUNT consecutive spaces, one per part (`tdId`). */
  private tdSpace = 0;
  private vcpuSpace = 0;
  private plainSpace = 0;
  private platformSpace = 0;

  /**
   * The module's readers that record nothing (`SeptPages.peekLo`...) ask this: inside a task's
   * step they fail (`Clock.assertBetweenSteps`), for the checks and views run between steps.
   */
  assertBetweenSteps(what: string): void {
    this.clock?.assertBetweenSteps(what);
  }

  /** Records into `clock` from now on (a new set of resource spaces if it is a new clock). */
  attach(clock: Clock): void {
    if (this.clock === clock) return;
    this.clock = clock;
    clock.shareRecorder(this);
    // What the invariant checks read (`checkTdxInvariants`): the S-EPT, the PAMT, a TD's state
    // and child count, and the list of TDs. Not a TD's epoch, guest-mode counts, MRTD or locks,
    // a vCPU's TDVPR, or page contents: a change of those alone needs no check.
    this.septSpace = clock.newResourceSpace();
    this.pamtSpace = clock.newResourceSpace();
    this.pamt2mSpace = clock.newResourceSpace();
    for (let part = 0; part < TD_PART_COUNT; part++) {
      const space = clock.newResourceSpace(part === TD_STATE || part === TD_CHILDREN);
      if (part === 0) this.tdSpace = space;
      else if (space !== this.tdSpace + part)
        throw new Error("a TD's resource spaces must be consecutive");
    }
    this.vcpuSpace = clock.newResourceSpace(false);
    this.plainSpace = clock.newResourceSpace(false);
    this.platformSpace = clock.newResourceSpace();
  }

  /** Whether accesses are being recorded now (the explorer's step): remembered lookups must not be used then. */
  get recording(): boolean {
    return this.fp !== null;
  }

  septId(page: number, index: number): number {
    return resourceId(
      this.septSpace,
      page < SEPT_PFN_LIMIT ? page * 512 + index : 0xfffffe00 + index,
    );
  }

  pamtId(pfn: number): number {
    return resourceId(this.pamtSpace, pfn);
  }

  /** The 2M PAMT entry over `pfn` (its own resource, apart from the 512 4K entries under it). */
  pamt2mId(pfn: number): number {
    return resourceId(this.pamt2mSpace, Math.floor(pfn / 512));
  }

  tdId(tdr: number, part: number): number {
    return resourceId(this.tdSpace + part, tdr);
  }

  vcpuId(tdvpr: number): number {
    return resourceId(this.vcpuSpace, tdvpr);
  }

  plainId(pfn: number): number {
    return resourceId(this.plainSpace, pfn);
  }

  /**
   * The list of TDs (index 0), per leaf its call counter while a fault is injected (1 + leaf),
   * and the platform's bring-up state (`PLATFORM_SYS`, which nothing records).
   */
  platformId(index: number): number {
    return resourceId(this.platformSpace, index);
  }

  read(id: number): void {
    this.fp?.read(id);
  }

  write(id: number): void {
    this.clock?.touch(id);
  }

  update(id: number): void {
    this.clock?.update(id);
  }

  /**
   * The write of S-EPT entry `index` of `page`, of PAMT entry `pfn`, of TD part `part`: the id
   * is made only while recording (a write otherwise only bumps the state version). `fp` is the
   * clock's recorder (`shareRecorder`): null while nothing records, or with no clock.
   */
  writeSept(page: number, index: number): void {
    if (this.fp === null) this.clock?.bump();
    else this.clock!.touch(this.septId(page, index));
  }

  writePamt(pfn: number): void {
    if (this.fp === null) this.clock?.bump();
    else this.clock!.touch(this.pamtId(pfn));
  }

  writePamt2m(pfn: number): void {
    if (this.fp === null) this.clock?.bump();
    else this.clock!.touch(this.pamt2mId(pfn));
  }

  writeTd(tdr: number, part: number): void {
    if (this.fp === null) this.clock?.bump();
    else this.clock!.touch(this.tdId(tdr, part));
  }

  updateTd(tdr: number, part: number): void {
    if (this.fp === null) this.clock?.bump();
    else this.clock!.update(this.tdId(tdr, part));
  }
}

/**
 * A footprint attached to no clock (its recorder stays null): what a state object without one
 * reads its recorder through, so that its check of "recording?" is one load (`Td.rec`...).
 */
export const UNATTACHED_FOOTPRINT = new SeamFootprint();
