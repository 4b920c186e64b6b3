/**
 * The backend: a table of optional hooks, one per thing a confidential-VM technology changes in
 * the MMU's life, like `kvm_x86_ops` with its optional static calls (or QEMU's accelerator ops).
 * A backend implements what its technology needs; the core calls a hook only if it is there.
 * The mirror hooks are called only when `usesMirrorRoot` is true.
 *
 * Each hook call is one atomic point: one SEAMCALL or RMP instruction is one step of the model
 * (a hook made of several returns a step machine, which takes one step per point).
 * Its accesses to the backend's state are recorded for the explorer: by the backend itself
 * (`recordsOwnAccesses`), or by the core's coarse wrapper (`recorded-backend.ts`).
 * Status codes follow the kernel: 0 for success, a negative errno (`-EBUSY`) for failure.
 */
import type { Level } from "../arch/levels.js";
import type { BackendVm } from "./backend-vm.js";
import type { StepMachine } from "../exec/step-machine.js";

export const EBUSY = -16;
export const EIO = -5;
export const EINVAL = -22;
export const ENOTTY = -25;
export const ENOMEM = -12;
export const EFAULT = -14;
export const EEXIST = -17;
export const ENOENT = -2;
export const EOPNOTSUPP = -95;

/** What the "hardware" step of a guest access found (`checkGuestAccess`). */
export const ACCESS_OK = 0;
/** An EPT/NPT violation: KVM's fault handler runs, then the access is retried. */
export const ACCESS_FAULT = 1;
/** An exception delivered to the guest (TDX #VE on a PENDING page, SEV #VC/#PF on an RMP check). */
export const ACCESS_GUEST_EXCEPTION = 2;
/** An EPT/NPT violation on a present translation (a permission fault): fast page fault may fix it. */
export const ACCESS_FAULT_PRESENT = 3;
/**
 * The entry failed and KVM enters again with nothing handled, the guest none the wiser (TDX:
 * TDH.VP.ENTER busy on the TD's epoch, which `tdx_exit_handlers_fastpath` answers with
 * EXIT_FASTPATH_EXIT_HANDLED). The access is tried again.
 */
export const ACCESS_REENTER = 4;
/**
 * The entry failed in a way KVM cannot handle: KVM_RUN returns KVM_EXIT_INTERNAL_ERROR (or an
 * errno) and the VMM stops the vCPU; the op ends with the backend's `lastError`.
 */
export const ACCESS_INTERNAL_ERROR = 5;

export interface BackendStats {
  /** Architectural calls by their architectural names (SEAMCALL/TDCALL leaves, RMPUPDATE, ...). */
  calls: Record<string, number>;
  /** Calls that returned BUSY (TDX_OPERAND_BUSY and the like): contention, retried. */
  busy: number;
  /** Calls that failed otherwise, by error name (a busy call is not an error). */
  errors: Record<string, number>;
}

export interface Backend {
  readonly name: string;
  readonly description: string;
  /** Private faults go to a mirror root whose changes the backend propagates (TDX). */
  readonly usesMirrorRoot: boolean;
  /** The VM has private memory: guest_memfd backing and private memory attributes. */
  readonly hasPrivateMemory: boolean;
  /**
   * The backend records every access to its own state into `vm.clock`'s recorder, at the grain
   * of its entries (an S-EPT entry, a PAMT entry, an RMP entry), reads as reads. Unset, the
   * core records them for it, coarsely: each hook that may change its state as a write of the
   * whole backend (`recorded-backend.ts`).
   */
  readonly recordsOwnAccesses?: boolean;

