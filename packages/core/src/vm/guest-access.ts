/**
 * The guest's side: an access goes to the "hardware" (the backend's own check, or an EPT walk of
 * the direct root); an EPT violation enters KVM's fault handler (`kvm_tdp_page_fault`), and the
 * access is retried until it succeeds, as a vCPU re-executes the faulting instruction.
 */
import { KVM_MAX_HUGEPAGE_LEVEL, PAGE_SIZE, PAGES_PER_LEVEL, type Level } from "../arch/levels.js";
import { gfnHasBit, gfnWithoutDirectBits, gpaToGfn } from "../arch/gpa.js";
import {
  ACCESS_FAULT_PRESENT,
  ACCESS_GUEST_EXCEPTION,
  ACCESS_INTERNAL_ERROR,
  ACCESS_OK,
  ACCESS_REENTER,
} from "../backend/backend.js";
import { RETRY_WAIT, type ExecCtx, type Op } from "../exec/ctx.js";
import { runNow, runSteps } from "../exec/step-machine.js";
import { RET_PF_EMULATE, RET_PF_RETRY } from "../mmu/tdp-map.js";
import { eptWalk, WALK_OK, WALK_PERMISSION, type HwUpdate } from "./ept-walk.js";
import { convertMemory, withWriteLock, zapGfnRange } from "./host-ops.js";
import { splitCrossBoundaryLeafs } from "../mmu/split.js";
import type { TdpMmu } from "../mmu/tdp-mmu.js";
import type { Memslot } from "../mem/memslots.js";
import { OpError } from "./op-error.js";
import { RET_PF_MEMORY_FAULT_EXIT, type TdpFault } from "./tdp-fault.js";
import type { Vcpu, Vm } from "./vm.js";
import { ErrorOfKind } from "../error-kind.js";

/** A guest that re-faults this often on one access without progress is livelocked: a model bug. */
export const MAX_TRIES = 1000;

export class GuestLivelock extends ErrorOfKind("GuestLivelock") {}

/**
 * `kvm_tdp_page_fault` for one EPT violation at `gpa`, as a coroutine. `privateAccess` is the
 * backend's classification of the access. `prefetch` is a pre-fault by the host
 * (`KVM_PRE_FAULT_MEMORY`). The vCPU's own fault machine does the work (`tdp-fault.ts`).
 */
export function* tdpPageFault(
  _vm: Vm,
  vcpu: Vcpu,
  gpa: number,
  write: boolean,
  privateAccess: boolean,
  prefetch = false,
  present = false,
): Op<number> {
  const m = vcpu.pf.begin(gpa, write, privateAccess, prefetch, present);
  return vcpu.ctx.interleave ? yield* runSteps(m, vcpu.ctx) : runNow(m);
}

/** An event for the A/D bits the CPU set during a walk (only built while someone listens). */
function hwUpdateEvent(vm: Vm, rawGfn: number): HwUpdate {
  return (table, off, level, oldLo, newLo, hi) => {
    const gfn = gfnWithoutDirectBits(rawGfn, vm.mmu.gfnDirectBits);
    vm.events.emit({
      type: "spte",
      vm: vm.id,
      table,
      index: (off % 1024) >>> 1,
      mirror: false,
      level,
      gfn: gfn - (gfn % PAGES_PER_LEVEL[level]!),
      oldLo,
      oldHi: hi,
      newLo,
      newHi: hi,
      by: "cpu-a/d",
    });
  };
}

export type AccessOutcome = "ok" | "exception" | "mmio";

/** What a range of guest accesses ended in, page by page. */
export class AccessTally {
  ok = 0;
  exceptions = 0;
  mmio = 0;
  last: AccessOutcome = "ok";
}

/** What the hardware made of one access attempt. */
const HW_OK = 0;
const HW_EXCEPTION = 1;
/** An EPT violation on a GPA with no translation. */
const HW_FAULT = 2;
/** An EPT violation on a present translation (the exit qualification says so). */
const HW_FAULT_PRESENT = 3;
/** A present translation the backend's hardware check refused (SNP's #NPF with the RMP bit). */
const HW_RMP_FAULT = 4;
/** The entry failed and KVM enters again (`ACCESS_REENTER`). */
const HW_REENTER = 5;

