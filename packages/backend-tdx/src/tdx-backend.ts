/**
 * The KVM side of TDX (`arch/x86/kvm/vmx/tdx.c`): the TD's life (create, populate, finalize,
 * teardown), the four external-SPT hooks as mainline implements them, KVM's retry rules, and the
 * guest's view through the module (private accesses are translated by the S-EPT, never by the
 * mirror).
 *
 * Retry rules: a busy SEPT.ADD or AUG makes the hook return -EBUSY (the fault unfreezes and
 * retries); a busy BLOCK, TRACK or REMOVE (under the write lock) kicks every vCPU out of guest
 * mode and retries once; any other failure is a KVM_BUG_ON that marks the VM bugged.
 */
import {
  ACCESS_FAULT,
  ACCESS_GUEST_EXCEPTION,
  ACCESS_INTERNAL_ERROR,
  ACCESS_REENTER,
  ACCESS_OK,
  GUEST_PAGE_ACCEPTED,
  GUEST_PAGE_OWNED,
  inject,
  injectable,
  CallCounts,
  ControlPages,
  EBUSY,
  EINVAL,
  EIO,
  KvmBug,
  resourceId,
  sharedGfnBit,
  type Backend,
  type BackendStats,
  type BackendVm,
  type FaultSpec,
  type Level,
  type MirrorView,
  type RawCallArgs,
  type StepMachine,
} from "@tdpemu/backend-sdk";
import { SeptChange } from "./sept-change.js";
import { savedTdSetup, saveTdSetup, tdSetupKey, type TdPages } from "./td-setup-memo.js";
import { SEAM_MODULE, TDX_KEYIDS, TdxKeyIds } from "./tdx-platform.js";
import { checkTdxInvariants } from "./tdx-invariants.js";
import { SEAMCALL_NAMES, callDetail } from "./seam/leaves.js";
import { SeamModule, type CallListener, type SeamResult } from "./seam/seam-module.js";
import { resultNotSuccess, resultOk } from "./seam/seam-result.js";
import { PT_NDA } from "./seam/pamt.js";
import { SEPT_FREE, SEPT_MAPPED, SEPT_NL_BLOCKED, SEPT_STATE_NAMES } from "./seam/sept.js";
import {
  TDX_FLUSHVP_NOT_DONE,
  TDX_STATUS,
  TDX_VCPU_NOT_ASSOCIATED,
  formatStatus,
  isBusy,
  isOk,
  statusClass,
  tdxOperandBusy,
  statusName,
} from "./seam/status.js";
import type { Td } from "./seam/td.js";
import { MIN_NUM_TDCS_PAGES } from "./seam/leaf-checks.js";
import { MIN_TDVPS_PAGES } from "./seam/vp-leaves.js";
import {
  TD_TSC_MULTIPLIER,
  TD_TSC_OFFSET,
  VP_PIN_BASED_VM_EXEC_CONTROL,
  VP_POSTED_INTR_DESC_ADDR,
  VP_POSTED_INTR_NV,
  mdFieldByName,
} from "./seam/md-leaves.js";

/** Linux's POSTED_INTR_VECTOR (0xf2), and PIN_BASED_POSTED_INTR (bit 7 of the pin-based controls). */
const POSTED_INTR_VECTOR = 0xf2n;
const PIN_BASED_POSTED_INTR = 0x80n;

/** KVM's `tdcs_nr_pages`, from the module's TDCS_BASE_SIZE: MIN_NUM_TDCS_PAGES pages. */
const TDCS_PAGES = MIN_NUM_TDCS_PAGES;
/**
 * What KVM counts in `backendStats.calls`: the module's calls, then the #VEs and INVEPTs it saw,
 * and the TDCALLs that ended in a TD exit instead of returning to the guest (an ACCEPT of a page
 * not mapped yet: the guest runs it again after KVM's fault, and that run is the one counted
 * as TDG.MEM.PAGE.ACCEPT).
 */
const COUNTED = [...SEAMCALL_NAMES, "#VE", "INVEPT", "TD exit (ACCEPT)", "TDG.VP.VMCALL<MapGPA>"];
const VE = SEAMCALL_NAMES.length;
const INVEPT = VE + 1;
const ACCEPT_EXIT = VE + 2;
const MAP_GPA = VE + 3;

@injectable()
export class TdxBackend implements Backend, CallListener {
  readonly name: string = "tdx";
  readonly description =
    "Intel TDX: mirror page tables propagated to a model of the TDX module (S-EPT, PAMT, epochs, locks)";
  readonly usesMirrorRoot = true;
  readonly hasPrivateMemory = true;
  /**
   * The module records its state per piece (S-EPT entry, PAMT entry, TD epoch, locks, TDVPR...:
   * `seam/seam-footprint.ts`); KVM's side here records the control pages, `nr_premapped` and
   * each vCPU's guest mode. Call counts and the #VE count are only reported.
   */
  readonly recordsOwnAccesses = true;
  /**
   * The checks (`tdx-invariants.ts`) compare the mirror with the S-EPT and the PAMT: they read
   * the mirror through the view, the module and `nr_premapped`, never the attributes or a
   * guest_memfd folio (the S-EPT's pages are the module's, and the mirror's leaves name them).
   */
  readonly checkIgnoresGuestMemory = true;
  /** `tdx_vm_init` disables KVM_X86_QUIRK_IGNORE_GUEST_PAT: a TD's leaves are WB without IPAT. */
  readonly honorsGuestPat = true;
  /** `tdx_handle_ept_violation`: a private fault is a write, retried in KVM (zero-step mitigation). */
  readonly privateEptViolation = { asWrite: true, localRetry: true };

  td!: Td;
  tdr = -1;
  hkid = 0;
  private pages!: ControlPages;
  private readonly tdvprs: number[] = [];
  /** Each vCPU's TDCX pages (`tdx->vp.tdcx_pages`). */
  private readonly tdcxPages: (readonly number[])[] = [];
  /**
   * KVM's own view of each vCPU (`vcpu->mode`): in guest mode from a successful TDH.VP.ENTER
   * until the TD exit that returns from it. KVM issues VP.ENTER only to (re-)enter: a guest
   * that takes a #VE, or simply goes on to its next access, is still running.
   */
  private readonly inGuest: boolean[] = [];
  private readonly cpus: number[] = [];
  /** Per vCPU, the level of the ACCEPT its last TD exit came from (the extended exit qualification), 0 for none. */
  private readonly acceptExit: number[] = [];
  private dead = false;
  private keyAssigned = true;
  /** `kvm_tdx->state == TD_STATE_RUNNABLE` (`tdRunnable`). */
  private runnable = false;
  /** Private pages mapped in the mirror before finalize and not yet PAGE.ADDed (`nrPremapped`). */
  private premapped = 0;
  /**
   * The explorer's resources of KVM's side (the module records its own, per entry): 0 the
   * control pages, 1 `nrPremapped`, 2 + v vCPU v's guest mode.
   */
  private space = 0;
  /** #VE injected into the guest for accesses to PENDING pages, by vCPU. */
  readonly veCount: number[] = [];
  bugged = false;
  private readonly calls = new CallCounts(COUNTED);
  private busy = 0;
  private readonly errors: Record<string, number> = {};
  private vm!: BackendVm;
  /** Made on the first removal: most runs (and the explorer's schedules) have none. */
  private removal: SeptChange | null = null;

