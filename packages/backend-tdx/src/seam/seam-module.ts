/**
 * The TDX module model: platform-wide state (PAMT, S-EPT pages, TDs) and the SEAMCALL leaves
 * that change it, each as one atomic step, with the checks in the module's order (reference
 * §1): TDR page and lock, fatal, lifecycle, op-state lock, op state, operands, S-EPT tree lock,
 * walk, entry lock, state lookup, then the new page. A failed check returns its status with the
 * operand ID and changes nothing.
 *
 * GPAs are byte addresses; levels are TDX levels (0 = 4K); pages are host PFNs.
 *
 * Speed: a fault costs two TDH.VP.ENTERs and a TDH.MEM.PAGE.AUG, so a successful call allocates
 * nothing. Each leaf's body is a method the dispatcher calls with numeric operands (no closure),
 * successes share one frozen result, locks are checked rather than held (see `lock`), the walk
 * leaves its result in fields, sets of states and op states are bit masks, and the event text is
 * made only when the TD's listener asks for it.
 */
import { CallCounts } from "./call-counts.js";
import {
  SEAMCALL_NAMES, TDG_MEM_PAGE_ACCEPT, TDH_MEM_PAGE_ADD, TDH_MEM_PAGE_AUG, TDH_MEM_PAGE_REMOVE, TDH_MEM_RANGE_BLOCK,
  TDH_MEM_RANGE_UNBLOCK, TDH_MEM_SEPT_ADD, TDH_MEM_SEPT_REMOVE, TDH_MEM_TRACK, TDH_MNG_ADDCX, TDH_MNG_CREATE,
  TDH_MNG_INIT, TDH_MNG_KEY_CONFIG, TDH_MNG_KEY_FREEID, TDH_MNG_VPFLUSHDONE, TDH_MR_EXTEND, TDH_MR_FINALIZE,
  TDH_PHYMEM_PAGE_RECLAIM, TDH_PHYMEM_PAGE_WBINVD, TDH_VP_CREATE, TDH_VP_ENTER, TDH_VP_FLUSH,
} from "./leaves.js";
import { NO_TD, Pamt, PT_EPT, PT_NDA, PT_REG, PT_RSVD, PT_TDCX, PT_TDR, PT_TDVPR } from "./pamt.js";
import {
  SEPT_BLOCKED, SEPT_FREE, SEPT_MAPPED, SEPT_NL_BLOCKED, SEPT_NL_MAPPED, SEPT_PENDING, SEPT_PENDING_BLOCKED,
  SeptPages, entryBigInt, entryLocked, levelState, septIndex, septPfn, septState, septStateBit,
} from "./sept.js";
import {
  OPERAND_OP_STATE, OPERAND_R8, OPERAND_R9, OPERAND_RCX, OPERAND_RDX, OPERAND_SEPT_TREE, OPERAND_TD_EPOCH,
  TDX_EPT_ENTRY_STATE_INCORRECT, TDX_EPT_PAGE_NOT_FREE, TDX_EPT_WALK_FAILED, TDX_GPA_RANGE_ALREADY_BLOCKED,
  TDX_GPA_RANGE_NOT_BLOCKED, TDX_LIFECYCLE_STATE_INCORRECT, TDX_OPERAND_ADDR_RANGE_ERROR, TDX_OPERAND_BUSY,
  TDX_OPERAND_INVALID, TDX_OP_STATE_INCORRECT, TDX_PAGE_ALREADY_ACCEPTED, TDX_PAGE_METADATA_INCORRECT,
  TDX_PAGE_SIZE_MISMATCH, TDX_PREVIOUS_TLB_EPOCH_BUSY, TDX_SUCCESS, TDX_TD_ASSOCIATED_PAGES_EXIST, TDX_TD_FATAL,
  TDX_TD_KEYS_NOT_CONFIGURED, TDX_TLB_TRACKING_NOT_DONE, isBusy, isOk, statusName,
} from "./status.js";
import type { SharexLock } from "./locks.js";
import {
  LC_BLOCKED, LC_HKID_ASSIGNED, LC_KEYS_CONFIGURED, LC_TEARDOWN, OP_INITIALIZED, OP_RUNNABLE, OP_UNINITIALIZED,
  Td, TdVcpu,
} from "./td.js";

export { SEAMCALL_NAMES } from "./leaves.js";

export interface SeamResult {
  status: bigint;
  /** RCX on S-EPT errors: the architectural entry where the operation stopped. */
  entry?: bigint;
  /** RDX on S-EPT errors: level (bits 2:0) and state (bits 15:8). */
  levelState?: bigint;
  /** RCX of PAGE.REMOVE: the HPA (PFN) that was mapped. */
  pfn?: number;
}

/** What TDG.MEM.PAGE.ACCEPT or a guest access ends in when KVM must act first. */
export interface GuestExit {
  exit: "ept-violation" | "pending-ept-violation";
}

/** Makes a named call return a chosen status on its nth invocation (1-based), `times` times in a row. */
export interface InjectedFault {
  call: string;
  nth: number;
  status: bigint;
  times: number;
}

export interface SeamStats {
  calls: Record<string, number>;
  busy: number;
  errors: Record<string, number>;
}

/**
 * Hears of every call made for a TD: the leaf (an index into SEAMCALL_NAMES), its result, and
 * the operands the event text is made from (`callDetail`), only if the listener wants it.
 */
export type CallListener = (leaf: number, r: SeamResult, tdr: number, a: number, b: number, c: number, d: number) => void;

/** The result of every call that succeeds with nothing more to say: shared, so never changed. */
const SUCCESS: SeamResult = Object.freeze({ status: TDX_SUCCESS });
const EPT_VIOLATION: GuestExit = Object.freeze({ exit: "ept-violation" });
const PENDING_EPT_VIOLATION: GuestExit = Object.freeze({ exit: "pending-ept-violation" });

const ok = (): SeamResult => SUCCESS;
const fail = (status: bigint, operand = 0n): SeamResult => ({ status: status + operand });

class SeamError {
  constructor(readonly result: SeamResult) {}
}

/** A leaf's body: the checks and the change, given the TD the call is for and its numeric operands. */
type LeafBody = (this: SeamModule, tdr: number, a: number, b: number, c: number, d: number) => SeamResult;

/** Op states as a mask (bit n = op state n), so a leaf's allowed set is one number. */
const OPS_INITIALIZED = 1 << OP_INITIALIZED;
const OPS_UNINITIALIZED = 1 << OP_UNINITIALIZED;
const OPS_INIT_OR_RUNNABLE = (1 << OP_INITIALIZED) | (1 << OP_RUNNABLE);
const OPS_ANY = OPS_UNINITIALIZED | OPS_INIT_OR_RUNNABLE;

