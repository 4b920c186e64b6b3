/**
 * `tdx_sept_remove_private_spte` while the TD has its HKID, as a step machine (the core's
 * `StepMachine`): one SEAMCALL per atomic point, because each is one on the real machine and a
 * vCPU on another CPU runs between them.
 *
 * 1. `tdx_sept_zap_private_spte`: TDH.MEM.RANGE.BLOCK. From here a new translation of the page
 *    fails: an access takes an EPT violation, TDG.MEM.PAGE.ACCEPT exits, and the fault waits for
 *    `mmu_lock`. On hardware a vCPU that has the translation in its TLB may go on using it
 *    until the kick below makes it exit; the model has no TLB, so its vCPUs see the BLOCK at
 *    once (an interleaving the hardware also allows).
 * 2. `tdx_track`: TDH.MEM.TRACK starts a new TLB epoch, then
 *    `kvm_make_all_cpus_request(KVM_REQ_OUTSIDE_GUEST_MODE)` kicks every vCPU out of the TD so
 *    none still runs in the epoch the page was blocked in. The kick follows the TRACK with
 *    nothing of the zapping thread's between them, and the model's kick is synchronous: one
 *    point. A vCPU may re-enter right after, in the new epoch.
 * 3. `tdx_sept_drop_private_spte`: TDH.MEM.PAGE.REMOVE, which checks that tracking is done,
 * 4. and TDH.PHYMEM.PAGE.WBINVD of the page under the TD's key (then `tdx_clear_page`, which
 *    only the host sees). A 2 MiB page is written back 4K by 4K, 512 calls, as the huge-page
 *    series' `tdh_phymem_page_wbinvd_hkid` does for a folio; the model makes them one point:
 *    the page is out of the S-EPT and its frames are reached by no one else until KVM frees them.
 *
 * Splitting a 2 MiB leaf (`tdx_sept_split_private_spte`, the TDX huge-page series) is the same
 * machine with DEMOTE in place of REMOVE and nothing after it: BLOCK at 2M, TRACK and the kick,
 * then TDH.MEM.PAGE.DEMOTE with the new S-EPT page, which leaves 512 4K leaves in the state the
 * 2M one had before the BLOCK (no UNBLOCK is needed). The series retries BLOCK and DEMOTE once
 * with the vCPUs held out (`tdh_do_no_vcpus`), as the removal does; any other failure is a
 * KVM_BUG_ON.
 *
 * Merging a table back into a 2 MiB leaf (`promoteExternalSpt`) is the same machine again: BLOCK
 * of the level-1 entry (NL_BLOCKED), TRACK and the kick, TDH.MEM.PAGE.PROMOTE; a refusal
 * (EPT_INVALID_PROMOTE_CONDITIONS) is undone by TDH.MEM.RANGE.UNBLOCK; the S-EPT page PROMOTE frees is
 * written back (WBINVD under the TD's key) before KVM gives it back. No posted KVM series calls
 * PROMOTE (the huge-page series disallows merging in mirror roots); this is the model's huge-page
 * recovery for TDX, the `recover` host op with `tdxHugePages`.
 *
 * BLOCK, TRACK and REMOVE are retried once on TDX_OPERAND_BUSY between
 * `tdx_no_vcpus_enter_start` and `tdx_no_vcpus_enter_stop` (later kernels fold these into
 * `tdh_do_no_vcpus`): every vCPU is kicked out and kept out while the call is retried. With the vCPUs held outside nothing can contend
 * for the retry, so the retry stays in the point of the first try.
 *
 * A page mapped in the mirror before finalize but never PAGE.ADDed has nothing in the S-EPT:
 * BLOCK finds the entry FREE and the removal ends there, uncounting the premap. Before finalize
 * there is no TRACK (the TD has never run), so its point is skipped.
 */
