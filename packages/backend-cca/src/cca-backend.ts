/**
 * KVM's side of an Arm CCA realm, as the arm64 realm support ("KVM: arm64: Support for Arm CCA
 * in KVM", v10 and later; `arch/arm64/kvm/rme.c`) drives the RMM, fitted to the TDP MMU's hooks:
 * private faults go to a mirror root whose tables become RTTs (RMI_RTT_CREATE) and whose leaves
 * become data granules (RMI_GRANULE_DELEGATE, RMI_DATA_CREATE_UNKNOWN); the direct root's leaves
 * are the realm's unprotected mappings (RMI_RTT_MAP_UNPROTECTED). The realm's own view of its
 * memory, the RIPAS, changes only when it asks (RSI_IPA_STATE_SET, the REC's exit, completed by
 * KVM with RMI_RTT_SET_RIPAS before the REC runs again).
 *
 * Where the model departs from KVM for arm64:
 * - KVM creates missing RTTs when a command fails with RMI_ERROR_RTT (`realm_create_rtt_levels`);
 *   for the protected half the mirror links its tables first (top-down, as KVM's retry ends up
 *   doing), so DATA_CREATE_UNKNOWN never fails for want of a table: the failing first attempt is
 *   not made. RTTs KVM makes itself (for RTT_INIT_RIPAS, RTT_SET_RIPAS and unprotected mappings)
 *   are made as KVM makes them, and a mirror table made later at their place adopts them.
 * - KVM v10 takes no `mmu_lock` on a private fault and relies on the RMM's checks; the x86 TDP
 *   MMU this model runs takes it for read and freezes the entry (the later series' `gmem_abort`
 *   takes the read lock too).
 * - RTTs of a live realm are kept when the mirror frees its table (KVM frees RTTs only by folding
 *   or at teardown); folding is not done.
 * - The realm asks for a RIPAS change page by page, as the core's guest program converts (Linux
 *   asks for a range at once), and KVM's exit to the VMM (KVM_EXIT_MEMORY_FAULT) is the core's
 *   conversion itself.
 * - Every REC is made runnable. `kvm_create_rec` sets REC_PARAMS_FLAG_RUNNABLE for vCPU 0 only;
 *   a secondary runs once the realm's PSCI CPU_ON has reached KVM (RMI_PSCI_COMPLETE), and the
 *   scenario format has no PSCI for the guest: its vCPUs all run from their first op, as if
 *   vCPU 0 had started them before.
 * - An unprotected mapping is made at the direct leaf's level, a 2 MiB shared leaf as one block.
 *   `realm_map_non_secure` maps 4K pages only (its "TODO: Support block mappings"): 512 calls
 *   where the model makes one, so `compare` counts a huge shared page's RMI calls low.
 * - Teardown empties each RTT bottom-up (DATA_DESTROY, UNMAP_UNPROTECTED), then destroys it.
 *   KVM unmaps the whole range first (`kvm_realm_unmap_range`), then `realm_tear_down_rtt_level`
 *   tries RTT_DESTROY top-down and descends on each RMI_ERROR_RTT: the same granules come back,
 *   without those failed calls.
 * - A 52-bit IPA space starts at level -1 with one RTT. KVM starts it at level 0 with 16
 *   concatenated RTTs (`get_start_level`), and TF-RMM takes more than 48 bits only with
 *   RMI_REALM_FLAGS_LPA2: the model has neither (every shipped CCA scenario is 48-bit).
 */
import {
  ACCESS_FAULT,
  ACCESS_FAULT_PRESENT,
  ACCESS_GUEST_EXCEPTION,
  ACCESS_OK,
  ControlPages,
  DIRECT_NEW_LEAF,
  DIRECT_NEW_WRITABLE,
  DIRECT_OLD_LEAF,
  EBUSY,
  EINVAL,
  EIO,
  GUEST_PAGE_ACCEPTED,
  GUEST_PAGE_OWNED,
  IdAllocator,
  KvmBug,
  inject,
  injectable,
  resourceId,
  sharedGfnBit,
  type Backend,
  type BackendStats,
  type BackendVm,
  type FaultSpec,
  type Level,
  type MirrorView,
  type RawCallArgs,
  type WalkedSpte,
} from "@tdpemu/backend-sdk";
import { CCA_VMIDS, RMM } from "./cca-platform.js";
import { checkCcaInvariants } from "./cca-invariants.js";
import {
  EXIT_ABORT,
  EXIT_DESTROYED,
  EXIT_RIPAS,
  GPF,
  I_REALM_CREATE,
  I_REC_AUX_COUNT,
  I_REC_CREATE,
  RSI_IPA_STATE_SET,
  RmiCalls,
  SEA,
} from "./rmi-calls.js";
import { rawRmiCall } from "./raw-calls.js";
import { GRANULE_NS } from "./rmm/granules.js";
import { REALM_ACTIVE, REALM_NEW, REALM_STATE_NAMES, type Realm, type Rec } from "./rmm/realm.js";
import {
  psciSystemOff,
  REALM_ACCESS_DESTROYED,
  REALM_ACCESS_EXIT,
  REALM_ACCESS_EXIT_PERMISSION,
  REALM_ACCESS_GPF,
  REALM_ACCESS_OK,
  RSI_ACCEPT,
  RSI_CHANGE_DESTROYED,
  realmAccess,
  recExit,
  rsiIpaStateSet,
  type RipasResponse,
} from "./rmm/realm-side.js";
import {
  RMI_ERROR_RTT,
  RMI_SUCCESS,
  formatReturn,
  returnIndex,
  returnStatus,
} from "./rmm/rmi-status.js";
import type { Rmm } from "./rmm/rmm.js";
import {
  MEMATTR_FWB_NORMAL_WB,
  S2AP_R,
  S2AP_W,
  walk,
  type WalkResult,
} from "./rmm/rtt-commands.js";
import {
  RIPAS_EMPTY,
  RIPAS_NAMES,
  RIPAS_RAM,
  RTT_MIN_BLOCK_LEVEL,
  RTT_PAGE_LEVEL,
  RTTE_ASSIGNED,
  RTTE_ASSIGNED_NS,
  RTTE_STATE_NAMES,
  RTTE_TABLE,
  RTTE_UNASSIGNED,
  levelSize,
} from "./rmm/rtt.js";