  /** Called once when the VM is created, before any other hook. */
  init?(vm: BackendVm): void;
  /** `kvm->arch.gfn_direct_bits`: GFN bits that select the direct (shared) root; 0 if none. */
  gfnDirectBits?(vm: BackendVm): number;
  /**
   * How the exit handler passes a private EPT violation to the fault path when it is not KVM's
   * default (`tdx_handle_ept_violation`): the exit qualification is ignored and the fault taken
   * as a write (private pages are always mapped writable), and a fault that returns
   * RET_PF_RETRY is retried in KVM without re-entering the guest, so that the module's
   * zero-step mitigation does not count entries that make no progress.
   */
  readonly privateEptViolation?: { asWrite: boolean; localRetry: boolean };
  /**
   * KVM_X86_QUIRK_IGNORE_GUEST_PAT is disabled for the VM (TDX: `tdx_vm_init`): leaf SPTEs get
   * WB without "ignore PAT", so the guest's PAT decides the memory type.
   */
  readonly honorsGuestPat?: boolean;
  /** Whether a guest access at `gpa` is private: the shared bit (TDX), the C-bit (SEV). */
  classifyFault?(vm: BackendVm, gpa: number, privateAccess: boolean): boolean;
  /** Largest level a private GFN may be mapped at (`private_max_mapping_level`). */
  maxMappingLevel?(vm: BackendVm, gfn: number, pfn: number): Level;

  /** Allocates the page handed to the backend for a mirror table (`external_spt`); a handle. */
  allocExternalSpt?(vm: BackendVm): number;
  /** The external page goes back to the host: never linked, or reclaimed with its table. */
  releaseExternalSpt?(vm: BackendVm, externalSpt: number): void;
  /**
   * The secure table the backend already has for a mirror table about to be made under the
   * entry at (`gfn`, `level`) (the entry `linkExternalSpt` would be called for), or -1 for none.
   * A backend that creates secure tables itself (at VM creation, in a host op of its own, as a
   * realm's starting-level RTTs are made with it) hands them over here: the mirror table takes
   * that page as its external page instead of `allocExternalSpt`'s, and `linkExternalSpt` is not
   * called when the entry becomes present. Asked when the fault path allocates the mirror
   * table, under the read `mmu_lock`; a table that loses the race to link is freed without
   * `releaseExternalSpt` (the page stays the backend's). Once linked, the page goes with the
   * table as any other: `freeExternalSpt`, then `releaseExternalSpt` when it is freed.
   */
  adoptExternalSpt?(vm: BackendVm, gfn: number, level: Level): number;
  /** A mirror non-leaf becomes present (TDH.MEM.SEPT.ADD). */
  linkExternalSpt?(vm: BackendVm, gfn: number, level: Level, externalSpt: number): number;
  /** A mirror leaf becomes present (TDH.MEM.PAGE.AUG, or PAGE.ADD before finalize). */
  setExternalSpte?(vm: BackendVm, gfn: number, level: Level, pfn: number): number;
  /**
   * A mirror leaf is removed, under the write lock; must flush the TLB itself. A removal made of
   * several atomic points (TDX: BLOCK, TRACK and the kick, REMOVE, WBINVD) returns a step
   * machine instead of a status: it runs one point per step, the first in the caller's step,
   * and its result is 0 or the errno's magnitude (5 for -EIO).
   */
  removeExternalSpte?(vm: BackendVm, gfn: number, level: Level, pfn: number): number | StepMachine;
  /**
   * A mirror huge leaf at `level` becomes a table of smaller leaves, under the write lock
   * (`split_external_spte`, the TDX huge-page series): `externalSpt` is the new table's external
   * page. A split of several atomic points (TDX: BLOCK, TRACK and the kick, DEMOTE) returns a
   * step machine, as `removeExternalSpte` may; its result is 0 or the errno's magnitude, and a
   * failure is a KVM bug. Without it the core never splits a mirror leaf.
   */
  splitExternalSpte?(
    vm: BackendVm,
    gfn: number,
    level: Level,
    externalSpt: number,
  ): number | StepMachine;
  /**
   * The mirror table at (`gfn`, `level`), whose external page is `externalSpt`, is to become one
   * huge leaf over the same pages (huge-page recovery, under the write lock; no posted KVM series
   * does this for TDX, where it is TDH.MEM.PAGE.PROMOTE). 0 when the backend merged it (the
   * external page is then free: the core gives it back with the table); -EAGAIN (-11; a step
   * machine ends with 11) when it refused and left everything as it was; anything else is a KVM
   * bug. A status or a step machine, as `removeExternalSpte`.
   */
  promoteExternalSpt?(
    vm: BackendVm,
    gfn: number,
    level: Level,
    externalSpt: number,
  ): number | StepMachine;
  /** A mirror table is freed; failure leaks the page, which the core counts. */
  freeExternalSpt?(vm: BackendVm, gfn: number, level: Level, externalSpt: number): number;
  /** Why the last failing hook failed, in the backend's words (for leak causes and messages). */
  lastError?(): string;