import { STEP_YIELD, type Clock, type StepMachine } from "@tdpemu/backend-sdk";
import type { SeamModule, SeamResult } from "./seam/seam-module.js";
import {
  TDX_EPT_ENTRY_STATE_INCORRECT,
  TDX_EPT_INVALID_PROMOTE_CONDITIONS,
  isOk,
  statusClass,
  statusName,
} from "./seam/status.js";
import { SEPT_FREE } from "./seam/sept.js";

/** What the removal needs of KVM's side of the TD (`TdxBackend`). */
export interface RemovalHost {
  readonly module: SeamModule;
  readonly tdr: number;
  readonly hkid: number;
  nrPremapped: number;
  /** `tdh_do_no_vcpus`: the call, and on BUSY a kick of every vCPU and one retry. */
  noVcpusRetry(f: () => SeamResult): SeamResult;
  /** Whether `tdx_track` has anything to do (the TD is runnable and keyed). */
  trackNeeded(): boolean;
  /** `tdx_track`: TDH.MEM.TRACK and the kick of every vCPU. */
  track(): void;
  /** `KVM_BUG_ON` on a failed SEAMCALL: throws. */
  bug(name: string, r: SeamResult): never;
  /** The page stays with the module: leaked on purpose, counted. */
  leak(pfn: number, cause: string): void;
}

const S_BLOCK = 0;
const S_TRACK = 1;
const S_REMOVE = 2;
const S_WBINVD = 3;
const S_DEMOTE = 4;
const S_PROMOTE = 5;
const S_UNBLOCK = 6;

const MODE_REMOVE = 0;
const MODE_SPLIT = 1;
const MODE_PROMOTE = 2;

/** The machine's result for a PROMOTE the module refused and KVM undid (EAGAIN's magnitude). */
export const PROMOTE_REFUSED = 11;

/**
 * A change of one S-EPT entry under the write `mmu_lock` that takes the entry out of the
 * guest's reach first: BLOCK, TRACK and the kick, then REMOVE (and WBINVD), DEMOTE, or PROMOTE.
 */
export class SeptChange implements StepMachine {
  private state = S_BLOCK;
  private mode = MODE_REMOVE;
  private gpa = 0;
  private pfn = 0;
  /** The entry's TDX level: 0 for 4K, 1 for 2M. */
  private tdxLevel = 0;
  /** A split: the new S-EPT page DEMOTE takes; a merge: the S-EPT page PROMOTE frees. */
  private newSept = -1;
  /** The pages WBINVD writes back at the end, from `pfn`: the removed page's 1 or 512, or the merged-away S-EPT page. */
  private wbPages = 1;
  private readonly block = () =>
    this.host.module.memRangeBlock(this.gpa, this.tdxLevel, this.host.tdr);
  private readonly remove = () =>
    this.host.module.memPageRemove(this.gpa, this.tdxLevel, this.host.tdr);
  private readonly demote = () =>
    this.host.module.memPageDemote(this.gpa, this.tdxLevel, this.host.tdr, this.newSept);
  private readonly unblock = () =>
    this.host.module.memRangeUnblock(this.gpa, this.tdxLevel, this.host.tdr);
  private readonly promote = () =>
    this.host.module.memPagePromote(this.gpa, this.tdxLevel, this.host.tdr);

  constructor(
    private readonly host: RemovalHost,
    private readonly clock: Clock,
  ) {}

  /**
   * One machine per TD, reused: removals and splits run under the write `mmu_lock`, one at a
   * time. The removal of the leaf at `gfn` of mirror level `level` (1 or 2) mapping `pfn`.
   */
  begin(gfn: number, pfn: number, level = 1): this {
    this.state = S_BLOCK;
    this.gpa = gfn * 4096;
    this.pfn = pfn;
    this.tdxLevel = level - 1;
    this.newSept = -1;
    this.wbPages = level === 1 ? 1 : 512;
    this.mode = MODE_REMOVE;
    return this;
  }

  /** The split of the 2 MiB leaf at `gfn` into the new S-EPT page `newSept`. */
  beginSplit(gfn: number, newSept: number): this {
    this.begin(gfn, -1, 2);
    this.newSept = newSept;
    this.mode = MODE_SPLIT;
    return this;
  }

