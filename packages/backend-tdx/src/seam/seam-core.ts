/**
 * The module's state and dispatcher: platform-wide state (PAMT, S-EPT pages, TDs), each TD's
 * call log (counts, listener, injected faults), the `call` wrapper every SEAMCALL goes through,
 * the remembered TD and vCPU lookups, and the S-EPT walk with its remembered 4K table. The leaf
 * bodies (mng-, vp-, mem-, mr-, phymem- and guest-leaves.ts) are functions of this state; the
 * fields they read and write are public for them, and for nothing else to change.
 */
import { CallCounts, R_INJECTED, packedZeros, type Clock } from "@tdpemu/backend-sdk";
import { PLATFORM_SYS, SeamFootprint } from "./seam-footprint.js";
import {
  SEAMCALL_NAMES,
  TDH_SYS_CONFIG,
  TDH_SYS_INIT,
  TDH_SYS_KEY_CONFIG,
  TDH_SYS_LP_INIT,
  TDH_SYS_TDMR_INIT,
} from "./leaves.js";
import { NO_TD, Pamt, PT_TDR, PT_TDVPR } from "./pamt.js";
import {
  type CallListener,
  type InjectedFault,
  type SeamResult,
  type SeamStats,
  SUCCESS,
  SeamError,
  check,
  injectedResult,
} from "./seam-result.js";
import { failOnEntry } from "./leaf-checks.js";
import { SeptPages, septIndex, septPfn, septState, SEPT_NL_MAPPED, type SeptPage } from "./sept.js";
import {
  OPERAND_RCX,
  TDX_EPT_WALK_FAILED,
  TDX_PAGE_METADATA_INCORRECT,
  TDX_SUCCESS,
  TDX_SYS_NOT_READY,
  isBusy,
  isOk,
  statusName,
} from "./status.js";
import {
  SYS_READY,
  SysState,
  TDMR_ALIGN_FRAMES,
  markReserved,
  type TdmrInfo,
} from "./sys-leaves.js";
import { Td, type TdState, type TdVcpu } from "./td.js";

/** A leaf's body: the checks and the change, given the module, the TD the call is for and its numeric operands. */
export type LeafBody = (
  m: SeamCore,
  tdr: number,
  a: number,
  b: number,
  c: number,
  d: number,
) => SeamResult;

/** Per TD (by TDR): who hears of its calls, how many of each it has made, what to inject. */
class TdCallLog {
  readonly counts = packedZeros(SEAMCALL_NAMES.length); // packed, not typed: see CallCounts
  readonly injected: InjectedFault[] = [];
  listener: CallListener | undefined = undefined;
}

/**
 * The platform's logical processors: vCPU i runs on LP i, and a VM has at most 64 vCPUs. The
 * host kernel runs TDH.SYS.LP.INIT on each.
 */
export const PLATFORM_LPS = 64;

/** The leaves the dispatcher lets through before SYS_READY (`tdx_vmm_dispatcher.c`); TDMR.INIT is not one. */
const BEFORE_READY: ReadonlySet<number> = new Set([
  TDH_SYS_INIT,
  TDH_SYS_LP_INIT,
  TDH_SYS_CONFIG,
  TDH_SYS_KEY_CONFIG,
]);
const SYS_NOT_READY_RESULT: SeamResult = Object.freeze({ status: TDX_SYS_NOT_READY });
const BRING_UP_LEAVES = [
  TDH_SYS_INIT,
  TDH_SYS_LP_INIT,
  TDH_SYS_CONFIG,
  TDH_SYS_KEY_CONFIG,
  TDH_SYS_TDMR_INIT,
];

/** A module's state after its platform's bring-up, and the calls it took. */
export interface BringUpRecord {
  readonly sys: SysState;
  readonly calls: readonly (readonly [number, number])[];
}

/**
 * What a TD's set-up (its TDH.MNG.* and TDH.VP.* calls from create to the last VP.WR) left in a
 * module that had made no call since its bring-up: the TD, its pages' PAMT entries, its S-EPT
 * root, and the calls in first-call order (`SeamCore.saveTdSetup`).
 */