const ST_FREE = septStateBit(SEPT_FREE);
const ST_MAPPED = septStateBit(SEPT_MAPPED);
const ST_REMOVABLE = septStateBit(SEPT_MAPPED) | septStateBit(SEPT_BLOCKED) | septStateBit(SEPT_PENDING) | septStateBit(SEPT_PENDING_BLOCKED);
const ST_BLOCKABLE = septStateBit(SEPT_MAPPED) | septStateBit(SEPT_PENDING) | septStateBit(SEPT_NL_MAPPED);
const ST_BLOCKED = septStateBit(SEPT_BLOCKED) | septStateBit(SEPT_PENDING_BLOCKED) | septStateBit(SEPT_NL_BLOCKED);
const ST_NON_LEAF = septStateBit(SEPT_NL_MAPPED) | septStateBit(SEPT_NL_BLOCKED);

/** How a leaf takes the S-EPT tree lock. */
const NO_TREE_LOCK = 0;
const TREE_SHARED = 1;
const TREE_EXCLUSIVE = 2;

/** 4096 · 512^level - 1 for the levels whose alignment a 32-bit mask can test (it divides 2^32). */
const ALIGN_MASK = [0xfff, 0x1fffff, 0x3fffffff];

/** Per TD (by TDR): who hears of its calls, how many of each it has made, what to inject. */
class TdCallLog {
  readonly counts = new Array<number>(SEAMCALL_NAMES.length).fill(0); // not typed: see CallCounts
  readonly injected: InjectedFault[] = [];
  listener: CallListener | undefined = undefined;
}

export class SeamModule {
  readonly pamt: Pamt;
  readonly sept = new SeptPages();
  /** The TDs by TDR. Changed only by the leaves (TDH.MNG.CREATE, RECLAIM of a TDR), which bump `tdsVersion`. */
  readonly tds = new Map<number, Td>();
  /** Platform-wide counts; each TD's own counts go to its listener. */
  private readonly platformCalls = new CallCounts(SEAMCALL_NAMES);
  private busyCount = 0;
  private readonly errorCounts: Record<string, number> = {};
  private readonly logs = new Map<number, TdCallLog>();
  /** The last TD whose log was looked up (calls come in long runs for one TD). */
  private lastLogTdr = Number.NaN;
  private lastLog: TdCallLog | undefined = undefined;
  /** Plaintext the guest keeps in its private pages, by PFN (the model of memory contents). */
  private readonly plaintext = new Map<number, string>();
  /** The TDR whose PAMT lock the running leaf took in its prologue (NaN before). */
  private lockedTdr = Number.NaN;
  /** Where the last `walk` ended: the table at the level asked for and the entry's offset in it. */
  private walkTable: Uint32Array = new Uint32Array(0);
  private walkOff = 0;
  /** The vCPU `tdOfVcpu` found. */
  private foundVcpu: TdVcpu | undefined = undefined;
  /**
   * The last TD looked up by TDR, and the last vCPU by TDVPR (with the TD its PAMT owner names):
   * a fault looks up the same ones half a dozen times. Valid while `tdsVersion` is unchanged,
   * which TDH.MNG.CREATE, TDH.VP.CREATE and the RECLAIM of a TDR bump (the only changes to
   * `tds` and to a TD's vCPUs); the vCPU's entry is also keyed by its PAMT owner.
   */
  private tdsVersion = 0;
  private cachedTdr = Number.NaN;
  private cachedTd: Td | undefined = undefined;
  private cachedTdVersion = -1;
  private cachedTdvpr = Number.NaN;
  private cachedOwner = Number.NaN;
  private cachedVcpu: TdVcpu | undefined = undefined;
  private cachedVcpuTd: Td | undefined = undefined;
  private cachedVcpuVersion = -1;
  /** TDH.MEM.PAGE.ADD's content operand (not numeric, so not passed through the dispatcher). */
  private addContent = "";
  /** TDG.MEM.PAGE.ACCEPT ended in an EPT-violation exit rather than a status. */
  private acceptExited = false;
  /** The last walk that reached a 4K table (see `rememberedLeafTable`). */
  private leafVersion = -1;
  private leafRoot = -1;
  private leafBase = -1;
  private leafTable: Uint32Array = new Uint32Array(0);

  constructor(totalFrames: number) {
    this.pamt = new Pamt(totalFrames);
  }

  /** Platform-wide counts of calls (names in first-call order), BUSY statuses and errors, as of now. */
  get stats(): SeamStats {
    return { calls: this.platformCalls.record(), busy: this.busyCount, errors: { ...this.errorCounts } };
  }

  /** `listener` hears of every call made for the TD `tdr` (its VMM's counters and events). */
  listen(tdr: number, listener: CallListener): void {
    this.logOf(tdr).listener = listener;
  }

  /** Calls made for `tdr` return `f.status` from their `f.nth` invocation on, `f.times` times. */
  inject(tdr: number, f: InjectedFault): void {
    this.logOf(tdr).injected.push(f);
  }

  // ------------------------------------------------------------------ plumbing

  private logOf(tdr: number): TdCallLog {
    if (tdr === this.lastLogTdr) return this.lastLog!;
    let log = this.logs.get(tdr);
    if (log === undefined) {
      log = new TdCallLog();
      this.logs.set(tdr, log);
    }
    this.lastLogTdr = tdr;
    this.lastLog = log;
    return log;
  }

  /**
   * Runs one leaf on behalf of the TD `tdr` (NO_TD when no TD is involved): counts it, applies
   * injected faults, turns a failed check into its status, and tells the TD's listener.
   */
  private call(leaf: number, tdr: number, a: number, b: number, c: number, d: number, body: LeafBody): SeamResult {
    this.platformCalls.add(leaf);
    const log = this.logOf(tdr);
    const n = ++log.counts[leaf]!;
    let r = log.injected.length === 0 ? null : injectedResult(log.injected, SEAMCALL_NAMES[leaf]!, n);
    if (r === null) {
      this.lockedTdr = Number.NaN;
      try {
        r = body.call(this, tdr, a, b, c, d);
      } catch (e) {
        if (!(e instanceof SeamError)) throw e;
        r = e.result;
      }
    }
    if (r !== SUCCESS && r.status !== TDX_SUCCESS) this.countFailure(r.status);
    log.listener?.(leaf, r, tdr, a, b, c, d);
    return r;
  }

  /** `tds.get(tdr)`, remembered. */
  private tdAt(tdr: number): Td | undefined {
    if (tdr !== this.cachedTdr || this.cachedTdVersion !== this.tdsVersion) {
      this.cachedTd = this.tds.get(tdr);
      this.cachedTdr = tdr;
      this.cachedTdVersion = this.tdsVersion;
    }
    return this.cachedTd;
  }