/**
 * `ACCESS_INTERNAL_ERROR`: KVM_RUN returns KVM_EXIT_INTERNAL_ERROR, which no VMM recovers from
 * (QEMU stops the vCPU), so the op ends here with the backend's word for why.
 */
export function entryFailed(vm: Vm, vcpu: Vcpu): never {
  const why = vm.backend.lastError?.() || "the entry failed";
  throw new OpError(
    `vcpu${vcpu.id}: KVM_RUN ended with KVM_EXIT_INTERNAL_ERROR (${why}); the VMM stops the vCPU`,
  );
}

/**
 * One attempt of an access by the "hardware": the backend's own check if it has one (TDX
 * translates private GPAs through the S-EPT), else a walk of the direct root, then the
 * backend's check of the translation found (the RMP check on SNP).
 */
function hardwareAccess(
  vm: Vm,
  vcpu: Vcpu,
  gpa: number,
  write: boolean,
  privateAccess: boolean,
): number {
  const backend = vm.backend;
  let hw = -1;
  if (backend.checkGuestAccess) {
    hw = backend.checkGuestAccess(vm, vcpu.id, gpa, write, privateAccess);
  }
  if (hw >= 0) {
    if (hw === ACCESS_OK) return HW_OK;
    if (hw === ACCESS_GUEST_EXCEPTION) return HW_EXCEPTION;
    if (hw === ACCESS_REENTER) return HW_REENTER;
    if (hw === ACCESS_INTERNAL_ERROR) entryFailed(vm, vcpu);
    return hw === ACCESS_FAULT_PRESENT ? HW_FAULT_PRESENT : HW_FAULT;
  }
  const gfn = gpaToGfn(gpa);
  const w = eptWalk(
    vm.host.pool,
    vcpu.root!.slot,
    vm.rootLevel,
    gfn,
    write,
    vm.events.on ? hwUpdateEvent(vm, gfn) : null,
    vcpu.walk,
  );
  if (w !== WALK_OK) return w === WALK_PERMISSION ? HW_FAULT_PRESENT : HW_FAULT;
  if (!backend.checkTranslation) return HW_OK;
  hw = backend.checkTranslation(
    vm,
    vcpu.id,
    gpa,
    write,
    privateAccess,
    vcpu.walk.pfn,
    vcpu.walk.level,
  );
  if (hw === ACCESS_OK) return HW_OK;
  if (hw === ACCESS_GUEST_EXCEPTION) return HW_EXCEPTION;
  return hw === ACCESS_FAULT_PRESENT ? HW_RMP_FAULT : HW_FAULT;
}

/** One guest access of one page (see `guestAccessRange`). */
export function* guestAccessPage(
  vm: Vm,
  vcpu: Vcpu,
  gpa: number,
  write: boolean,
  sharedHint: boolean,
): Op<AccessOutcome> {
  const tally = new AccessTally();
  yield* guestAccessRange(vm, vcpu, gpa, 1, write, sharedHint, tally);
  return tally.last;
}

/**
 * Guest accesses of `count` pages from `gpa`, one page after the other: for each, the hardware
 * check, and on a violation the fault handler and a retry. A `KVM_EXIT_MEMORY_FAULT` is handled
 * as QEMU does: the VMM converts the page to what the guest used (`KVM_SET_MEMORY_ATTRIBUTES`)
 * and re-enters the guest. One generator serves the whole range, so a bulk access costs no
 * generator per page.
 */