const w: WalkResult = { slot: 0, entry: 0, level: 0 };

@injectable()
export class CcaBackend implements Backend {
  readonly name: string = "cca";
  readonly description =
    "Arm CCA realms: mirror page tables propagated to a model of the RMM (granules, RTTs, RIPAS)";
  readonly usesMirrorRoot = true;
  readonly hasPrivateMemory = true;
  /**
   * The RMM records its own state per granule, per RTT, per realm and per REC
   * (`rmm/rmm-state.ts`); KVM's side here records its resources: 0 the control pages, 1
   * `premapped` and the teardown flag, 2 the unprotected mappings' root counts, 3 + v vCPU v's
   * mode, and with faults injected the count of each command (which call is the nth).
   */
  readonly recordsOwnAccesses = true;
  /**
   * The checks (`cca-invariants.ts`) compare the stage-2 tables with the RMM's RTTs and granules:
   * they read the tables through the view and the RMM's state, never the attributes or a
   * guest_memfd folio.
   */
  readonly checkIgnoresGuestMemory = true;

  readonly rmi: RmiCalls;
  /** The RD's and the starting RTT's physical addresses. */
  rd = -1;
  root = -1;
  realm!: Realm;
  /** Each vCPU's REC (physical address) and the RMM's record of it. */
  readonly recPas: number[] = [];
  readonly recs: Rec[] = [];
  /** KVM's view: the vCPU's REC runs (from REC_ENTER until its exit). */
  private readonly inGuest: boolean[] = [];
  private pages!: ControlPages;
  /** Private pages the mirror mapped before activation and not yet given their RMI_DATA_CREATE (populate). */
  private premapped = 0;
  /** The VM is being destroyed: RTTs the mirror frees are destroyed too (`tearingDown`). */
  private tearing = false;
  private vm!: BackendVm;
  /** 2^(IPA bits - 1): the unprotected half starts here. */
  private unprotected = 0;
  private readonly ripasDone: RipasResponse = { next: 0, response: RSI_ACCEPT };
  /** Unprotected mappings by GFN * 4 + KVM level: how many direct roots hold each. */
  private readonly nsRoots = new Map<number, number>();
  private readonly pfnOut = new Float64Array(1);

  private space = 0;

  constructor(
    @inject(RMM) readonly rmm: Rmm,
    @inject(CCA_VMIDS) private readonly vmids: IdAllocator,
  ) {
    this.rmi = new RmiCalls(rmm);
  }

  // KVM's own state, each piece read and written through these for the explorer.

  private kvmId(i: number): number {
    return resourceId(this.space, i);
  }

  private get premappedPages(): number {
    this.vm.clock.fp?.read(this.kvmId(1));
    return this.premapped;
  }

  private set premappedPages(n: number) {
    this.vm.clock.touch(this.kvmId(1));
    this.premapped = n;
  }

  private get tearingDown(): boolean {
    this.vm.clock.fp?.read(this.kvmId(1));
    return this.tearing;
  }

  private set tearingDown(on: boolean) {
    this.vm.clock.touch(this.kvmId(1));
    this.tearing = on;
  }

  /** How many direct roots hold the unprotected mapping `key` (0: none). */
  private rootsHolding(key: number): number {
    this.vm.clock.fp?.read(this.kvmId(2));
    return this.nsRoots.get(key) ?? 0;
  }

  private setRootsHolding(key: number, n: number): void {
    this.vm.clock.touch(this.kvmId(2));
    if (n > 0) this.nsRoots.set(key, n);
    else this.nsRoots.delete(key);
  }

  private inRealm(v: number): boolean {
    this.vm.clock.fp?.read(this.kvmId(3 + v));
    return this.inGuest[v]!;
  }

  private setInRealm(v: number, on: boolean): void {
    this.vm.clock.touch(this.kvmId(3 + v));
    this.inGuest[v] = on;
  }

  // ------------------------------------------------------------------ the realm's life

  /**
   * KVM_CREATE_VM and the VMM's set-up, in `kvm_create_realm`'s order: the RD and the starting
   * RTT delegated, RMI_REALM_CREATE, RMI_REC_AUX_COUNT, then a REC per vCPU with its auxiliary
   * granules (KVM_ARM_VCPU_REC), then the VMM's KVM_CAP_ARM_RME_INIT_RIPAS_REALM over all guest
   * RAM (RMI_RTT_INIT_RIPAS, with the tables it needs), as kvmtool does before it populates.
   */
  init(vm: BackendVm): void {
    this.vm = vm;
    this.rmm.attach(vm.clock);
    this.space = vm.clock.newResourceSpace();
    this.rmi.attach(vm, this.space);
    this.pages = new ControlPages(
      vm.host.frames,
      vm.owner,
      vm.clock,
      this.kvmId(0),
      "CCA granules",
    );
    const ipaBits = vm.config.gpaw;
    this.unprotected = 2 ** (ipaBits - 1);
    this.rd = this.mustDelegate();
    this.root = this.mustDelegate();
    const params = {
      ipaBits,
      rttLevelStart: 4 - Math.ceil((ipaBits - 12) / 9),
      rttBase: this.root,
      vmid: this.vmids.alloc(),
    };
    this.must(
      "RMI_REALM_CREATE",
      this.rmi.counted(I_REALM_CREATE, this.rmm.realmCreate(this.rd, params), this.rd),
    );
    this.realm = this.rmm.realmAt(this.rd)!;
    this.must(
      "RMI_REC_AUX_COUNT",
      this.rmi.counted(I_REC_AUX_COUNT, this.rmm.recAuxCount(this.rd), this.rd),
    );
    const numAux = this.rmm.x1;
    for (let i = 0; i < vm.config.vcpus; i++) {
      const rec = this.mustDelegate();
      const aux: number[] = [];
      for (let a = 0; a < numAux; a++) aux.push(this.mustDelegate());
      this.must(
        "RMI_REC_CREATE",
        this.rmi.counted(I_REC_CREATE, this.rmm.recCreate(this.rd, rec, i, aux), rec),
      );
      this.recPas.push(rec);
      this.recs.push(this.rmm.recAt(rec)!);
      this.inGuest.push(false);
    }
    this.initRipas(0, vm.config.memory);
    this.rmi.startCounting();
  }