  /**
   * The vCPU of `tdvpr` in the TD the PAMT says owns the page, remembered; that TD (or
   * undefined) is left in `cachedVcpuTd`.
   */
  private vcpuAt(tdvpr: number): TdVcpu | undefined {
    const owner = this.pamt.owner(tdvpr);
    if (tdvpr !== this.cachedTdvpr || owner !== this.cachedOwner || this.cachedVcpuVersion !== this.tdsVersion) {
      const td = this.tds.get(owner);
      this.cachedVcpuTd = td;
      this.cachedVcpu = td?.vcpus.get(tdvpr);
      this.cachedTdvpr = tdvpr;
      this.cachedOwner = owner;
      this.cachedVcpuVersion = this.tdsVersion;
    }
    return this.cachedVcpu;
  }

  private countFailure(status: bigint): void {
    if (isBusy(status)) this.busyCount++;
    if (!isOk(status)) this.errorCounts[statusName(status)] = (this.errorCounts[statusName(status)] ?? 0) + 1;
  }

  private check(cond: boolean, status: bigint, operand = 0n): void {
    if (!cond) throw new SeamError(fail(status, operand));
  }

  /**
   * Takes a lock for the rest of the leaf (the module's locks never spin: a lock it cannot take
   * is OPERAND_BUSY with the operand's ID). A leaf is one atomic step of the model and releases
   * what it took before the step ends, so taking is modelled as checking that the lock could be
   * taken: the same status at the same point, and the lock as it was once the step is over. That
   * is exact because no leaf takes the same lock twice; the one case that could (a page whose
   * PAMT lock is the TDR's, already taken by the prologue) `lockPage` answers as the held lock would.
   */
  private lock(l: SharexLock, exclusive: boolean, busyOperand: bigint): void {
    if (!l.tryTakeAndRelease(exclusive)) throw new SeamError(fail(TDX_OPERAND_BUSY, busyOperand));
  }

  /** The PAMT entry lock of `pfn` (a page or a TDR), as `lock` does for the other locks. */
  private lockPage(pfn: number, exclusive: boolean, busyOperand: bigint): void {
    // The prologue holds the TDR's lock (shared or exclusive) and every later page lock is
    // exclusive, so a page that is the TDR itself could not be locked.
    if (pfn === this.lockedTdr || !this.pamt.tryLockAndRelease(pfn, exclusive)) {
      throw new SeamError(fail(TDX_OPERAND_BUSY, busyOperand));
    }
  }

  /** Checks 1-5 of every TD leaf: the TDR, fatal, keys, the op-state lock and the op state (`opStates`: a mask of OP_*). */
  private tdPrologue(tdr: number, tdrOperand: bigint, opStates: number, tdrExclusive = false): Td {
    const td = this.tdAt(tdr);
    this.check(this.pamt.type(tdr) === PT_TDR && td !== undefined, TDX_PAGE_METADATA_INCORRECT, tdrOperand);
    this.lockPage(tdr, tdrExclusive, tdrOperand);
    this.lockedTdr = tdr;
    this.check(!td!.fatal, TDX_TD_FATAL);
    this.check(td!.lifecycle === LC_KEYS_CONFIGURED, TDX_TD_KEYS_NOT_CONFIGURED);
    this.lock(td!.opStateLock, false, OPERAND_OP_STATE);
    this.check(((opStates >> td!.opState) & 1) !== 0, TDX_OP_STATE_INCORRECT);
    return td!;
  }

  /** Check 6: the level is one the leaf takes, the GPA private, inside GPAW, and aligned to the level. */
  private checkGpa(td: Td, gpa: number, level: number, minLevel: number, maxLevel: number): number {
    // A GPA below 2^GPAW is private iff it is below the shared bit, 2^(GPAW-1).
    let valid = Number.isInteger(level) && level >= minLevel && level <= maxLevel && Number.isSafeInteger(gpa) &&
      gpa >= 0 && gpa < td.sharedBitGpa;
    // 4K, 2M and 1G alignments divide 2^32, so the low 32 bits decide them for any safe integer.
    if (valid) valid = level <= 2 ? (gpa & ALIGN_MASK[level]!) === 0 : gpa % (4096 * 512 ** level) === 0;
    this.check(valid, TDX_OPERAND_INVALID, OPERAND_RCX);
    return gpa / 4096;
  }

  /**
   * Check 8: walk the S-EPT down to `level`. The walk goes only through NL_MAPPED entries: a FREE
   * or blocked entry, or a leaf, above the level ends it with EPT_WALK_FAILED (RCX/RDX say where).
   * The entry found is at `walkOff` in `walkTable`.
   */
  private walk(td: Td, gfn: number, level: number): void {
    const remembered = level === 0 ? this.rememberedLeafTable(td, gfn) : undefined;
    if (remembered !== undefined) {
      this.walkTable = remembered;
      this.walkOff = 2 * septIndex(gfn, 0);
      return;
    }
    let table = this.sept.get(td.septRoot)!;
    for (let lvl = td.rootLevel; lvl > level; lvl--) {
      const off = 2 * septIndex(gfn, lvl);
      const lo = table[off]!;
      const hi = table[off + 1]!;
      const st = septState(lo, hi, lvl);
      if (st !== SEPT_NL_MAPPED) {
        throw new SeamError({ status: TDX_EPT_WALK_FAILED + OPERAND_RCX, entry: entryBigInt(lo, hi), levelState: levelState(lvl, st) });
      }
      table = this.sept.get(septPfn(lo, hi))!;
    }
    if (level === 0) this.rememberLeafTable(td, gfn, table);
    this.walkTable = table;
    this.walkOff = 2 * septIndex(gfn, level);
  }

  /**
   * Checks 6-8 of a leaf on one S-EPT entry: the GPA at `level` (in [minLevel, maxLevel]), the
   * S-EPT tree lock (`tree`: TREE_SHARED, TREE_EXCLUSIVE or NO_TREE_LOCK), the walk. Returns the
   * table the entry is in; its offset is `walkOff`.
   */
  private septOperand(td: Td, gpa: number, level: number, minLevel: number, maxLevel: number, tree: number): Uint32Array {
    const gfn = this.checkGpa(td, gpa, level, minLevel, maxLevel);
    if (tree !== NO_TREE_LOCK) this.lock(td.treeLock, tree === TREE_EXCLUSIVE, OPERAND_SEPT_TREE);
    this.walk(td, gfn, level);
    return this.walkTable;
  }

  /** Checks 9-10: the entry lock, then the state the leaf needs (`allowed`: a mask of `septStateBit`s). */
  private entryState(table: Uint32Array, off: number, level: number, allowed: number): number {
    const lo = table[off]!;
    const hi = table[off + 1]!;
    this.check(!entryLocked(lo), TDX_OPERAND_BUSY, OPERAND_RCX);
    const st = septState(lo, hi, level);
    if ((septStateBit(st) & allowed) === 0) {
      throw new SeamError({ status: TDX_EPT_ENTRY_STATE_INCORRECT + OPERAND_RCX, entry: entryBigInt(lo, hi), levelState: levelState(level, st) });
    }
    return st;
  }