export function* guestAccessRange(
  vm: Vm,
  vcpu: Vcpu,
  gpa0: number,
  count: number,
  write: boolean,
  sharedHint: boolean,
  tally: AccessTally,
): Op {
  const backend = vm.backend;
  if (vm.dead) throw new OpError(`vcpu${vcpu.id}: access after the VM was torn down`);
  const bits = vm.mmu.gfnDirectBits;
  const base = gpa0 - (gpa0 % PAGE_SIZE);
  page: for (let p = 0; p < count; p++) {
    let gpa = p === 0 ? gpa0 : base + p * PAGE_SIZE;
    const privateAccess = backend.classifyFault
      ? backend.classifyFault(vm, gpa, !sharedHint)
      : false;
    // A shared access on a VM with a shared bit (TDX) uses the shared alias of the GPA.
    if (!privateAccess && bits !== 0 && !gfnHasBit(gpaToGfn(gpa), bits)) gpa += bits * PAGE_SIZE;
    for (let tries = 0; tries < MAX_TRIES; tries++) {
      if (vm.rootsStale(vcpu)) yield* vm.reloadRoots(vcpu, true);
      else vm.enterGuest(vcpu);
      vm.clock.step++;
      if (vcpu.ctx.interleave) yield;
      const hw = hardwareAccess(vm, vcpu, gpa, write, privateAccess);
      if (hw === HW_OK || hw === HW_EXCEPTION) {
        const result = hw === HW_OK ? "ok" : "exception";
        if (vm.events.on)
          vm.events.emit({
            type: "access",
            vm: vm.id,
            vcpu: vcpu.id,
            gpa,
            write,
            private: privateAccess,
            result,
          });
        if (hw === HW_OK) tally.ok++;
        else {
          vcpu.exceptions++;
          tally.exceptions++;
        }
        tally.last = result;
        continue page;
      }
      if (hw === HW_REENTER) continue;
      // The exit qualification's "GPA was mapped": a violation on a present EPT entry (an RMP
      // refusal is a #NPF of its own, not a permission fault of the NPT walk).
      const present = hw === HW_FAULT_PRESENT;
      const rmpFault = hw === HW_RMP_FAULT;
      backend.vcpuExit?.(vm, vcpu.id);
      // kvm_tdp_page_fault: the vCPU's fault machine, stepped only when interleaving.
      const pf = beginEptViolation(vm, vcpu, gpa, write, privateAccess, present);
      let r = vcpu.ctx.interleave ? yield* runSteps(pf, vcpu.ctx) : runNow(pf);
      if (r === RET_PF_RETRY && privateAccess && backend.privateEptViolation?.localRetry)
        r = yield* retryPrivateFaultLocally(vm, vcpu, gpa, write);
      if (r === RET_PF_EMULATE) {
        tally.mmio++;
        tally.last = "mmio";
        continue page;
      }
      // npf_interception calls sev_handle_rmp_fault only after a handled fault (rc > 0), not when
      // the fault exits to userspace.
      if (rmpFault && backend.faultFixup && r !== RET_PF_MEMORY_FAULT_EXIT)
        yield* rmpFaultFixup(vm, vcpu, gpa);
      // The guest re-executes the access; until someone else changes something it would only
      // meet the same FROZEN entry or lost race again.
      if (r === RET_PF_RETRY && vcpu.ctx.interleave) yield RETRY_WAIT;
      if (r === RET_PF_MEMORY_FAULT_EXIT) yield* memoryFaultExit(vm, vcpu, privateAccess);
    }
    throw new GuestLivelock(
      `vcpu${vcpu.id}: access to ${gpa.toString(16)} made no progress after ${MAX_TRIES} faults`,
    );
  }
}

/**
 * The exit handler's `kvm_tdp_page_fault` for an EPT violation: the vCPU's fault machine, begun
 * with what the exit qualification says, unless the backend ignores it for private GPAs
 * (`tdx_handle_ept_violation`: a write, and not known to be present).
 */
function beginEptViolation(
  vm: Vm,
  vcpu: Vcpu,
  gpa: number,
  write: boolean,
  privateAccess: boolean,
  present: boolean,
): TdpFault {
  if (privateAccess && vm.backend.privateEptViolation?.asWrite)
    return vcpu.pf.begin(gpa, true, true, false, false);
  return vcpu.pf.begin(gpa, write, privateAccess, false, present);
}

/**
 * `KVM_EXIT_MEMORY_FAULT`, handled as QEMU's `kvm_convert_memory` does: the page becomes what the
 * guest used, and the vCPU runs again. A GFN with no memory behind it cannot be made private:
 * QEMU fails the conversion and the vCPU stops (an error of the op here, not a livelock).
 */
function* memoryFaultExit(vm: Vm, vcpu: Vcpu, toPrivate: boolean): Op {
  const gfn = vcpu.fault.gfn;
  if (toPrivate && vm.memslots.find(gfn) === null) {
    throw new OpError(
      `vcpu${vcpu.id}: KVM_EXIT_MEMORY_FAULT for a private access to gfn 0x${gfn.toString(16)}, which no memslot covers: the VMM cannot convert it and stops the vCPU`,
    );
  }
  yield* convertMemory(vm, vcpu.ctx, gfn, gfn + 1, toPrivate);
}