  /** The host's TDX module and KeyIDs (`tdx-platform.ts`), shared with every TD on the host. */
  constructor(
    @inject(SEAM_MODULE) readonly module: SeamModule,
    @inject(TDX_KEYIDS) private readonly keyids: TdxKeyIds,
  ) {}

  // ------------------------------------------------------------------ TD life

  init(vm: BackendVm): void {
    this.vm = vm;
    this.module.attach(vm.clock);
    // Resource 0 is the control-page allocator, 1 KVM's TD state (`nr_premapped`, read by the
    // invariant checks), 2 + v vCPU v's mode, which no check reads.
    this.space = vm.clock.newResourceSpace((i) => i < 2);
    this.pages = new ControlPages(
      vm.host.frames,
      vm.owner,
      vm.clock,
      resourceId(this.space, 0),
      "TDX control pages",
    );
    this.hkid = this.keyids.alloc();
    const pages = this.allocTdPages(vm.config.vcpus);
    this.tdr = pages.tdr;
    this.module.listen(this.tdr, this);
    // With events or a recorder, each call is seen: the set-up is made through the leaves.
    const key =
      vm.events.on || vm.clock.fp !== null
        ? null
        : tdSetupKey(this.module, this.hkid, pages, vm.config.gpaw);
    const saved = savedTdSetup(key);
    const td = saved === undefined ? null : this.module.restoreTdSetup(saved);
    if (td !== null) {
      this.td = td;
      for (const [leaf, n] of saved!.calls) this.calls.addMany(leaf, n);
    } else {
      this.setUpTd(vm, pages);
      if (key !== null) saveTdSetup(key, this.module.saveTdSetup(this.tdr));
    }
    pages.vcpus.forEach((v, i) => {
      this.tdcxPages.push(v.tdcx);
      this.tdvprs.push(v.tdvpr);
      this.inGuest.push(false);
      this.cpus.push(i);
      this.acceptExit.push(0);
      this.veCount.push(0);
    });
  }

  /**
   * The TD's pages and every vCPU's, as KVM allocates them before the calls that hand them over
   * (`__tdx_td_init`: the TDR and TDCS pages; `tdx_td_vcpu_init`: the TDVPR and TDCX pages). KVM
   * makes a vCPU's at KVM_TDX_INIT_VCPU, after the TD's calls; nothing else takes control pages
   * in between, so the pages are the same.
   */
  private allocTdPages(vcpus: number): TdPages {
    const tdr = this.pages.alloc();
    const tdcs: number[] = [];
    for (let i = 0; i < TDCS_PAGES; i++) tdcs.push(this.pages.alloc());
    const vcpuPages: TdPages["vcpus"][number][] = [];
    for (let v = 0; v < vcpus; v++) {
      const tdvpr = this.pages.alloc();
      const tdcx: number[] = [];
      for (let i = 1; i < MIN_TDVPS_PAGES; i++) tdcx.push(this.pages.alloc());
      vcpuPages.push({ tdvpr, tdcx });
    }
    return { tdr, tdcs, vcpus: vcpuPages };
  }

  /** KVM_TDX_INIT_VM, then KVM_TDX_INIT_VCPU on each vCPU: the TD's set-up through the leaves. */
  private setUpTd(vm: BackendVm, pages: TdPages): void {
    this.must("TDH.MNG.CREATE", this.module.mngCreate(this.tdr, this.hkid));
    this.td = this.module.tds.get(this.tdr)!;
    this.must("TDH.MNG.KEY.CONFIG", this.module.mngKeyConfig(this.tdr));
    for (const page of pages.tdcs) this.must("TDH.MNG.ADDCX", this.module.mngAddcx(this.tdr, page));
    this.must(
      "TDH.MNG.INIT",
      this.module.mngInit(this.tdr, { gpaw: vm.config.gpaw, septVeDisable: false }),
    );
    // tdx_td_init reads the TD's TSC offset and multiplier back (td_tdcs_exec_read64).
    this.must("TDH.MNG.RD", this.module.mngRd(this.tdr, TD_TSC_OFFSET));
    this.must("TDH.MNG.RD", this.module.mngRd(this.tdr, TD_TSC_MULTIPLIER));
    // KVM_TDX_INIT_VCPU (`tdx_td_vcpu_init`): VP.CREATE, a TDH.VP.ADDCX for each TDCX page the
    // module's TDVPS size asks for (`tdx_sysinfo->td_ctrl.tdvps_base_size`: 6 pages, the TDVPR
    // among them), then VP.INIT, which runs with the vCPU loaded on its CPU and associates it
    // there. The model runs vCPU i on logical processor i, and it never migrates.
    pages.vcpus.forEach(({ tdvpr, tdcx }, i) => {
      this.must("TDH.VP.CREATE", this.module.vpCreate(this.tdr, tdvpr));
      for (const page of tdcx) this.must("TDH.VP.ADDCX", this.module.vpAddcx(tdvpr, page));
      this.must("TDH.VP.INIT", this.module.vpInit(tdvpr, i));
      // tdx_vcpu_init: posted interrupts, through the TD VMCS (td_vmcs_write16/64, setbit32).
      this.must(
        "TDH.VP.WR",
        this.module.vpWr(tdvpr, i, VP_POSTED_INTR_NV, POSTED_INTR_VECTOR, 0xffffn),
      );
      this.must(
        "TDH.VP.WR",
        this.module.vpWr(
          tdvpr,
          i,
          VP_POSTED_INTR_DESC_ADDR,
          BigInt(tdvpr) << 12n,
          0xffffffffffffffffn,
        ),
      );
      this.must(
        "TDH.VP.WR",
        this.module.vpWr(
          tdvpr,
          i,
          VP_PIN_BASED_VM_EXEC_CONTROL,
          PIN_BASED_POSTED_INTR,
          PIN_BASED_POSTED_INTR,
        ),
      );
    });
  }

  // KVM's own state, in two kinds of resources for the explorer: resource 1 is the VM's
  // (`kvm_tdx`: nr_premapped, the HKID, its state, `kvm->vm_dead`), 2 + v vCPU v's (mode and CPU). A write
  // made while nothing records only bumps the state version; the id is made only while recording.

