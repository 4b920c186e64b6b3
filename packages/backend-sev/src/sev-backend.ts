/**
 * The SEV-like backend: AMD SEV-SNP's model of protection (docs/sev-snp.md §1-§2). There is no mirror
 * table: one ordinary NPT (the direct root) maps private and shared GFNs alike, the host writes
 * it freely, and the hardware checks every access against the RMP, which says who owns each
 * host frame. KVM's part is to keep the RMP right: assign a frame when the guest first uses a
 * private page (`sev_gmem_prepare`), give it back when guest_memfd frees it
 * (`sev_gmem_invalidate`), cap private mappings at the RMP's page size, and split a 2M RMP
 * entry when an access needs 4K (`sev_handle_rmp_fault`).
 */
import {
  ACCESS_FAULT,
  ACCESS_FAULT_PRESENT,
  ACCESS_GUEST_EXCEPTION,
  ACCESS_OK,
  CallCounts,
  ControlPages,
  EEXIST,
  EFAULT,
  EINVAL,
  EIO,
  GUEST_PAGE_ACCEPTED,
  GUEST_PAGE_OWNED,
  IdAllocator,
  KvmBug,
  inject,
  injectable,
  resourceId,
  R_INJECTED,
  type Backend,
  type BackendStats,
  type BackendVm,
  type FaultSpec,
  type Level,
  type MirrorView,
  type RawCallArgs,
  type WalkedSpte,
} from "@tdpemu/backend-sdk";
import {
  RMP_ASSIGNED,
  RMP_IMMUTABLE,
  RMP_PAGE_2M,
  RMP_VALIDATED,
  RMP_VMSA,
  Rmp,
  VMPL_R,
  VMPL_W,
  VMPL_XS,
} from "./rmp.js";
import {
  FAIL_INUSE,
  FAIL_OVERLAP,
  NOTHING_IN_USE,
  RMP_STATUS,
  RMP_SUCCESS,
  psmash,
  pvalidate,
  rmpadjust,
  rmpupdateEntry,
  type PvalidateResult,
  type RmpUpdate,
} from "./rmp-instructions.js";
import { checkSevInvariants } from "./sev-invariants.js";
import {
  FW_STATUS,
  SEV_RET_INVALID_GUEST_STATE,
  SEV_RET_SUCCESS,
  snpPageReclaim,
} from "./snp-firmware.js";
import { RMP, SEV_ASIDS } from "./sev-platform.js";

/** #NPF error code bits (EXITINFO1, docs/sev-snp.md §1.3), and the x86 #PF bits they start with. */
export const PFERR_PRESENT = 1n << 0n;
export const PFERR_WRITE = 1n << 1n;
export const PFERR_USER = 1n << 2n;
export const PFERR_RMP = 1n << 31n;
export const PFERR_GUEST_FINAL = 1n << 32n;
export const PFERR_GUEST_PAGE = 1n << 33n;
export const PFERR_ENC = 1n << 34n;
export const PFERR_SIZEM = 1n << 35n;
/** A VMPL permission check failed (`PFERR_GUEST_VMPL_MASK`, which KVM defines and does not use). */
export const PFERR_VMPL = 1n << 36n;
/** #VC error code for an access to a page the guest never validated. */
export const SVM_EXIT_PAGE_NOT_VALIDATED = 0x404;

/**
 * The same bits as numbers, for error codes built on every access: all below 2^37, so exact as
 * doubles, and distinct, so a sum of them is their OR (no bigint until someone reads one).
 */
const ERR_PRESENT = Number(PFERR_PRESENT);
const ERR_WRITE = Number(PFERR_WRITE);
const ERR_USER = Number(PFERR_USER);
const ERR_RMP = Number(PFERR_RMP);
const ERR_GUEST_FINAL = Number(PFERR_GUEST_FINAL);
const ERR_ENC = Number(PFERR_ENC);
const ERR_VMPL = Number(PFERR_VMPL);

export interface SevException {
  kind: "#NPF" | "#VC" | "#PF";
  gpa: number;
  errorCode: bigint;
}

/**
 * Where the model stops a retry loop the kernel would run until the hardware agrees
 * (`rmpupdate()` in arch/x86/virt/svm/sev.c).
 */
const LINUX_SPIN_LIMIT = 1000;
/** The RMP instructions, then the firmware's commands (from FIRMWARE on: their statuses are FW_STATUS codes). */
export const RMP_CALLS: readonly string[] = [
  "RMPUPDATE",
  "PSMASH",
  "PVALIDATE",
  "RMPADJUST",
  "SNP_LAUNCH_UPDATE",
  "SNP_LAUNCH_FINISH",
  "SNP_PAGE_RECLAIM",
];
const RMPUPDATE = 0;
const PSMASH = 1;
const PVALIDATE = 2;
const RMPADJUST = 3;
const SNP_LAUNCH_UPDATE = 4;
const SNP_LAUNCH_FINISH = 5;
const SNP_PAGE_RECLAIM = 6;
const FIRMWARE = SNP_LAUNCH_UPDATE;

/**
 * Contention, counted as busy rather than an error: PSMASH's FAIL_INUSE, which
 * `snp_rmptable_psmash` retries. RMPUPDATE's FAIL_INUSE is an error: `rmpupdate()` retries only
 * FAIL_OVERLAP, and returns -EFAULT for the rest.
 */
function retried(call: number, status: number): boolean {
  return call === PSMASH && status === FAIL_INUSE;
}

/** The name of `status` as call `call` returns it: an RMP instruction's code or the firmware's. */
function statusName(call: number, status: number): string {
  return call >= FIRMWARE ? FW_STATUS.name(status) : RMP_STATUS.name(status);
}

/** `INITIAL_VMSA_GPA` (0xFFFFFFFFF000) as a GFN: where launch makes every vCPU's VMSA private. */
export const INITIAL_VMSA_GFN = 0xfffffffff;

/** Exception kinds as kept in the ring (an index into this list). */
const KINDS: SevException["kind"][] = ["#NPF", "#VC", "#PF"];
const NPF = 0;
const VC = 1;
const PF = 2;

/**
 * What `stats().calls` counts, by index: the RMP instructions and firmware calls (RMP_CALLS),
 * the ASID flush, then the exceptions raised (KINDS, from RAISED).
 */