/**
 * The loop of `tdx_handle_ept_violation`: a private fault that returned RET_PF_RETRY is handled
 * again in KVM, without re-entering the guest, until it returns something else or the VM is
 * dead (-EIO; the guest's next entry fails). Interleaved, each retry first waits until someone
 * else has changed something (`cond_resched`); alone, nobody would, and after MAX_TRIES the loop
 * ends as a livelock.
 */
function* retryPrivateFaultLocally(vm: Vm, vcpu: Vcpu, gpa: number, write: boolean): Op<number> {
  for (let tries = 0; tries < MAX_TRIES; tries++) {
    if (vm.dead) return RET_PF_RETRY;
    if (vcpu.ctx.interleave) yield RETRY_WAIT;
    const m = beginEptViolation(vm, vcpu, gpa, write, true, false);
    const r = vcpu.ctx.interleave ? yield* runSteps(m, vcpu.ctx) : runNow(m);
    if (r !== RET_PF_RETRY) return r;
  }
  throw new GuestLivelock(
    `vcpu${vcpu.id}: the private fault at ${gpa.toString(16)} returned RET_PF_RETRY ${MAX_TRIES} times in KVM's local retry`,
  );
}

/**
 * `sev_handle_rmp_fault` after a fault with the RMP bit: the backend splits (PSMASH), KVM zaps the
 * range it names so that it re-faults at the new size. The kernel (`arch/x86/kvm/svm/sev.c`:
 * `sev_handle_rmp_fault()`) zaps [gfn, gfn + 512) from the faulting GFN, which may leave a 2M leaf
 * over the split entries below it; the hardware refuses access through it and the next fault there
 * maps 4K (`sev-invariants.ts`).
 */
function* rmpFaultFixup(vm: Vm, vcpu: Vcpu, gpa: number): Op {
  const z = vm.backend.faultFixup!(vm, vcpu.id, gpa);
  if (!z) return;
  yield* zapGfnRange(vm, vcpu.ctx, z.gfn, z.gfn + z.npages);
}

/**
 * The guest accepts a private page of `level` (1: 4K, 2: 2M) at `gpa` (TDG.MEM.PAGE.ACCEPT /
 * PVALIDATE), or with `rescind` gives up its validation of it (PVALIDATE with validate clear).
 * A backend without the notion does nothing.
 */
export function* guestAcceptPage(
  vm: Vm,
  vcpu: Vcpu,
  gpa: number,
  level: Level = 1,
  rescind = false,
): Op<AccessOutcome> {
  const backend = vm.backend;
  if (rescind ? !backend.guestRescind : !backend.guestAccept) return "ok";
  const call = rescind
    ? (npt: NptLeafFound) => backend.guestRescind!(vm, vcpu.id, gpa, npt, level)
    : (npt: NptLeafFound) => backend.guestAccept!(vm, vcpu.id, gpa, npt, level);
  return yield* guestPageInstruction(vm, vcpu, gpa, rescind ? "rescind" : "accept", call);
}

/**
 * RMPADJUST from the guest at its current VMPL (see `Backend.guestRmpAdjust`); a backend
 * without it refuses the op.
 */
export function* guestRmpAdjustPage(
  vm: Vm,
  vcpu: Vcpu,
  gpa: number,
  level: Level,
  target: number,
  perms: number,
  vmsa: boolean,
): Op<AccessOutcome> {
  const backend = vm.backend;
  if (!backend.guestRmpAdjust)
    throw new OpError(
      `rmpadjust: backend '${backend.name}' has no RMPADJUST (an SEV-SNP instruction)`,
    );
  return yield* guestPageInstruction(vm, vcpu, gpa, "rmpadjust", (npt) =>
    backend.guestRmpAdjust!(vm, vcpu.id, gpa, npt, level, target, perms, vmsa),
  );
}

type NptLeafFound = { pfn: number; level: number } | null;

/**
 * A guest instruction on the page at `gpa` (ACCEPT, PVALIDATE, RMPADJUST), as one atomic point
 * per try. When the backend reports that the page is not mapped yet, KVM maps it through the
 * fault path (the instruction itself raises the EPT violation or #NPF) and it is tried again.
 */