  /**
   * The memory attributes of [gfn, gfn + npages) became private or shared
   * (`KVM_SET_MEMORY_ATTRIBUTES`), called under the write `mmu_lock` in the change's second
   * lock section, as `kvm_arch_post_set_memory_attributes` is: the range is already unmapped
   * from the side it left and the attributes stored, and the invalidation has just ended (the
   * section's `on_lock`), so a fault may map the range once the lock is dropped. A technology
   * that tracks the guest's view of each page (a realm's RIPAS, say) updates it here. `vcpu` is
   * the vCPU whose request the change answers (a guest's page-state change or MapGPA, whose
   * `guestMapGpa` came first if it asked through one), or -1 when the VMM converted on its own
   * (a host op, or its answer to a KVM_EXIT_MEMORY_FAULT).
   */
  memoryAttributesChanged?(
    vm: BackendVm,
    gfn: number,
    npages: number,
    toPrivate: boolean,
    vcpu: number,
  ): void;
  /**
   * An entry of a direct root changed what it maps: a leaf or a table became present or went
   * (zapped, or frozen while its table is torn down), changed its PFN, or gained or lost write
   * permission (a fault, dirty logging, fast page fault). Called for every such store, after it
   * and in the same atomic step, under `mmu_lock` (read or write), with the direct root's GFN
   * without its direct bits; changes of the accessed and dirty bits alone are not reported. KVM
   * has no such hook (the hardware walks the direct root itself); a technology whose secure side
   * holds the unprotected mappings too (Arm CCA's `RMI_RTT_MAP_UNPROTECTED`) follows them here.
   * `oldPfn` and `newPfn` are the PFN of the leaf or of the table page, -1 for nothing;
   * `flags` holds `DIRECT_OLD_LEAF`, `DIRECT_NEW_LEAF`, `DIRECT_OLD_WRITABLE` and
   * `DIRECT_NEW_WRITABLE`. The store is made: the hook cannot refuse it, and a backend that
   * cannot follow throws `KvmBug`. It is on the fault path of every direct mapping: a backend
   * without it costs the core one test per store.
   */
  directSpteChanged?(
    vm: BackendVm,
    gfn: number,
    level: Level,
    oldPfn: number,
    newPfn: number,
    flags: number,
  ): void;

  /** A private page is first used (RMPUPDATE to assigned). */
  gmemPrepare?(vm: BackendVm, gfn: number, pfn: number): number;
  /** Private pages [pfn, pfn + npages) are freed (RMPUPDATE back to hypervisor-owned). */
  gmemInvalidate?(vm: BackendVm, pfn: number, npages: number): void;

  /**
   * The hardware step of a guest access, for the GPAs the backend's hardware walks itself
   * (TDX: private GPAs through the S-EPT; SEV: the NPT walk plus RMP checks). Returns
   * `ACCESS_OK`, `ACCESS_FAULT` (not present), `ACCESS_FAULT_PRESENT` (present, not allowed) or
   * `ACCESS_GUEST_EXCEPTION`, or -1 to let the core walk the EPT; or, when entering the guest
   * failed first, `ACCESS_REENTER` (KVM enters again) or `ACCESS_INTERNAL_ERROR` (the op ends).
   */
  checkGuestAccess?(
    vm: BackendVm,
    vcpu: number,
    gpa: number,
    write: boolean,
    privateAccess: boolean,
  ): number;
  /**
   * The hardware's checks after a successful walk of the direct root (SEV: the RMP checks): the
   * translation found maps `gpa` to host frame `pfn` with a leaf at `level`. Returns ACCESS_OK,
   * ACCESS_FAULT_PRESENT (a #NPF KVM must handle) or ACCESS_GUEST_EXCEPTION (#VC).
   */
  checkTranslation?(
    vm: BackendVm,
    vcpu: number,
    gpa: number,
    write: boolean,
    privateAccess: boolean,
    pfn: number,
    level: number,
  ): number;
  /**
   * After KVM handled a fault the hardware reported with the RMP bit (`sev_handle_rmp_fault`):
   * a GFN range to zap so it re-faults (after a PSMASH), or null.
   */
  faultFixup?(vm: BackendVm, vcpu: number, gpa: number): { gfn: number; npages: number } | null;