const COUNTED = [
  ...RMP_CALLS,
  "ASID flush",
  "VMGEXIT(PSC)",
  "SNP_GCTX_CREATE",
  "SNP_DECOMMISSION",
  ...KINDS,
];
const ASID_FLUSH = RMP_CALLS.length;
/** The guest's Page State Change request (a VMGEXIT with the GHCB), which KVM takes to userspace. */
const PSC = ASID_FLUSH + 1;
/** The guest context's firmware commands, at launch start and at the VM's end (not injectable). */
const GCTX_CREATE = PSC + 1;
const DECOMMISSION = PSC + 2;
const RAISED = PSC + 3;
/** The ring keeps the latest 1,000 to 1,999: at 2,000 the older 1,000 go at once (O(1) each). */
const RING = 2000;
const RING_DROP = 1000;

@injectable()
export class SevBackend implements Backend {
  readonly name: string = "sev";
  readonly description =
    "SEV-like (AMD SEV-SNP): one nested table plus a reverse-map table checked on every access";
  readonly usesMirrorRoot = false;
  readonly hasPrivateMemory = true;
  /** `kvm_gmem_populate`: launch content goes into guest_memfd and the RMP, not into the NPT. */
  readonly populateMapsFirst = false;
  /**
   * A Linux guest's Page State Change descriptor holds VMGEXIT_PSC_MAX_ENTRY (64) entries, one
   * batch per VMGEXIT (`__set_pages_state`); KVM makes each a KVM_HC_MAP_GPA_RANGE exit.
   */
  readonly pscBatchEntries = 64;
  /**
   * The RMP records each entry's reads and writes (`Rmp.attach`); the call counters, while a
   * fault is injected, are resources of their own. The exception ring and the statistics are
   * only reported, never read by a hook, so they are not shared state the explorer needs.
   */
  readonly recordsOwnAccesses = true;

  asid = 0;
  /** How many exceptions were ever raised: `exceptionsSince(raisedTotal)` later gives the new ones. */
  raisedTotal = 0;
  /**
   * The latest exceptions, kept as numbers in a ring (a guest that never validates raises a #VC
   * on every access; objects kept that long would be copied by every young-generation GC).
   * Exception `i` (counting from 0 since the start) is in slot `i % RING` while it is kept.
   */
  private readonly ringKind = new Uint8Array(RING);
  private readonly ringGpa = new Float64Array(RING);
  private readonly ringCode = new Float64Array(RING);
  private kept = 0;
  /** `raisedTotal % RING`, kept by counting: a remainder by a constant V8 reads from a cell is an idiv. */
  private ringPos = 0;

  /** The latest #NPF, #VC and host #PF the hardware raised, with their error codes (at least the last 1,000; counts are in stats). A new array each time. */
  get exceptions(): SevException[] {
    const out: SevException[] = [];
    for (let i = this.raisedTotal - this.kept; i < this.raisedTotal; i++) {
      const s = i % RING;
      out.push({
        kind: KINDS[this.ringKind[s]!]!,
        gpa: this.ringGpa[s]!,
        errorCode: BigInt(this.ringCode[s]!),
      });
    }
    return out;
  }

  /** The exceptions raised since the total was `mark` (as many as are still kept). */
  exceptionsSince(mark: number): SevException[] {
    const first = this.raisedTotal - this.kept;
    return this.exceptions.slice(Math.max(0, mark - first));
  }
  private readonly calls = new CallCounts(COUNTED);
  /** Failed calls by status name, and how many were busy (`BackendStats`). */
  private readonly errors: Record<string, number> = {};
  private busy = 0;
  /** Calls of each of RMP_CALLS (by index), for fault injection. */
  private readonly callCount = new Float64Array(RMP_CALLS.length);
  private readonly injected: { call: string; nth: number; status: number; times: number }[] = [];
  private vm!: BackendVm;
  /**
   * Per vCPU (the host's last), the error code of the #NPF KVM has not looked at yet
   * (`faultFixup`), or -1: the VMCB's EXITINFO1, which each vCPU has its own of.
   */
  private lastNpfCode = new Float64Array(0);
  /** The resource space of the call counters (`callCount`), which injection makes shared. */
  private space = 0;
  private lastFailure = "";
  /** Set by a KVM_BUG: the VM is dead to KVM (`kvm->vm_bugged`). */
  bugged = false;
  /** Host pages KVM gives the hardware for the VM: the vCPUs' VMSAs. */
  private pages!: ControlPages;
  /** Each vCPU's VMSA page (`svm->sev_es.vmsa`), allocated with the vCPU. */
  vmsaPages: number[] = [];
  /** The guest context page (`sev->snp_context`), a firmware page; -1 once given back. */
  contextPage = -1;
  /**
   * The guest-request response page (`sev->guest_resp_buf`, `snp_guest_req_init` at
   * KVM_SEV_INIT2), a firmware page the firmware writes SNP_GUEST_REQUEST's answers into; -1
   * once given back.
   */
  responsePage = -1;
  /**
   * `kvm->arch.pre_fault_allowed`: set when SNP_LAUNCH_FINISH succeeds (`snp_launch_finish`),
   * with the VMSA pages' resource (RMP_CALLS.length).
   */
  private launchFinished = false;
  /**
   * The VMPL each vCPU runs at now (`enterVmpl`). The vCPU's own: only its own accesses read it,
   * so it is no state another task shares.
   */
  private vmpls = new Uint8Array(0);

  /** The host's RMP and ASIDs (`sev-platform.ts`), shared with every guest on the host. */
  constructor(
    @inject(RMP) readonly rmp: Rmp,
    @inject(SEV_ASIDS) private readonly asids: IdAllocator,
  ) {}

  init(vm: BackendVm): void {
    this.vm = vm;
    this.rmp.attach(vm.clock);
    this.space = vm.clock.newResourceSpace();
    this.lastNpfCode = new Float64Array(vm.config.vcpus + 1).fill(-1);
    this.vmpls = new Uint8Array(vm.config.vcpus + 1);
    this.asid = this.asids.alloc();
    this.pages = new ControlPages(
      vm.host.frames,
      vm.owner,
      vm.clock,
      resourceId(this.space, RMP_CALLS.length),
      "SEV VMSA pages",
    );
    // `snp_safe_alloc_page` at vCPU creation: never a 2M-aligned page (an erratum: a 2M-aligned
    // VMSA can take a false RMP #PF when a huge mapping covers it).
    const aligned: number[] = [];
    for (let v = 0; v < vm.config.vcpus; v++) {
      let p = this.pages.alloc();
      while (p % 512 === 0) {
        aligned.push(p);
        p = this.pages.alloc();
      }
      this.vmsaPages.push(p);
    }
    for (const p of aligned) this.pages.release(p);
    // KVM_SEV_INIT2 (`snp_guest_req_init`), then KVM_SEV_SNP_LAUNCH_START (`snp_context_create`):
    // the guest-request response page and the guest context are firmware pages
    // (`snp_alloc_firmware_page`: RMPUPDATE to assigned, to no guest, immutable), the second
    // filled by SNP_GCTX_CREATE. Made before any step: no injected fault reaches them, and an
    // injected fault's nth RMPUPDATE counts from the first one after them.
    this.responsePage = this.firmwarePage();
    this.contextPage = this.firmwarePage();
    this.count(GCTX_CREATE, SEV_RET_SUCCESS, this.contextPage);
  }