export interface TdSetupRecord {
  readonly td: TdState;
  /** PAMT entries the set-up wrote, each a page of the TD (its TDR included): PFN and type. */
  readonly pamt: readonly (readonly [number, number])[];
  readonly calls: readonly (readonly [number, number])[];
}

/** No table yet (shared: a module is made per explored schedule, and nothing is stored in it). */
const NO_TABLE = new Uint32Array(0) as unknown as SeptPage;

export class SeamCore {
  /** Where the state's accessors record what each call reads and writes (`attach`). */
  readonly fp = new SeamFootprint();
  readonly pamt: Pamt;
  readonly sept = new SeptPages(this.fp);
  /** The TDs by TDR: changed only by TDH.MNG.CREATE and the RECLAIM of a TDR (`addTd`, `removeTd`). */
  private readonly tdMap = new Map<number, Td>();
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
  lockedTdr = Number.NaN;
  /** Where the last `walk` ended: the table at the level asked for and the entry's offset in it. */
  walkTable: SeptPage = NO_TABLE;
  walkOff = 0;
  /** The vCPU `tdOfVcpu` found. */
  foundVcpu: TdVcpu | undefined = undefined;
  /**
   * The last TD looked up by TDR, and the last vCPU by TDVPR (with the TD its PAMT owner names):
   * a fault looks up the same ones half a dozen times. Valid while `tdsVersion` is unchanged,
   * which TDH.MNG.CREATE, TDH.VP.CREATE and the RECLAIM of a TDR bump (the only changes to
   * `tds` and to a TD's vCPUs); the vCPU's entry also holds the page's PAMT type and owner, so
   * it is valid only while the PAMT's version is unchanged too, or, for a TDVPR page, its
   * `controlPageVersion` (only a change of that page makes it something else). The TD's entry
   * likewise holds whether its TDR page is one.
   */
  tdsVersion = 0;
  private cachedTdr = Number.NaN;
  private cachedTd: Td | undefined = undefined;
  private cachedTdVersion = -1;
  private cachedTdrIsTdr = false;
  private cachedTdPamtVersion = -1;
  private cachedTdControlVersion = -1;
  private cachedTdvpr = Number.NaN;
  private cachedOwner = Number.NaN;
  private cachedType = -1;
  private cachedVcpu: TdVcpu | undefined = undefined;
  cachedVcpuTd: Td | undefined = undefined;
  private cachedVcpuVersion = -1;
  private cachedPamtVersion = -1;
  private cachedVcpuControlVersion = -1;
  /** TDH.MEM.PAGE.ADD's content operand (not numeric, so not passed through the dispatcher). */
  addContent = "";
  /** The 64-bit operands of TDH.MNG.RD and TDH.VP.RD/WR: the field id (RDX), the value (R8) and the write mask (R9). */
  mdOperands = { id: 0n, value: 0n, mask: 0n };
  /** TDH.SYS.CONFIG's TDMR_INFO array (what RCX points to). */
  tdmrInfo: readonly TdmrInfo[] = [];
  /** The last walk that reached a 4K table (see `rememberedLeafTable`). */
  private leafVersion = -1;
  private leafRoot = -1;
  /** The 2 MiB block of GFNs (`gfn / 512`, floored) of the remembered table. */
  private leafBlock = -1;
  private leafTable: SeptPage = NO_TABLE;

  /** The platform's bring-up state (TDH.SYS.*, `sys-leaves.ts`). */
  readonly sys: SysState;

  /**
   * A module for a platform of `totalFrames` frames. `cold`: as the platform starts, before the
   * host kernel's TDH.SYS.* bring-up (`tdxEnable` in tdx-platform.ts does it through the
   * leaves); otherwise already brought up, as the leaves would leave it (for tests of the other
   * leaves: every LP initialized, one package configured, one TDMR over all frames, initialized).
   */
  constructor(totalFrames: number, opts: { cold?: boolean; lps?: number } = {}) {
    this.pamt = new Pamt(totalFrames, this.fp);
    this.sys = new SysState(opts.lps ?? PLATFORM_LPS, 1);
    if (opts.cold) {
      this.pamt.setUsableFrames(0);
      return;
    }
    const s = this.sys;
    s.lpIsInit.fill(1);
    s.numInitLps = s.numLps;
    s.pkgConfigBitmap = 1;
    s.numInitPkgs = 1;
    s.globalHkid = 1;
    const frames = Math.max(
      TDMR_ALIGN_FRAMES,
      Math.ceil(totalFrames / TDMR_ALIGN_FRAMES) * TDMR_ALIGN_FRAMES,
    );
    // The PAMT of this ready-made platform lies outside its frames: no reserved area.
    s.tdmrs = [{ base: 0, frames, lastInitialized: frames, rsvd: [] }];
    s.state = SYS_READY;
  }