  gfnDirectBits(vm: BackendVm): number {
    return sharedGfnBit(vm.config.gpaw);
  }

  classifyFault(_vm: BackendVm, _gpa: number, privateAccess: boolean): boolean {
    return privateAccess;
  }

  /** `private_memslot_fault` maps PAGE_SIZE only (a FIXME in the series): private memory is 4K. */
  maxMappingLevel(): Level {
    return 1;
  }

  /** KVM_CAP_ARM_RME_POPULATE_REALM: only while the realm is NEW. */
  canPopulate(): number {
    if (this.rmm.realmState(this.realm) === REALM_NEW) return 0;
    this.rmi.lastFailure = "KVM_CAP_ARM_RME_POPULATE_REALM: the realm is not NEW";
    return EINVAL;
  }

  /**
   * `kvm_populate_realm` for one page the mirror premapped: the guest_memfd page delegated, then
   * RMI_DATA_CREATE from the VMM's source page, measured unless `measure: false`. A failure
   * undelegates the page and is the ioctl's -EIO. (KVM calls DATA_CREATE first and creates the
   * RTTs it lacks on RMI_ERROR_RTT; here the mirror's premap made them.)
   */
  populate(_vm: BackendVm, gfn: number, pfn: number, measure: boolean): number {
    if (this.rmi.granuleDelegate(pfn * 4096) !== RMI_SUCCESS) return EIO;
    const src = this.pages.alloc();
    const x0 = this.rmi.dataCreate(this.rd, pfn * 4096, gfn * 4096, src * 4096, measure ? 1 : 0);
    this.pages.release(src);
    if (x0 !== RMI_SUCCESS) {
      this.giveBackGuestPage(pfn);
      return EIO;
    }
    if (this.premappedPages === 0)
      throw new KvmBug(`populate of gfn 0x${gfn.toString(16)} with nothing premapped`);
    this.premappedPages--;
    return 0;
  }

  /** KVM_CAP_ARM_RME_ACTIVATE_REALM (v10; later versions activate at the first KVM_RUN, as `enter` does). */
  finalize(): number {
    return this.activate();
  }

  private activate(): number {
    if (this.rmm.realmState(this.realm) !== REALM_NEW) return 0;
    if (this.premappedPages !== 0) {
      this.rmi.lastFailure = `activation: ${this.premapped} premapped page(s) never got their RMI_DATA_CREATE`;
      return EINVAL;
    }
    return this.rmi.realmActivate(this.rd) === RMI_SUCCESS ? 0 : EIO;
  }

  /** The vCPUs stop (the VMM's threads leave KVM_RUN): no REC runs while the realm is destroyed. */
  teardown(): void {
    this.tearingDown = true;
    for (let v = 0; v < this.recs.length; v++) this.exit(v);
  }

  /**
   * After the roots are gone: `kvm_realm_destroy_rtts` for the RTTs KVM made itself (bottom-up,
   * each undelegated), `kvm_destroy_rec` for each vCPU, then `kvm_destroy_realm`: REALM_DESTROY,
   * the RD and the starting RTT undelegated. A page the RMM will not give back is leaked, as
   * KVM leaks it after its WARN.
   */
  destroy(vm: BackendVm): void {
    const r = this.realm;
    const size = levelSize(r.startLevel);
    for (let i = 0; i < 512; i++) {
      const e = r.rootSlot * 512 + i;
      if (this.rmm.rtts.state(e) !== RTTE_TABLE) continue;
      const ipa = i * size;
      if (this.destroyTable(ipa, r.startLevel + 1)) this.giveBack(this.rmm.x1, "RTT");
      else vm.leak(`RTT at ipa 0x${ipa.toString(16)} kept: ${this.rmi.lastFailure}`);
    }
    for (let v = 0; v < this.recPas.length; v++) {
      const rec = this.recPas[v]!;
      if (this.rmi.recDestroy(rec) !== RMI_SUCCESS) {
        for (let i = 0; i < 1 + this.recs[v]!.aux.length; i++)
          vm.leak(`REC of vCPU ${v} kept: ${this.rmi.lastFailure}`);
        continue;
      }
      for (const a of this.recs[v]!.aux) this.giveBack(a * 4096, "REC aux");
      this.giveBack(rec, "REC");
    }
    if (this.rmi.realmDestroy(this.rd) !== RMI_SUCCESS) {
      vm.leak(`RD kept: ${this.rmi.lastFailure}`);
      vm.leak(`starting RTT kept: ${this.rmi.lastFailure}`);
    } else {
      this.giveBack(this.rd, "RD");
      this.giveBack(this.root, "starting RTT");
    }
    this.pages.releaseBlocks();
  }

  // ------------------------------------------------------------------ the mirror's hooks

  allocExternalSpt(): number {
    return this.pages.alloc();
  }

  /** A table's page comes back: to the host if the RMM let it go, else the RTT stays KVM's (kept, or leaked). */
  releaseExternalSpt(_vm: BackendVm, pfn: number): void {
    if (this.rmm.granuleState(pfn) === GRANULE_NS) this.pages.release(pfn);
  }