  /** `snp_alloc_firmware_page`: a page made Firmware (assigned to no guest, immutable). */
  private firmwarePage(): number {
    const pfn = this.pages.alloc();
    const r = rmpupdateEntry(this.rmp, pfn, RMP_ASSIGNED | RMP_IMMUTABLE, 0, 0, NOTHING_IN_USE);
    this.count(RMPUPDATE, r, pfn, -1, 1, "firmware");
    return pfn;
  }

  /** Private or shared is the access's C-bit, not the GPA (unlike TDX's shared bit). */
  classifyFault(_vm: BackendVm, _gpa: number, privateAccess: boolean): boolean {
    return privateAccess;
  }

  /** `sev_gmem_max_mapping_level`: the RMP entry's size, 4K for an unassigned frame. */
  maxMappingLevel(_vm: BackendVm, _gfn: number, pfn: number): Level {
    const f = this.rmp.readGoverning(pfn);
    return (f & RMP_ASSIGNED) !== 0 && (f & RMP_PAGE_2M) !== 0 ? 2 : 1;
  }

  /** Whether the entry that governs `pfn` assigns it (to any guest). */
  private assigned(pfn: number): boolean {
    return (this.rmp.readGoverning(pfn) & RMP_ASSIGNED) !== 0;
  }

  // ------------------------------------------------------------------ guest_memfd

  /**
   * `sev_gmem_prepare`: the first private use of a frame assigns it to the guest (Validated
   * clear). One 2M entry when the backing is 2M, the frame and the GFN are equally aligned and
   * all 512 frames are hypervisor-owned; else 4K. Already assigned: nothing to do.
   */
  gmemPrepare(vm: BackendVm, gfn: number, pfn: number): number {
    if (this.assigned(pfn)) return 0;
    const head = pfn - (pfn % 512);
    const gfnHead = gfn - (gfn % 512);
    let huge = vm.config.hostPageLevel >= 2 && pfn % 512 === gfn % 512;
    for (let i = 0; huge && i < 512; i++) if (this.assigned(head + i)) huge = false;
    const r = huge
      ? this.linuxRmpupdate(head, RMP_ASSIGNED | RMP_PAGE_2M, this.asid, gfnHead)
      : this.linuxRmpupdate(pfn, RMP_ASSIGNED, this.asid, gfn);
    // sev_gmem_prepare: "Failed to update RMP entry", -EINVAL.
    return r === RMP_SUCCESS ? 0 : EINVAL;
  }

  /**
   * `sev_gmem_invalidate`: freed guest_memfd frames go back to the hypervisor, with one 2M
   * RMPUPDATE where the whole 2M entry is freed, else PSMASH and 4K updates. A failure only
   * WARNs here (the frame stays assigned; the invariants will say so).
   */
  gmemInvalidate(_vm: BackendVm, pfn: number, npages: number): void {
    for (let p = pfn; p < pfn + npages; p++) {
      const g = this.rmp.governing(p);
      const f = this.rmp.flagsOf(g);
      if ((f & RMP_ASSIGNED) === 0) continue;
      if ((f & RMP_PAGE_2M) !== 0) {
        if (g === p && p + 512 <= pfn + npages) {
          this.linuxRmpupdate(p, RMP_PAGE_2M, 0, 0);
          p += 511;
          continue;
        }
        // "This shouldn't fail, but if it does, report it, but still try to update RMP entry
        // to shared": a failed PSMASH leaves the 2M entry, and the 4K update below overlaps it.
        this.snpRmptablePsmash(g);
      }
      this.linuxRmpupdate(p, 0, 0, 0);
    }
  }

  /**
   * `sev_gmem_post_populate` (KVM_SEV_SNP_LAUNCH_UPDATE), one page: the frame must still be
   * hypervisor-owned (-EEXIST otherwise: "initial shared state"); `rmp_make_private(..., immutable
   * = true)` makes it Pre-Guest (-EFAULT if the RMPUPDATE fails, as Linux's `rmpupdate()` in
   * arch/x86/virt/svm/sev.c returns); then the firmware's SNP_LAUNCH_UPDATE measures and encrypts
   * it and leaves it validated and mutable (Guest-Valid). A page the firmware refuses is taken back
   * (`snp_page_reclaim`), -EIO. These are `sev_gmem_post_populate`'s own errnos (the hook event's
   * result); the ioctl returns -EIO for any of them (`populateErrno`). Without `measure` the page would be
   * KVM_SEV_SNP_PAGE_TYPE_UNMEASURED: only the launch digest differs, which the model does not
   * keep.
   */
  /** `snp_launch_update`: any page `kvm_gmem_populate` refuses ends the ioctl with -EIO. */
  readonly populateErrno = EIO;

  populate(_vm: BackendVm, gfn: number, pfn: number, _measure: boolean): number {
    if (this.assigned(pfn)) {
      // Said here, in this step: `lastError` is read right after this hook, and what another
      // task's failure left there would make the op's result depend on an order the explorer
      // treats as equivalent.
      this.lastFailure = `gfn 0x${gfn.toString(16)}: frame 0x${pfn.toString(16)} is assigned in the RMP already (not in the initial shared state)`;
      return EEXIST;
    }
    if (this.linuxRmpupdate(pfn, RMP_ASSIGNED | RMP_IMMUTABLE, this.asid, gfn) !== RMP_SUCCESS)
      return EFAULT;
    // `snp_launch_update` does not look at the launch state: after SNP_LAUNCH_FINISH the page is
    // still made Pre-Guest, and the firmware refuses a guest past its LAUNCH state.
    const fw =
      this.injectedStatus(SNP_LAUNCH_UPDATE) ??
      (this.finished() ? SEV_RET_INVALID_GUEST_STATE : SEV_RET_SUCCESS);
    this.count(SNP_LAUNCH_UPDATE, fw, pfn, gfn, 1);
    if (fw !== SEV_RET_SUCCESS) {
      this.snpPageReclaim(pfn);
      return EIO;
    }
    const e = this.rmp.raw(pfn);
    this.rmp.set(pfn, (this.rmp.flagsOf(pfn) | RMP_VALIDATED) & ~RMP_IMMUTABLE, e.asid, e.gfn);
    return 0;
  }