  /** Check 11: a page the host hands over must be convertible memory, free (NDA) and unlocked. */
  private checkNewPage(pfn: number, operand: bigint): void {
    this.check(Number.isInteger(pfn) && pfn >= 0, TDX_OPERAND_INVALID, operand);
    this.check(this.pamt.inTdmr(pfn), TDX_OPERAND_ADDR_RANGE_ERROR, operand);
    this.check(this.pamt.type(pfn) === PT_NDA, TDX_PAGE_METADATA_INCORRECT, operand);
    this.lockPage(pfn, true, operand);
  }

  private setEntry(table: Uint32Array, off: number, state: number, pfn: number, level: number): void {
    this.sept.setEntry(table, off, state, pfn, level);
  }

  /**
   * The 4K table a walk for `gfn` reached last time, if nothing it went through has changed
   * since (same S-EPT version and root, same 2 MiB of GFNs), else undefined. A fault walks the
   * S-EPT three times for the same GFN (the guest's access, AUG, the access again) and the next
   * fault goes to the same table: the hardware's paging-structure cache, in short.
   */
  private rememberedLeafTable(td: Td, gfn: number): Uint32Array | undefined {
    if (this.leafVersion !== this.sept.version || this.leafRoot !== td.septRoot || this.leafBase !== gfn - (gfn % 512)) return undefined;
    return this.leafTable;
  }

  private rememberLeafTable(td: Td, gfn: number, table: Uint32Array): void {
    this.leafVersion = this.sept.version;
    this.leafRoot = td.septRoot;
    this.leafBase = gfn - (gfn % 512);
    this.leafTable = table;
  }

  /** "Tracked": blocked in an epoch no vCPU can still be running with (reference §3). */
  private tracked(td: Td, pfnOfEntry: number): boolean {
    const b = this.pamt.bepoch(pfnOfEntry);
    return b < td.epoch - 1 || (b === td.epoch - 1 && td.refcount[b & 1] === 0);
  }

  // ------------------------------------------------------------------ TD management

  /** TDH.MNG.CREATE: the TDR page becomes the TD's root, with an HKID. */
  mngCreate(tdr: number, hkid: number): SeamResult {
    return this.call(TDH_MNG_CREATE, tdr, hkid, 0, 0, 0, this.mngCreateLeaf);
  }

  private mngCreateLeaf(tdr: number, hkid: number): SeamResult {
    this.checkNewPage(tdr, OPERAND_RCX);
    this.pamt.set(tdr, PT_TDR, tdr);
    this.tds.set(tdr, new Td(tdr, hkid));
    this.tdsVersion++;
    return ok();
  }

  /** TDH.MNG.KEY.CONFIG: program the HKID's key on the package. */
  mngKeyConfig(tdr: number): SeamResult {
    return this.call(TDH_MNG_KEY_CONFIG, tdr, 0, 0, 0, 0, this.mngKeyConfigLeaf);
  }

  private mngKeyConfigLeaf(tdr: number): SeamResult {
    const td = this.tds.get(tdr);
    this.check(td !== undefined, TDX_PAGE_METADATA_INCORRECT, OPERAND_RCX);
    this.check(td!.lifecycle === LC_HKID_ASSIGNED, TDX_LIFECYCLE_STATE_INCORRECT);
    td!.lifecycle = LC_KEYS_CONFIGURED;
    return ok();
  }

  /** TDH.MNG.ADDCX: a TDCS page; the first one also holds the S-EPT root. */
  mngAddcx(tdr: number, page: number): SeamResult {
    return this.call(TDH_MNG_ADDCX, tdr, page, 0, 0, 0, this.mngAddcxLeaf);
  }

  private mngAddcxLeaf(tdr: number, page: number): SeamResult {
    const td = this.tdPrologue(tdr, OPERAND_RDX, OPS_UNINITIALIZED, true);
    this.checkNewPage(page, OPERAND_RCX);
    this.pamt.set(page, PT_TDCX, tdr);
    td.tdcx.push(page);
    td.childCount++;
    return ok();
  }

  /** TDH.MNG.INIT: TD parameters (GPAW, attributes); the S-EPT root is set up. */
  mngInit(tdr: number, params: { gpaw: number; septVeDisable: boolean }): SeamResult {
    return this.call(TDH_MNG_INIT, tdr, params.gpaw, params.septVeDisable ? 1 : 0, 0, 0, this.mngInitLeaf);
  }

  private mngInitLeaf(tdr: number, gpaw: number, septVeDisable: number): SeamResult {
    const td = this.tdPrologue(tdr, OPERAND_RCX, OPS_UNINITIALIZED, true);
    this.check(td.tdcx.length > 0, TDX_OP_STATE_INCORRECT);
    this.check(gpaw === 48 || gpaw === 52, TDX_OPERAND_INVALID, OPERAND_RDX);
    td.gpaw = gpaw;
    td.rootLevel = gpaw > 48 ? 4 : 3;
    td.septVeDisable = septVeDisable === 1;
    td.septRoot = td.tdcx[0]!;
    this.sept.init(td.septRoot);
    td.opState = OP_INITIALIZED;
    return ok();
  }

  /** TDH.VP.CREATE + TDH.VP.INIT: a vCPU's TDVPR page. */
  vpCreate(tdr: number, tdvpr: number): SeamResult {
    return this.call(TDH_VP_CREATE, tdr, tdvpr, 0, 0, 0, this.vpCreateLeaf);
  }

  private vpCreateLeaf(tdr: number, tdvpr: number): SeamResult {
    const td = this.tdPrologue(tdr, OPERAND_RDX, OPS_INITIALIZED);
    this.checkNewPage(tdvpr, OPERAND_RCX);
    this.pamt.set(tdvpr, PT_TDVPR, tdr);
    td.childCount++;
    const v = new TdVcpu(tdvpr);
    v.initialized = true;
    td.vcpus.set(tdvpr, v);
    this.tdsVersion++;
    return ok();
  }

  /** TDH.MR.FINALIZE: the measurement is final; the TD becomes RUNNABLE. */
  mrFinalize(tdr: number): SeamResult {
    return this.call(TDH_MR_FINALIZE, tdr, 0, 0, 0, 0, this.mrFinalizeLeaf);
  }

  private mrFinalizeLeaf(tdr: number): SeamResult {
    const td = this.tdPrologue(tdr, OPERAND_RCX, OPS_INITIALIZED, true);
    td.opState = OP_RUNNABLE;
    return ok();
  }