  /** What the bring-up left: the global state and the bring-up leaves' counts (`restoreBringUp`). */
  bringUpRecord(): BringUpRecord {
    const sys = new SysState(this.sys.numLps, this.sys.numPkgs);
    sys.copyFrom(this.sys);
    return {
      sys,
      calls: BRING_UP_LEAVES.map((leaf) => [leaf, this.platformCalls.get(leaf)] as const),
    };
  }

  /** A cold module takes the state a bring-up of the same platform left (`bringUpRecord`), its counts included. */
  restoreBringUp(r: BringUpRecord): void {
    this.sys.copyFrom(r.sys);
    this.pamt.setUsableFrames(this.sys.usableFrames());
    for (const t of this.sys.tdmrs) markReserved(this, t, t.base, t.lastInitialized);
    for (const [leaf, n] of r.calls) this.platformCalls.addMany(leaf, n);
  }

  /**
   * The platform this module was brought up as (`tdx-platform.ts`), while it has made no call
   * since and nothing was injected: a TD's set-up then does what it did in any other such
   * module of the same platform. Empty otherwise.
   */
  get pristinePlatform(): string {
    return this.pristine ? this.platformKey : "";
  }

  private platformKey = "";
  private pristine = false;

  /** The bring-up of platform `key` is done (through the leaves or `restoreBringUp`): the module is pristine. */
  broughtUpAs(key: string): void {
    this.platformKey = key;
    this.pristine = true;
  }

  /**
   * What the set-up of the TD `tdr`, the module's only calls since it was pristine, left:
   * null if a lock is still held or a call failed.
   */
  saveTdSetup(tdr: number): TdSetupRecord | null {
    const td = this.tdMap.get(tdr);
    const log = this.logs.get(tdr);
    if (td === undefined || log === undefined || this.tdMap.size !== 1) return null;
    if (this.busyCount !== 0 || Object.keys(this.errorCounts).length !== 0) return null;
    if (log.injected.length !== 0 || this.plaintext.size !== 0) return null;
    const state = td.saveState();
    if (state === null || this.pamt.next2mPageOf(tdr, 0) >= 0) return null;
    const calls = this.platformCalls
      .used()
      .filter((leaf) => log.counts[leaf]! > 0)
      .map((leaf) => [leaf, log.counts[leaf]!] as const);
    // The TDR has no owner (TDH.MNG.CREATE), so it is not among the pages the TD owns.
    return { td: state, pamt: [[tdr, PT_TDR], ...this.pamt.pagesOf(tdr)], calls };
  }

  /**
   * A pristine module of the same platform takes the state a set-up left (`saveTdSetup`), as the
   * leaves would have left it: each PAMT entry, the S-EPT root, the TD and the counts written
   * as they write them. The TD's listener is told nothing: the caller counts the calls itself.
   * Null, and nothing changed, unless the platform is ready and every page is one the leaves
   * would take (a test may hold a page's lock, or shrink the TDMRs, without a call).
   */
  restoreTdSetup(r: TdSetupRecord): Td | null {
    const tdr = r.td.tdr;
    if (this.sys.state !== SYS_READY || this.tdMap.has(tdr) || this.sept.get(r.td.root))
      return null;
    for (const [pfn] of r.pamt) if (!this.pamt.isFreshPage(pfn)) return null;
    this.pristine = false;
    for (const [pfn, type] of r.pamt)
      this.pamt.setTypeOwner(pfn, type, type === PT_TDR ? NO_TD : tdr);
    this.sept.init(r.td.root);
    const td = Td.restored(r.td, this.fp);
    this.addTd(td);
    const log = this.logOf(tdr);
    for (const [leaf, n] of r.calls) {
      this.platformCalls.addMany(leaf, n);
      log.counts[leaf]! += n;
    }
    return td;
  }