  private readKvm(): void {
    this.vm.clock.fp?.read(resourceId(this.space, 1));
  }

  private writeKvm(): void {
    const c = this.vm.clock;
    if (c.fp === null) c.bump();
    else c.touch(resourceId(this.space, 1));
  }

  private readVcpu(v: number): void {
    if (this.vm.clock.fp !== null) this.recordVcpu(v, false);
  }

  private writeVcpu(v: number): void {
    if (this.vm.clock.fp === null) this.vm.clock.bump();
    else this.recordVcpu(v, true);
  }

  /** A vCPU's state read or written while recording, apart so that `readVcpu`/`writeVcpu` stay small (inlined). */
  private recordVcpu(v: number, write: boolean): void {
    const c = this.vm.clock;
    if (write) c.touch(resourceId(this.space, 2 + v));
    else c.fp!.read(resourceId(this.space, 2 + v));
  }

  /** `kvm_tdx->nr_premapped` */
  get nrPremapped(): number {
    this.readKvm();
    return this.premapped;
  }

  set nrPremapped(n: number) {
    this.writeKvm();
    this.premapped = n;
  }

  /** `kvm->vm_dead`, set by KVM_TDX_TERMINATE_VM. */
  private get vmDead(): boolean {
    this.readKvm();
    return this.dead;
  }

  private set vmDead(d: boolean) {
    this.writeKvm();
    this.dead = d;
  }

  /**
   * `is_hkid_assigned`: KVM's own view (`kvm_tdx->hkid`), cleared only by its own successful
   * KEY.FREEID. A malicious host's raw calls move the module's lifecycle, never this.
   */
  private get hkidAssigned(): boolean {
    this.readKvm();
    return this.keyAssigned;
  }

  private set hkidAssigned(a: boolean) {
    this.writeKvm();
    this.keyAssigned = a;
  }

  /**
   * `kvm_tdx->state == TD_STATE_RUNNABLE`: KVM's own view, set by its own successful
   * KVM_TDX_FINALIZE_VM. KVM decides by it, not by the module's OP_STATE, which a malicious
   * host's raw TDH.MR.FINALIZE moves without KVM knowing.
   */
  private get tdRunnable(): boolean {
    this.readKvm();
    return this.runnable;
  }

  private set tdRunnable(r: boolean) {
    this.writeKvm();
    this.runnable = r;
  }

  /** Whether KVM has vCPU `v` in guest mode (`vcpu->mode`). */
  private guestMode(v: number): boolean {
    this.readVcpu(v);
    return this.inGuest[v]!;
  }

  private setGuestMode(v: number, on: boolean): void {
    this.writeVcpu(v);
    this.inGuest[v] = on;
  }

  /** `vcpu->cpu`: the CPU KVM last loaded vCPU `v` on, -1 once flushed from it. */
  private vcpuCpu(v: number): number {
    this.readVcpu(v);
    return this.cpus[v]!;
  }

  private setVcpuCpu(v: number, cpu: number): void {
    this.writeVcpu(v);
    this.cpus[v] = cpu;
  }

  gfnDirectBits(vm: BackendVm): number {
    return sharedGfnBit(vm.config.gpaw);
  }

  classifyFault(_vm: BackendVm, _gpa: number, privateAccess: boolean): boolean {
    return privateAccess;
  }

  /**
   * `tdx_gmem_private_max_mapping_level`: 4K in mainline. With `tdxHugePages` (the TDX huge-page
   * series), 2M once the TD is RUNNABLE ("Enforce 4KB mapping level during TD build time":
   * PAGE.ADD is 4K only); the core adds the folio size, the attributes and the guest-inhibit
   * bits. TDX maps private memory at 2M at most: no 1G AUG in the series.
   */
  maxMappingLevel(vm: BackendVm): Level {
    if (!vm.config.tdxHugePages) return 1;
    return this.tdRunnable ? 2 : 1;
  }

  /** `tdx_td_finalize` sets `pre_fault_allowed` once the TD is RUNNABLE. */
  preFaultAllowed(): boolean {
    return this.tdRunnable;
  }

  /** `tdx_vcpu_init_mem_region`: only before KVM_TDX_FINALIZE_VM, before anything is mapped. */
  canPopulate(): number {
    if (!this.tdRunnable) return 0;
    this.lastFailure = "KVM_TDX_INIT_MEM_REGION: the TD is finalized already";
    return EINVAL;
  }

  /**
   * `tdx_gmem_post_populate` (KVM_TDX_INIT_MEM_REGION) after the premap: PAGE.ADD from a source
   * page, then, with KVM_TDX_MEASURE_MEMORY_REGION, 16 MR.EXTEND of 256 bytes. A failure is
   * the ioctl's errno, not a KVM bug: -EBUSY for contention, else -EIO (MR.EXTEND's too, after
   * the page was added). `nr_premapped` already 0 is KVM's own bug.
   */
  populate(_vm: BackendVm, gfn: number, pfn: number, measure: boolean): number {
    const source = this.pages.alloc();
    const r = this.module.memPageAdd(gfn * 4096, 0, this.tdr, pfn, source);
    this.pages.release(source);
    if (!isOk(r.status)) {
      this.lastFailure = `TDH.MEM.PAGE.ADD of gfn 0x${gfn.toString(16)} failed: ${formatStatus(r.status)}`;
      return tdxOperandBusy(r.status) ? EBUSY : EIO;
    }
    if (this.nrPremapped === 0)
      this.bugOn(`nr_premapped is 0 at PAGE.ADD of gfn 0x${gfn.toString(16)}`);
    this.nrPremapped--;
    if (!measure) return 0;
    for (let i = 0; i < 16; i++) {
      const e = this.module.mrExtend(gfn * 4096 + i * 256, this.tdr);
      if (!isOk(e.status)) {
        this.lastFailure = `TDH.MR.EXTEND of gpa 0x${(gfn * 4096 + i * 256).toString(16)} failed: ${formatStatus(e.status)}`;
        return EIO;
      }
    }
    return 0;
  }

