/**
 * SEV's own invariants (docs/sev-snp.md §3): a private NPT leaf maps frames the RMP assigns to
 * this guest (its ASID) at the leaf's GPAs; no 2M entry overlaps assigned 4K entries; a frame
 * guest_memfd has given back (its host block is free) is not assigned.
 *
 * A 2M leaf may sit over 512 4K entries of this guest (a PSMASHed 2M entry): the hardware
 * refuses every access through it (the NPT page is larger than the RMP's), and the next fault
 * on it maps 4K. The kernel leaves such leaves behind: `sev_handle_rmp_fault` PSMASHes first
 * and zaps after, and zaps [gfn, gfn + 512) from the faulting GFN, not from its 2M boundary, so
 * a fault that sized its mapping before the PSMASH and maps a GFN below that range passes its
 * staleness check and installs the 2M leaf again (found by `tdpemu fuzz`, seed 9).
 */
import { OWNER_FREE, type BackendVm, type MirrorView } from "@tdpemu/backend-sdk";
import { RMP_ASSIGNED } from "./rmp.js";
import type { SevBackend } from "./sev-backend.js";

const hex = (n: number) => `0x${n.toString(16)}`;

export function checkSevInvariants(
  be: SevBackend,
  vm: BackendVm,
  view: MirrorView,
): { check: string; message: string }[] {
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
      fail(
        "rmp-covers-private-leaf",
        `private leaf at gfn ${hex(gfn)} maps frame ${hex(pfn)}, which the RMP gives ${e.assigned ? `ASID ${e.asid} at gfn ${hex(expectGfn)}` : "to no guest"}`,
      );
    } else if (level >= 3) {
      // The RMP has 4K and 2M entries only, and sev_gmem_max_mapping_level caps private
      // mappings at 2M: a 1G private leaf is KVM's mistake whatever the entries say.
      fail(
        "rmp-covers-private-leaf",
        `1G private leaf at gfn ${hex(gfn)}: SEV-SNP maps private memory at 2M at most`,
      );
    } else if (level === 2 && !e.size2m) {
      // Over 4K entries: each of them must be this guest's, at the leaf's GFNs.
      for (let i = 1; i < 512; i++) {
        const f = rmp.lookup(pfn + i);
        if (!f.assigned || f.asid !== be.asid || f.size2m || f.gfn !== gfn + i) {
          fail(
            "rmp-covers-private-leaf",
            `2M private leaf at gfn ${hex(gfn)} over 4K RMP entries, of which frame ${hex(pfn + i)} is ${f.assigned ? `ASID ${f.asid}'s at gfn ${hex(f.gfn)}` : "no guest's"}`,
          );
          break;
        }
      }
    }
  });
  for (const e of rmp.assigned()) {
    if (e.size2m) {
      for (let i = 1; i < 512; i++) {
        if (rmp.flagsOf(e.pfn + i) & RMP_ASSIGNED) {
          fail(
            "rmp-no-overlap",
            `2M RMP entry at frame ${hex(e.pfn)} overlaps the assigned 4K entry of frame ${hex(e.pfn + i)}`,
          );
          break;
        }
      }
    }
    if (e.asid === be.asid && vm.host.frames.ownerOfPfn(e.pfn) === OWNER_FREE) {
      fail(
        "rmp-freed-unassigned",
        `frame ${hex(e.pfn)} was given back to the host but the RMP still assigns it to ASID ${e.asid}`,
      );
    }
  }
  return out;
}