  /**
   * `snp_page_reclaim` after a failed launch update: SNP_PAGE_RECLAIM, then
   * `kvm_rmp_make_shared`. Either failing is a KVM_BUG: the page can be neither used nor given
   * back, so `snp_leak_pages` keeps it from the host for good (counted in `leakedPages`).
   */
  private snpPageReclaim(pfn: number): void {
    const fw = this.injectedStatus(SNP_PAGE_RECLAIM) ?? snpPageReclaim(this.rmp, pfn);
    this.count(SNP_PAGE_RECLAIM, fw, pfn, -1, 1);
    if (fw !== SEV_RET_SUCCESS)
      this.leakAndBug(
        pfn,
        `SNP_PAGE_RECLAIM of page 0x${pfn.toString(16)} failed: ${FW_STATUS.name(fw)}`,
      );
    const r = this.linuxRmpupdate(pfn, 0, 0, 0);
    if (r !== RMP_SUCCESS)
      this.leakAndBug(
        pfn,
        `rmp_make_shared of reclaimed page 0x${pfn.toString(16)} failed: ${RMP_STATUS.name(r)}`,
      );
  }

  /** `KVM_BUG` with `snp_leak_pages(pfn, 1)`: the page is leaked on purpose and the VM is bugged. */
  private leakAndBug(pfn: number, cause: string): never {
    this.vm.leak(cause);
    this.bugged = true;
    throw new KvmBug(`${cause}; page 0x${pfn.toString(16)} leaked (snp_leak_pages)`);
  }

  /**
   * `snp_launch_finish`. First `snp_launch_update_vmsa`: each vCPU's VMSA page is made private at
   * INITIAL_VMSA_GPA, immutable, and given to SNP_LAUNCH_UPDATE as a VMSA page, which the
   * firmware measures and leaves a VMSA (validated, no longer immutable: KVM later gives it back
   * with a plain RMPUPDATE). A refused RMPUPDATE is -EFAULT, a refused launch update reclaims the
   * page (`snp_page_reclaim`) and fails with -EIO; vCPUs done before are not undone, as in the
   * kernel. Then SNP_LAUNCH_FINISH; a firmware error fails the ioctl with -EIO.
   */
  finalize(): number {
    // A second SNP_LAUNCH_FINISH goes through snp_launch_update_vmsa again, boot vCPU first, and
    // sev_es_sync_vmsa refuses a vCPU whose state is protected already: -EINVAL before any
    // firmware call. So does a retry after a failure that left some VMSA converted (or all,
    // SNP_LAUNCH_FINISH itself refused): the launch cannot be finished any more.
    if (this.finished()) return this.protectedAlready();
    for (const pfn of this.vmsaPages) {
      if ((this.rmp.flagsOf(pfn) & RMP_VMSA) !== 0) return this.protectedAlready();
      if (
        this.linuxRmpupdate(pfn, RMP_ASSIGNED | RMP_IMMUTABLE, this.asid, INITIAL_VMSA_GFN) !==
        RMP_SUCCESS
      )
        return EFAULT;
      const vmsaFw = this.injectedStatus(SNP_LAUNCH_UPDATE) ?? SEV_RET_SUCCESS;
      this.count(SNP_LAUNCH_UPDATE, vmsaFw, pfn, INITIAL_VMSA_GFN, 1, "VMSA");
      if (vmsaFw !== SEV_RET_SUCCESS) {
        this.snpPageReclaim(pfn);
        return EIO;
      }
      this.rmp.setFlags(pfn, RMP_ASSIGNED | RMP_VALIDATED | RMP_VMSA);
    }
    const fw = this.injectedStatus(SNP_LAUNCH_FINISH) ?? SEV_RET_SUCCESS;
    this.count(SNP_LAUNCH_FINISH, fw);
    if (fw !== SEV_RET_SUCCESS) return EIO;
    this.vm.clock.touch(resourceId(this.space, RMP_CALLS.length));
    this.launchFinished = true;
    return 0;
  }

  private protectedAlready(): number {
    this.lastFailure =
      "KVM_SEV_SNP_LAUNCH_FINISH: the vCPUs' state is protected already (sev_es_sync_vmsa)";
    return EINVAL;
  }

  /** Whether SNP_LAUNCH_FINISH has succeeded, recorded as a read of the launch's resource. */
  private finished(): boolean {
    this.vm.clock.fp?.read(resourceId(this.space, RMP_CALLS.length));
    return this.launchFinished;
  }

  /** KVM_PRE_FAULT_MEMORY once SNP_LAUNCH_FINISH has succeeded (`snp_launch_finish`). */
  preFaultAllowed(): boolean {
    return this.finished();
  }

  /**
   * `kvm_destroy_vcpus` → `sev_free_vcpu`: the vCPU's VMSA page goes back with a plain RMPUPDATE
   * to shared (`kvm_rmp_make_shared`, no firmware call), after guest_memfd's folios (the teardown
   * takes the file to be released before the VM's last reference) and before the guest context
   * is decommissioned. One that fails is a KVM_BUG_ON and the page is leaked; the teardown goes
   * on, as the kernel's does, and `destroy` reports it.
   */
  vcpuFree(_vm: BackendVm, vcpu: number): void {
    this.freeVmsa(vcpu);
  }

  private freeVmsa(vcpu: number): void {
    this.vm.clock.fp?.read(resourceId(this.space, RMP_CALLS.length));
    const pfn = this.vmsaPages[vcpu] ?? -1;
    if (pfn < 0) return;
    this.vmsaPages[vcpu] = -1;
    const r = this.linuxRmpupdate(pfn, 0, 0, 0);
    if (r === RMP_SUCCESS) {
      this.pages.release(pfn);
      return;
    }
    const cause = `rmp_make_shared of VMSA page 0x${pfn.toString(16)} failed: ${RMP_STATUS.name(r)}`;
    this.pages.markLeaked(pfn);
    this.vm.leak(cause);
    this.vmsaFailures.push(`${cause}; page 0x${pfn.toString(16)} leaked (snp_leak_pages)`);
  }

  /** The VMSA pages `vcpuFree` could not give back, for `destroy` to report (under the VMSA pages' resource). */
  private readonly vmsaFailures: string[] = [];