  /**
   * The guest accepts a private page of `level` (1: 4K, 2: 2M) at `gpa` (TDG.MEM.PAGE.ACCEPT,
   * PVALIDATE). `ACCESS_OK` when done, `ACCESS_FAULT` when KVM must map the page first (then the
   * accept is retried), `ACCESS_GUEST_EXCEPTION` when the guest gets an error back.
   */
  guestAccept?(
    vm: BackendVm,
    vcpu: number,
    gpa: number,
    npt: { pfn: number; level: number } | null,
    level: Level,
  ): number;
  /**
   * After `guestAccept` returned `ACCESS_FAULT`: the level the guest accepted at if the exit
   * says so (TDX's extended exit qualification of type ACCEPT), else 0. Unless the huge page
   * above is guest-inhibited already, the core then honors it (`tdx_honor_guest_accept_level`):
   * it splits the mirror leaves over that page under the write lock and sets the guest-inhibit
   * bits of the sizes above.
   */
  guestAcceptLevel?(vm: BackendVm, vcpu: number, gfn: number): number;
  /**
   * The guest gives up its validation of a private page before it is made shared (SEV-SNP's
   * PVALIDATE with validate clear, as Linux's `set_pages_state` does first). Returns as
   * `guestAccept`. A backend whose guest has nothing to rescind (TDX) leaves it out.
   */
  guestRescind?(
    vm: BackendVm,
    vcpu: number,
    gpa: number,
    npt: { pfn: number; level: number } | null,
    level: Level,
  ): number;
  /**
   * The guest asks the host to convert [gfn, gfn + npages) (the GHCB's Page State Change
   * request, TDG.VP.VMCALL<MapGPA>): the vCPU leaves the guest for KVM, which exits to userspace
   * with KVM_HC_MAP_GPA_RANGE. The backend counts its exit; the core then has the VMM convert.
   * `ACCESS_OK`, or `ACCESS_GUEST_EXCEPTION` when the guest's request is refused: then nothing is
   * converted. An entry that failed first is `ACCESS_REENTER` or `ACCESS_INTERNAL_ERROR`, as for
   * `checkGuestAccess`.
   */
  guestMapGpa?(
    vm: BackendVm,
    vcpu: number,
    gfn: number,
    npages: number,
    toPrivate: boolean,
  ): number;
  /**
   * The most pages (of the op's size) one conversion request of the guest carries: SEV-SNP's
   * Page State Change descriptor holds VMGEXIT_PSC_MAX_ENTRY (64) entries, and a Linux guest
   * gives up, requests and validates one batch at a time. Absent, the whole range goes in one
   * request (a TD's MapGPA).
   */
  readonly pscBatchEntries?: number;
  /**
   * The vCPU runs its next op at privilege level `vmpl` (SEV-SNP's VMPLs: an SVSM at VMPL0, the
   * OS above it, each with a VMSA of its own). Only the vCPU itself reads it back, in its own
   * accesses. A backend without levels leaves it out, and then an op at any level but 0 is refused.
   */
  enterVmpl?(vm: BackendVm, vcpu: number, vmpl: number): void;
  /**
   * RMPADJUST from the guest at its current VMPL: VMPL `target` gets `perms` (read 1, write 2,
   * execute-user 4, execute-supervisor 8) on the page at `gpa`, of `level`; at VMPL0 `vmsa` sets
   * or clears the page's VMSA bit. Returns as `guestAccept`.
   */
  guestRmpAdjust?(
    vm: BackendVm,
    vcpu: number,
    gpa: number,
    npt: { pfn: number; level: number } | null,
    level: Level,
    target: number,
    perms: number,
    vmsa: boolean,
  ): number;
  /**
   * Host ops the backend defines, by name: a scenario writes `{ op: <backend>.<name>, ... }` in
   * its host program, and the operands are checked against `params` when the run is built, with
   * the same one-line errors as built-in ops' (`checkPluginOps`).
   */
  readonly hostOps?: Readonly<Record<string, HostOpSchema>>;
  /**
   * Runs host op `name` with its checked operands: one atomic point, with no KVM lock held (an
   * ioctl of the backend's own). Returns a status, which the op's result reports.
   */
  runHostOp?(
    vm: BackendVm,
    name: string,
    args: Readonly<Record<string, number | string | boolean>>,
  ): number;
  /**
   * Host op before the guest runs: initial content of a private page (PAGE.ADD, LAUNCH_UPDATE),
   * measured if `measure` (TDX: KVM_TDX_MEASURE_MEMORY_REGION, TDH.MR.EXTEND; SEV-SNP: a NORMAL
   * page rather than an UNMEASURED one). 0, or the negative errno the ioctl returns to the VMM
   * (the populate stops there).
   */
  populate?(vm: BackendVm, gfn: number, pfn: number, measure: boolean): number;
  /**
   * The populate ioctl's own checks, before the first private page is mapped or touched (TDX:
   * KVM_TDX_INIT_MEM_REGION is -EINVAL once the TD is finalized). 0 to go on, else the errno
   * the op ends with.
   */
  canPopulate?(vm: BackendVm): number;
  /**
   * The errno the populate ioctl returns for a private page it refuses, whatever the reason (the
   * op's `detail` still says which). SEV-SNP: -EIO, as `snp_launch_update` turns any error of
   * `kvm_gmem_populate` into it (and after a partial success the VMM calls again from the
   * refused page, which then fails first). Absent: the reason's own (TDX and CCA pass it on).
   */
  readonly populateErrno?: number;
  /**
   * `kvm->arch.pre_fault_allowed`: whether KVM_PRE_FAULT_MEMORY may run now; until it may, the
   * ioctl is -EOPNOTSUPP before it touches a page. A VM with private memory starts without it
   * (`svm_vm_init`: `!has_private_mem`), and gets it once its initial state is measured: TDX in
   * `tdx_td_finalize`, SEV-SNP when SNP_LAUNCH_FINISH succeeds. Absent: always allowed.
   */
  preFaultAllowed?(vm: BackendVm): boolean;
  /**
   * Whether `populate` maps the page through the fault path first (TDX: `kvm_tdp_map_page`, then
   * PAGE.ADD; the default) or only fills guest_memfd (SEV: `kvm_gmem_populate`; the guest's
   * first access maps it).
   */
  readonly populateMapsFirst?: boolean;
  /** Host op: the VM's initial state is complete (TDH.MR.FINALIZE, SNP_LAUNCH_FINISH). */
  finalize?(vm: BackendVm): number;
  /** VM teardown, after the shared mappings are gone and before the mirror roots are zapped (TDX: HKID release). */
  teardown?(vm: BackendVm): void;
  /**
   * Host op `terminate`: the VMM ends the VM before destroying it (TDX: KVM_TDX_TERMINATE_VM,
   * which marks the VM dead and releases the HKID at once, so that the teardown after it
   * reclaims private pages instead of removing them one by one). 0 or a negative errno. Called
   * once the vCPUs have stopped, then the ordinary teardown runs. Without it the op gets
   * -ENOTTY, as KVM answers a sub-ioctl the VM's type does not have.
   */
  terminate?(vm: BackendVm): number;