  /** The calls made for the TD `tdr` by name, in SEAMCALL order, the ones made only (for tests). */
  tdCalls(tdr: number): [string, number][] {
    const counts = this.logs.get(tdr)?.counts ?? [];
    return counts.flatMap((n, leaf) =>
      n > 0 ? [[SEAMCALL_NAMES[leaf]!, n] as [string, number]] : [],
    );
  }

  /** Accesses are recorded into `clock`'s recorder from now on (the module is the machine's; a run attaches it to its VM's clock). */
  attach(clock: Clock): void {
    this.fp.attach(clock);
  }

  // ------------------------------------------------------------------ state shared by the leaves

  /** The TDs by TDR, as a leaf reads them. */
  get tds(): ReadonlyMap<number, Td> {
    if (this.fp.recording) this.fp.read(this.fp.platformId(0));
    return this.tdMap;
  }

  /** The TDs, recording nothing (checks, tools). */
  peekTds(): ReadonlyMap<number, Td> {
    this.fp.assertBetweenSteps("the TDs");
    return this.tdMap;
  }

  addTd(td: Td): void {
    this.fp.write(this.fp.platformId(0));
    this.tdMap.set(td.tdr, td);
    this.tdsVersion++;
  }

  removeTd(tdr: number): void {
    this.fp.write(this.fp.platformId(0));
    this.tdMap.get(tdr)?.noteGone();
    this.tdMap.delete(tdr);
    this.tdsVersion++;
  }

  /** The plaintext of private page `pfn` (the memory-content model), or undefined. */
  plainGet(pfn: number): string | undefined {
    if (this.fp.recording) this.fp.read(this.fp.plainId(pfn));
    return this.plaintext.get(pfn);
  }

  plainSet(pfn: number, data: string): void {
    this.fp.write(this.fp.plainId(pfn));
    this.plaintext.set(pfn, data);
  }

  plainDelete(pfn: number): void {
    this.fp.write(this.fp.plainId(pfn));
    this.plaintext.delete(pfn);
  }

  /** Every piece of the module's state a leaf may change, under its resource id, recording nothing (the footprint audit). */
  auditState(out: Map<number, string | number>): void {
    this.sept.auditEntries(out);
    this.pamt.auditEntries(out);
    out.set(this.fp.platformId(0), [...this.tdMap.keys()].join(","));
    out.set(
      this.fp.platformId(PLATFORM_SYS),
      `${this.sys.auditText()} usable ${this.pamt.usableFrames}`,
    );
    for (const td of this.tdMap.values()) td.auditState(out);
    for (const [pfn, data] of this.plaintext) out.set(this.fp.plainId(pfn), data);
    for (const [tdr, log] of this.logs) {
      if (log.injected.length === 0) continue;
      for (let leaf = 0; leaf < log.counts.length; leaf++)
        out.set(this.fp.platformId(1 + leaf), `${tdr}:${log.counts[leaf]}`);
    }
  }

  /** Platform-wide counts of calls (names in first-call order), BUSY statuses and errors, as of now. */
  get stats(): SeamStats {
    return {
      calls: this.platformCalls.record(),
      busy: this.busyCount,
      errors: { ...this.errorCounts },
    };
  }

  /** `listener` hears of every call made for the TD `tdr` (its VMM's counters and events). */
  listen(tdr: number, listener: CallListener): void {
    this.logOf(tdr).listener = listener;
  }