  /**
   * `KVM_TDX_FINALIZE_VM` (`tdx_td_finalize`): -EINVAL for a TD finalized already or without its
   * HKID, and while premapped pages wait for PAGE.ADD; the TD is RUNNABLE to KVM once its
   * TDH.MR.FINALIZE succeeded.
   */
  finalize(_vm: BackendVm): number {
    const runnable = this.tdRunnable;
    if (runnable || !this.hkidAssigned) {
      this.lastFailure = runnable
        ? "KVM_TDX_FINALIZE_VM: the TD is finalized already"
        : "KVM_TDX_FINALIZE_VM: the TD has no HKID";
      return EINVAL;
    }
    if (this.nrPremapped !== 0) {
      this.lastFailure = `KVM_TDX_FINALIZE_VM: ${this.nrPremapped} premapped page(s) never got their TDH.MEM.PAGE.ADD`;
      return EINVAL;
    }
    const r = this.module.mrFinalize(this.tdr);
    if (tdxOperandBusy(r.status)) {
      this.lastFailure = `TDH.MR.FINALIZE: ${formatStatus(r.status)}`;
      return EBUSY;
    }
    if (!isOk(r.status)) this.bug("TDH.MR.FINALIZE", r);
    this.tdRunnable = true;
    return 0;
  }

  /**
   * `tdx_mmu_release_hkid`: kick the vCPUs out, flush them, VPFLUSHDONE, write back the caches
   * of every package for the key (TDH.PHYMEM.CACHE.WB; the model's platform has one package),
   * then free the key. After this the S-EPT and the TD's pages can only be reclaimed. A failure
   * leaks the HKID (and with it every page still owned by the TD).
   */
  teardown(_vm: BackendVm): void {
    if (!this.hkidAssigned) return;
    this.kickAll();
    // tdx_flush_vp_on_cpu: a vCPU KVM has on a CPU is flushed there, and is then on none. The
    // module may answer VCPU_NOT_ASSOCIATED (someone flushed it already): not an error to KVM.
    for (let v = 0; v < this.tdvprs.length; v++) {
      if (this.vcpuCpu(v) === -1) continue;
      const r = this.module.vpFlush(this.tdvprs[v]!, v);
      if (!isOk(r.status) && statusClass(r.status) !== TDX_VCPU_NOT_ASSOCIATED)
        this.bug("TDH.VP.FLUSH", r);
      this.setVcpuCpu(v, -1);
    }
    const done = this.module.mngVpflushdone(this.tdr);
    // A vCPU still associated somewhere: KVM gives up quietly and the HKID stays assigned; the
    // S-EPT pages then cannot be freed (`tdx_sept_free_private_spt` is a KVM bug with the HKID).
    if (statusClass(done.status) === TDX_FLUSHVP_NOT_DONE) return;
    if (!isOk(done.status)) this.leakHkid("TDH.MNG.VPFLUSHDONE", done);
    // A failed write-back shows as KEY.FREEID's WBCACHE_NOT_COMPLETE, as the kernel expects.
    this.module.phymemCacheWb(this.tdr);
    const freed = this.module.mngKeyFreeid(this.tdr);
    if (!isOk(freed.status)) this.leakHkid("TDH.MNG.KEY.FREEID", freed);
    this.hkidAssigned = false;
  }

  /**
   * `tdx_terminate_vm` (KVM_TDX_TERMINATE_VM): `kvm_vm_dead`, then `__tdx_release_hkid(kvm,
   * true)` at once. The guest_memfd's release that follows finds the HKID gone on a dead VM and
   * RECLAIMs each private page (`tdx_sept_remove_private_spte`) instead of BLOCK, TRACK, REMOVE
   * and WBINVD: the caches were written back by TDH.PHYMEM.CACHE.WB. The vCPUs have stopped
   * (the core waits for them), so `kvm_trylock_all_vcpus` succeeds.
   */
  terminate(vm: BackendVm): number {
    this.vmDead = true;
    this.teardown(vm);
    return 0;
  }

  /**
   * `tdx_vcpu_free` (from `kvm_destroy_vcpus`, after the HKID's release and before the S-EPT
   * pages go): the vCPU's TDCX pages, then its TDVPR, each reclaimed or leaked. While the HKID
   * is still assigned (its release gave up) nothing can be reclaimed: the pages are the
   * module's, kept on purpose.
   */
  vcpuFree(_vm: BackendVm, vcpu: number): void {
    const pages = [...this.tdcxPages[vcpu]!, this.tdvprs[vcpu]!];
    if (this.hkidAssigned) {
      for (const page of pages)
        this.leak(page, `control page ${page} kept: the HKID is still assigned`);
      return;
    }
    for (const page of pages)
      if (this.reclaimOrLeak(page, "control page")) this.pages.release(page);
  }

  /** `KVM_BUG_ON` after VPFLUSHDONE or KEY.FREEID failed: "HKID is leaked", with every page of the TD. */
  private leakHkid(call: string, r: SeamResult): never {
    this.vm.leak(`HKID ${this.hkid} leaked: ${call} ${formatStatus(r.status)}`);
    return this.bug(call, r);
  }

  /**
   * `tdx_vm_free`, once the vCPUs (`vcpuFree`) and the S-EPT pages are gone: reclaim the TDCS
   * pages (with the S-EPT root), then the TDR, and write back the TDR's cache lines under the
   * module's global KeyID (the module used the TDR while the TDCS pages were reclaimed); a page
   * that fails either is leaked.
   */
  destroy(_vm: BackendVm): void {
    if (this.hkidAssigned) {
      // `tdx_reclaim_td_control_pages` returns at once while the HKID is assigned (its release
      // gave up): the TDR and TDCS pages stay the module's, leaked on purpose.
      for (const page of [...this.td.tdcx, this.tdr])
        this.leak(page, `control page ${page} kept: the HKID is still assigned`);
      return;
    }
    for (const page of this.td.tdcx)
      if (this.reclaimOrLeak(page, "control page")) this.pages.release(page);
    if (this.reclaimOrLeak(this.tdr, "control page")) {
      const wb = this.module.phymemPageWbinvd(this.tdr, this.keyids.globalKeyid, this.tdr);
      if (isOk(wb.status)) this.pages.release(this.tdr);
      else
        this.leak(this.tdr, `TDH.PHYMEM.PAGE.WBINVD of the TDR failed: ${statusName(wb.status)}`);
    }
    this.pages.releaseBlocks();
  }

  // ------------------------------------------------------------------ the external-SPT hooks

  allocExternalSpt(): number {
    return this.pages.alloc();
  }

  releaseExternalSpt(_vm: BackendVm, pfn: number): void {
    this.pages.release(pfn);
  }

  /** `tdx_sept_link_private_spt`: TDH.MEM.SEPT.ADD at TDX level = mirror level - 1. */
  linkExternalSpt(_vm: BackendVm, gfn: number, level: Level, externalSpt: number): number {
    const r = this.module.memSeptAdd(gfn * 4096, level - 1, this.tdr, externalSpt);
    if (resultOk(r)) return 0;
    if (tdxOperandBusy(r.status)) return EBUSY;
    return this.bug("TDH.MEM.SEPT.ADD", r);
  }

