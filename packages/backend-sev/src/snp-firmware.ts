/**
 * The SEV firmware's side of a launch (the PSP's SNP commands KVM issues through the CCP
 * driver), with the firmware's status codes as `include/uapi/linux/psp-sev.h` numbers them
 * (`sev_ret_code`). A failed command reaches KVM as -EIO (`__sev_issue_cmd`), with the firmware's
 * code beside it; the model reports the code by name in the call's event and statistics.
 *
 * Page states. The RMP has no field for them: the firmware's page states are combinations of
 * the RMP bits. A launch page goes Hypervisor → Pre-Guest (`rmp_make_private(..., immutable =
 * true)`: assigned to the guest, immutable) → Guest-Valid (SNP_LAUNCH_UPDATE measures and
 * encrypts it, and leaves it validated and mutable). A page the firmware refused stays
 * Pre-Guest, which no RMPUPDATE can change (FAIL_PERMISSION): SNP_PAGE_RECLAIM makes it
 * Guest-Invalid (still the guest's, at its GPA, no longer immutable), from which the
 * hypervisor's RMPUPDATE makes it shared again. A Firmware page (the guest context: assigned to
 * no guest, immutable) goes to Reclaim the same way at the VM's end. Metadata and Pre-Swap
 * pages are not modelled.
 */
import { StatusNames } from "@tdpemu/backend-sdk";
import { RMP_IMMUTABLE, type Rmp } from "./rmp.js";

export const SEV_RET_SUCCESS = 0;
export const SEV_RET_INVALID_PLATFORM_STATE = 0x0001;
export const SEV_RET_INVALID_GUEST_STATE = 0x0002;
export const SEV_RET_INVALID_ADDRESS = 0x0009;
export const SEV_RET_INVALID_GUEST = 0x0010;
export const SEV_RET_INVALID_PARAM = 0x0016;
export const SEV_RET_RESOURCE_LIMIT = 0x0017;
export const SEV_RET_INVALID_PAGE_SIZE = 0x0019;
export const SEV_RET_INVALID_PAGE_STATE = 0x001a;
export const SEV_RET_INVALID_PAGE_OWNER = 0x001c;

export const FW_STATUS = new StatusNames<number>("SEV firmware status", [
  [SEV_RET_SUCCESS, "SUCCESS"],
  [SEV_RET_INVALID_PLATFORM_STATE, "INVALID_PLATFORM_STATE"],
  [SEV_RET_INVALID_GUEST_STATE, "INVALID_GUEST_STATE"],
  [SEV_RET_INVALID_ADDRESS, "INVALID_ADDRESS"],
  [SEV_RET_INVALID_GUEST, "INVALID_GUEST"],
  [SEV_RET_INVALID_PARAM, "INVALID_PARAM"],
  [SEV_RET_RESOURCE_LIMIT, "RESOURCE_LIMIT"],
  [SEV_RET_INVALID_PAGE_SIZE, "INVALID_PAGE_SIZE"],
  [SEV_RET_INVALID_PAGE_STATE, "INVALID_PAGE_STATE"],
  [SEV_RET_INVALID_PAGE_OWNER, "INVALID_PAGE_OWNER"],
]);

/**
 * SNP_PAGE_RECLAIM of the 4K page `pfn`, as AMD's firmware does it (`snp_mcmd_page_reclaim`): a
 * page that is not immutable needs nothing and succeeds as it is; an immutable one (Firmware,
 * Pre-Guest) only loses its immutable bit, keeping its owner and GPA (Firmware to Reclaim,
 * Pre-Guest to Guest-Invalid).
 */
export function snpPageReclaim(rmp: Rmp, pfn: number): number {
  const f = rmp.flagsOf(pfn);
  if ((f & RMP_IMMUTABLE) === 0) return SEV_RET_SUCCESS;
  rmp.setFlags(pfn, f & ~RMP_IMMUTABLE);
  return SEV_RET_SUCCESS;
}