  /**
   * A vCPU's TLB flush at its entry into the guest, for a `KVM_REQ_TLB_FLUSH` a remote flush made
   * or after it loaded a new root (INVEPT, an ASID flush, TDX's shared-EPT flush). vCPU -1 is
   * the host's own (a pre-fault ioctl's).
   */
  flushTlb?(vm: BackendVm, vcpu: number): void;
  /** `kvm_vcpu_kick`: a vCPU in guest mode is made to leave it (a remote flush's IPI; TDX: a TD exit). */
  kickVcpu?(vm: BackendVm, vcpu: number): void;

  /** The vCPU left guest mode on an EPT/NPT violation (TD exit, #VMEXIT). */
  vcpuExit?(vm: BackendVm, vcpu: number): void;
  /**
   * `kvm_destroy_vcpus`, at teardown: vCPU `vcpu`'s own state goes (`vcpu_free`; TDX:
   * `tdx_vcpu_free` reclaims its TDCX pages, then its TDVPR). After `teardown` (the VM's
   * pre-destroy) and before the roots' last zap, as `kvm_arch_destroy_vm` frees the vCPUs before
   * `kvm_mmu_uninit_vm`; within `kvm_arch_vcpu_destroy`, after the vCPU's direct root is put
   * (`kvm_mmu_unload`) and before its mirror root is (`kvm_mmu_destroy`).
   */
  vcpuFree?(vm: BackendVm, vcpu: number): void;
  /** The VM is gone (roots zapped, memory back): reclaim the control pages. */
  destroy?(vm: BackendVm): void;
  /** The backend's own invariants (TDX: mirror equals S-EPT, PAMT consistent), given a view of the mirror. */
  checkInvariants?(vm: BackendVm, mirror: MirrorView): { check: string; message: string }[];
  /**
   * `checkInvariants` reads no guest memory state: neither the memory attributes nor the guest
   * memory's backing (its pages and folios, shared or guest_memfd). The explorer then skips it
   * after a step that changed only such state (a conversion's attribute store, a folio locked
   * or prepared), as it would have found what it found before. With the footprint audit the
   * explorer runs the skipped checks anyway, and a finding of theirs fails the audit, as does a
   * read of guest memory state they record.
   */
  readonly checkIgnoresGuestMemory?: boolean;
  /**
   * For the footprint audit (a backend that `recordsOwnAccesses`): every piece of its state that
   * a hook may change, each under the resource id its accessors record, as a value that changes
   * when the state does. Records nothing.
   */
  auditState?(vm: BackendVm, out: Map<number, string | number>): void;
  /** Fault injection: the named call returns `status` on its `nth` invocation, `times` times. */
  injectFault?(vm: BackendVm, fault: FaultSpec): void;
  /**
   * An untrusted host's raw call, bypassing KVM (a malicious VMM): returns the status by name
   * and as the backend formats it.
   */
  rawCall?(vm: BackendVm, call: string, args: RawCallArgs): { status: string; detail: string };