  /**
   * `tdx_sept_set_private_spte`: AUG once the TD runs, at 4K or (huge pages) 2M; before finalize
   * only count the premap, which is 4K only.
   */
  setExternalSpte(vm: BackendVm, gfn: number, level: Level, pfn: number): number {
    if (level !== 1 && !(level === 2 && vm.config.tdxHugePages))
      throw new KvmBug(
        `TDX maps private memory at ${vm.config.tdxHugePages ? "4K or 2M" : "4K only"}, asked for level ${level}`,
      );
    if (!this.tdRunnable) {
      if (level !== 1)
        this.bugOn(`a 2M premap of gfn 0x${gfn.toString(16)} before the TD is runnable`);
      this.nrPremapped++;
      return 0;
    }
    const r = this.module.memPageAug(gfn * 4096, level - 1, this.tdr, pfn);
    if (resultOk(r)) return 0;
    if (tdxOperandBusy(r.status)) return EBUSY;
    return this.bug("TDH.MEM.PAGE.AUG", r);
  }

  /**
   * `tdx_sept_remove_private_spte`: BLOCK → TRACK + kick → REMOVE → WBINVD, one SEAMCALL per
   * atomic point (`sept-change.ts`). The HKID is released only after every private page
   * is gone (the guest_memfd's release zaps them first), so a removal without it is a KVM bug.
   */
  removeExternalSpte(vm: BackendVm, gfn: number, level: Level, pfn: number): number | StepMachine {
    if (level !== 1 && !(level === 2 && vm.config.tdxHugePages))
      throw new KvmBug(
        `TDX removes private memory at ${vm.config.tdxHugePages ? "4K or 2M" : "4K only"}, asked for level ${level}`,
      );
    if (!this.hkidAssigned) {
      if (!this.vmDead)
        this.bugOn(`remove_external_spte of gfn 0x${gfn.toString(16)} after the HKID was released`);
      // After KVM_TDX_TERMINATE_VM: `tdx_reclaim_page`, one RECLAIM; a failure leaks the page
      // (it stays pinned in guest_memfd, not one of the control pages) and is the caller's
      // KVM_BUG_ON.
      // A 2 MiB page is reclaimed by its 2M PAMT entry, named by its first PFN.
      const r = this.reclaim(pfn);
      if (isOk(r.status)) return 0;
      this.vm.leak(
        `TDH.PHYMEM.PAGE.RECLAIM of private page ${pfn} (gfn 0x${gfn.toString(16)}) failed: ${statusName(r.status)}`,
      );
      return EIO;
    }
    this.removal ??= new SeptChange(this, this.vm.clock);
    return this.removal.begin(gfn, pfn, level);
  }

  /**
   * `tdx_sept_split_private_spte` (the TDX huge-page series, under the write `mmu_lock`): a
   * 2 MiB leaf of a runnable TD becomes 512 4K ones in `externalSpt` by BLOCK, TRACK and the
   * kick, and DEMOTE (`sept-change.ts`). Anything else is a KVM_BUG_ON.
   */
  splitExternalSpte(
    _vm: BackendVm,
    gfn: number,
    level: Level,
    externalSpt: number,
  ): number | StepMachine {
    const runnable = this.tdRunnable;
    if (!runnable || level !== 2)
      this.bugOn(
        `split_external_spte of gfn 0x${gfn.toString(16)} level ${level}${!runnable ? " before the TD is runnable" : ""}`,
      );
    this.removal ??= new SeptChange(this, this.vm.clock);
    return this.removal.beginSplit(gfn, externalSpt);
  }

  /**
   * Huge-page recovery by TDH.MEM.PAGE.PROMOTE, which no posted KVM series issues (the huge-page
   * series forbids merging in mirror roots): BLOCK of the level-1 entry, TRACK and the kick,
   * PROMOTE, or UNBLOCK and -EAGAIN when the module refuses (EPT_INVALID_PROMOTE_CONDITIONS: its
   * 4K leaves are not all MAPPED, or all PENDING, over contiguous pages). The merged-away S-EPT
   * page is free in the PAMT at once; KVM gives it back with the mirror table. Only with
   * `tdxHugePages`, on a runnable TD.
   */
  promoteExternalSpt(
    vm: BackendVm,
    gfn: number,
    level: Level,
    externalSpt: number,
  ): number | StepMachine {
    if (!vm.config.tdxHugePages || level !== 2) return -11;
    if (!this.tdRunnable)
      this.bugOn(`promote of gfn 0x${gfn.toString(16)} before the TD is runnable`);
    this.removal ??= new SeptChange(this, this.vm.clock);
    return this.removal.beginPromote(gfn, externalSpt);
  }

  /**
   * `tdx_sept_free_private_spt`: only once the HKID is freed, by RECLAIM. A failure leaves the
   * page owned by the module: the core leaks it on purpose and counts it.
   */
  freeExternalSpt(_vm: BackendVm, gfn: number, level: Level, externalSpt: number): number {
    if (this.hkidAssigned)
      this.bugOn(
        `free_external_spt of the table at gfn 0x${gfn.toString(16)} level ${level} while the HKID is assigned`,
      );
    const r = this.reclaim(externalSpt);
    if (isOk(r.status)) return 0;
    this.pages.markLeaked(externalSpt);
    this.lastFailure = `TDH.PHYMEM.PAGE.RECLAIM of an S-EPT page failed: ${statusName(r.status)}`;
    return EIO;
  }

  private lastFailure = "";

  lastError(): string {
    return this.lastFailure;
  }

  /**
   * A vCPU's flush at entry (`tdx_flush_tlb_all`, `tdx_flush_tlb_current`): only the shared EPT
   * needs one (`ept_sync_global`, an INVEPT). The private side was tracked by
   * `remove_external_spte`, whose TRACK makes the next TD entry flush it, so KVM does not TRACK
   * again here.
   */
  flushTlb(): void {
    this.calls.add(INVEPT);
  }

  /** `kvm_vcpu_kick` of a vCPU in guest mode: the TD exits. */
  kickVcpu(_vm: BackendVm, vcpu: number): void {
    if (this.tdvprs[vcpu] !== undefined) this.exit(vcpu);
  }

  // ------------------------------------------------------------------ the guest

  /**
   * The CPU's side of an access. Private GPAs are translated by the module's S-EPT: MAPPED is
   * fine, PENDING gives the guest a #VE, anything else is an EPT violation (TD exit). Shared
   * GPAs go through the shared EPT, which the core walks.
   */
  checkGuestAccess(
    _vm: BackendVm,
    vcpu: number,
    gpa: number,
    _write: boolean,
    privateAccess: boolean,
  ): number {
    const entered = this.enter(vcpu);
    if (entered !== ACCESS_OK) return entered;
    if (!privateAccess) return -1;
    const t = this.module.guestTranslate(this.tdvprs[vcpu]!, gpa);
    // The exit (an object) first: the comparisons below then only ever see the two strings, so
    // V8 compares them as pointers instead of calling its generic equality on every access.
    if (typeof t === "object") {
      this.exit(vcpu);
      return ACCESS_FAULT;
    }
    if (t === "ok") return ACCESS_OK;
    this.veCount[vcpu]!++;
    this.calls.add(VE);
    return ACCESS_GUEST_EXCEPTION;
  }

