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
 * (`sev_es_terminate`, the TDX guest's panic): the op stops at the first one.
 */
import { PAGES_PER_LEVEL, PAGE_SIZE, type Level } from "../arch/levels.js";
import type { Op } from "../exec/ctx.js";
import { guestAcceptPage } from "./guest-access.js";
import { convertMemory } from "./host-ops.js";
import type { Vcpu, Vm } from "./vm.js";

export interface PscResult {
  /** GFNs whose attributes changed. */
  changed: number;
  /** Pages the guest validated (to private) or gave up (to shared). */
  pages: number;
  /** 1 if a PVALIDATE or ACCEPT failed and the guest stopped there, else 0. */
  exceptions: number;
}

/** [gfn, gfn + npages) to private or shared, validated or given up in pages of `level`. */
export function* guestPageStateChange(vm: Vm, vcpu: Vcpu, gfn: number, npages: number, toPrivate: boolean, level: Level): Op<PscResult> {
  const step = PAGES_PER_LEVEL[level]!;
  const out: PscResult = { changed: 0, pages: 0, exceptions: 0 };
  if (!toPrivate && vm.backend.guestRescind) {
    for (let g = gfn; g < gfn + npages; g += step) {
      if ((yield* guestAcceptPage(vm, vcpu, g * PAGE_SIZE, level, true)) !== "ok") {
        out.exceptions = 1;
        return out;
      }
      out.pages++;
    }
  }
  // The request: the vCPU leaves the guest, and KVM leaves for the VMM.
  vm.enterGuest(vcpu);
  vm.clock.step++;
  if (vcpu.ctx.interleave) yield;
  vm.backend.guestMapGpa?.(vm, vcpu.id, gfn, npages, toPrivate);
  if (vm.events.on) {
    vm.events.emit({ type: "call", vm: vm.id, name: "KVM_HC_MAP_GPA_RANGE", detail: `gpa 0x${(gfn * PAGE_SIZE).toString(16)} ${npages} pages to ${toPrivate ? "private" : "shared"}`, status: "exit to userspace", tone: "ok" });
  }
  out.changed = yield* convertMemory(vm, vcpu.ctx, gfn, gfn + npages, toPrivate);
  if (toPrivate) {
    for (let g = gfn; g < gfn + npages; g += step) {
      if ((yield* guestAcceptPage(vm, vcpu, g * PAGE_SIZE, level)) !== "ok") {
        out.exceptions = 1;
        return out;
      }
      out.pages++;
    }
  }
  return out;
}