  /**
   * The VM is gone (`sev_vm_destroy`, after its vCPUs): the guest context is decommissioned, and
   * the pages' blocks go back to the host. The teardown frees every vCPU first; a VMSA page still
   * here (a caller that destroys without freeing the vCPUs) goes back as `vcpuFree` gives it.
   */
  destroy(): void {
    for (let v = 0; v < this.vmsaPages.length; v++) this.freeVmsa(v);
    this.decommission();
    this.pages.releaseBlocks();
    const failed = this.vmsaFailures.splice(0);
    if (failed.length > 0) {
      this.bugged = true;
      throw new KvmBug(failed.join("; "));
    }
  }

  /**
   * `sev_vm_destroy` for an SNP guest: `snp_guest_req_cleanup` gives the response page back,
   * then `snp_decommission_context`: SNP_DECOMMISSION, and the guest context page back. Each is
   * `snp_free_firmware_page`: `snp_reclaim_pages` (SNP_PAGE_RECLAIM, then RMPUPDATE to shared);
   * a page that cannot be reclaimed or made shared is leaked (`snp_leak_pages`), and the VM is
   * not bugged.
   */
  private decommission(): void {
    const resp = this.responsePage;
    this.responsePage = -1;
    if (resp >= 0) this.freeFirmwarePage(resp, "the guest-request response page");
    const pfn = this.contextPage;
    if (pfn < 0) return;
    this.contextPage = -1;
    this.count(DECOMMISSION, SEV_RET_SUCCESS, pfn);
    this.freeFirmwarePage(pfn, "the guest context page");
  }

  /** `snp_free_firmware_page` of `pfn` (`what` names it in a leak's cause). */
  private freeFirmwarePage(pfn: number, what: string): void {
    const fw = this.injectedStatus(SNP_PAGE_RECLAIM) ?? snpPageReclaim(this.rmp, pfn);
    this.count(SNP_PAGE_RECLAIM, fw, pfn, -1, 1);
    const r = fw === SEV_RET_SUCCESS ? this.linuxRmpupdate(pfn, 0, 0, 0) : -1;
    if (r === RMP_SUCCESS) {
      this.pages.release(pfn);
      return;
    }
    this.pages.markLeaked(pfn);
    this.vm.leak(
      fw !== SEV_RET_SUCCESS
        ? `SNP_PAGE_RECLAIM of ${what} 0x${pfn.toString(16)} failed: ${FW_STATUS.name(fw)}`
        : `rmp_make_shared of ${what} 0x${pfn.toString(16)} failed: ${RMP_STATUS.name(r)}`,
    );
  }

  /** A vCPU's flush at entry (`svm_flush_tlb_all`): the VMCB asks this VMRUN to flush the guest's ASID. */
  flushTlb(): void {
    this.calls.add(ASID_FLUSH);
  }

  // ------------------------------------------------------------------ the hardware's checks

  /**
   * The RMP checks after the NPT walk, in the manual's priority order (docs/sev-snp.md §1.3).
   * C=1 (private): the frame must be assigned, to this ASID, at this GPA, not immutable, with an
   * RMP page size matching the NPT leaf (a 2M leaf needs a 2M entry, a 4K leaf a 4K one), else
   * #NPF; then validated, else #VC 0x404. C=0: a write needs a hypervisor-owned frame, else
   * #NPF; shared reads are not checked.
   */
  checkTranslation(
    _vm: BackendVm,
    vcpu: number,
    gpa: number,
    write: boolean,
    privateAccess: boolean,
    pfn: number,
    level: number,
  ): number {
    const gfn = Math.floor(gpa / 4096);
    const base =
      ERR_GUEST_FINAL +
      ERR_PRESENT +
      ERR_USER +
      (write ? ERR_WRITE : 0) +
      (privateAccess ? ERR_ENC : 0);
    const rmp = this.rmp;
    const f = rmp.readGoverning(pfn);
    const assigned = (f & RMP_ASSIGNED) !== 0;
    if (!privateAccess) {
      if (write && assigned) return this.npf(vcpu, gpa, base + ERR_RMP);
      return ACCESS_OK;
    }
    const size2m = (f & RMP_PAGE_2M) !== 0;
    const expectGfn = size2m ? rmp.governingGfn + (pfn - rmp.governingPfn) : rmp.governingGfn;
    if (
      !assigned ||
      rmp.governingAsid !== this.asid ||
      expectGfn !== gfn ||
      (f & RMP_IMMUTABLE) !== 0
    )
      return this.npf(vcpu, gpa, base + ERR_RMP);
    // The page-size check of an access: RMP set, SIZEM not (the APM sets SIZEM only for a
    // PVALIDATE or RMPADJUST whose size mismatches the RMP; `sev_handle_rmp_fault`, case 2).
    if (level >= 2 !== size2m) return this.npf(vcpu, gpa, base + ERR_RMP);
    if ((f & RMP_VALIDATED) === 0) {
      this.raise(VC, gpa, SVM_EXIT_PAGE_NOT_VALIDATED);
      return ACCESS_GUEST_EXCEPTION;
    }
    // Last, the VMPL's right (docs/sev-snp.md §1.3): a read needs R, a write W. The #NPF has the
    // VMPL bit (with the RMP bit: it is one of the RMP checks). Execute is not modelled.
    const vmpl = this.vmpls[this.vcpuIndex(vcpu)]!;
    if (vmpl !== 0) {
      const need = write ? VMPL_W : VMPL_R;
      if ((rmp.vmplPerms(rmp.governingPfn, vmpl) & need) !== need)
        return this.npf(vcpu, gpa, base + ERR_RMP + ERR_VMPL);
    }
    return ACCESS_OK;
  }

  /** The vCPU runs at VMPL `vmpl` from its next access on. */
  enterVmpl(_vm: BackendVm, vcpu: number, vmpl: number): void {
    this.vmpls[this.vcpuIndex(vcpu)] = vmpl;
  }

  /**
   * RMPADJUST from the guest at its current VMPL (see `rmpadjust`): like PVALIDATE, it needs the
   * NPT to map the page (else KVM faults it in), and a 4K request over a 2M entry is a #NPF with
   * SIZEM that KVM answers with a PSMASH.
   */
  guestRmpAdjust(
    _vm: BackendVm,
    vcpu: number,
    gpa: number,
    npt: { pfn: number; level: number } | null,
    level: Level,
    target: number,
    perms: number,
    vmsa: boolean,
  ): number {
    const vmpl = this.vmpls[this.vcpuIndex(vcpu)]!;
    const letters = `${perms & VMPL_R ? "r" : ""}${perms & VMPL_W ? "w" : ""}${perms & VMPL_XS ? "x" : ""}`;
    return this.guestInstruction(
      RMPADJUST,
      vcpu,
      gpa,
      npt,
      level,
      `VMPL${target} ${letters || "none"}`,
      (gfn, pfn, base) =>
        rmpadjust(
          this.rmp,
          this.asid,
          gfn,
          pfn,
          level === 2,
          vmpl,
          target,
          perms,
          vmsa,
          base,
          PFERR_RMP,
          PFERR_SIZEM,
        ),
    );
  }