  stats(): BackendStats;

  // What the terminal UI shows of the backend. All optional, each with a default; the UI names
  // no backend, so a plugin's state shows the way TDX's and SEV's do. They read state between
  // steps and record nothing.

  /**
   * The title of a root's walk in the walk pane. Defaults: "mirror root (private)"; the direct
   * root "direct root (shared alias)" when it has GFN bits, else "EPT". (TDX: "· S-EPT"; SEV:
   * "NPT · RMP".)
   */
  walkTitle?(vm: BackendVm, root: "mirror" | "direct"): string;
  /**
   * The backend's word on the entry at KVM `level` (1 = 4K) of a walk of `gfn` through `root`
   * (TDX: the state of the S-EPT entry a mirror entry stands for; SEV: the RMP entry behind a
   * leaf), or "" for nothing. `spte` is what the root's entry holds.
   */
  describeEntry?(
    vm: BackendVm,
    root: "mirror" | "direct",
    gfn: number,
    level: number,
    spte: WalkedSpte,
  ): string;
  /**
   * The GPA map's class for a GFN that the mirror root maps with a leaf at `level`: one of the
   * map's letters (`MAP_CELL_CLASSES`), or null for the default ('p', or 'P' above 4K).
   * TDX: '?' for a PENDING page, 'b' for a blocked one.
   */
  mapCell?(vm: BackendVm, gfn: number, level: number): string | null;
  /** Lines of the backend's own for the stats pane, as [label, value]. */
  extraStats?(vm: BackendVm): [string, string][];

  /**
   * The guest's side of one page, for the report's summary of guest memory (`run --json`,
   * `guestMemory`): `GUEST_PAGE_OWNED` when the frame `pfn` behind `gfn` (its guest_memfd page
   * if the GFN is private, its userspace page if shared; asked only of GFNs that have one)
   * belongs to the guest, so the trusted side refuses the host its contents (TDX: a PT_REG page of this TD
   * in the PAMT; SEV-SNP: an RMP entry assigned to this guest's ASID), and `GUEST_PAGE_ACCEPTED`
   * when the guest may use it as private memory without accepting it first (TDX: the S-EPT leaf
   * is MAPPED; SEV-SNP: the RMP entry is validated). Read between steps; records nothing.
   * Default 0: the host's page, nothing for the guest to accept (plain EPT).
   */
  guestPage?(vm: BackendVm, gfn: number, pfn: number): number;
}