  /** An RTT KVM made itself (INIT_RIPAS, SET_RIPAS) where the mirror now makes its table: the mirror takes it. */
  adoptExternalSpt(_vm: BackendVm, gfn: number, level: Level): number {
    walk(this.rmm, this.realm, gfn * 4096, 4 - level, w);
    if (w.level !== 4 - level || this.rmm.rtts.state(w.entry) !== RTTE_TABLE) return -1;
    return this.rmm.rtts.addr(w.entry);
  }

  /**
   * A mirror table at KVM level `level - 1` becomes present: its page delegated, then
   * RMI_RTT_CREATE of an RTT at level 5 - `level` (KVM level 1 is RTT level 3). An RTT already
   * there (KVM made one since the mirror asked to adopt) is RMI_ERROR_RTT at the parent's level,
   * which KVM takes as "someone made it": the page goes back and the fault retries, adopting it.
   */
  linkExternalSpt(_vm: BackendVm, gfn: number, level: Level, externalSpt: number): number {
    const pa = externalSpt * 4096;
    if (this.rmi.granuleDelegate(pa) !== RMI_SUCCESS)
      return this.bug(`RMI_GRANULE_DELEGATE of an RTT page failed: ${this.rmi.lastFailure}`);
    const l = 5 - level;
    const x0 = this.rmi.rttCreate(this.rd, pa, gfn * 4096, l);
    if (x0 === RMI_SUCCESS) return 0;
    if (this.rmi.granuleUndelegate(pa) !== RMI_SUCCESS) this.pages.markLeaked(externalSpt);
    if (returnStatus(x0) === RMI_ERROR_RTT && returnIndex(x0) === l - 1) return EBUSY;
    return this.bug(
      `RMI_RTT_CREATE of ipa 0x${(gfn * 4096).toString(16)} level ${l} failed: ${formatReturn(x0)}`,
    );
  }

  /**
   * A private 4K leaf becomes present: `realm_map_protected`'s RMI_GRANULE_DELEGATE of the
   * guest_memfd page and RMI_DATA_CREATE_UNKNOWN (one atomic point for both: no other task can
   * name this fault's own page between them). Before activation the page is only premapped,
   * for `populate`'s RMI_DATA_CREATE. A missing RTT is a KVM bug here: the mirror's table above
   * is present, so its RTT must be (the 2M/4K race, when the mirror entry was published before
   * its RTT_CREATE ran).
   */
  setExternalSpte(_vm: BackendVm, gfn: number, level: Level, pfn: number): number {
    if (level !== 1)
      return this.bug(`CCA maps private memory at 4K only, asked for level ${level}`);
    if (this.rmm.realmState(this.realm) === REALM_NEW) {
      this.premappedPages++;
      return 0;
    }
    const pa = pfn * 4096;
    if (this.rmi.granuleDelegate(pa) !== RMI_SUCCESS) return EBUSY;
    const x0 = this.rmi.dataCreateUnknown(this.rd, pa, gfn * 4096);
    if (x0 === RMI_SUCCESS) return 0;
    this.giveBackGuestPage(pfn);
    return this.bug(
      `RMI_DATA_CREATE_UNKNOWN of ipa 0x${(gfn * 4096).toString(16)} failed: ${formatReturn(x0)}`,
    );
  }

  /**
   * A private leaf is zapped (`realm_destroy_private_granule`): RMI_DATA_DESTROY, whose X1 must
   * be the page, then the page undelegated. The RMM invalidates the realm's TLBs itself. A
   * page the RMM keeps is leaked, as KVM does (`get_page` and a WARN).
   */
  removeExternalSpte(_vm: BackendVm, gfn: number, level: Level, pfn: number): number {
    if (level !== 1)
      return this.bug(`CCA removes private memory at 4K only, asked for level ${level}`);
    const x0 = this.rmi.dataDestroy(this.rd, gfn * 4096);
    if (x0 !== RMI_SUCCESS)
      return this.bug(
        `RMI_DATA_DESTROY of ipa 0x${(gfn * 4096).toString(16)} failed: ${formatReturn(x0)}`,
      );
    if (this.rmm.x1 !== pfn * 4096)
      return this.bug(
        `RMI_DATA_DESTROY of ipa 0x${(gfn * 4096).toString(16)} gave pa 0x${this.rmm.x1.toString(16)}, the mirror had pfn 0x${pfn.toString(16)}`,
      );
    this.giveBackGuestPage(pfn);
    return 0;
  }

  /**
   * A mirror table is freed. While the realm lives KVM keeps its RTT (a later table adopts it);
   * at teardown the RTT goes, bottom-up with any RTT KVM made below it (RMI_RTT_DESTROY), and its
   * page is undelegated. A page the RMM keeps is the core's to count as leaked.
   */
  freeExternalSpt(_vm: BackendVm, gfn: number, level: Level, externalSpt: number): number {
    if (!this.tearingDown) return 0;
    if (!this.destroyTable(gfn * 4096, 4 - level)) return EIO;
    if (this.rmi.granuleUndelegate(externalSpt * 4096) === RMI_SUCCESS) return 0;
    this.pages.markLeaked(externalSpt);
    return EIO;
  }

  lastError(): string {
    return this.rmi.lastFailure;
  }

  // ------------------------------------------------------------------ the unprotected half

