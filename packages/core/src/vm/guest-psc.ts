/**
 * A conversion the guest starts itself, as a Linux guest's `set_memory_decrypted` and
 * `set_memory_encrypted` do it, on every backend the same program:
 *
 * - private → shared: the guest first gives up each page (SEV-SNP: PVALIDATE with validate
 *   clear, `set_pages_state`; a TD has nothing to give up), then asks the host;
 * - shared → private: the guest asks the host first, then validates or accepts each page
 *   (PVALIDATE, TDG.MEM.PAGE.ACCEPT), which faults it in.
 *
 * The request leaves the guest (the GHCB's Page State Change, TDG.VP.VMCALL<MapGPA>); KVM turns
 * it into a KVM_HC_MAP_GPA_RANGE exit to userspace, and the VMM answers with
 * KVM_SET_MEMORY_ATTRIBUTES, which zaps the range, and, for shared, punches the private pages
 * out of guest_memfd (`convertMemory`). A failed PVALIDATE or ACCEPT is fatal to a Linux guest
 * (`sev_es_terminate`, the TDX guest's panic): the op stops at the first one. An SNP guest sends
 * a long range in batches of 64 entries (`Backend.pscBatchEntries`), a TD in one MapGPA.
 */
import { PAGES_PER_LEVEL, PAGE_SIZE, type Level } from "../arch/levels.js";
import { ACCESS_INTERNAL_ERROR, ACCESS_OK, ACCESS_REENTER } from "../backend/backend.js";
import type { Op } from "../exec/ctx.js";
import { GuestLivelock, MAX_TRIES, entryFailed, guestAcceptPage } from "./guest-access.js";
import { convertMemory } from "./host-ops.js";
import type { Vcpu, Vm } from "./vm.js";

export interface PscResult {
  /** GFNs whose attributes changed. */
  changed: number;
  /** Pages the guest validated (to private) or gave up (to shared), at the size that worked. */
  pages: number;
  /** 1 if a PVALIDATE or ACCEPT failed and the guest stopped there, else 0. */
  exceptions: number;
}

/**
 * [gfn, gfn + npages) to private or shared, validated or given up in pages of `level`: in
 * batches of at most `Backend.pscBatchEntries` pages of `level` (SEV-SNP's Page State Change
 * descriptor holds 64 entries, and Linux's `__set_pages_state` gives up, requests and validates
 * one batch before the next), else the whole range in one request (a TD's MapGPA). A failure
 * stops the op where it happened: the batches before it are converted.
 */
export function* guestPageStateChange(
  vm: Vm,
  vcpu: Vcpu,
  gfn: number,
  npages: number,
  toPrivate: boolean,
  level: Level,
): Op<PscResult> {
  const out: PscResult = { changed: 0, pages: 0, exceptions: 0 };
  const entries = vm.backend.pscBatchEntries;
  const batch = entries === undefined ? npages : entries * PAGES_PER_LEVEL[level]!;
  for (let b = gfn; b < gfn + npages; b += batch) {
    const n = Math.min(batch, gfn + npages - b);
    if (!(yield* pscBatch(vm, vcpu, b, n, toPrivate, level, out))) break;
  }
  return out;
}

/** One request of `guestPageStateChange`, over [gfn, gfn + npages); false once it failed. */
function* pscBatch(
  vm: Vm,
  vcpu: Vcpu,
  gfn: number,
  npages: number,
  toPrivate: boolean,
  level: Level,
  out: PscResult,
): Op<boolean> {
  if (
    !toPrivate &&
    vm.backend.guestRescind &&
    !(yield* eachPage(vm, vcpu, gfn, npages, level, true, out))
  )
    return false;
  // The request: the vCPU leaves the guest, and KVM leaves for the VMM. An entry KVM retries
  // (ACCESS_REENTER) is one more atomic point before the request.
  for (let tries = 0; ; tries++) {
    if (tries === MAX_TRIES)
      throw new GuestLivelock(
        `vcpu${vcpu.id}: the guest's entry for its conversion request failed ${MAX_TRIES} times`,
      );
    if (vm.rootsStale(vcpu)) yield* vm.reloadRoots(vcpu, true);
    else vm.enterGuest(vcpu);
    vm.clock.step++;
    if (vcpu.ctx.interleave) yield;
    const r = vm.backend.guestMapGpa?.(vm, vcpu.id, gfn, npages, toPrivate) ?? ACCESS_OK;
    if (r === ACCESS_REENTER) continue;
    if (r === ACCESS_INTERNAL_ERROR) entryFailed(vm, vcpu);
    if (r === ACCESS_OK) break;
    out.exceptions = 1;
    return false;
  }
  if (vm.events.on) {
    vm.events.emit({
      type: "call",
      vm: vm.id,
      name: "KVM_HC_MAP_GPA_RANGE",
      detail: `gpa 0x${(gfn * PAGE_SIZE).toString(16)} ${npages} pages to ${toPrivate ? "private" : "shared"}`,
      status: "exit to userspace",
      tone: "ok",
    });
  }
  out.changed += yield* convertMemory(vm, vcpu.ctx, gfn, gfn + npages, toPrivate, vcpu.id);
  return !toPrivate || (yield* eachPage(vm, vcpu, gfn, npages, level, false, out));
}

/**
 * Validates (or with `rescind` gives up) each page of `level` in the range; false, with
 * `exceptions` set, at the first that fails. A 2M page that fails is tried again as its 512 4K
 * pages, as both guests do when the size does not match (`pvalidate_pages` on
 * FAIL_SIZEMISMATCH, the TD guest's `try_accept_one` going down a size); only a 4K failure ends it.
 * The core sees an exception, not its cause, so it retries after any 2M failure where an SNP
 * guest would stop at once on another status: the first 4K page then fails the same way and the
 * op ends as the guest would, only with that one instruction more counted.
 */
function* eachPage(
  vm: Vm,
  vcpu: Vcpu,
  gfn: number,
  npages: number,
  level: Level,
  rescind: boolean,
  out: PscResult,
): Op<boolean> {
  const step = PAGES_PER_LEVEL[level]!;
  for (let g = gfn; g < gfn + npages; g += step) {
    if ((yield* guestAcceptPage(vm, vcpu, g * PAGE_SIZE, level, rescind)) === "ok") {
      out.pages++;
      continue;
    }
    if (level === 1 || !(yield* eachPage(vm, vcpu, g, step, 1, rescind, out))) {
      out.exceptions = 1;
      return false;
    }
  }
  return true;
}