  /** TDH.MR.EXTEND: measure 256 bytes of a MAPPED page into MRTD. */
  mrExtend(gpa: number, tdr: number): SeamResult {
    return this.call(TDH_MR_EXTEND, tdr, gpa, 0, 0, 0, this.mrExtendLeaf);
  }

  private mrExtendLeaf(tdr: number, gpa: number): SeamResult {
    const td = this.tdPrologue(tdr, OPERAND_RDX, OPS_INITIALIZED);
    this.check(gpa % 256 === 0 && gpa < 2 ** td.gpaw, TDX_OPERAND_INVALID, OPERAND_RCX);
    this.lock(td.treeLock, false, OPERAND_SEPT_TREE);
    const gfn = Math.floor(gpa / 4096);
    this.walk(td, gfn, 0);
    this.entryState(this.walkTable, this.walkOff, 0, ST_MAPPED);
    td.mrtd = (Math.imul(td.mrtd ^ 0x9e3779b9, 31) + gpa) >>> 0;
    return ok();
  }

  /** TDH.VP.FLUSH: the vCPU's cached state is written back (it must be out of guest mode). */
  vpFlush(tdvpr: number): SeamResult {
    return this.call(TDH_VP_FLUSH, this.pamt.owner(tdvpr), tdvpr, 0, 0, 0, this.vpFlushLeaf);
  }

  private vpFlushLeaf(_tdr: number, tdvpr: number): SeamResult {
    this.tdOfVcpu(tdvpr);
    this.check(!this.foundVcpu!.inGuest, TDX_OPERAND_BUSY, OPERAND_RCX);
    return ok();
  }

  /** TDH.MNG.VPFLUSHDONE: every vCPU flushed; no VP.ENTER any more (lifecycle BLOCKED). */
  mngVpflushdone(tdr: number): SeamResult {
    return this.call(TDH_MNG_VPFLUSHDONE, tdr, 0, 0, 0, 0, this.mngVpflushdoneLeaf);
  }

  private mngVpflushdoneLeaf(tdr: number): SeamResult {
    const td = this.tdPrologue(tdr, OPERAND_RCX, OPS_ANY, true);
    for (const v of td.vcpus.values()) this.check(!v.inGuest, TDX_OPERAND_BUSY, OPERAND_RCX);
    td.lifecycle = LC_BLOCKED;
    return ok();
  }

  /** TDH.MNG.KEY.FREEID: the HKID goes back; the TD's pages can now be reclaimed. */
  mngKeyFreeid(tdr: number): SeamResult {
    return this.call(TDH_MNG_KEY_FREEID, tdr, 0, 0, 0, 0, this.mngKeyFreeidLeaf);
  }

  private mngKeyFreeidLeaf(tdr: number): SeamResult {
    const td = this.tds.get(tdr);
    this.check(td !== undefined && this.pamt.type(tdr) === PT_TDR, TDX_PAGE_METADATA_INCORRECT, OPERAND_RCX);
    this.check(td!.lifecycle === LC_BLOCKED, TDX_LIFECYCLE_STATE_INCORRECT);
    td!.lifecycle = LC_TEARDOWN;
    return ok();
  }

  /** The TD of a TDVPR page, with the vCPU in `foundVcpu`. */
  private tdOfVcpu(tdvpr: number): Td {
    this.check(this.pamt.type(tdvpr) === PT_TDVPR, TDX_PAGE_METADATA_INCORRECT, OPERAND_RCX);
    const v = this.vcpuAt(tdvpr);
    this.check(v !== undefined, TDX_PAGE_METADATA_INCORRECT, OPERAND_RCX);
    this.foundVcpu = v;
    return this.cachedVcpuTd!;
  }

  // ------------------------------------------------------------------ vCPU entry and exit

  /**
   * TDH.VP.ENTER: takes the epoch lock shared and counts the vCPU in the current epoch's parity
   * (a TRACK waits for the previous parity to drain). Only a RUNNABLE TD with keys runs.
   */
  vpEnter(tdvpr: number): SeamResult {
    return this.call(TDH_VP_ENTER, this.pamt.owner(tdvpr), tdvpr, 0, 0, 0, this.vpEnterLeaf);
  }

  private vpEnterLeaf(_tdr: number, tdvpr: number): SeamResult {
    const td = this.tdOfVcpu(tdvpr);
    const v = this.foundVcpu!;
    this.check(!td.fatal, TDX_TD_FATAL);
    this.check(td.lifecycle === LC_KEYS_CONFIGURED, TDX_TD_KEYS_NOT_CONFIGURED);
    this.check(td.opState === OP_RUNNABLE, TDX_OP_STATE_INCORRECT);
    this.lock(td.epochLock, false, OPERAND_TD_EPOCH);
    if (v.inGuest) return ok();
    v.epoch = td.epoch;
    v.inGuest = true;
    td.refcount[td.epoch & 1]!++;
    return ok();
  }

  /** A TD exit (EPT violation, IPI, ...): the vCPU leaves the count of its epoch's parity. */
  tdExit(tdvpr: number): void {
    const v = this.vcpuAt(tdvpr);
    const td = this.cachedVcpuTd;
    if (!td || !v || !v.inGuest) return;
    v.inGuest = false;
    td.refcount[v.epoch & 1]!--;
  }

  // ------------------------------------------------------------------ S-EPT

  /** TDH.MEM.SEPT.ADD: a FREE entry at `level` (1..root-1) becomes NL_MAPPED over `page`. */
  memSeptAdd(gpa: number, level: number, tdr: number, page: number): SeamResult {
    return this.call(TDH_MEM_SEPT_ADD, tdr, gpa, level, page, 0, this.memSeptAddLeaf);
  }

  private memSeptAddLeaf(tdr: number, gpa: number, level: number, page: number): SeamResult {
    const td = this.tdPrologue(tdr, OPERAND_RDX, OPS_INIT_OR_RUNNABLE);
    const table = this.septOperand(td, gpa, level, 1, td.rootLevel, TREE_SHARED);
    const off = this.walkOff;
    this.entryState(table, off, level, ST_FREE);
    this.checkNewPage(page, OPERAND_R8);
    this.sept.init(page);
    this.pamt.set(page, PT_EPT, tdr);
    td.childCount++;
    this.setEntry(table, off, SEPT_NL_MAPPED, page, level);
    return ok();
  }

  /** TDH.MEM.PAGE.AUG: a FREE leaf becomes PENDING over `page`, owned by the TD (4K here). */
  memPageAug(gpa: number, level: number, tdr: number, page: number): SeamResult {
    return this.call(TDH_MEM_PAGE_AUG, tdr, gpa, level, page, 0, this.memPageAugLeaf);
  }