  /**
   * The direct root's leaves are the realm's unprotected mappings (`realm_map_non_secure`,
   * `realm_unmap_shared_range`): RMI_RTT_MAP_UNPROTECTED at the leaf's level with normal WB
   * memory (FEAT_S2FWB), readable, writable as the direct leaf is (KVM maps realms' shared pages
   * writable; the core's leaf says so unless it write-protects for dirty logging), creating the
   * RTTs it lacks; RMI_RTT_UNMAP_UNPROTECTED when one goes. Tables of the direct root are not
   * followed: the RTTs made for them stay until teardown.
   *
   * arm64 has one stage-2 per VM, the x86 TDP MMU a direct root per role, and an invalidated
   * root lives on until its last user drops it: two roots may map the same GFN. The realm has
   * one RTT, so a mapping counts the roots that hold it (`nsRoots`): it is made by the first,
   * changed by any that maps something else there, and goes with the last.
   */
  directSpteChanged(
    _vm: BackendVm,
    gfn: number,
    level: Level,
    _oldPfn: number,
    newPfn: number,
    flags: number,
  ): void {
    const ipa = gfn * 4096 + this.unprotected;
    const l = 4 - level;
    const key = gfn * 4 + level;
    if ((flags & DIRECT_OLD_LEAF) !== 0) {
      const n = this.rootsHolding(key);
      this.setRootsHolding(key, n - 1);
      if (n <= 1) {
        const x0 = this.rmi.rttUnmapUnprotected(this.rd, ipa, l);
        // RMI_ERROR_RTT: nothing mapped there any more (its table went with a bigger mapping).
        if (x0 !== RMI_SUCCESS && returnStatus(x0) !== RMI_ERROR_RTT)
          this.bug(`RMI_RTT_UNMAP_UNPROTECTED failed: ${formatReturn(x0)}`);
      }
    }
    if ((flags & DIRECT_NEW_LEAF) !== 0) {
      const writable = (flags & DIRECT_NEW_WRITABLE) !== 0;
      const n = this.rootsHolding(key);
      this.setRootsHolding(key, n + 1);
      if (n > 0) {
        walk(this.rmm, this.realm, ipa, l, w);
        const rtts = this.rmm.rtts;
        if (
          w.level === l &&
          rtts.state(w.entry) === RTTE_ASSIGNED_NS &&
          rtts.addr(w.entry) === newPfn &&
          ((rtts.attr(w.entry) & S2AP_W) !== 0) === writable
        )
          return;
        this.rmi.rttUnmapUnprotected(this.rd, ipa, l);
      }
      this.mapUnprotected(ipa, l, newPfn, writable);
    }
  }

  private mapUnprotected(ipa: number, l: number, pfn: number, writable: boolean): void {
    const desc = pfn * 4096 + MEMATTR_FWB_NORMAL_WB + S2AP_R + (writable ? S2AP_W : 0);
    for (let tries = 0; tries < 4; tries++) {
      const x0 = this.rmi.rttMapUnprotected(this.rd, ipa, l, desc);
      if (x0 === RMI_SUCCESS) return;
      if (returnStatus(x0) !== RMI_ERROR_RTT) break;
      const at = returnIndex(x0);
      if (at < l) {
        // Tables made down to the level; an NS block above is split into its pages by them.
        if (!this.createRtts(ipa, at + 1, l)) break;
        continue;
      }
      walk(this.rmm, this.realm, ipa, l, w);
      const rtts = this.rmm.rtts;
      if (rtts.state(w.entry) === RTTE_ASSIGNED_NS) {
        // Mapped already: the same page (a block split into its pages, as a split of the direct
        // leaf's block makes them), or another that goes first.
        if (rtts.addr(w.entry) === pfn && rtts.attr(w.entry) === desc % 4096) return;
        if (this.rmi.rttUnmapUnprotected(this.rd, ipa, l) !== RMI_SUCCESS) break;
      } else if (rtts.state(w.entry) !== RTTE_TABLE || !this.destroyLevel(ipa, l)) break;
    }
    this.bug(
      `RMI_RTT_MAP_UNPROTECTED of ipa 0x${ipa.toString(16)} level ${l} failed: ${this.rmi.lastFailure}`,
    );
  }

  /** The entry at `l` is a table of smaller NS mappings where a block goes: the table is torn down first. */
  private destroyLevel(ipa: number, l: number): boolean {
    const base = ipa - (ipa % levelSize(l));
    if (!this.destroyTable(base, l + 1)) return false;
    this.giveBack(this.rmm.x1, "RTT");
    return true;
  }

  // ------------------------------------------------------------------ RTTs KVM makes and destroys

  /** `realm_create_rtt_levels`: RTTs at levels `from`..`to` over `ipa`, each page delegated first; one made meanwhile is fine. */
  private createRtts(ipa: number, from: number, to: number): boolean {
    for (let l = from; l <= to; l++) {
      const pfn = this.pages.alloc();
      if (this.rmi.granuleDelegate(pfn * 4096) !== RMI_SUCCESS) {
        this.pages.release(pfn);
        return false;
      }
      const x0 = this.rmi.rttCreate(this.rd, pfn * 4096, ipa - (ipa % levelSize(l - 1)), l);
      if (x0 === RMI_SUCCESS) continue;
      this.giveBack(pfn * 4096, "RTT");
      if (returnStatus(x0) !== RMI_ERROR_RTT || returnIndex(x0) !== l - 1) return false;
    }
    return true;
  }