  /**
   * The merge of the S-EPT table under the level-1 entry at `gfn` into one 2 MiB leaf: the
   * entry is blocked (NL_BLOCKED) and tracked, then PROMOTE. A refusal
   * (EPT_INVALID_PROMOTE_CONDITIONS: the 4K leaves are not all MAPPED, or all PENDING, over
   * contiguous pages) is undone by UNBLOCK, and the machine ends with `PROMOTE_REFUSED`.
   */
  beginPromote(gfn: number, septPage: number): this {
    this.begin(gfn, -1, 2);
    this.newSept = septPage;
    this.mode = MODE_PROMOTE;
    return this;
  }

  step(): number {
    const host = this.host;
    switch (this.state) {
      case S_BLOCK: {
        const blocked = host.noVcpusRetry(this.block);
        if (!isOk(blocked.status)) {
          if (
            this.mode === MODE_REMOVE &&
            statusClass(blocked.status) === TDX_EPT_ENTRY_STATE_INCORRECT &&
            host.nrPremapped > 0 &&
            blocked.levelState !== undefined &&
            blocked.levelState >> 8n === BigInt(SEPT_FREE)
          ) {
            host.nrPremapped--;
            return 0;
          }
          return host.bug("TDH.MEM.RANGE.BLOCK", blocked);
        }
        this.state = host.trackNeeded() ? S_TRACK : this.afterTrack();
        return this.next();
      }
      case S_TRACK:
        host.track();
        this.state = this.afterTrack();
        return this.next();
      case S_DEMOTE: {
        const demoted = host.noVcpusRetry(this.demote);
        if (!isOk(demoted.status)) return host.bug("TDH.MEM.PAGE.DEMOTE", demoted);
        return 0;
      }
      case S_PROMOTE: {
        const promoted = host.noVcpusRetry(this.promote);
        if (isOk(promoted.status)) {
          // The freed S-EPT page is the one KVM linked there, and was written under the TD's key:
          // written back before the host has it again, as a removed page is.
          if (promoted.pfn !== this.newSept)
            return host.bug("TDH.MEM.PAGE.PROMOTE returned another S-EPT page", promoted);
          this.pfn = this.newSept;
          this.wbPages = 1;
          this.state = S_WBINVD;
          return this.next();
        }
        if (statusClass(promoted.status) !== TDX_EPT_INVALID_PROMOTE_CONDITIONS)
          return host.bug("TDH.MEM.PAGE.PROMOTE", promoted);
        this.state = S_UNBLOCK;
        return this.next();
      }
      case S_UNBLOCK: {
        const unblocked = host.noVcpusRetry(this.unblock);
        if (!isOk(unblocked.status)) return host.bug("TDH.MEM.RANGE.UNBLOCK", unblocked);
        return PROMOTE_REFUSED;
      }
      case S_REMOVE: {
        const removed = host.noVcpusRetry(this.remove);
        if (!isOk(removed.status)) return host.bug("TDH.MEM.PAGE.REMOVE", removed);
        this.state = S_WBINVD;
        return this.next();
      }
      case S_WBINVD: {
        for (let i = 0; i < this.wbPages; i++) {
          const wb = host.module.phymemPageWbinvd(this.pfn + i, host.hkid, host.tdr);
          if (!isOk(wb.status)) {
            host.leak(this.pfn + i, `TDH.PHYMEM.PAGE.WBINVD failed: ${statusName(wb.status)}`);
            return host.bug("TDH.PHYMEM.PAGE.WBINVD", wb);
          }
        }
        return 0;
      }
      default:
        throw new Error(`SeptChange: bad state ${this.state}`);
    }
  }

  private afterTrack(): number {
    return this.mode === MODE_REMOVE ? S_REMOVE : this.mode === MODE_SPLIT ? S_DEMOTE : S_PROMOTE;
  }

  /** A SEAMCALL is atomic: a step that threw holds nothing. */
  abort(): void {}

  private next(): number {
    this.clock.step++;
    return STEP_YIELD;
  }
}