  private memPageAugLeaf(tdr: number, gpa: number, level: number, page: number): SeamResult {
    const td = this.tdPrologue(tdr, OPERAND_RDX, OPS_INIT_OR_RUNNABLE);
    const table = this.septOperand(td, gpa, level, 0, 0, TREE_SHARED);
    const off = this.walkOff;
    this.entryState(table, off, level, ST_FREE);
    this.checkNewPage(page, OPERAND_R8);
    this.pamt.set(page, PT_REG, tdr);
    td.childCount++;
    this.setEntry(table, off, SEPT_PENDING, page, level);
    return ok();
  }

  /**
   * TDH.MEM.PAGE.ADD (before finalize): a FREE 4K leaf becomes MAPPED over `page`, which gets the
   * content of `source` (a shared page) under the TD's key, and MRTD is extended.
   */
  memPageAdd(gpa: number, level: number, tdr: number, page: number, source: number, content = ""): SeamResult {
    this.addContent = content;
    return this.call(TDH_MEM_PAGE_ADD, tdr, gpa, level, page, source, this.memPageAddLeaf);
  }

  private memPageAddLeaf(tdr: number, gpa: number, level: number, page: number, source: number): SeamResult {
    const td = this.tdPrologue(tdr, OPERAND_RDX, OPS_INITIALIZED, true);
    const table = this.septOperand(td, gpa, level, 0, 0, NO_TREE_LOCK);
    const off = this.walkOff;
    this.entryState(table, off, level, ST_FREE);
    this.checkNewPage(page, OPERAND_R8);
    this.check(this.pamt.inTdmr(source) && this.pamt.type(source) === PT_NDA, TDX_OPERAND_INVALID, OPERAND_R9);
    this.pamt.set(page, PT_REG, tdr);
    td.childCount++;
    this.setEntry(table, off, SEPT_MAPPED, page, level);
    this.plaintext.set(page, this.addContent);
    td.mrtd = (Math.imul(td.mrtd ^ 0x85ebca6b, 31) + gpa) >>> 0;
    return ok();
  }

  /** TDH.MEM.RANGE.BLOCK: clear RWX of an entry; the page's BEPOCH records the current epoch. */
  memRangeBlock(gpa: number, level: number, tdr: number): SeamResult {
    return this.call(TDH_MEM_RANGE_BLOCK, tdr, gpa, level, 0, 0, this.memRangeBlockLeaf);
  }

  private memRangeBlockLeaf(tdr: number, gpa: number, level: number): SeamResult {
    const td = this.tdPrologue(tdr, OPERAND_RDX, OPS_INIT_OR_RUNNABLE);
    const table = this.septOperand(td, gpa, level, 0, td.rootLevel, TREE_EXCLUSIVE);
    const off = this.walkOff;
    const lo = table[off]!;
    const hi = table[off + 1]!;
    this.check(!entryLocked(lo), TDX_OPERAND_BUSY, OPERAND_RCX);
    const st0 = septState(lo, hi, level);
    if (st0 === SEPT_BLOCKED || st0 === SEPT_PENDING_BLOCKED || st0 === SEPT_NL_BLOCKED) {
      return { status: TDX_GPA_RANGE_ALREADY_BLOCKED + OPERAND_RCX };
    }
    const st = this.entryState(table, off, level, ST_BLOCKABLE);
    const pfn = septPfn(lo, hi);
    const next = st === SEPT_MAPPED ? SEPT_BLOCKED : st === SEPT_PENDING ? SEPT_PENDING_BLOCKED : SEPT_NL_BLOCKED;
    this.setEntry(table, off, next, pfn, level);
    this.pamt.setBepoch(pfn, td.epoch);
    return ok();
  }

  /** TDH.MEM.RANGE.UNBLOCK: reverse a BLOCK, once the block has been tracked. */
  memRangeUnblock(gpa: number, level: number, tdr: number): SeamResult {
    return this.call(TDH_MEM_RANGE_UNBLOCK, tdr, gpa, level, 0, 0, this.memRangeUnblockLeaf);
  }

  private memRangeUnblockLeaf(tdr: number, gpa: number, level: number): SeamResult {
    const td = this.tdPrologue(tdr, OPERAND_RDX, OPS_INIT_OR_RUNNABLE);
    const table = this.septOperand(td, gpa, level, 0, td.rootLevel, TREE_EXCLUSIVE);
    const off = this.walkOff;
    const st = this.entryState(table, off, level, ST_BLOCKED);
    const pfn = septPfn(table[off]!, table[off + 1]!);
    if (td.opState === OP_RUNNABLE) this.check(this.tracked(td, pfn), TDX_TLB_TRACKING_NOT_DONE, OPERAND_SEPT_TREE);
    const next = st === SEPT_BLOCKED ? SEPT_MAPPED : st === SEPT_PENDING_BLOCKED ? SEPT_PENDING : SEPT_NL_MAPPED;
    this.setEntry(table, off, next, pfn, level);
    return ok();
  }

  /**
   * TDH.MEM.TRACK: start a new TLB epoch. Refused while vCPUs that entered in the previous epoch
   * are still in guest mode.
   */
  memTrack(tdr: number): SeamResult {
    return this.call(TDH_MEM_TRACK, tdr, 0, 0, 0, 0, this.memTrackLeaf);
  }

  private memTrackLeaf(tdr: number): SeamResult {
    const td = this.tdPrologue(tdr, OPERAND_RCX, OPS_INIT_OR_RUNNABLE);
    this.lock(td.epochLock, true, OPERAND_TD_EPOCH);
    this.check(td.refcount[(td.epoch - 1) & 1] === 0, TDX_PREVIOUS_TLB_EPOCH_BUSY);
    td.epoch++;
    return ok();
  }

  /**
   * TDH.MEM.PAGE.REMOVE: a leaf goes back to FREE and its page to NDA, not scrubbed. While the TD
   * runs, the leaf must have been blocked and the block tracked.
   */
  memPageRemove(gpa: number, level: number, tdr: number): SeamResult {
    return this.call(TDH_MEM_PAGE_REMOVE, tdr, gpa, level, 0, 0, this.memPageRemoveLeaf);
  }