  /**
   * `realm_tear_down_rtt_level` for the RTT at `level` covering `ipa`: every live entry of it
   * emptied (data destroyed and undelegated, NS mappings unmapped, tables below torn down the
   * same way and undelegated), then RMI_RTT_DESTROY; the RTT's PA is left in the RMM's X1 for
   * the caller to undelegate. KVM knows the RTTs from its own stage-2 tables; the model reads
   * the RMM's state instead of keeping a second copy.
   */
  private destroyTable(ipa: number, level: number): boolean {
    const rtts = this.rmm.rtts;
    walk(this.rmm, this.realm, ipa, level, w);
    if (w.level !== level) {
      this.rmi.lastFailure = `no RTT at ipa 0x${ipa.toString(16)} level ${level}`;
      return false;
    }
    const slot = w.slot;
    const size = levelSize(level);
    const base = ipa - (ipa % levelSize(level - 1));
    for (let i = 0; i < 512; i++) {
      const e = slot * 512 + i;
      const s = rtts.state(e);
      const a = base + i * size;
      if (s === RTTE_TABLE) {
        if (!this.destroyTable(a, level + 1)) return false;
        this.giveBack(this.rmm.x1, "RTT");
      } else if (s === RTTE_ASSIGNED) {
        if (this.rmi.dataDestroy(this.rd, a) !== RMI_SUCCESS) return false;
        this.giveBack(this.rmm.x1, "data");
      } else if (s === RTTE_ASSIGNED_NS) {
        if (this.rmi.rttUnmapUnprotected(this.rd, a, level) !== RMI_SUCCESS) return false;
      }
    }
    return this.rttDestroy(base, level);
  }

  private rttDestroy(ipa: number, level: number): boolean {
    const x0 = this.rmi.rttDestroy(this.rd, ipa - (ipa % levelSize(level - 1)), level);
    return x0 === RMI_SUCCESS;
  }

  /**
   * `ripas_change`: a RIPAS command from `base` to `top`, as far as each call gets (X1); on
   * RMI_ERROR_RTT the tables from the level it names down to the one the range fits
   * (`find_map_level`) are made and it goes on. False where it had to stop (KVM WARNs).
   */
  private ripasChange(base: number, top: number, cmd: (base: number) => number): boolean {
    while (base < top) {
      const x0 = cmd(base);
      if (x0 === RMI_SUCCESS) {
        base = this.rmm.x1;
        continue;
      }
      const at = returnIndex(x0);
      const fits = findMapLevel(base, top);
      if (returnStatus(x0) !== RMI_ERROR_RTT || at >= fits || !this.createRtts(base, at + 1, fits))
        return false;
    }
    return true;
  }

  /** KVM_CAP_ARM_RME_INIT_RIPAS_REALM: RMI_RTT_INIT_RIPAS over [base, top). */
  private initRipas(base: number, top: number): void {
    if (!this.ripasChange(base, top, (b) => this.rmi.rttInitRipas(this.rd, b, top)))
      this.bug(`KVM_CAP_ARM_RME_INIT_RIPAS_REALM: ${this.rmi.lastFailure}`);
  }

  /**
   * `kvm_complete_ripas_change` before the REC runs again: RMI_RTT_SET_RIPAS from where the
   * change got to. A failure stops it: the realm learns how far it got. For EMPTY, KVM then
   * unmaps the private range (`realm_unmap_private_range`); in the model the conversion that
   * follows does it (the core's guest program asks the VMM right after), so the pages end
   * UNASSIGNED EMPTY either way.
   */
  private completeRipasChange(rec: Rec, recPa: number): void {
    this.ripasChange(rec.ripasAddr, rec.ripasTop, (b) =>
      this.rmi.rttSetRipas(this.rd, recPa, b, rec.ripasTop),
    );
  }

  // ------------------------------------------------------------------ the realm runs

  /**
   * KVM_RUN for a vCPU that is not in the realm: activation at the first run (the series from
   * v12 on), the RIPAS change to complete, then RMI_REC_ENTER. False when the REC cannot run.
   */
  private enter(v: number): boolean {
    if (this.inRealm(v)) return true;
    if (this.rmm.realmState(this.realm) !== REALM_ACTIVE && this.activate() !== 0) return false;
    const rec = this.recs[v]!;
    if (rec.ripasPending) this.completeRipasChange(rec, this.recPas[v]!);
    if (this.rmi.recEnter(this.recPas[v]!, this.ripasDone) !== RMI_SUCCESS) return false;
    this.setInRealm(v, true);
    return true;
  }

  private exit(v: number): void {
    if (!this.inRealm(v)) return;
    this.setInRealm(v, false);
    recExit(this.recs[v]!);
  }

  /**
   * The hardware walks the realm's RTTs for every access, protected or not; the RMM turns an
   * abort into an exit to KVM (unassigned RAM, DESTROYED, an unprotected IPA not mapped), a
   * permission fault, or a synchronous external abort the realm takes itself (RIPAS EMPTY).
   */
  checkGuestAccess(_vm: BackendVm, vcpu: number, gpa: number, write: boolean): number {
    if (!this.enter(vcpu)) return ACCESS_GUEST_EXCEPTION;
    const r = realmAccess(this.rmm, this.recs[vcpu]!, gpa, write, this.pfnOut);
    if (r === REALM_ACCESS_OK) return ACCESS_OK;
    if (r === REALM_ACCESS_EXIT || r === REALM_ACCESS_EXIT_PERMISSION) {
      this.exit(vcpu);
      this.rmi.note(EXIT_ABORT, gpa);
      return r === REALM_ACCESS_EXIT ? ACCESS_FAULT : ACCESS_FAULT_PRESENT;
    }
    if (r === REALM_ACCESS_DESTROYED) {
      // KVM's abort handler finds the page mapped (or maps it, RIPAS unchanged) and the realm
      // exits again: KVM_RUN can only fail to the VMM. The model ends the access there, as an
      // exception the realm takes, instead of exiting until the livelock check fires.
      this.exit(vcpu);
      this.rmi.note(EXIT_DESTROYED, gpa, "exception");
      return ACCESS_GUEST_EXCEPTION;
    }
    this.rmi.note(r === REALM_ACCESS_GPF ? GPF : SEA, gpa, "exception");
    return ACCESS_GUEST_EXCEPTION;
  }