  /**
   * TDG.MEM.PAGE.ACCEPT from the guest at 4K or 2M; an EPT-violation exit lets KVM AUG the page
   * first. The exit's extended qualification says it was an ACCEPT, and at which level
   * (`guestAcceptLevel`).
   */
  guestAccept(_vm: BackendVm, vcpu: number, gpa: number, _npt: unknown, level: Level): number {
    const entered = this.enter(vcpu);
    if (entered !== ACCESS_OK) return entered;
    const r = this.module.tdgMemPageAccept(this.tdvprs[vcpu]!, gpa - (gpa % 4096), level - 1);
    if ("exit" in r) {
      this.exit(vcpu);
      this.setAcceptExit(vcpu, level);
      return ACCESS_FAULT;
    }
    return isOk(r.status) ? ACCESS_OK : ACCESS_GUEST_EXCEPTION;
  }

  /**
   * `tdx_honor_guest_accept_level` reads the exit's type and level (TDX_EXT_EXIT_QUAL_TYPE_ACCEPT):
   * the level of the ACCEPT that just exited, once. Mainline has no such step: without
   * `tdxHugePages` there is nothing to honor (every private mapping is 4K).
   */
  guestAcceptLevel(vm: BackendVm, vcpu: number): number {
    this.readVcpu(vcpu);
    const level = this.acceptExit[vcpu]!;
    if (level === 0) return 0;
    this.setAcceptExit(vcpu, 0);
    return vm.config.tdxHugePages ? level : 0;
  }

  private setAcceptExit(vcpu: number, level: number): void {
    this.writeVcpu(vcpu);
    this.acceptExit[vcpu] = level;
  }

  vcpuExit(_vm: BackendVm, vcpu: number): void {
    if (this.tdvprs[vcpu] !== undefined) this.exit(vcpu);
  }

  /**
   * TDG.VP.VMCALL<MapGPA>: the guest asks for [gfn, gfn + npages) to be mapped private or shared
   * (the shared alias of the range, for shared). A TDCALL from the running TD that exits to KVM
   * (TDH.VP.ENTER returns), which hands it to userspace as KVM_HC_MAP_GPA_RANGE
   * (`tdx_map_gpa`).
   */
  guestMapGpa(
    _vm: BackendVm,
    vcpu: number,
    gfn: number,
    npages: number,
    toPrivate: boolean,
  ): number {
    const entered = this.enter(vcpu);
    if (entered !== ACCESS_OK) return entered;
    this.calls.add(MAP_GPA);
    if (this.vm?.events.on) {
      const gpa = (gfn * 4096 + (toPrivate ? 0 : 2 ** (this.vm.config.gpaw - 1))).toString(16);
      this.vm.events.emit({
        type: "call",
        vm: this.vm.id,
        name: "TDG.VP.VMCALL<MapGPA>",
        detail: `gpa 0x${gpa} ${npages} pages to ${toPrivate ? "private" : "shared"}`,
        status: "TD exit",
        tone: "ok",
      });
    }
    this.exit(vcpu);
    return ACCESS_OK;
  }

  /** A TD exit: TDH.VP.ENTER returns to KVM, and the vCPU is out of guest mode. */
  private exit(vcpu: number): void {
    this.module.tdExit(this.tdvprs[vcpu]!);
    this.setGuestMode(vcpu, false);
  }

  /**
   * TDH.VP.ENTER, unless the vCPU is in guest mode already: ACCESS_OK once in the guest. A busy
   * entry (the TD's epoch, which TDH.MEM.TRACK takes) KVM enters again with nothing handled
   * (`tdx_exit_handlers_fastpath`: EXIT_FASTPATH_EXIT_HANDLED), unseen by the guest:
   * ACCESS_REENTER. Any other failure is an exit KVM cannot handle (`tdx_handle_exit`'s
   * unhandled_exit, KVM_EXIT_INTERNAL_ERROR): ACCESS_INTERNAL_ERROR, with why in `lastError`.
   * The VMM finalizes the TD before the first KVM_RUN (QEMU does it when machine setup is done),
   * so a vCPU entering an INITIALIZED TD finalizes it first; KVM_RUN fails if that fails.
   */
  private enter(vcpu: number): number {
    if (this.guestMode(vcpu)) return ACCESS_OK;
    const tdvpr = this.tdvprs[vcpu];
    if (tdvpr === undefined) {
      this.lastFailure = `vcpu${vcpu}: KVM_RUN of a vCPU the TD no longer has`;
      return ACCESS_INTERNAL_ERROR;
    }
    if (!this.tdRunnable && this.finalize(this.vm) !== 0) return ACCESS_INTERNAL_ERROR;
    const r = this.module.vpEnter(tdvpr, vcpu);
    const ok = resultOk(r);
    this.setGuestMode(vcpu, ok);
    if (ok) return ACCESS_OK;
    if (tdxOperandBusy(r.status)) return ACCESS_REENTER;
    this.lastFailure = `TDH.VP.ENTER failed: ${formatStatus(r.status)}`;
    return ACCESS_INTERNAL_ERROR;
  }

  // ------------------------------------------------------------------ KVM helpers

  /** `kvm_make_all_cpus_request(KVM_REQ_OUTSIDE_GUEST_MODE)`: every vCPU leaves guest mode. */
  private kickAll(): void {
    for (let v = 0; v < this.tdvprs.length; v++) this.exit(v);
  }

  /** `tdx_track` has work only for a runnable TD with its key. */
  trackNeeded(): boolean {
    return this.tdRunnable && this.hkidAssigned;
  }

  /** `tdx_track`: TDH.MEM.TRACK, then every vCPU out of the TD (internal to the package). */
  track(): void {
    if (!this.trackNeeded()) return;
    const r = this.noVcpusRetry(() => this.module.memTrack(this.tdr));
    if (!isOk(r.status)) this.bug("TDH.MEM.TRACK", r);
    this.kickAll();
  }

  /** On BUSY, kick every vCPU out and keep them out (`tdx_no_vcpus_enter_start`), then try once more. */
  noVcpusRetry(f: () => SeamResult): SeamResult {
    const r = f();
    if (!tdxOperandBusy(r.status)) return r;
    this.kickAll();
    return f();
  }

