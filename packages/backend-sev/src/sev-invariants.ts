/**
 * SEV's own invariants (docs/sev-snp.md §3): a private NPT leaf maps a
 * frame the RMP assigns to this guest (its ASID) at this GPA, with a page size no smaller than
 * the leaf (except while a fault fixup is zapping the leaf its PSMASH has just made too large);
 * no 2M entry overlaps assigned 4K entries; a frame guest_memfd has given back (its host block
 * is free) is not assigned.
 */
import { OWNER_FREE, type BackendVm, type MirrorView } from "@tdpemu/backend-sdk";
import { RMP_ASSIGNED } from "./rmp.js";
import type { SevBackend } from "./sev-backend.js";

const hex = (n: number) => `0x${n.toString(16)}`;

export function checkSevInvariants(be: SevBackend, vm: BackendVm, view: MirrorView): { check: string; message: string }[] {
  const out: { check: string; message: string }[] = [];
  const fail = (check: string, message: string) => {
    if (out.length < 20) out.push({ check, message });
  };
  const rmp = be.rmp;
  view.forEachDirect((gfn, level, kind, pfn) => {
    if (kind !== "leaf" || !vm.attributes.peekPrivate(gfn)) return;
    const e = rmp.lookup(pfn);
    const expectGfn = e.size2m ? e.gfn + (pfn - e.pfn) : e.gfn;
    if (!e.assigned || e.asid !== be.asid || expectGfn !== gfn) {
      fail("rmp-covers-private-leaf", `private leaf at gfn ${hex(gfn)} maps frame ${hex(pfn)}, which the RMP gives ${e.assigned ? `ASID ${e.asid} at gfn ${hex(expectGfn)}` : "to no guest"}`);
    } else if (level >= 2 && !e.size2m && !vm.faultFixupPending(gfn, 512 ** (level - 1))) {
      // Inside sev_handle_rmp_fault the PSMASH comes first and the zap of the 2M leaf after it,
      // as in the kernel; the hardware refuses any access through the leaf meanwhile (SIZEM).
      fail("rmp-covers-private-leaf", `2M private leaf at gfn ${hex(gfn)} over a 4K RMP entry`);
    }
  });
  for (const e of rmp.assigned()) {
    if (e.size2m) {
      for (let i = 1; i < 512; i++) {
        if (rmp.flagsOf(e.pfn + i) & RMP_ASSIGNED) {
          fail("rmp-no-overlap", `2M RMP entry at frame ${hex(e.pfn)} overlaps the assigned 4K entry of frame ${hex(e.pfn + i)}`);
          break;
        }
      }
    }
    if (e.asid === be.asid && vm.host.frames.ownerOfPfn(e.pfn) === OWNER_FREE) {
      fail("rmp-freed-unassigned", `frame ${hex(e.pfn)} was given back to the host but the RMP still assigns it to ASID ${e.asid}`);
    }
  }
  return out;
}