  /**
   * `sev_handle_rmp_fault` after a fault with the RMP bit: a private GFN behind a 2M RMP entry
   * is PSMASHed and 512 GFNs from the faulting one zapped (`kvm_zap_gfn_range(kvm, gfn, gfn +
   * PTRS_PER_PMD)`: not 2M-aligned, so the zap covers the huge leaf over `gfn` and the start of
   * the next 2 MiB), so it re-faults at 4K. A 4K entry: a spurious fault, nothing to do. A PSMASH
   * that fails is looked up again: 4K by now means another CPU split it; else the kernel warns
   * and zaps anyway.
   */
  faultFixup(vm: BackendVm, vcpu: number, gpa: number): { gfn: number; npages: number } | null {
    const v = this.vcpuIndex(vcpu);
    const code = this.lastNpfCode[v]!;
    this.lastNpfCode[v] = -1;
    // Bit 31 (RMP): the code is below 2^37, so the bit is that of the code divided by 2^31.
    if (code < 0 || Math.floor(code / ERR_RMP) % 2 === 0) return null;
    const gfn = Math.floor(gpa / 4096);
    if (!vm.attributes.isPrivate(gfn)) return null;
    const slot = vm.memslots.find(gfn);
    const pfn = slot?.gmem?.peekPfn(gfn - slot.baseGfn) ?? -1;
    if (pfn < 0) return null;
    const g = this.rmp.governing(pfn);
    const f = this.rmp.flagsOf(g);
    if ((f & RMP_ASSIGNED) === 0 || (f & RMP_PAGE_2M) === 0) return null;
    if (this.snpRmptablePsmash(g) !== RMP_SUCCESS) {
      const again = this.rmp.readGoverning(pfn);
      if ((again & RMP_ASSIGNED) !== 0 && (again & RMP_PAGE_2M) === 0) return null;
    }
    return { gfn, npages: 512 };
  }

  /**
   * PVALIDATE from the guest (the `accept` op) at 4K or 2M (`level`): the NPT must map the page
   * (else an NPF KVM fixes by faulting it in), then the RMP rules of `pvalidate` apply, page size
   * included (a 2M PVALIDATE over 4K RMP entries is FAIL_SIZEMISMATCH).
   */
  guestAccept(
    _vm: BackendVm,
    vcpu: number,
    gpa: number,
    npt: { pfn: number; level: number } | null,
    level: Level,
  ): number {
    return this.guestPvalidate(vcpu, gpa, npt, level, true);
  }

  /** PVALIDATE with validate clear: the guest gives a page up before asking for it to be shared (`set_pages_state`). */
  guestRescind(
    _vm: BackendVm,
    vcpu: number,
    gpa: number,
    npt: { pfn: number; level: number } | null,
    level: Level,
  ): number {
    return this.guestPvalidate(vcpu, gpa, npt, level, false);
  }

  /**
   * The guest's Page State Change request (`vmgexit_psc`, or the GHCB MSR protocol for one
   * page): a VMGEXIT that KVM turns into KVM_HC_MAP_GPA_RANGE for userspace. Counted; the RMP
   * changes later, when guest_memfd frees the pages (`sev_gmem_invalidate`) or the guest's next
   * access prepares them (`sev_gmem_prepare`).
   */
  guestMapGpa(
    _vm: BackendVm,
    _vcpu: number,
    gfn: number,
    npages: number,
    toPrivate: boolean,
  ): number {
    this.calls.add(PSC);
    if (this.vm?.events.on) {
      this.vm.events.emit({
        type: "call",
        vm: this.vm.id,
        name: "VMGEXIT(PSC)",
        detail: `gpa 0x${(gfn * 4096).toString(16)} ${npages} pages to ${toPrivate ? "private" : "shared"}`,
        status: "exit",
        tone: "ok",
      });
    }
    return ACCESS_OK;
  }

  private guestPvalidate(
    vcpu: number,
    gpa: number,
    npt: { pfn: number; level: number } | null,
    level: Level,
    validate: boolean,
  ): number {
    return this.guestInstruction(
      PVALIDATE,
      vcpu,
      gpa,
      npt,
      level,
      validate ? "" : "rescind",
      (gfn, pfn, base) =>
        pvalidate(
          this.rmp,
          this.asid,
          gfn,
          pfn,
          level === 2,
          validate,
          base,
          PFERR_RMP,
          PFERR_SIZEM,
        ),
    );
  }

  /**
   * A guest instruction on the page the NPT maps `gpa` to (PVALIDATE, RMPADJUST): without an NPT
   * leaf KVM must fault the page in first; an injected status fails it; a #NPF it raises is
   * KVM's to handle. Any other status but success is the guest's to see, and a Linux guest
   * terminates on every one: FAIL_NOUPDATE too (CF=1, the page was validated already;
   * `pvalidate_4k_page` stops the guest on any non-zero result, GHCB_TERM_PVALIDATE).
   */
  private guestInstruction(
    call: number,
    vcpu: number,
    gpa: number,
    npt: { pfn: number; level: number } | null,
    level: Level,
    note: string,
    exec: (gfn: number, pfn: number, npfBase: bigint) => PvalidateResult,
  ): number {
    if (npt === null) return ACCESS_FAULT;
    const gfn = Math.floor(gpa / 4096);
    const injected = this.injectedStatus(call);
    if (injected !== null) {
      this.count(call, injected, npt.pfn, gfn, level, note);
      return ACCESS_GUEST_EXCEPTION;
    }
    const r = exec(gfn, npt.pfn, PFERR_GUEST_FINAL | PFERR_PRESENT | PFERR_USER | PFERR_ENC);
    if (r.kind === "npf") {
      this.count(call, RMP_SUCCESS, npt.pfn, gfn, level, note);
      return this.npf(vcpu, gpa, Number(r.errorCode));
    }
    const status = r.kind === "ok" ? RMP_SUCCESS : r.status;
    this.count(call, status, npt.pfn, gfn, level, note);
    return status === RMP_SUCCESS ? ACCESS_OK : ACCESS_GUEST_EXCEPTION;
  }