  private memPageRemoveLeaf(tdr: number, gpa: number, level: number): SeamResult {
    const td = this.tdPrologue(tdr, OPERAND_RDX, OPS_INIT_OR_RUNNABLE);
    const table = this.septOperand(td, gpa, level, 0, 2, TREE_SHARED);
    const off = this.walkOff;
    const st = this.entryState(table, off, level, ST_REMOVABLE);
    const pfn = septPfn(table[off]!, table[off + 1]!);
    // The page's PAMT entry is locked before the blocked/tracked checks; REMOVE has no page
    // operand, so a busy page lock is reported against the GPA (RCX).
    this.lockPage(pfn, true, OPERAND_RCX);
    if (td.opState === OP_RUNNABLE) {
      this.check(st === SEPT_BLOCKED || st === SEPT_PENDING_BLOCKED, TDX_GPA_RANGE_NOT_BLOCKED, OPERAND_RCX);
      this.check(this.tracked(td, pfn), TDX_TLB_TRACKING_NOT_DONE, OPERAND_RCX);
    }
    this.setEntry(table, off, SEPT_FREE, 0, level);
    this.pamt.set(pfn, PT_NDA, NO_TD);
    // Not scrubbed: the page still holds ciphertext under the TD's key, never plaintext.
    this.plaintext.delete(pfn);
    td.childCount--;
    return { status: TDX_SUCCESS, pfn };
  }

  /** TDH.MEM.SEPT.REMOVE: an empty S-EPT page goes back (NL entry → FREE, page → NDA). */
  memSeptRemove(gpa: number, level: number, tdr: number): SeamResult {
    return this.call(TDH_MEM_SEPT_REMOVE, tdr, gpa, level, 0, 0, this.memSeptRemoveLeaf);
  }

  private memSeptRemoveLeaf(tdr: number, gpa: number, level: number): SeamResult {
    const td = this.tdPrologue(tdr, OPERAND_RDX, OPS_INIT_OR_RUNNABLE);
    const table = this.septOperand(td, gpa, level, 1, td.rootLevel, TREE_EXCLUSIVE);
    const off = this.walkOff;
    const st = this.entryState(table, off, level, ST_NON_LEAF);
    const page = septPfn(table[off]!, table[off + 1]!);
    if (td.opState === OP_RUNNABLE) {
      this.check(st === SEPT_NL_BLOCKED, TDX_GPA_RANGE_NOT_BLOCKED, OPERAND_RCX);
      this.check(this.tracked(td, page), TDX_TLB_TRACKING_NOT_DONE, OPERAND_RCX);
    }
    const child = this.sept.get(page)!;
    for (let i = 0; i < 512; i++) {
      if (septState(child[2 * i]!, child[2 * i + 1]!, level - 1) !== SEPT_FREE) {
        throw new SeamError({ status: TDX_EPT_PAGE_NOT_FREE + OPERAND_RCX });
      }
    }
    this.setEntry(table, off, SEPT_FREE, 0, level);
    this.sept.drop(page);
    this.pamt.set(page, PT_NDA, NO_TD);
    td.childCount--;
    return ok();
  }

  // ------------------------------------------------------------------ physical pages

  /**
   * TDH.PHYMEM.PAGE.RECLAIM: take a page back from a TD that is being torn down (HKID freed). A
   * TDR only once all its other pages are back.
   */
  phymemPageReclaim(pfn: number): SeamResult {
    return this.call(TDH_PHYMEM_PAGE_RECLAIM, this.pamt.owner(pfn), pfn, 0, 0, 0, this.phymemPageReclaimLeaf);
  }

  private phymemPageReclaimLeaf(_tdr: number, pfn: number): SeamResult {
    this.check(this.pamt.inTdmr(pfn), TDX_OPERAND_ADDR_RANGE_ERROR, OPERAND_RCX);
    const type = this.pamt.type(pfn);
    this.check(type !== PT_NDA && type !== PT_RSVD, TDX_PAGE_METADATA_INCORRECT, OPERAND_RCX);
    this.lockPage(pfn, true, OPERAND_RCX);
    const td = this.tds.get(this.pamt.owner(pfn))!;
    this.check(td.lifecycle === LC_TEARDOWN, TDX_LIFECYCLE_STATE_INCORRECT);
    if (type === PT_TDR) {
      this.check(td.childCount === 0, TDX_TD_ASSOCIATED_PAGES_EXIST);
      this.tds.delete(pfn);
      this.tdsVersion++;
    } else {
      td.childCount--;
    }
    if (type === PT_EPT) this.sept.drop(pfn);
    this.plaintext.delete(pfn);
    this.pamt.set(pfn, PT_NDA, NO_TD);
    return ok();
  }

  /** TDH.PHYMEM.PAGE.WBINVD: write back and invalidate the page's cache lines for a key (1.5: page must be NDA). */
  phymemPageWbinvd(pfn: number, hkid: number, onBehalfOf = this.pamt.owner(pfn)): SeamResult {
    return this.call(TDH_PHYMEM_PAGE_WBINVD, onBehalfOf, pfn, hkid, 0, 0, this.phymemPageWbinvdLeaf);
  }

  private phymemPageWbinvdLeaf(_tdr: number, pfn: number): SeamResult {
    this.check(this.pamt.inTdmr(pfn), TDX_OPERAND_ADDR_RANGE_ERROR, OPERAND_RCX);
    this.check(this.pamt.type(pfn) === PT_NDA, TDX_PAGE_METADATA_INCORRECT, OPERAND_RCX);
    return ok();
  }

  // ------------------------------------------------------------------ the guest side

  /**
   * TDG.MEM.PAGE.ACCEPT (guest TDCALL): a PENDING leaf at exactly `level` is zeroed with the TD's
   * key and becomes MAPPED. A missing, blocked or non-pending entry exits to the VMM (EPT
   * violation) so it can AUG the page; the guest then retries.
   */
  tdgMemPageAccept(tdvpr: number, gpa: number, level: number): SeamResult | GuestExit {
    this.acceptExited = false;
    const r = this.call(TDG_MEM_PAGE_ACCEPT, this.pamt.owner(tdvpr), tdvpr, gpa, level, 0, this.tdgMemPageAcceptLeaf);
    return this.acceptExited ? EPT_VIOLATION : r;
  }

  private tdgMemPageAcceptLeaf(_tdr: number, tdvpr: number, gpa: number, level: number): SeamResult {
    const td = this.tdOfVcpu(tdvpr);
    const gfn = this.checkGpa(td, gpa, level, 0, 1);
    try {
      this.walk(td, gfn, level);
    } catch (e) {
      if (!(e instanceof SeamError)) throw e;
      // The walk stopped above the level: a leaf there means the page is mapped bigger.
      const ls = e.result.levelState;
      if (ls !== undefined && ((ls >> 8n) & 0x80n) === 0n && (ls >> 8n) !== BigInt(SEPT_FREE)) return fail(TDX_PAGE_SIZE_MISMATCH, OPERAND_RCX);
      this.acceptExited = true;
      return ok();
    }
    const table = this.walkTable;
    const off = this.walkOff;
    const lo = table[off]!;
    const hi = table[off + 1]!;
    this.check(!entryLocked(lo), TDX_OPERAND_BUSY, OPERAND_RCX);
    const st = septState(lo, hi, level);
    if (st === SEPT_MAPPED) return fail(TDX_PAGE_ALREADY_ACCEPTED);
    if (st === SEPT_NL_MAPPED || st === SEPT_NL_BLOCKED) return fail(TDX_PAGE_SIZE_MISMATCH, OPERAND_RCX);
    if (st !== SEPT_PENDING) {
      this.acceptExited = true;
      return ok();
    }
    const pfn = septPfn(lo, hi);
    this.setEntry(table, off, SEPT_MAPPED, pfn, level);
    this.plaintext.set(pfn, "");
    return ok();
  }