  /**
   * `__tdx_reclaim_page` (arch/x86/kvm/vmx/tdx.c): one RECLAIM, no retry. All TD pages are freed
   * before the HKID is released, so the kernel expects no contention ("No need to check for
   * TDX_OPERAND_BUSY"); a failure, BUSY included, is a WARN and the page is leaked by the caller.
   */
  private reclaim(pfn: number): SeamResult {
    return this.module.phymemPageReclaim(pfn, this.tdr);
  }

  private must(name: string, r: SeamResult): void {
    if (!isOk(r.status)) this.bug(name, r);
  }

  /** `KVM_BUG_ON` of a condition KVM checks itself: the VM is bugged; the run stops with a violation. */
  private bugOn(what: string): never {
    this.bugged = true;
    throw new KvmBug(`KVM_BUG_ON: ${what}`);
  }

  /** `KVM_BUG_ON` after a failed SEAMCALL: the VM is bugged; the run stops with a violation. */
  bug(name: string, r: SeamResult): never {
    this.bugged = true;
    const extra =
      r.entry !== undefined
        ? ` (entry 0x${r.entry.toString(16)}, level_state 0x${r.levelState!.toString(16)})`
        : "";
    throw new KvmBug(`SEAMCALL ${name} failed: ${formatStatus(r.status)}${extra}`);
  }

  leak(pfn: number, cause: string): void {
    this.pages.markLeaked(pfn);
    this.vm.leak(cause);
  }

  /** RECLAIM of a page KVM gave the TD; true if it is back (the caller frees it), else it is leaked. */
  private reclaimOrLeak(pfn: number, what: string): boolean {
    const r = this.reclaim(pfn);
    if (isOk(r.status)) return true;
    this.leak(pfn, `TDH.PHYMEM.PAGE.RECLAIM of a ${what} failed: ${statusName(r.status)}`);
    return false;
  }

  /** The module's `CallListener`: every call it made for this TD is counted, and an event (with its text) if someone listens. */
  seamcallDone(
    leaf: number,
    r: SeamResult,
    tdr: number,
    a: number,
    b: number,
    c: number,
    d: number,
  ): void {
    this.calls.add(r.tdExit === undefined ? leaf : ACCEPT_EXIT);
    // The rare parts in functions of their own, so that this one stays small enough to inline.
    if (resultNotSuccess(r)) this.countFailure(r.status);
    if (this.vm?.events.on) this.emitCall(leaf, r, tdr, a, b, c, d);
  }

  private countFailure(status: bigint): void {
    if (isBusy(status)) this.busy++;
    else if (!isOk(status))
      this.errors[statusName(status)] = (this.errors[statusName(status)] ?? 0) + 1;
  }

  private emitCall(
    leaf: number,
    r: SeamResult,
    tdr: number,
    a: number,
    b: number,
    c: number,
    d: number,
  ): void {
    // A TDCALL that exited has no status: the event says what happened instead.
    const status = r.tdExit !== undefined ? `TD exit (${r.tdExit})` : statusName(r.status);
    const tone =
      r.tdExit !== undefined
        ? "exception"
        : isOk(r.status)
          ? "ok"
          : isBusy(r.status)
            ? "busy"
            : "error";
    this.vm.events.emit({
      type: "call",
      vm: this.vm.id,
      name: SEAMCALL_NAMES[leaf]!,
      detail: callDetail(leaf, tdr, a, b, c, d),
      status,
      tone,
      ...(r.injected ? { injected: true } : {}),
    });
  }

  // ------------------------------------------------------------------ checks, faults, the untrusted host

  checkInvariants(_vm: BackendVm, mirror: MirrorView): { check: string; message: string }[] {
    return checkTdxInvariants(this, mirror);
  }

  auditState(_vm: BackendVm, out: Map<number, string | number>): void {
    this.module.auditState(out);
    out.set(resourceId(this.space, 0), this.pages.auditState());
    out.set(
      resourceId(this.space, 1),
      `${this.premapped}/${this.dead}/${this.keyAssigned}/${this.runnable}`,
    );
    for (let v = 0; v < this.inGuest.length; v++)
      out.set(
        resourceId(this.space, 2 + v),
        `${this.inGuest[v]}/${this.cpus[v]}/${this.acceptExit[v]}`,
      );
  }

  injectFault(_vm: BackendVm, f: FaultSpec): void {
    if (!(SEAMCALL_NAMES as readonly string[]).includes(f.call)) {
      throw new Error(`unknown TDX call '${f.call}' (known: ${SEAMCALL_NAMES.join(", ")})`);
    }
    const status = TDX_STATUS.code(f.status);
    // An injected status stands in for the call, which then changes nothing and sets none of
    // its outputs: a success KVM would go on from is not one the module gave.
    if (isOk(status))
      throw new Error(
        `status ${f.status} cannot be injected (the call would not run, and KVM would go on as if it had); inject an error status`,
      );
    this.module.inject(this.tdr, { call: f.call, nth: f.nth, status, times: f.times });
  }