  /** A host write to a frame (the kernel's direct map): an assigned frame gives #PF with the RMP bit. */
  hostWrite(pfn: number): SevException | null {
    if (!this.assigned(pfn)) return null;
    const ex: SevException = {
      kind: "#PF",
      gpa: -1,
      errorCode: PFERR_RMP | PFERR_WRITE | PFERR_PRESENT,
    };
    this.raise(PF, ex.gpa, Number(ex.errorCode));
    return ex;
  }

  // ------------------------------------------------------------------ instructions, counted

  /**
   * Linux's `rmpupdate()` (arch/x86/virt/svm/sev.c): RMPUPDATE again while it returns FAIL_OVERLAP
   * (another CPU is changing an overlapping entry). An overlap that never clears would spin the
   * kernel forever; the model stops after LINUX_SPIN_LIMIT tries with a KVM bug that says so.
   */
  private linuxRmpupdate(pfn: number, flags: number, asid: number, gfn: number): number {
    for (let tries = 1; ; tries++) {
      const status = this.rmpUpdateEntry(pfn, flags, asid, gfn);
      if (status !== FAIL_OVERLAP) return status;
      if (tries === LINUX_SPIN_LIMIT)
        throw new KvmBug(
          `RMPUPDATE of frame 0x${pfn.toString(16)} returned FAIL_OVERLAP ${tries} times in a row: Linux's rmpupdate() would spin here forever`,
        );
    }
  }

  /** `snp_rmptable_psmash`: PSMASH of the 2M-aligned frame, again while FAIL_INUSE (bounded as `linuxRmpupdate`). */
  private snpRmptablePsmash(pfn: number): number {
    const head = pfn - (pfn % 512);
    for (let tries = 1; ; tries++) {
      const status = this.psmash(head);
      if (status !== FAIL_INUSE) return status;
      if (tries === LINUX_SPIN_LIMIT)
        throw new KvmBug(
          `PSMASH of frame 0x${head.toString(16)} returned FAIL_INUSE ${tries} times in a row: snp_rmptable_psmash() would spin here forever`,
        );
    }
  }

  rmpUpdate(pfn: number, u: RmpUpdate): number {
    const flags =
      (u.assigned ? RMP_ASSIGNED : 0) |
      (u.size2m ? RMP_PAGE_2M : 0) |
      (u.immutable ? RMP_IMMUTABLE : 0);
    return this.rmpUpdateEntry(pfn, flags, u.asid, u.gfn);
  }

  /** RMPUPDATE with the new entry as RMP bits, ASID and GFN (see `rmpupdateEntry`), counted. */
  private rmpUpdateEntry(pfn: number, flags: number, asid: number, gfn: number): number {
    const status =
      this.injectedStatus(RMPUPDATE) ??
      rmpupdateEntry(this.rmp, pfn, flags, asid, gfn, NOTHING_IN_USE);
    this.count(
      RMPUPDATE,
      status,
      pfn,
      (flags & RMP_ASSIGNED) !== 0 ? gfn : -1,
      (flags & RMP_PAGE_2M) !== 0 ? 2 : 1,
    );
    return status;
  }

  psmash(pfn: number): number {
    const status = this.injectedStatus(PSMASH) ?? psmash(this.rmp, pfn);
    this.count(PSMASH, status, pfn, -1, 2);
    return status;
  }

  /** The index of vCPU `vcpu` (-1: the host's) in per-vCPU arrays. */
  private vcpuIndex(vcpu: number): number {
    return vcpu < 0 ? this.lastNpfCode.length - 1 : vcpu;
  }

  /** The call being counted got its status from an injected fault (for its event). */
  private injectedNow = false;

  /**
   * Counts a call of RMP_CALLS[call]; the status an injected fault gives it (the first that
   * matches), or null. With a fault injected, which call is the nth depends on the order of the
   * calls: the counter is then shared state, written by each call.
   */
  private injectedStatus(call: number): number | null {
    const n = ++this.callCount[call]!;
    if (this.injected.length === 0) return null;
    this.vm.clock.touch(resourceId(this.space, call));
    // The caller's own next call may end otherwise: its retry is not a no-op.
    this.vm.clock.update(R_INJECTED);
    for (const f of this.injected) {
      if (f.call === RMP_CALLS[call] && n >= f.nth && n < f.nth + f.times) {
        this.injectedNow = true;
        return f.status;
      }
    }
    return null;
  }

  /**
   * Counts a call of RMP_CALLS[call] that ended with `status`; for the event, the frame, the
   * guest page (-1 for none: a page given back to the hypervisor, a PSMASH) and the size.
   */
  private count(call: number, status: number, pfn = -1, gfn = -1, level = 0, note = ""): void {
    this.calls.add(call);
    // The rare parts in functions of their own, so that this one stays small enough to inline.
    if (status !== RMP_SUCCESS) this.countFailure(call, status);
    if (this.vm?.events.on) this.emitCall(call, status, pfn, gfn, level, note);
    this.injectedNow = false;
  }

  private countFailure(call: number, status: number): void {
    const n = statusName(call, status);
    if (retried(call, status)) this.busy++;
    else this.errors[n] = (this.errors[n] ?? 0) + 1;
    this.lastFailure = `${COUNTED[call]!} failed: ${n}`;
  }

  private emitCall(
    call: number,
    status: number,
    pfn: number,
    gfn: number,
    level: number,
    note: string,
  ): void {
    const name = COUNTED[call]!;
    const tone = status === RMP_SUCCESS ? "ok" : retried(call, status) ? "busy" : "error";
    const parts: string[] = [];
    if (gfn >= 0) parts.push(`gpa 0x${(gfn * 4096).toString(16)}`);
    if (pfn >= 0) parts.push(`pfn 0x${pfn.toString(16)}`);
    // A page given to no guest goes to the hypervisor, or, noted so, to the firmware.
    if (name === "RMPUPDATE" && gfn < 0)
      parts.push(note === "firmware" ? "to the firmware" : "to the hypervisor");
    if (level > 0) parts.push(level === 2 ? "2M" : "4K");
    if (note && note !== "firmware") parts.push(note);
    this.vm.events.emit({
      type: "call",
      vm: this.vm.id,
      name,
      detail: parts.join(" "),
      status: statusName(call, status),
      tone,
      ...(this.injectedNow ? { injected: true } : {}),
    });
  }

  private npf(vcpu: number, gpa: number, errorCode: number): number {
    this.lastNpfCode[this.vcpuIndex(vcpu)] = errorCode;
    this.raise(NPF, gpa, errorCode);
    return ACCESS_FAULT_PRESENT;
  }