  /**
   * An accept: the realm's RSI_IPA_STATE_SET to RAM over the page; KVM completes it as the REC is
   * entered again, and the realm reads how far it got and whether the host accepted.
   */
  guestAccept(_vm: BackendVm, vcpu: number, gpa: number, _npt: unknown, level: Level): number {
    const size = level === 2 ? 2 * 1024 * 1024 : 4096;
    const base = gpa - (gpa % size);
    if (!this.ripasRequest(vcpu, base, base + size, RIPAS_RAM, 0) || !this.enter(vcpu))
      return ACCESS_GUEST_EXCEPTION;
    return this.ripasDone.next >= base + size && this.ripasDone.response === RSI_ACCEPT
      ? ACCESS_OK
      : ACCESS_GUEST_EXCEPTION;
  }

  /**
   * The realm asks for [gfn, gfn + npages) to become RAM or EMPTY (Linux's
   * `rsi_set_memory_range_protected` / `_shared`, both with RSI_CHANGE_DESTROYED: only the boot's
   * `_safe` variant, the `accept` op here, refuses to make a DESTROYED page RAM again): one
   * RSI_IPA_STATE_SET, and the REC exits. KVM passes it to the VMM (KVM_EXIT_MEMORY_FAULT), which
   * converts the range; the change is completed when the conversion is done
   * (`memoryAttributesChanged`), or at the REC's next entry if there was nothing to convert.
   */
  guestMapGpa(
    _vm: BackendVm,
    vcpu: number,
    gfn: number,
    npages: number,
    toPrivate: boolean,
  ): number {
    return this.ripasRequest(
      vcpu,
      gfn * 4096,
      (gfn + npages) * 4096,
      toPrivate ? RIPAS_RAM : RIPAS_EMPTY,
      RSI_CHANGE_DESTROYED,
    )
      ? ACCESS_OK
      : ACCESS_GUEST_EXCEPTION;
  }

  /**
   * The VMM converted a range. For a realm's own request (`vcpu` ≥ 0) KVM completes the RIPAS
   * change before the REC runs again (`kvm_complete_ripas_change`, under the write `mmu_lock` as
   * here): RMI_RTT_SET_RIPAS after the unmapping, as KVM's order has it. A `convert` op asks
   * without a `guestMapGpa` first: its RSI_IPA_STATE_SET is made here. A conversion the VMM
   * makes on its own changes no RIPAS (the realm did not ask; what the host unmapped from RAM is
   * DESTROYED to it).
   */
  memoryAttributesChanged(
    _vm: BackendVm,
    gfn: number,
    npages: number,
    toPrivate: boolean,
    vcpu: number,
  ): void {
    if (vcpu < 0 || vcpu >= this.recs.length) return;
    const rec = this.recs[vcpu]!;
    const base = gfn * 4096;
    const top = (gfn + npages) * 4096;
    if (!(rec.ripasPending && rec.ripasBase <= base && rec.ripasTop >= top)) {
      if (
        !this.ripasRequest(
          vcpu,
          base,
          top,
          toPrivate ? RIPAS_RAM : RIPAS_EMPTY,
          RSI_CHANGE_DESTROYED,
        )
      )
        return;
    }
    this.enter(vcpu);
  }

  /** RSI_IPA_STATE_SET from the running REC: false when refused (RSI_ERROR_INPUT) or the REC cannot run; else it exited. */
  private ripasRequest(
    vcpu: number,
    base: number,
    top: number,
    ripas: number,
    flags: number,
  ): boolean {
    if (!this.enter(vcpu)) return false;
    this.rmi.note(RSI_IPA_STATE_SET, base);
    if (rsiIpaStateSet(this.recs[vcpu]!, base, top, ripas, flags) !== -1) return false;
    this.setInRealm(vcpu, false);
    this.rmi.note(EXIT_RIPAS, base);
    return true;
  }

  /**
   * The realm's PSCI SYSTEM_OFF from vCPU `vcpu` (a guest's call; the scenario format has no
   * guest op for PSCI, so it is written as this backend's host op). The REC exits; KVM turns
   * the exit into KVM_EXIT_SYSTEM_EVENT, and every later KVM_RUN of the realm fails: REC_ENTER
   * answers RMI_ERROR_REALM (1), and the vCPU's access is an exception.
   */
  readonly hostOps = {
    "system-off": {
      description:
        "the realm calls PSCI SYSTEM_OFF from a vCPU (default 0): no REC of it runs again",
      params: { vcpu: { kind: "number" as const, optional: true } },
    },
  };

  runHostOp(
    _vm: BackendVm,
    name: string,
    args: Readonly<Record<string, number | string | boolean>>,
  ): number {
    if (name !== "system-off") return EINVAL;
    const v = typeof args.vcpu === "number" ? args.vcpu : 0;
    if (!Number.isInteger(v) || v < 0 || v >= this.recs.length) {
      this.rmi.lastFailure = `system-off: vcpu ${v}: the realm has ${this.recs.length} vCPU(s)`;
      return EINVAL;
    }
    if (this.rmm.realmState(this.realm) !== REALM_ACTIVE) {
      this.rmi.lastFailure = "system-off: the realm is not running";
      return EINVAL;
    }
    this.setInRealm(v, false);
    psciSystemOff(this.recs[v]!);
    return 0;
  }

  kickVcpu(_vm: BackendVm, vcpu: number): void {
    if (vcpu >= 0 && vcpu < this.recs.length) this.exit(vcpu);
  }

  vcpuExit(_vm: BackendVm, vcpu: number): void {
    if (vcpu >= 0 && vcpu < this.recs.length) this.exit(vcpu);
  }

  // ------------------------------------------------------------------ pages

  /** A control page delegated for the RMM; a failure while the realm is made is a bug. */
  private mustDelegate(): number {
    const pa = this.pages.alloc() * 4096;
    this.must("RMI_GRANULE_DELEGATE", this.rmi.granuleDelegate(pa));
    return pa;
  }

