/**
 * The TDX module model: platform-wide state (PAMT, S-EPT pages, TDs) and the SEAMCALL leaves
 * that change it, each as one atomic step, with the checks in the module's order (reference
 * §1): TDR page and lock, fatal, lifecycle, op-state lock, op state, operands, S-EPT tree lock,
 * walk, entry lock, state lookup, then the new page. A failed check returns its status with the
 * operand ID and changes nothing.
 *
 * GPAs are byte addresses; levels are TDX levels (0 = 4K); pages are host PFNs.
 */
import { NO_TD, Pamt, PT_EPT, PT_NDA, PT_REG, PT_RSVD, PT_TDCX, PT_TDR, PT_TDVPR } from "./pamt.js";
import {
  SEPT_BLOCKED, SEPT_FREE, SEPT_MAPPED, SEPT_NL_BLOCKED, SEPT_NL_MAPPED, SEPT_PENDING, SEPT_PENDING_BLOCKED,
  SeptPages, entryBigInt, entryLocked, levelState, makeSeptEntry, septIndex, septPfn, septState,
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

const ok = (): SeamResult => ({ status: TDX_SUCCESS });
const fail = (status: bigint, operand = 0n): SeamResult => ({ status: status + operand });

class SeamError {
  constructor(readonly result: SeamResult) {}
}

/** Every call the module answers, by its architectural name. */
export const SEAMCALL_NAMES = [
  "TDH.MNG.CREATE", "TDH.MNG.KEY.CONFIG", "TDH.MNG.ADDCX", "TDH.MNG.INIT", "TDH.VP.CREATE", "TDH.MR.FINALIZE",
  "TDH.MR.EXTEND", "TDH.VP.FLUSH", "TDH.MNG.VPFLUSHDONE", "TDH.MNG.KEY.FREEID", "TDH.VP.ENTER", "TDH.MEM.SEPT.ADD",
  "TDH.MEM.PAGE.AUG", "TDH.MEM.PAGE.ADD", "TDH.MEM.RANGE.BLOCK", "TDH.MEM.RANGE.UNBLOCK", "TDH.MEM.TRACK",
  "TDH.MEM.PAGE.REMOVE", "TDH.MEM.SEPT.REMOVE", "TDH.PHYMEM.PAGE.RECLAIM", "TDH.PHYMEM.PAGE.WBINVD", "TDG.MEM.PAGE.ACCEPT",
] as const;

export type CallListener = (name: string, r: SeamResult, detail: string) => void;

export class SeamModule {
  readonly pamt: Pamt;
  readonly sept = new SeptPages();
  readonly tds = new Map<number, Td>();
  /** Platform-wide counts; each TD's own counts go to its listener. */
  readonly stats: SeamStats = { calls: {}, busy: 0, errors: {} };
  /** Per TD (by TDR): who hears of its calls, and how many of each it has made (for injection). */
  private readonly listeners = new Map<number, CallListener>();
  private readonly perTdCalls = new Map<number, Record<string, number>>();
  private readonly injected = new Map<number, InjectedFault[]>();
  /** Plaintext the guest keeps in its private pages, by PFN (the model of memory contents). */
  private readonly plaintext = new Map<number, string>();
  private readonly held: SharexLock[] = [];

  constructor(totalFrames: number) {
    this.pamt = new Pamt(totalFrames);
  }

  /** `listener` hears of every call made for the TD `tdr` (its VMM's counters and events). */
  listen(tdr: number, listener: CallListener): void {
    this.listeners.set(tdr, listener);
  }

  /** Calls made for `tdr` return `f.status` from their `f.nth` invocation on, `f.times` times. */
  inject(tdr: number, f: InjectedFault): void {
    const list = this.injected.get(tdr) ?? [];
    list.push(f);
    this.injected.set(tdr, list);
  }

  // ------------------------------------------------------------------ plumbing

  /**
   * Runs one leaf on behalf of the TD `tdr` (NO_TD when no TD is involved): counts it, applies
   * injected faults, releases the locks it took, and tells the TD's listener.
   */
  private call(name: string, tdr: number, detail: string, body: () => SeamResult): SeamResult {
    this.stats.calls[name] = (this.stats.calls[name] ?? 0) + 1;
    const mine = this.perTdCalls.get(tdr) ?? {};
    this.perTdCalls.set(tdr, mine);
    const n = (mine[name] = (mine[name] ?? 0) + 1);
    let r: SeamResult | null = null;
    for (const f of this.injected.get(tdr) ?? []) {
      if (f.call === name && n >= f.nth && n < f.nth + f.times) r = { status: f.status };
    }
    if (r === null) {
      this.held.length = 0;
      try {
        r = body();
      } catch (e) {
        if (!(e instanceof SeamError)) throw e;
        r = e.result;
      } finally {
        for (const l of this.held) l.release();
        this.held.length = 0;
      }
    }
    if (isBusy(r.status)) this.stats.busy++;
    if (!isOk(r.status)) this.stats.errors[statusName(r.status)] = (this.stats.errors[statusName(r.status)] ?? 0) + 1;
    this.listeners.get(tdr)?.(name, r, detail);
    return r;
  }

  private check(cond: boolean, status: bigint, operand = 0n): void {
    if (!cond) throw new SeamError(fail(status, operand));
  }

  private lock(l: SharexLock, exclusive: boolean, busyOperand: bigint): void {
    if (!(exclusive ? l.tryExclusive() : l.tryShared())) {
      throw new SeamError(fail(TDX_OPERAND_BUSY, busyOperand));
    }
    this.held.push(l);
  }

  /** Checks 1-5 of every TD leaf: the TDR, fatal, keys, the op-state lock and the op state. */
  private tdPrologue(tdr: number, tdrOperand: bigint, opStates: number[], tdrExclusive = false): Td {
    const td = this.tds.get(tdr);
    this.check(this.pamt.type(tdr) === PT_TDR && td !== undefined, TDX_PAGE_METADATA_INCORRECT, tdrOperand);
    this.lock(this.pamt.lock(tdr), tdrExclusive, tdrOperand);
    this.check(!td!.fatal, TDX_TD_FATAL);
    this.check(td!.lifecycle === LC_KEYS_CONFIGURED, TDX_TD_KEYS_NOT_CONFIGURED);
    this.lock(td!.opStateLock, false, OPERAND_OP_STATE);
    this.check(opStates.includes(td!.opState), TDX_OP_STATE_INCORRECT);
    return td!;
  }

  /** Check 6: the level is one the leaf takes, the GPA private, inside GPAW, and aligned to the level. */
  private checkGpa(td: Td, gpa: number, level: number, minLevel: number, maxLevel: number): number {
    const size = 4096 * 512 ** level;
    const valid = Number.isInteger(level) && level >= minLevel && level <= maxLevel && Number.isSafeInteger(gpa) &&
      gpa >= 0 && gpa < 2 ** td.gpaw && Math.floor(gpa / td.sharedBitGpa) % 2 === 0 && gpa % size === 0;
    this.check(valid, TDX_OPERAND_INVALID, OPERAND_RCX);
    return gpa / 4096;
  }

  /**
   * Check 8: walk the S-EPT down to `level`. The walk goes only through NL_MAPPED entries: a FREE
   * or blocked entry, or a leaf, above the level ends it with EPT_WALK_FAILED (RCX/RDX say where).
   */
  private walk(td: Td, gfn: number, level: number): { table: Uint32Array; off: number } {
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
    return { table, off: 2 * septIndex(gfn, level) };
  }

  /** Checks 9-10: the entry lock, then the state the leaf needs. */
  private entryState(table: Uint32Array, off: number, level: number, allowed: number[]): number {
    const lo = table[off]!;
    const hi = table[off + 1]!;
    this.check(!entryLocked(lo), TDX_OPERAND_BUSY, OPERAND_RCX);
    const st = septState(lo, hi, level);
    if (!allowed.includes(st)) {
      throw new SeamError({ status: TDX_EPT_ENTRY_STATE_INCORRECT + OPERAND_RCX, entry: entryBigInt(lo, hi), levelState: levelState(level, st) });
    }
    return st;
  }

  /** Check 11: a page the host hands over must be convertible memory, free (NDA) and unlocked. */
  private checkNewPage(pfn: number, operand: bigint): void {
    this.check(Number.isInteger(pfn) && pfn >= 0, TDX_OPERAND_INVALID, operand);
    this.check(this.pamt.inTdmr(pfn), TDX_OPERAND_ADDR_RANGE_ERROR, operand);
    this.check(this.pamt.type(pfn) === PT_NDA, TDX_PAGE_METADATA_INCORRECT, operand);
    this.lock(this.pamt.lock(pfn), true, operand);
  }

  private setEntry(table: Uint32Array, off: number, state: number, pfn: number, level: number): void {
    const e = makeSeptEntry(state, pfn, level);
    table[off] = e.lo;
    table[off + 1] = e.hi;
  }

  /** "Tracked": blocked in an epoch no vCPU can still be running with (reference §3). */
  private tracked(td: Td, pfnOfEntry: number): boolean {
    const b = this.pamt.bepoch(pfnOfEntry);
    return b < td.epoch - 1 || (b === td.epoch - 1 && td.refcount[b & 1] === 0);
  }

  // ------------------------------------------------------------------ TD management

  /** TDH.MNG.CREATE: the TDR page becomes the TD's root, with an HKID. */
  mngCreate(tdr: number, hkid: number): SeamResult {
    return this.call("TDH.MNG.CREATE", tdr, `tdr ${tdr} hkid ${hkid}`, () => {
      this.checkNewPage(tdr, OPERAND_RCX);
      this.pamt.set(tdr, PT_TDR, tdr);
      this.tds.set(tdr, new Td(tdr, hkid));
      return ok();
    });
  }

  /** TDH.MNG.KEY.CONFIG: program the HKID's key on the package. */
  mngKeyConfig(tdr: number): SeamResult {
    return this.call("TDH.MNG.KEY.CONFIG", tdr, `tdr ${tdr}`, () => {
      const td = this.tds.get(tdr);
      this.check(td !== undefined, TDX_PAGE_METADATA_INCORRECT, OPERAND_RCX);
      this.check(td!.lifecycle === LC_HKID_ASSIGNED, TDX_LIFECYCLE_STATE_INCORRECT);
      td!.lifecycle = LC_KEYS_CONFIGURED;
      return ok();
    });
  }

  /** TDH.MNG.ADDCX: a TDCS page; the first one also holds the S-EPT root. */
  mngAddcx(tdr: number, page: number): SeamResult {
    return this.call("TDH.MNG.ADDCX", tdr, `tdr ${tdr} page ${page}`, () => {
      const td = this.tdPrologue(tdr, OPERAND_RDX, [OP_UNINITIALIZED], true);
      this.checkNewPage(page, OPERAND_RCX);
      this.pamt.set(page, PT_TDCX, tdr);
      td.tdcx.push(page);
      td.childCount++;
      return ok();
    });
  }

  /** TDH.MNG.INIT: TD parameters (GPAW, attributes); the S-EPT root is set up. */
  mngInit(tdr: number, params: { gpaw: number; septVeDisable: boolean }): SeamResult {
    return this.call("TDH.MNG.INIT", tdr, `tdr ${tdr} gpaw ${params.gpaw}`, () => {
      const td = this.tdPrologue(tdr, OPERAND_RCX, [OP_UNINITIALIZED], true);
      this.check(td.tdcx.length > 0, TDX_OP_STATE_INCORRECT);
      this.check(params.gpaw === 48 || params.gpaw === 52, TDX_OPERAND_INVALID, OPERAND_RDX);
      td.gpaw = params.gpaw;
      td.rootLevel = params.gpaw > 48 ? 4 : 3;
      td.septVeDisable = params.septVeDisable;
      td.septRoot = td.tdcx[0]!;
      this.sept.init(td.septRoot);
      td.opState = OP_INITIALIZED;
      return ok();
    });
  }

  /** TDH.VP.CREATE + TDH.VP.INIT: a vCPU's TDVPR page. */
  vpCreate(tdr: number, tdvpr: number): SeamResult {
    return this.call("TDH.VP.CREATE", tdr, `tdr ${tdr} tdvpr ${tdvpr}`, () => {
      const td = this.tdPrologue(tdr, OPERAND_RDX, [OP_INITIALIZED]);
      this.checkNewPage(tdvpr, OPERAND_RCX);
      this.pamt.set(tdvpr, PT_TDVPR, tdr);
      td.childCount++;
      const v = new TdVcpu(tdvpr);
      v.initialized = true;
      td.vcpus.set(tdvpr, v);
      return ok();
    });
  }

  /** TDH.MR.FINALIZE: the measurement is final; the TD becomes RUNNABLE. */
  mrFinalize(tdr: number): SeamResult {
    return this.call("TDH.MR.FINALIZE", tdr, `tdr ${tdr}`, () => {
      const td = this.tdPrologue(tdr, OPERAND_RCX, [OP_INITIALIZED], true);
      td.opState = OP_RUNNABLE;
      return ok();
    });
  }

  /** TDH.MR.EXTEND: measure 256 bytes of a MAPPED page into MRTD. */
  mrExtend(gpa: number, tdr: number): SeamResult {
    return this.call("TDH.MR.EXTEND", tdr, `gpa 0x${gpa.toString(16)}`, () => {
      const td = this.tdPrologue(tdr, OPERAND_RDX, [OP_INITIALIZED]);
      this.check(gpa % 256 === 0 && gpa < 2 ** td.gpaw, TDX_OPERAND_INVALID, OPERAND_RCX);
      this.lock(td.treeLock, false, OPERAND_SEPT_TREE);
      const gfn = Math.floor(gpa / 4096);
      const { table, off } = this.walk(td, gfn, 0);
      this.entryState(table, off, 0, [SEPT_MAPPED]);
      td.mrtd = (Math.imul(td.mrtd ^ 0x9e3779b9, 31) + gpa) >>> 0;
      return ok();
    });
  }

  /** TDH.VP.FLUSH: the vCPU's cached state is written back (it must be out of guest mode). */
  vpFlush(tdvpr: number): SeamResult {
    return this.call("TDH.VP.FLUSH", this.pamt.owner(tdvpr), `tdvpr ${tdvpr}`, () => {
      const td = this.tdOfVcpu(tdvpr);
      this.check(!td.vcpus.get(tdvpr)!.inGuest, TDX_OPERAND_BUSY, OPERAND_RCX);
      return ok();
    });
  }

  /** TDH.MNG.VPFLUSHDONE: every vCPU flushed; no VP.ENTER any more (lifecycle BLOCKED). */
  mngVpflushdone(tdr: number): SeamResult {
    return this.call("TDH.MNG.VPFLUSHDONE", tdr, `tdr ${tdr}`, () => {
      const td = this.tdPrologue(tdr, OPERAND_RCX, [OP_UNINITIALIZED, OP_INITIALIZED, OP_RUNNABLE], true);
      for (const v of td.vcpus.values()) this.check(!v.inGuest, TDX_OPERAND_BUSY, OPERAND_RCX);
      td.lifecycle = LC_BLOCKED;
      return ok();
    });
  }

  /** TDH.MNG.KEY.FREEID: the HKID goes back; the TD's pages can now be reclaimed. */
  mngKeyFreeid(tdr: number): SeamResult {
    return this.call("TDH.MNG.KEY.FREEID", tdr, `tdr ${tdr}`, () => {
      const td = this.tds.get(tdr);
      this.check(td !== undefined && this.pamt.type(tdr) === PT_TDR, TDX_PAGE_METADATA_INCORRECT, OPERAND_RCX);
      this.check(td!.lifecycle === LC_BLOCKED, TDX_LIFECYCLE_STATE_INCORRECT);
      td!.lifecycle = LC_TEARDOWN;
      return ok();
    });
  }

  private tdOfVcpu(tdvpr: number): Td {
    this.check(this.pamt.type(tdvpr) === PT_TDVPR, TDX_PAGE_METADATA_INCORRECT, OPERAND_RCX);
    const td = this.tds.get(this.pamt.owner(tdvpr));
    this.check(td !== undefined && td.vcpus.has(tdvpr), TDX_PAGE_METADATA_INCORRECT, OPERAND_RCX);
    return td!;
  }

  // ------------------------------------------------------------------ vCPU entry and exit

  /**
   * TDH.VP.ENTER: takes the epoch lock shared and counts the vCPU in the current epoch's parity
   * (a TRACK waits for the previous parity to drain). Only a RUNNABLE TD with keys runs.
   */
  vpEnter(tdvpr: number): SeamResult {
    return this.call("TDH.VP.ENTER", this.pamt.owner(tdvpr), `tdvpr ${tdvpr}`, () => {
      const td = this.tdOfVcpu(tdvpr);
      this.check(!td.fatal, TDX_TD_FATAL);
      this.check(td.lifecycle === LC_KEYS_CONFIGURED, TDX_TD_KEYS_NOT_CONFIGURED);
      this.check(td.opState === OP_RUNNABLE, TDX_OP_STATE_INCORRECT);
      this.lock(td.epochLock, false, OPERAND_TD_EPOCH);
      const v = td.vcpus.get(tdvpr)!;
      if (v.inGuest) return ok();
      v.epoch = td.epoch;
      v.inGuest = true;
      td.refcount[td.epoch & 1]!++;
      return ok();
    });
  }

  /** A TD exit (EPT violation, IPI, ...): the vCPU leaves the count of its epoch's parity. */
  tdExit(tdvpr: number): void {
    const td = this.tds.get(this.pamt.owner(tdvpr));
    const v = td?.vcpus.get(tdvpr);
    if (!td || !v || !v.inGuest) return;
    v.inGuest = false;
    td.refcount[v.epoch & 1]!--;
  }

  // ------------------------------------------------------------------ S-EPT

  /** TDH.MEM.SEPT.ADD: a FREE entry at `level` (1..root-1) becomes NL_MAPPED over `page`. */
  memSeptAdd(gpa: number, level: number, tdr: number, page: number): SeamResult {
    return this.call("TDH.MEM.SEPT.ADD", tdr, `gpa 0x${gpa.toString(16)} level ${level} page ${page}`, () => {
      const td = this.tdPrologue(tdr, OPERAND_RDX, [OP_INITIALIZED, OP_RUNNABLE]);
      const gfn = this.checkGpa(td, gpa, level, 1, td.rootLevel);
      this.lock(td.treeLock, false, OPERAND_SEPT_TREE);
      const { table, off } = this.walk(td, gfn, level);
      this.entryState(table, off, level, [SEPT_FREE]);
      this.checkNewPage(page, OPERAND_R8);
      this.sept.init(page);
      this.pamt.set(page, PT_EPT, tdr);
      td.childCount++;
      this.setEntry(table, off, SEPT_NL_MAPPED, page, level);
      return ok();
    });
  }

  /** TDH.MEM.PAGE.AUG: a FREE leaf becomes PENDING over `page`, owned by the TD (4K here). */
  memPageAug(gpa: number, level: number, tdr: number, page: number): SeamResult {
    return this.call("TDH.MEM.PAGE.AUG", tdr, `gpa 0x${gpa.toString(16)} level ${level} page ${page}`, () => {
      const td = this.tdPrologue(tdr, OPERAND_RDX, [OP_INITIALIZED, OP_RUNNABLE]);
      const gfn = this.checkGpa(td, gpa, level, 0, 0);
      this.lock(td.treeLock, false, OPERAND_SEPT_TREE);
      const { table, off } = this.walk(td, gfn, level);
      this.entryState(table, off, level, [SEPT_FREE]);
      this.checkNewPage(page, OPERAND_R8);
      this.pamt.set(page, PT_REG, tdr);
      td.childCount++;
      this.setEntry(table, off, SEPT_PENDING, page, level);
      return ok();
    });
  }

  /**
   * TDH.MEM.PAGE.ADD (before finalize): a FREE 4K leaf becomes MAPPED over `page`, which gets the
   * content of `source` (a shared page) under the TD's key, and MRTD is extended.
   */
  memPageAdd(gpa: number, level: number, tdr: number, page: number, source: number, content = ""): SeamResult {
    return this.call("TDH.MEM.PAGE.ADD", tdr, `gpa 0x${gpa.toString(16)} page ${page}`, () => {
      const td = this.tdPrologue(tdr, OPERAND_RDX, [OP_INITIALIZED], true);
      const gfn = this.checkGpa(td, gpa, level, 0, 0);
      const { table, off } = this.walk(td, gfn, level);
      this.entryState(table, off, level, [SEPT_FREE]);
      this.checkNewPage(page, OPERAND_R8);
      this.check(this.pamt.inTdmr(source) && this.pamt.type(source) === PT_NDA, TDX_OPERAND_INVALID, OPERAND_R9);
      this.pamt.set(page, PT_REG, tdr);
      td.childCount++;
      this.setEntry(table, off, SEPT_MAPPED, page, level);
      this.plaintext.set(page, content);
      td.mrtd = (Math.imul(td.mrtd ^ 0x85ebca6b, 31) + gpa) >>> 0;
      return ok();
    });
  }

  /** TDH.MEM.RANGE.BLOCK: clear RWX of an entry; the page's BEPOCH records the current epoch. */
  memRangeBlock(gpa: number, level: number, tdr: number): SeamResult {
    return this.call("TDH.MEM.RANGE.BLOCK", tdr, `gpa 0x${gpa.toString(16)} level ${level}`, () => {
      const td = this.tdPrologue(tdr, OPERAND_RDX, [OP_INITIALIZED, OP_RUNNABLE]);
      const gfn = this.checkGpa(td, gpa, level, 0, td.rootLevel);
      this.lock(td.treeLock, true, OPERAND_SEPT_TREE);
      const { table, off } = this.walk(td, gfn, level);
      const lo = table[off]!;
      const hi = table[off + 1]!;
      this.check(!entryLocked(lo), TDX_OPERAND_BUSY, OPERAND_RCX);
      const st0 = septState(lo, hi, level);
      if (st0 === SEPT_BLOCKED || st0 === SEPT_PENDING_BLOCKED || st0 === SEPT_NL_BLOCKED) {
        return { status: TDX_GPA_RANGE_ALREADY_BLOCKED + OPERAND_RCX };
      }
      const st = this.entryState(table, off, level, [SEPT_MAPPED, SEPT_PENDING, SEPT_NL_MAPPED]);
      const pfn = septPfn(lo, hi);
      const next = st === SEPT_MAPPED ? SEPT_BLOCKED : st === SEPT_PENDING ? SEPT_PENDING_BLOCKED : SEPT_NL_BLOCKED;
      this.setEntry(table, off, next, pfn, level);
      this.pamt.setBepoch(pfn, td.epoch);
      return ok();
    });
  }

  /** TDH.MEM.RANGE.UNBLOCK: reverse a BLOCK, once the block has been tracked. */
  memRangeUnblock(gpa: number, level: number, tdr: number): SeamResult {
    return this.call("TDH.MEM.RANGE.UNBLOCK", tdr, `gpa 0x${gpa.toString(16)} level ${level}`, () => {
      const td = this.tdPrologue(tdr, OPERAND_RDX, [OP_INITIALIZED, OP_RUNNABLE]);
      const gfn = this.checkGpa(td, gpa, level, 0, td.rootLevel);
      this.lock(td.treeLock, true, OPERAND_SEPT_TREE);
      const { table, off } = this.walk(td, gfn, level);
      const st = this.entryState(table, off, level, [SEPT_BLOCKED, SEPT_PENDING_BLOCKED, SEPT_NL_BLOCKED]);
      const pfn = septPfn(table[off]!, table[off + 1]!);
      if (td.opState === OP_RUNNABLE) this.check(this.tracked(td, pfn), TDX_TLB_TRACKING_NOT_DONE, OPERAND_SEPT_TREE);
      const next = st === SEPT_BLOCKED ? SEPT_MAPPED : st === SEPT_PENDING_BLOCKED ? SEPT_PENDING : SEPT_NL_MAPPED;
      this.setEntry(table, off, next, pfn, level);
      return ok();
    });
  }

  /**
   * TDH.MEM.TRACK: start a new TLB epoch. Refused while vCPUs that entered in the previous epoch
   * are still in guest mode.
   */
  memTrack(tdr: number): SeamResult {
    return this.call("TDH.MEM.TRACK", tdr, `tdr ${tdr}`, () => {
      const td = this.tdPrologue(tdr, OPERAND_RCX, [OP_INITIALIZED, OP_RUNNABLE]);
      this.lock(td.epochLock, true, OPERAND_TD_EPOCH);
      this.check(td.refcount[(td.epoch - 1) & 1] === 0, TDX_PREVIOUS_TLB_EPOCH_BUSY);
      td.epoch++;
      return ok();
    });
  }

  /**
   * TDH.MEM.PAGE.REMOVE: a leaf goes back to FREE and its page to NDA, not scrubbed. While the TD
   * runs, the leaf must have been blocked and the block tracked.
   */
  memPageRemove(gpa: number, level: number, tdr: number): SeamResult {
    return this.call("TDH.MEM.PAGE.REMOVE", tdr, `gpa 0x${gpa.toString(16)} level ${level}`, () => {
      const td = this.tdPrologue(tdr, OPERAND_RDX, [OP_INITIALIZED, OP_RUNNABLE]);
      const gfn = this.checkGpa(td, gpa, level, 0, 2);
      this.lock(td.treeLock, false, OPERAND_SEPT_TREE);
      const { table, off } = this.walk(td, gfn, level);
      const st = this.entryState(table, off, level, [SEPT_MAPPED, SEPT_BLOCKED, SEPT_PENDING, SEPT_PENDING_BLOCKED]);
      const pfn = septPfn(table[off]!, table[off + 1]!);
      // The page's PAMT entry is locked before the blocked/tracked checks; REMOVE has no page
      // operand, so a busy page lock is reported against the GPA (RCX).
      this.lock(this.pamt.lock(pfn), true, OPERAND_RCX);
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
    });
  }

  /** TDH.MEM.SEPT.REMOVE: an empty S-EPT page goes back (NL entry → FREE, page → NDA). */
  memSeptRemove(gpa: number, level: number, tdr: number): SeamResult {
    return this.call("TDH.MEM.SEPT.REMOVE", tdr, `gpa 0x${gpa.toString(16)} level ${level}`, () => {
      const td = this.tdPrologue(tdr, OPERAND_RDX, [OP_INITIALIZED, OP_RUNNABLE]);
      const gfn = this.checkGpa(td, gpa, level, 1, td.rootLevel);
      this.lock(td.treeLock, true, OPERAND_SEPT_TREE);
      const { table, off } = this.walk(td, gfn, level);
      const st = this.entryState(table, off, level, [SEPT_NL_MAPPED, SEPT_NL_BLOCKED]);
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
    });
  }

  // ------------------------------------------------------------------ physical pages

  /**
   * TDH.PHYMEM.PAGE.RECLAIM: take a page back from a TD that is being torn down (HKID freed). A
   * TDR only once all its other pages are back.
   */
  phymemPageReclaim(pfn: number): SeamResult {
    return this.call("TDH.PHYMEM.PAGE.RECLAIM", this.pamt.owner(pfn), `page ${pfn}`, () => {
      this.check(this.pamt.inTdmr(pfn), TDX_OPERAND_ADDR_RANGE_ERROR, OPERAND_RCX);
      const type = this.pamt.type(pfn);
      this.check(type !== PT_NDA && type !== PT_RSVD, TDX_PAGE_METADATA_INCORRECT, OPERAND_RCX);
      this.lock(this.pamt.lock(pfn), true, OPERAND_RCX);
      const td = this.tds.get(this.pamt.owner(pfn))!;
      this.check(td.lifecycle === LC_TEARDOWN, TDX_LIFECYCLE_STATE_INCORRECT);
      if (type === PT_TDR) {
        this.check(td.childCount === 0, TDX_TD_ASSOCIATED_PAGES_EXIST);
        this.tds.delete(pfn);
      } else {
        td.childCount--;
      }
      if (type === PT_EPT) this.sept.drop(pfn);
      this.plaintext.delete(pfn);
      this.pamt.set(pfn, PT_NDA, NO_TD);
      return ok();
    });
  }

  /** TDH.PHYMEM.PAGE.WBINVD: write back and invalidate the page's cache lines for a key (1.5: page must be NDA). */
  phymemPageWbinvd(pfn: number, hkid: number, onBehalfOf = this.pamt.owner(pfn)): SeamResult {
    return this.call("TDH.PHYMEM.PAGE.WBINVD", onBehalfOf, `page ${pfn} hkid ${hkid}`, () => {
      this.check(this.pamt.inTdmr(pfn), TDX_OPERAND_ADDR_RANGE_ERROR, OPERAND_RCX);
      this.check(this.pamt.type(pfn) === PT_NDA, TDX_PAGE_METADATA_INCORRECT, OPERAND_RCX);
      return ok();
    });
  }

  // ------------------------------------------------------------------ the guest side

  /**
   * TDG.MEM.PAGE.ACCEPT (guest TDCALL): a PENDING leaf at exactly `level` is zeroed with the TD's
   * key and becomes MAPPED. A missing, blocked or non-pending entry exits to the VMM (EPT
   * violation) so it can AUG the page; the guest then retries.
   */
  tdgMemPageAccept(tdvpr: number, gpa: number, level: number): SeamResult | GuestExit {
    let exit: GuestExit | null = null;
    const r = this.call("TDG.MEM.PAGE.ACCEPT", this.pamt.owner(tdvpr), `gpa 0x${gpa.toString(16)} level ${level}`, () => {
      const td = this.tdOfVcpu(tdvpr);
      const gfn = this.checkGpa(td, gpa, level, 0, 1);
      let found: { table: Uint32Array; off: number };
      try {
        found = this.walk(td, gfn, level);
      } catch (e) {
        if (!(e instanceof SeamError)) throw e;
        // The walk stopped above the level: a leaf there means the page is mapped bigger.
        const ls = e.result.levelState;
        if (ls !== undefined && ((ls >> 8n) & 0x80n) === 0n && (ls >> 8n) !== BigInt(SEPT_FREE)) return fail(TDX_PAGE_SIZE_MISMATCH, OPERAND_RCX);
        exit = { exit: "ept-violation" };
        return ok();
      }
      const { table, off } = found;
      const lo = table[off]!;
      const hi = table[off + 1]!;
      this.check(!entryLocked(lo), TDX_OPERAND_BUSY, OPERAND_RCX);
      const st = septState(lo, hi, level);
      if (st === SEPT_MAPPED) return fail(TDX_PAGE_ALREADY_ACCEPTED);
      if (st === SEPT_NL_MAPPED || st === SEPT_NL_BLOCKED) return fail(TDX_PAGE_SIZE_MISMATCH, OPERAND_RCX);
      if (st !== SEPT_PENDING) {
        exit = { exit: "ept-violation" };
        return ok();
      }
      const pfn = septPfn(lo, hi);
      this.setEntry(table, off, SEPT_MAPPED, pfn, level);
      this.plaintext.set(pfn, "");
      return ok();
    });
    return exit ?? r;
  }

  /**
   * What the CPU does with a private guest access (the S-EPT is what hardware walks for the
   * private half of the GPA space): "ok" on a MAPPED leaf; "ve" on a PENDING one (#VE, unless
   * SEPT_VE_DISABLE makes it a PENDING EPT violation exit); "exit" otherwise.
   */
  guestTranslate(tdvpr: number, gpa: number): "ok" | "ve" | GuestExit {
    const td = this.tds.get(this.pamt.owner(tdvpr))!;
    const gfn = Math.floor(gpa / 4096);
    let table = this.sept.get(td.septRoot)!;
    for (let lvl = td.rootLevel; lvl >= 0; lvl--) {
      const off = 2 * septIndex(gfn, lvl);
      const lo = table[off]!;
      const hi = table[off + 1]!;
      const st = septState(lo, hi, lvl);
      if (st === SEPT_NL_MAPPED) {
        table = this.sept.get(septPfn(lo, hi))!;
        continue;
      }
      if (st === SEPT_MAPPED) return "ok";
      if (st === SEPT_PENDING) return td.septVeDisable ? { exit: "pending-ept-violation" } : "ve";
      return { exit: "ept-violation" };
    }
    return { exit: "ept-violation" };
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
    let table = this.sept.get(td.septRoot);
    for (let lvl = td.rootLevel; lvl >= level && table; lvl--) {
      const off = 2 * septIndex(gfn, lvl);
      const lo = table[off]!;
      const hi = table[off + 1]!;
      const st = septState(lo, hi, lvl);
      if (lvl === level) return { state: st, pfn: septPfn(lo, hi) };
      if (st !== SEPT_NL_MAPPED) return { state: SEPT_FREE, pfn: 0 };
      table = this.sept.get(septPfn(lo, hi));
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

  /** Every present entry of a TD's S-EPT below the root: [gfn, TDX level, state, PFN]. */
  *septEntries(td: Td): Generator<[gfn: number, level: number, state: number, pfn: number]> {
    const visit = function* (this: SeamModule, page: number, level: number, base: number): Generator<[number, number, number, number]> {
      const t = this.sept.get(page)!;
      for (let i = 0; i < 512; i++) {
        const lo = t[2 * i]!;
        const hi = t[2 * i + 1]!;
        const st = septState(lo, hi, level);
        if (st === SEPT_FREE) continue;
        const gfn = base + i * 512 ** level;
        yield [gfn, level, st, septPfn(lo, hi)];
        if (st === SEPT_NL_MAPPED || st === SEPT_NL_BLOCKED) yield* visit.call(this, septPfn(lo, hi), level - 1, gfn);
      }
    };
    yield* visit.call(this, td.septRoot, td.rootLevel, 0);
  }
}

export { LC_HKID_ASSIGNED, LC_KEYS_CONFIGURED, LC_BLOCKED, LC_TEARDOWN, OP_INITIALIZED, OP_RUNNABLE };