  /** The hardware raises exception `kind` (an index into KINDS) with `errorCode`: kept in the ring, counted, and an event. */
  private raise(kind: number, gpa: number, errorCode: number): void {
    if (this.kept >= RING) this.kept -= RING_DROP;
    const s = this.ringPos;
    this.ringPos = s === RING - 1 ? 0 : s + 1;
    this.ringKind[s] = kind;
    this.ringGpa[s] = gpa;
    this.ringCode[s] = errorCode;
    this.kept++;
    this.raisedTotal++;
    this.calls.add(RAISED + kind);
    if (this.vm?.events.on) this.emitRaised(KINDS[kind]!, gpa, errorCode);
  }

  /** The event of a raised exception (its text made here, only for a listener: kept out of `raise`, which is inlined). */
  private emitRaised(name: string, gpa: number, errorCode: number): void {
    this.vm.events.emit({
      type: "call",
      vm: this.vm.id,
      name,
      detail: `gpa 0x${gpa.toString(16)} error 0x${errorCode.toString(16)}`,
      status: "raised",
      tone: "exception",
    });
  }

  lastError(): string {
    return this.lastFailure;
  }

  // ------------------------------------------------------------------ checks, faults, the untrusted host

  checkInvariants(vm: BackendVm, view: MirrorView): { check: string; message: string }[] {
    return checkSevInvariants(this, vm, view);
  }

  auditState(_vm: BackendVm, out: Map<number, string | number>): void {
    this.rmp.auditEntries(out);
    out.set(
      resourceId(this.space, RMP_CALLS.length),
      `${this.vmsaPages.join(",")}|${this.vmsaFailures.length}|${this.contextPage}|${this.responsePage}|${this.pages.auditState()}|${this.launchFinished}`,
    );
    if (this.injected.length > 0)
      for (let c = 0; c < RMP_CALLS.length; c++)
        out.set(resourceId(this.space, c), this.callCount[c]!);
  }

  injectFault(_vm: BackendVm, f: FaultSpec): void {
    if (!RMP_CALLS.includes(f.call))
      throw new Error(`unknown SEV call '${f.call}' (known: ${RMP_CALLS.join(", ")})`);
    // An RMP instruction fails with an RMP status, a firmware command with a firmware one.
    const status =
      RMP_CALLS.indexOf(f.call) >= FIRMWARE ? FW_STATUS.code(f.status) : RMP_STATUS.code(f.status);
    // An injected status stands in for the call, which then changes nothing: a success the
    // hypervisor would go on from is not one the hardware or firmware gave.
    if (status === 0)
      throw new Error(
        `status ${f.status} cannot be injected (the call would not run, and the hypervisor would go on as if it had); inject an error status`,
      );
    this.injected.push({ call: f.call, nth: f.nth, status, times: f.times });
  }

  /**
   * An untrusted host: RMPUPDATE.PRIVATE / RMPUPDATE.SHARED / PSMASH of a frame, or HOST.WRITE /
   * HOST.READ of one. `page: mapped` is the frame guest_memfd gives the GFN at `gpa`.
   */
  rawCall(vm: BackendVm, call: string, args: RawCallArgs): { status: string; detail: string } {
    const gfn = Math.floor((args.gpa ?? 0) / 4096);
    let pfn: number;
    if (args.page === "mapped") {
      const slot = vm.memslots.find(gfn);
      pfn = slot?.gmem?.peekPfn(gfn - slot.baseGfn) ?? -1;
    } else if (args.page === undefined || args.page === "fresh") {
      // From the host's frame allocator, which records the allocation itself.
      pfn = vm.host.frames.allocBlocks(1, 1, vm.owner, "untrusted host page") * 512;
    } else {
      pfn = args.page;
    }
    const named = (s: number) => ({
      status: RMP_STATUS.name(s),
      detail: `${call} page 0x${pfn.toString(16)}`,
    });
    switch (call) {
      case "RMPUPDATE.PRIVATE":
        return named(
          this.rmpUpdate(pfn, {
            assigned: true,
            size2m: (args.level ?? 0) >= 1,
            immutable: false,
            asid: this.asid,
            gfn,
          }),
        );
      case "RMPUPDATE.SHARED":
        return named(
          this.rmpUpdate(pfn, {
            assigned: false,
            size2m: (args.level ?? 0) >= 1,
            immutable: false,
            asid: 0,
            gfn: 0,
          }),
        );
      case "PSMASH":
        return named(this.psmash(pfn));
      case "HOST.WRITE": {
        const ex = this.hostWrite(pfn);
        return ex
          ? { status: "#PF", detail: `error 0x${ex.errorCode.toString(16)}` }
          : { status: "OK", detail: "written" };
      }
      case "HOST.READ":
        return { status: "OK", detail: this.assigned(pfn) ? "ciphertext" : "plaintext" };
      default:
        throw new Error(
          `raw call '${call}' is not one the SEV backend knows (RMPUPDATE.PRIVATE, RMPUPDATE.SHARED, PSMASH, HOST.WRITE, HOST.READ)`,
        );
    }
  }

  stats(): BackendStats {
    return { calls: this.calls.record(), busy: this.busy, errors: { ...this.errors } };
  }

  // ------------------------------------------------------------------ what the UI shows

  walkTitle(_vm: BackendVm, root: "mirror" | "direct"): string {
    return root === "direct" ? "NPT · RMP" : "mirror root (private)";
  }

  /**
   * The page is the guest's when the RMP entry governing it is assigned to this guest's ASID
   * (the host's reads of it fault), and accepted when that entry is validated (PVALIDATE, or
   * SNP_LAUNCH_UPDATE for the pages the guest starts with): an access to an unvalidated page
   * gives the guest a #VC.
   */
  guestPage(_vm: BackendVm, _gfn: number, pfn: number): number {
    if (this.rmp === undefined) return 0;
    const e = this.rmp.lookup(pfn);
    if (!e.assigned || e.asid !== this.asid) return 0;
    return GUEST_PAGE_OWNED | (e.validated ? GUEST_PAGE_ACCEPTED : 0);
  }

  /** The RMP entry that governs the page behind an NPT leaf. */
  describeEntry(
    _vm: BackendVm,
    root: "mirror" | "direct",
    _gfn: number,
    _level: number,
    spte: WalkedSpte,
  ): string {
    if (root !== "direct" || !spte.present || !spte.leaf || this.rmp === undefined) return "";
    const e = this.rmp.lookup(spte.pfn);
    if (!e.assigned) return "RMP: hypervisor";
    return `RMP: ASID ${e.asid} ${e.size2m ? "2M" : "4K"}${e.validated ? " validated" : ""}${e.immutable ? " immutable" : ""}`;
  }
}