  /** Calls made for `tdr` return `f.status` from their `f.nth` invocation on, `f.times` times. */
  inject(tdr: number, f: InjectedFault): void {
    this.pristine = false;
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
  protected call(
    leaf: number,
    tdr: number,
    a: number,
    b: number,
    c: number,
    d: number,
    body: LeafBody,
  ): SeamResult {
    this.platformCalls.add(leaf);
    this.pristine = false;
    const log = this.logOf(tdr);
    const n = ++log.counts[leaf]!;
    // With a fault injected, which call is the nth depends on the order of the calls: the
    // counter is shared state then.
    // R_INJECTED: the caller's own next call may end otherwise (its retry is not a no-op).
    if (log.injected.length !== 0) {
      this.fp.write(this.fp.platformId(1 + leaf));
      this.fp.update(R_INJECTED);
    }
    let r =
      log.injected.length === 0 ? null : injectedResult(log.injected, SEAMCALL_NAMES[leaf]!, n);
    // tdx_vmm_dispatcher: until the platform is SYS_READY only the bring-up leaves run.
    if (r === null && this.sys.state !== SYS_READY && !BEFORE_READY.has(leaf))
      r = SYS_NOT_READY_RESULT;
    if (r === null) {
      this.lockedTdr = Number.NaN;
      try {
        r = body(this, tdr, a, b, c, d);
      } catch (e) {
        if (!(e instanceof SeamError)) throw e;
        r = e.result;
      }
    }
    if (r !== SUCCESS && r.status !== TDX_SUCCESS) this.countFailure(r.status);
    log.listener?.seamcallDone(leaf, r, tdr, a, b, c, d);
    return r;
  }

  /** The TD whose TDR is `tdr`: in `tds`, and the page's PAMT type TDR; else undefined. Remembered. */
  tdOfTdr(tdr: number): Td | undefined {
    const pamt = this.pamt;
    // While recording, what the lookup reads must be read (and recorded) every time.
    if (this.fp.recording) return pamt.type(tdr) === PT_TDR ? this.tds.get(tdr) : undefined;
    const pamtSame = this.cachedTdrIsTdr
      ? this.cachedTdControlVersion === pamt.controlPageVersion
      : this.cachedTdPamtVersion === pamt.version;
    if (tdr !== this.cachedTdr || !pamtSame || this.cachedTdVersion !== this.tdsVersion) {
      this.cachedTd = this.tds.get(tdr);
      this.cachedTdr = tdr;
      this.cachedTdVersion = this.tdsVersion;
      this.cachedTdrIsTdr = pamt.type(tdr) === PT_TDR;
      this.cachedTdPamtVersion = pamt.version;
      this.cachedTdControlVersion = pamt.controlPageVersion;
    }
    return this.cachedTdrIsTdr ? this.cachedTd : undefined;
  }

  /**
   * The vCPU of `tdvpr` in the TD the PAMT says owns the page, remembered; that TD (or
   * undefined) is left in `cachedVcpuTd`.
   */
  vcpuAt(tdvpr: number): TdVcpu | undefined {
    const pamt = this.pamt;
    if (this.fp.recording) {
      this.cachedTdvpr = Number.NaN;
      this.lookUpVcpu(tdvpr);
      return this.cachedVcpu;
    }
    const pamtSame =
      this.cachedType === PT_TDVPR
        ? this.cachedVcpuControlVersion === pamt.controlPageVersion
        : this.cachedPamtVersion === pamt.version;
    if (tdvpr !== this.cachedTdvpr || !pamtSame || this.cachedVcpuVersion !== this.tdsVersion)
      this.lookUpVcpu(tdvpr);
    return this.cachedVcpu;
  }

  /** `pamt.owner(tdvpr)`, remembered with the vCPU (the TD a vCPU's calls are made for). */
  vcpuOwner(tdvpr: number): number {
    this.vcpuAt(tdvpr);
    return this.cachedOwner;
  }

  /**
   * `vcpuAt` when what it remembers may not hold: the page's PAMT type and owner again, and the
   * TD and its vCPU again only if the page, its owner or the TDs changed (every PAGE.AUG changes
   * the PAMT, seldom this page).
   */
  private lookUpVcpu(tdvpr: number): void {
    const owner = this.pamt.owner(tdvpr);
    if (
      tdvpr !== this.cachedTdvpr ||
      owner !== this.cachedOwner ||
      this.cachedVcpuVersion !== this.tdsVersion
    ) {
      const td = this.tds.get(owner);
      this.cachedVcpuTd = td;
      this.cachedVcpu = td?.vcpus.get(tdvpr);
      this.cachedTdvpr = tdvpr;
      this.cachedOwner = owner;
      this.cachedVcpuVersion = this.tdsVersion;
    }
    this.cachedType = this.pamt.type(tdvpr);
    this.cachedPamtVersion = this.pamt.version;
    this.cachedVcpuControlVersion = this.pamt.controlPageVersion;
  }

  private countFailure(status: bigint): void {
    if (isBusy(status)) this.busyCount++;
    if (!isOk(status))
      this.errorCounts[statusName(status)] = (this.errorCounts[statusName(status)] ?? 0) + 1;
  }

  /** The TD of a TDVPR page, with the vCPU in `foundVcpu`. */
  tdOfVcpu(tdvpr: number): Td {
    const v = this.vcpuAt(tdvpr);
    check(this.cachedType === PT_TDVPR, TDX_PAGE_METADATA_INCORRECT, OPERAND_RCX);
    check(v !== undefined, TDX_PAGE_METADATA_INCORRECT, OPERAND_RCX);
    this.foundVcpu = v;
    return this.cachedVcpuTd!;
  }

  /**
   * Check 8: walk the S-EPT down to `level`. The walk goes only through NL_MAPPED entries: a FREE
   * or blocked entry, or a leaf, above the level ends it with EPT_WALK_FAILED (RCX/RDX say where).
   * The entry found is at `walkOff` in `walkTable`.
   */
  walk(td: Td, gfn: number, level: number): void {
    if (!this.tryWalk(td, gfn, level)) {
      const lo = this.walkStopLo;
      const hi = this.walkStopHi;
      failOnEntry(TDX_EPT_WALK_FAILED + OPERAND_RCX, lo, hi, this.walkStopLevel);
    }
  }

  /**
   * `walk` for a caller that handles the stop itself (the guest's ACCEPT, which exits to the
   * VMM there): false if the walk stopped above `level`, with the entry it stopped at in
   * `walkStopLo`/`walkStopHi` and its TDX level and state in `walkStopLevel`/`walkStopState`.
   * No status is built and nothing is thrown: a guest accepting pages before the VMM maps them
   * stops here on every first try.
   */
  tryWalk(td: Td, gfn: number, level: number): boolean {
    const remembered = level === 0 ? this.rememberedLeafTable(td, gfn) : undefined;
    if (remembered !== undefined) {
      this.walkTable = remembered;
      this.walkOff = 2 * septIndex(gfn, 0);
      return true;
    }
    let table = this.sept.get(td.septRoot)!;
    for (let lvl = td.rootLevel; lvl > level; lvl--) {
      const off = 2 * septIndex(gfn, lvl);
      const lo = this.sept.entryLo(table, off);
      const hi = this.sept.entryHi(table, off);
      const st = septState(lo, hi, lvl);
      if (st !== SEPT_NL_MAPPED) {
        this.walkStopLo = lo;
        this.walkStopHi = hi;
        this.walkStopLevel = lvl;
        this.walkStopState = st;
        return false;
      }
      table = this.sept.get(septPfn(lo, hi))!;
    }
    if (level === 0) this.rememberLeafTable(td, gfn, table);
    this.walkTable = table;
    this.walkOff = 2 * septIndex(gfn, level);
    return true;
  }

  /** Where the last `tryWalk` that failed stopped (see there). */
  walkStopLo = 0;
  walkStopHi = 0;
  walkStopLevel = 0;
  walkStopState = 0;

  /**
   * The 4K table a walk for `gfn` reached last time, if nothing it went through has changed
   * since (same S-EPT version and root, same 2 MiB of GFNs), else undefined. A fault walks the
   * S-EPT three times for the same GFN (the guest's access, AUG, the access again) and the next
   * fault goes to the same table: the hardware's paging-structure cache, in short.
   */
  rememberedLeafTable(td: Td, gfn: number): SeptPage | undefined {
    // While recording, the walk must read (and record) the entries above the table.
    if (this.fp.recording) return undefined;
    if (
      this.leafVersion !== this.sept.version ||
      this.leafRoot !== td.septRoot ||
      this.leafBlock !== Math.floor(gfn / 512)
    )
      return undefined;
    return this.leafTable;
  }

  rememberLeafTable(td: Td, gfn: number, table: SeptPage): void {
    this.leafVersion = this.sept.version;
    this.leafRoot = td.septRoot;
    // Divided and floored, not `gfn % 512`: a GFN is a double to the compiler, and a double's
    // remainder is a call to fmod, on every guest access.
    this.leafBlock = Math.floor(gfn / 512);
    this.leafTable = table;
  }
}