function* guestPageInstruction(
  vm: Vm,
  vcpu: Vcpu,
  gpa: number,
  name: "accept" | "rescind" | "rmpadjust",
  call: (npt: NptLeafFound) => number,
): Op<AccessOutcome> {
  const backend = vm.backend;
  for (let tries = 0; tries < MAX_TRIES; tries++) {
    if (vm.rootsStale(vcpu)) yield* vm.reloadRoots(vcpu, true);
    else vm.enterGuest(vcpu);
    vm.clock.step++;
    if (vcpu.ctx.interleave) yield;
    // PVALIDATE and RMPADJUST work on the frame the NPT maps the page to; the mirror-root
    // backends (TDX) find it in their own tables.
    let npt: NptLeafFound = null;
    if (!backend.usesMirrorRoot) {
      const w = eptWalk(
        vm.host.pool,
        vcpu.root!.slot,
        vm.rootLevel,
        gpaToGfn(gpa),
        false,
        null,
        vcpu.walk,
      );
      if (w === WALK_OK) npt = vcpu.walk;
    }
    const r = call(npt);
    if (r === ACCESS_OK) return "ok";
    if (r === ACCESS_REENTER) continue;
    if (r === ACCESS_INTERNAL_ERROR) entryFailed(vm, vcpu);
    if (r === ACCESS_GUEST_EXCEPTION) {
      vcpu.exceptions++;
      return "exception";
    }
    backend.vcpuExit?.(vm, vcpu.id);
    const accepted =
      name === "accept" ? (backend.guestAcceptLevel?.(vm, vcpu.id, gpaToGfn(gpa)) ?? 0) : 0;
    if (accepted > 0) yield* honorGuestAcceptLevel(vm, vcpu, gpaToGfn(gpa), accepted);
    // kvm_tdp_page_fault, as in guestAccessRange: no generator of its own when not interleaving.
    const m = beginEptViolation(vm, vcpu, gpa, true, true, r === ACCESS_FAULT_PRESENT);
    let pf = vcpu.ctx.interleave ? yield* runSteps(m, vcpu.ctx) : runNow(m);
    if (pf === RET_PF_RETRY && backend.privateEptViolation?.localRetry)
      pf = yield* retryPrivateFaultLocally(vm, vcpu, gpa, true);
    if (pf === RET_PF_EMULATE) return "mmio";
    if (r === ACCESS_FAULT_PRESENT && backend.faultFixup && pf !== RET_PF_MEMORY_FAULT_EXIT)
      yield* rmpFaultFixup(vm, vcpu, gpa);
    if (pf === RET_PF_RETRY && vcpu.ctx.interleave) yield RETRY_WAIT;
    if (pf === RET_PF_MEMORY_FAULT_EXIT) yield* memoryFaultExit(vm, vcpu, true);
  }
  throw new GuestLivelock(
    `vcpu${vcpu.id}: ${name} of ${gpa.toString(16)} made no progress after ${MAX_TRIES} faults`,
  );
}

/**
 * `tdx_honor_guest_accept_level` (the TDX huge-page series), before the fault of an ACCEPT the
 * guest made at `level`: under the write lock, split any mirror leaf bigger than that over the
 * page (BLOCK, TRACK, DEMOTE; no flush needed after, the TRACK did it), then set the
 * guest-inhibit bits of the sizes above, so that no fault maps the page bigger again (for a 4K
 * accept, 2M and 1G; for a 2M one, 1G).
 */
function* honorGuestAcceptLevel(vm: Vm, vcpu: Vcpu, gfn: number, level: number): Op {
  const slot = vm.memslots.find(gfn);
  // Read without mmu_lock, as the series does: the bit is only ever set, after the split.
  if (slot === null || level >= KVM_MAX_HUGEPAGE_LEVEL || slot.guestInhibited(gfn, level + 1))
    return;
  const span = PAGES_PER_LEVEL[level]!;
  const base = gfn - (gfn % span);
  const mmu = vm.mmu;
  yield* withWriteLock(mmu, vcpu.ctx, () =>
    splitAndInhibit(mmu, vcpu.ctx, slot, gfn, level, base, base + span),
  );
}

/** The section of `honorGuestAcceptLevel` under the write lock. */
function* splitAndInhibit(
  mmu: TdpMmu,
  ctx: ExecCtx,
  slot: Memslot,
  gfn: number,
  level: number,
  start: number,
  end: number,
): Op<void> {
  yield* splitCrossBoundaryLeafs(mmu, ctx, start, end);
  for (let l = level + 1; l <= KVM_MAX_HUGEPAGE_LEVEL; l++) slot.setGuestInhibit(gfn, l);
}