  rawCall(_vm: BackendVm, call: string, args: RawCallArgs): { status: string; detail: string } {
    const gpa = args.gpa ?? 0;
    const level = args.level ?? 0;
    const vcpu = args.vcpu ?? 0;
    const page = (): number => {
      if (args.page === undefined || args.page === "fresh") return this.pages.alloc();
      if (args.page === "mapped") return this.module.mappedPfn(this.td, gpa);
      return args.page;
    };
    let r: SeamResult;
    switch (call) {
      case "TDH.MEM.PAGE.AUG":
        r = this.module.memPageAug(gpa, level, this.tdr, page());
        break;
      case "TDH.MEM.SEPT.ADD":
        r = this.module.memSeptAdd(gpa, level, this.tdr, page());
        break;
      case "TDH.MEM.RANGE.BLOCK":
        r = this.module.memRangeBlock(gpa, level, this.tdr);
        break;
      case "TDH.MEM.RANGE.UNBLOCK":
        r = this.module.memRangeUnblock(gpa, level, this.tdr);
        break;
      case "TDH.MEM.TRACK":
        r = this.module.memTrack(this.tdr);
        break;
      case "TDH.MEM.PAGE.REMOVE":
        r = this.module.memPageRemove(gpa, level, this.tdr);
        break;
      case "TDH.MEM.SEPT.REMOVE":
        r = this.module.memSeptRemove(gpa, level, this.tdr);
        break;
      case "TDH.MEM.PAGE.DEMOTE":
        r = this.module.memPageDemote(gpa, level, this.tdr, page());
        break;
      case "TDH.MEM.PAGE.PROMOTE":
        r = this.module.memPagePromote(gpa, level, this.tdr);
        break;
      case "TDH.PHYMEM.PAGE.RECLAIM":
        r = this.module.phymemPageReclaim(page(), this.tdr);
        break;
      case "TDH.PHYMEM.PAGE.WBINVD":
        r = this.module.phymemPageWbinvd(page(), this.hkid, this.tdr);
        break;
      case "TDH.MR.FINALIZE":
        r = this.module.mrFinalize(this.tdr);
        break;
      // A vCPU's call runs where KVM would run it, on the CPU the vCPU runs on (LP = its index).
      case "TDH.VP.FLUSH":
        if (args.vcpu === undefined) throw new Error("TDH.VP.FLUSH names a vCPU: give vcpu: N");
        r = this.module.vpFlush(this.tdvprs[vcpu]!, vcpu);
        break;
      case "TDH.VP.ADDCX":
        if (args.vcpu === undefined) throw new Error("TDH.VP.ADDCX names a vCPU: give vcpu: N");
        r = this.module.vpAddcx(this.tdvprs[vcpu]!, page());
        break;
      case "TDH.VP.INIT":
        if (args.vcpu === undefined) throw new Error("TDH.VP.INIT names a vCPU: give vcpu: N");
        r = this.module.vpInit(this.tdvprs[vcpu]!, vcpu);
        break;
      case "TDH.PHYMEM.PAGE.RDMD":
        r = this.module.phymemPageRdmd(page(), this.tdr);
        break;
      // Metadata: `field` by name or as a hex id, `value` and `mask` (TDH.VP.WR) as numbers or hex strings.
      case "TDH.MNG.RD":
        r = this.module.mngRd(this.tdr, mdFieldByName(args.field));
        break;
      case "TDH.VP.RD":
        r = this.module.vpRd(this.tdvprs[vcpu]!, vcpu, mdFieldByName(args.field));
        break;
      case "TDH.VP.WR":
        r = this.module.vpWr(
          this.tdvprs[vcpu]!,
          vcpu,
          mdFieldByName(args.field),
          BigInt(args.value ?? 0),
          BigInt(args.mask ?? "0xffffffffffffffff"),
        );
        break;
      // The bring-up leaves, on a platform the host kernel brought up long ago: each is refused
      // in its own way (SYS_INIT_NOT_PENDING, TDMR_ALREADY_INITIALIZED, ...). `vcpu` picks the LP.
      case "TDH.SYS.INIT":
        r = this.module.sysInit();
        break;
      case "TDH.SYS.LP.INIT":
        r = this.module.sysLpInit(vcpu);
        break;
      case "TDH.SYS.KEY.CONFIG":
        r = this.module.sysKeyConfig(vcpu);
        break;
      case "TDH.SYS.TDMR.INIT":
        r = this.module.sysTdmrInit(
          args.page === undefined || typeof args.page !== "number" ? 0 : args.page,
        );
        break;
      case "TDH.MNG.VPFLUSHDONE":
        r = this.module.mngVpflushdone(this.tdr);
        break;
      case "TDH.PHYMEM.CACHE.WB":
        r = this.module.phymemCacheWb(this.tdr);
        break;
      case "TDH.MNG.KEY.FREEID":
        r = this.module.mngKeyFreeid(this.tdr);
        break;
      default:
        throw new Error(
          `raw call '${call}' is not one the TDX backend issues (AUG, SEPT.ADD, RANGE.BLOCK/UNBLOCK, TRACK, PAGE.REMOVE, SEPT.REMOVE, PAGE.DEMOTE, PAGE.PROMOTE, RECLAIM, WBINVD, PAGE.RDMD, MR.FINALIZE, VP.ADDCX, VP.INIT, VP.FLUSH, VPFLUSHDONE, CACHE.WB, KEY.FREEID, SYS.INIT, SYS.LP.INIT, SYS.KEY.CONFIG, SYS.TDMR.INIT, MNG.RD, VP.RD, VP.WR)`,
        );
    }
    // A leaf that reads metadata says what it read, register by register.
    const regs = r.regs
      ? ` ${Object.entries(r.regs)
          .map(([k, v]) => `${k.toUpperCase()}=0x${v.toString(16)}`)
          .join(" ")}`
      : "";
    return { status: statusName(r.status), detail: formatStatus(r.status) + regs };
  }

  stats(): BackendStats {
    return { calls: this.calls.record(), busy: this.busy, errors: { ...this.errors } };
  }

  // ------------------------------------------------------------------ what the UI shows

  walkTitle(_vm: BackendVm, root: "mirror" | "direct"): string {
    return root === "mirror" ? "mirror root (private) · S-EPT" : "direct root (shared alias)";
  }

  /** The state of the S-EPT entry a mirror entry stands for, as the host debugger reads it. */
  describeEntry(_vm: BackendVm, root: "mirror" | "direct", gfn: number, level: number): string {
    if (root !== "mirror" || this.td === undefined || this.td.septRoot < 0) return "";
    const st = this.module.entryAt(this.td, gfn, level - 1).state;
    return SEPT_STATE_NAMES[st] ?? String(st);
  }

  /** A mirrored page the guest has not accepted yet is pending; one under removal, blocked. */
  mapCell(vm: BackendVm, gfn: number, level: number): string | null {
    const st = this.describeEntry(vm, "mirror", gfn, level);
    return st === "PENDING" ? "?" : st.includes("BLOCKED") ? "b" : null;
  }

  /**
   * The page is the TD's when the PAMT says so (a PT_REG page owned by this TD's TDR: the host
   * reads only ciphertext), and accepted when the S-EPT leaf mapping the GFN to it, at whatever
   * level, is MAPPED: a PENDING page (AUG'd, not accepted) gives the guest a #VE, and BLOCKED
   * ones are on their way out.
   */
  guestPage(_vm: BackendVm, gfn: number, pfn: number): number {
    const td = this.td;
    if (td === undefined) return 0;
    const pamt = this.module.pamt;
    // A page of a 2 MiB page is the TD's by the 2M PAMT entry over it.
    const owned =
      pamt.type2m(pfn) !== PT_NDA
        ? pamt.owner2m(pfn) === this.tdr
        : pamt.type(pfn) !== PT_NDA && pamt.owner(pfn) === this.tdr;
    if (!owned) return 0;
    if (td.septRoot < 0) return GUEST_PAGE_OWNED;
    for (let lvl = 0; lvl <= 2; lvl++) {
      const e = this.module.entryAt(td, gfn, lvl);
      // FREE below a leaf (the walk stopped above `lvl`), or a table: look one level up.
      if (e.state === SEPT_FREE || e.state >= SEPT_NL_BLOCKED) continue;
      const mapsIt = e.pfn + (gfn % 512 ** lvl) === pfn;
      return GUEST_PAGE_OWNED | (e.state === SEPT_MAPPED && mapsIt ? GUEST_PAGE_ACCEPTED : 0);
    }
    return GUEST_PAGE_OWNED;
  }
}