/** `guestPage`: the guest may use the page as private memory without accepting it first. */
export const GUEST_PAGE_ACCEPTED = 1;
/** `guestPage`: the frame is the guest's; the host cannot read its contents. */
export const GUEST_PAGE_OWNED = 2;

/** `directSpteChanged`'s flags: the old entry was a leaf (else a table, or nothing). */
export const DIRECT_OLD_LEAF = 1;
/** The new entry is a leaf. */
export const DIRECT_NEW_LEAF = 2;
/** The old entry was writable. */
export const DIRECT_OLD_WRITABLE = 4;
/** The new entry is writable. */
export const DIRECT_NEW_WRITABLE = 8;

/** A walked entry, as `describeEntry` is told of it. */
export interface WalkedSpte {
  present: boolean;
  /** A leaf (4K, or a huge page), not a table. */
  leaf: boolean;
  /** The host PFN it maps, or the table it points to; 0 when not present. */
  pfn: number;
}

/** The GPA map's classes, with what the UI says of each. */
export const MAP_CELL_CLASSES: Readonly<Record<string, string>> = {
  ".": "unmapped",
  s: "shared",
  p: "private 4K",
  P: "private 2M+",
  "?": "pending",
  b: "blocked",
};

/** The kinds of operand a plugin's host op may take (`HostOpSchema`), checked as built-in ops' are. */
export type HostOpParamKind = "gpa" | "size" | "count" | "number" | "string" | "boolean";

/** A host op a plugin backend defines: what it does, and its operands by name. */
export interface HostOpSchema {
  description: string;
  params: Readonly<Record<string, { kind: HostOpParamKind; optional?: boolean }>>;
}

/** A fault to inject: `call` (an architectural name) returns `status` (a status name) on its `nth` call. */
export interface FaultSpec {
  call: string;
  nth: number;
  status: string;
  times: number;
}

/** Operands of a raw call from the untrusted host. */
export interface RawCallArgs {
  gpa?: number;
  level?: number;
  /** A host PFN, or "fresh" for a free host page, or "mapped" for the page the TD has at `gpa`. */
  page?: number | "fresh" | "mapped";
  /** A vCPU by index, for calls that name one (TDX: its TDVPR, on the CPU it runs on). */
  vcpu?: number;
  /** A metadata field, by name or as a hex id (TDX: TDH.MNG.RD, TDH.VP.RD/WR). */
  field?: string;
  /** A 64-bit value and write mask (TDH.VP.WR), as a number or a hex string. */
  value?: string;
  mask?: string;
}

/** What a mirror entry is, for a backend's checks. */
export type MirrorEntryKind = "leaf" | "table";

/** A read-only view of the mirror root's entries, for backend invariant checks. */
export interface MirrorView {
  /**
   * Every present mirror entry below the root: KVM level (1 = 4K), leaf or table, the PFN (or
   * the external page of a table), and whether the backend is being told about it right now
   * (`inFlight`: frozen, or published and its hook not called yet), when the two may differ.
   * Root by root, each in its walk's order (an entry, then the table under it), so one root's
   * entries come by ascending GFN, and at one GFN the higher level first.
   */
  forEach(
    cb: (
      gfn: number,
      level: number,
      kind: MirrorEntryKind,
      pfn: number,
      externalSpt: number,
    ) => void,
  ): void;
  /** The same for the valid direct roots (GFNs without the shared bit). */
  forEachDirect(cb: (gfn: number, level: number, kind: MirrorEntryKind, pfn: number) => void): void;
  /** Mirror entries whose backend call is under way (frozen or not yet propagated). */
  inFlight(gfn: number, level: number): boolean;
  /**
   * Each of those entries, as (gfn, KVM level): a frozen one is not present, so `forEach` does
   * not show it, though its backend call may already have happened.
   */
  forEachInFlight(cb: (gfn: number, level: number) => void): void;
  /** The present mirror entry at KVM `level` covering `gfn`, or null. */
  lookup(
    gfn: number,
    level: number,
  ): { kind: MirrorEntryKind; pfn: number; externalSpt: number } | null;
}

/** The DI token under which a VM's backend is registered. */
export const BACKEND = Symbol.for("tdpemu.Backend");

export function emptyBackendStats(): BackendStats {
  return { calls: {}, busy: 0, errors: {} };
}