  /** A control page back from the RMM: undelegated and returned, or leaked if the RMM keeps it. */
  private giveBack(pa: number, what: string): void {
    if (this.rmi.granuleUndelegate(pa) === RMI_SUCCESS) this.pages.release(pa / 4096);
    else {
      this.pages.markLeaked(pa / 4096);
      this.vm.leak(`${what} page 0x${pa.toString(16)} kept by the RMM: ${this.rmi.lastFailure}`);
    }
  }

  /** A guest_memfd page back from the RMM: undelegated, or leaked (it stays pinned: KVM's `get_page`). */
  private giveBackGuestPage(pfn: number): void {
    if (this.rmi.granuleUndelegate(pfn * 4096) !== RMI_SUCCESS)
      this.vm.leak(`private page 0x${pfn.toString(16)} kept by the RMM: ${this.rmi.lastFailure}`);
  }

  private must(what: string, x0: number): void {
    if (x0 !== RMI_SUCCESS) this.bug(`${what} failed: ${formatReturn(x0)}`);
  }

  private bug(what: string): never {
    throw new KvmBug(`cca: ${what}`);
  }

  // ------------------------------------------------------------------ checks, faults, the untrusted host

  checkInvariants(vm: BackendVm, mirror: MirrorView): { check: string; message: string }[] {
    return checkCcaInvariants(this, vm, mirror);
  }

  injectFault(_vm: BackendVm, f: FaultSpec): void {
    this.rmi.inject(f);
  }

  /** The RMM's state (host-wide: every realm on the host lists it alike) and KVM's, each under its resource id. */
  auditState(_vm: BackendVm, out: Map<number, string | number>): void {
    this.rmm.auditState(out);
    out.set(this.kvmId(0), this.pages.auditState());
    out.set(this.kvmId(1), `${this.premapped}/${this.tearing}`);
    out.set(this.kvmId(2), [...this.nsRoots].map(([k, n]) => `${k}:${n}`).join(","));
    for (let v = 0; v < this.inGuest.length; v++)
      out.set(this.kvmId(3 + v), this.inGuest[v] ? 1 : 0);
    this.rmi.auditState(out);
  }

  rawCall(vm: BackendVm, call: string, args: RawCallArgs): { status: string; detail: string } {
    return rawRmiCall(this, vm, call, args);
  }

  stats(): BackendStats {
    return { calls: this.rmi.counts.record(), busy: 0, errors: { ...this.rmi.errors } };
  }

  // ------------------------------------------------------------------ what the UI shows

  walkTitle(_vm: BackendVm, root: "mirror" | "direct"): string {
    return root === "direct" ? "direct root (unprotected) · RTT" : "mirror root (protected) · RTT";
  }

  /** The RTT entry a walk's entry stands for: its state, and the RIPAS in the protected half. */
  describeEntry(
    _vm: BackendVm,
    root: "mirror" | "direct",
    gfn: number,
    level: number,
    _spte: WalkedSpte,
  ): string {
    if (!this.rmm.realms.has(this.realm.rd)) return "";
    const l = 4 - level;
    if (l < this.realm.startLevel) return "";
    const ipa = gfn * 4096 + (root === "direct" ? this.unprotected : 0);
    walk(this.rmm, this.realm, ipa - (ipa % levelSize(l)), l, w, true);
    if (w.level < l) return `RTT L${w.level} (no table below)`;
    const s = this.rmm.rtts.peekState(w.entry);
    const ripas =
      s === RTTE_UNASSIGNED || s === RTTE_ASSIGNED
        ? ` ${RIPAS_NAMES[this.rmm.rtts.peekRipas(w.entry)]}`
        : "";
    return `RTT L${l} ${RTTE_STATE_NAMES[s]}${ripas}`;
  }

  /** A private leaf whose RIPAS is not RAM is one the realm cannot use yet: shown as pending. */
  mapCell(_vm: BackendVm, gfn: number): string | null {
    if (!this.rmm.realms.has(this.realm.rd)) return null;
    walk(this.rmm, this.realm, gfn * 4096, RTT_PAGE_LEVEL, w, true);
    return this.rmm.rtts.peekRipas(w.entry) === RIPAS_RAM ? null : "?";
  }

  extraStats(): [string, string][] {
    const live = this.rmm.realms.has(this.realm.rd);
    return [
      ["realm", live ? REALM_STATE_NAMES[this.realm.peekState()]! : "destroyed"],
      ["RECs", String(this.recs.length)],
      ["measured", String(this.realm.peek().measurements)],
    ];
  }

  /**
   * The frame is the realm's while a protected ASSIGNED entry maps it (a DATA granule: the host's
   * accesses fault), and usable without asking first while its RIPAS is RAM.
   */
  guestPage(_vm: BackendVm, gfn: number, pfn: number): number {
    if (!this.rmm.realms.has(this.realm.rd) || gfn * 4096 >= this.unprotected) return 0;
    walk(this.rmm, this.realm, gfn * 4096, RTT_PAGE_LEVEL, w, true);
    const rtts = this.rmm.rtts;
    const ram =
      rtts.peekRipas(w.entry) === RIPAS_RAM &&
      (rtts.peekState(w.entry) === RTTE_UNASSIGNED || rtts.peekState(w.entry) === RTTE_ASSIGNED);
    const owned = rtts.peekState(w.entry) === RTTE_ASSIGNED && rtts.peekAddr(w.entry) === pfn;
    return (owned ? GUEST_PAGE_OWNED : 0) | (ram ? GUEST_PAGE_ACCEPTED : 0);
  }
}

/**
 * `find_map_level`: the shallowest RTT level (a block level at least) whose entry at `base` is
 * aligned and fits below `top`.
 */
export function findMapLevel(base: number, top: number): number {
  for (let l = RTT_MIN_BLOCK_LEVEL; l < RTT_PAGE_LEVEL; l++) {
    const size = levelSize(l);
    if (base % size === 0 && base + size <= top) return l;
  }
  return RTT_PAGE_LEVEL;
}