  /**
   * What the CPU does with a private guest access (the S-EPT is what hardware walks for the
   * private half of the GPA space): "ok" on a MAPPED leaf; "ve" on a PENDING one (#VE, unless
   * SEPT_VE_DISABLE makes it a PENDING EPT violation exit); "exit" otherwise.
   */
  guestTranslate(tdvpr: number, gpa: number): "ok" | "ve" | GuestExit {
    this.vcpuAt(tdvpr);
    const td = this.cachedVcpuTd!;
    const gfn = Math.floor(gpa / 4096);
    const remembered = this.rememberedLeafTable(td, gfn);
    let table = remembered ?? this.sept.get(td.septRoot)!;
    for (let lvl = remembered ? 0 : td.rootLevel; lvl >= 0; lvl--) {
      const off = 2 * septIndex(gfn, lvl);
      const lo = table[off]!;
      const hi = table[off + 1]!;
      const st = septState(lo, hi, lvl);
      if (st === SEPT_NL_MAPPED) {
        table = this.sept.get(septPfn(lo, hi))!;
        if (lvl === 1) this.rememberLeafTable(td, gfn, table);
        continue;
      }
      if (st === SEPT_MAPPED) return "ok";
      if (st === SEPT_PENDING) return td.septVeDisable ? PENDING_EPT_VIOLATION : "ve";
      return EPT_VIOLATION;
    }
    return EPT_VIOLATION;
  }

  /** The guest writes `data` into its private page at `gpa` (the memory-content model). */
  guestWrite(tdvpr: number, gpa: number, data: string): boolean {
    const pfn = this.translatePfn(this.tds.get(this.pamt.owner(tdvpr))!, gpa);
    if (pfn < 0) return false;
    this.plaintext.set(pfn, data);
    return true;
  }

  /** The host reads a physical page: private memory (a page a TD owns) gives no plaintext. */
  hostRead(pfn: number): string | null {
    if (this.pamt.type(pfn) !== PT_NDA) return null;
    return this.plaintext.get(pfn) ?? "";
  }

  /**
   * The S-EPT entry for `gfn` at TDX `level`, read as the host debugger would (no locks, no
   * counting): its state and page, or FREE when the walk stops above the level.
   */
  entryAt(td: Td, gfn: number, level: number): { state: number; pfn: number } {
    const remembered = level === 0 ? this.rememberedLeafTable(td, gfn) : undefined;
    let table = remembered ?? this.sept.get(td.septRoot);
    for (let lvl = remembered ? 0 : td.rootLevel; lvl >= level && table; lvl--) {
      const off = 2 * septIndex(gfn, lvl);
      const lo = table[off]!;
      const hi = table[off + 1]!;
      const st = septState(lo, hi, lvl);
      if (lvl === level) return { state: st, pfn: septPfn(lo, hi) };
      if (st !== SEPT_NL_MAPPED) return { state: SEPT_FREE, pfn: 0 };
      table = this.sept.get(septPfn(lo, hi));
      if (lvl === 1 && table) this.rememberLeafTable(td, gfn, table);
    }
    return { state: SEPT_FREE, pfn: 0 };
  }

  /** The page of the 4K leaf at `gpa` in any leaf state, or -1 (for a host that wants it). */
  mappedPfn(td: Td, gpa: number): number {
    for (const [gfn, level, state, pfn] of this.septEntries(td)) {
      if (level === 0 && gfn === Math.floor(gpa / 4096) && state !== SEPT_FREE) return pfn;
    }
    return -1;
  }

  private translatePfn(td: Td, gpa: number): number {
    const gfn = Math.floor(gpa / 4096);
    let table = this.sept.get(td.septRoot)!;
    for (let lvl = td.rootLevel; lvl >= 0; lvl--) {
      const off = 2 * septIndex(gfn, lvl);
      const st = septState(table[off]!, table[off + 1]!, lvl);
      if (st === SEPT_NL_MAPPED) table = this.sept.get(septPfn(table[off]!, table[off + 1]!))!;
      else return st === SEPT_MAPPED ? septPfn(table[off]!, table[off + 1]!) : -1;
    }
    return -1;
  }

  /**
   * Every present entry of a TD's S-EPT below the root: [gfn, TDX level, state, PFN], depth
   * first (an entry, then the table under it, then the next entry). One generator with its own
   * stack: a recursive one passed each of a 64 GiB TD's 16 million entries up through every level.
   */
  *septEntries(td: Td): Generator<[gfn: number, level: number, state: number, pfn: number]> {
    const root = this.sept.get(td.septRoot);
    // After teardown the S-EPT pages may be reclaimed: a page that is no S-EPT page any more
    // has no entries to report, though an entry above it may still name it.
    if (root === undefined) return;
    const tables: Uint32Array[] = [root];
    const levels = [td.rootLevel];
    const bases = [0];
    const next = [0];
    while (tables.length > 0) {
      const top = tables.length - 1;
      const i = next[top]!;
      if (i === 512) {
        tables.pop();
        levels.pop();
        bases.pop();
        next.pop();
        continue;
      }
      next[top] = i + 1;
      const t = tables[top]!;
      const level = levels[top]!;
      const lo = t[2 * i]!;
      const hi = t[2 * i + 1]!;
      const st = septState(lo, hi, level);
      if (st === SEPT_FREE) continue;
      const gfn = bases[top]! + i * 512 ** level;
      yield [gfn, level, st, septPfn(lo, hi)];
      const child = st === SEPT_NL_MAPPED || st === SEPT_NL_BLOCKED ? this.sept.get(septPfn(lo, hi)) : undefined;
      if (child !== undefined) {
        tables.push(child);
        levels.push(level - 1);
        bases.push(gfn);
        next.push(0);
      }
    }
  }
}

/** The status an injected fault gives the `n`th call named `name` (the last matching fault wins), or null. */
function injectedResult(faults: readonly InjectedFault[], name: string, n: number): SeamResult | null {
  let r: SeamResult | null = null;
  for (const f of faults) {
    if (f.call === name && n >= f.nth && n < f.nth + f.times) r = { status: f.status };
  }
  return r;
}

export { LC_HKID_ASSIGNED, LC_KEYS_CONFIGURED, LC_BLOCKED, LC_TEARDOWN, OP_INITIALIZED, OP_RUNNABLE };
