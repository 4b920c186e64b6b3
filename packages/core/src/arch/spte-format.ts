/**
 * SPTEs at the edges: as one 64-bit `bigint`, as hex, and decoded with flags by name. Never used
 * on the fault path.
 */
import {
  EPT_IPAT,
  EPT_MT_MASK,
  EPT_MT_SHIFT,
  EPT_R,
  EPT_W,
  EPT_X,
  FROZEN_SPTE_HI,
  FROZEN_SPTE_LO,
  HI_AD_MODE_MASK,
  HI_AD_MODE_SHIFT,
  HI_HOST_WRITABLE,
  HI_MMU_WRITABLE,
  HI_SUPPRESS_VE,
  PT_PAGE_SIZE_MASK,
  SHADOW_NONPRESENT_HI,
  SHADOW_NONPRESENT_LO,
  SPTE_ACCESSED,
  SPTE_DIRTY,
  SPTE_MMU_PRESENT,
  isFrozen,
  isLastSpte,
  isShadowPresent,
  spteToPfn,
} from "./spte.js";

export const SHADOW_NONPRESENT_VALUE = 0x8000_0000_0000_0000n;
export const FROZEN_SPTE = 0x8000_0000_0000_05a0n;

export function spteToBigInt(lo: number, hi: number): bigint {
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

export function spteFromBigInt(v: bigint): { lo: number; hi: number } {
  return { lo: Number(v & 0xffff_ffffn), hi: Number((v >> 32n) & 0xffff_ffffn) };
}

/** A whole SPTE as 16 hex digits: `0x8000000000000000`. */
export function formatSpte(lo: number, hi: number): string {
  return "0x" + (hi >>> 0).toString(16).padStart(8, "0") + (lo >>> 0).toString(16).padStart(8, "0");
}

const MEMTYPE_NAMES: Record<number, string> = { 0: "UC", 1: "WC", 4: "WT", 5: "WP", 6: "WB" };

export interface DecodedSpte {
  hex: string;
  /** "empty" (SHADOW_NONPRESENT_VALUE), "frozen", "leaf", "table" or "nonpresent" (anything else). */
  kind: "empty" | "frozen" | "leaf" | "table" | "nonpresent";
  present: boolean;
  pfn: number | null;
  memtype: string | null;
  adMode: number;
  flags: string[];
}

/**
 * Decode an SPTE found at `level`; flags are named as in the kernel and the SDM. Only a present
 * SPTE has flags: the bits of FROZEN_SPTE (0x5a0) or of another non-present value are a marker,
 * not permissions, and reading them as R, LARGE or A would mislead.
 */
export function decodeSpte(lo: number, hi: number, level: number): DecodedSpte {
  const present = isShadowPresent(lo);
  const flags: string[] = [];
  if (present) pushFlags(lo, hi, flags);
  let kind: DecodedSpte["kind"];
  if (lo === SHADOW_NONPRESENT_LO && hi === SHADOW_NONPRESENT_HI) kind = "empty";
  else if (isFrozen(lo, hi)) kind = "frozen";
  else if (!present) kind = "nonpresent";
  else kind = isLastSpte(lo, level) ? "leaf" : "table";
  const leaf = kind === "leaf";
  return {
    hex: formatSpte(lo, hi),
    kind,
    present,
    pfn: present ? spteToPfn(lo, hi) : null,
    memtype: leaf ? (MEMTYPE_NAMES[(lo & EPT_MT_MASK) >>> EPT_MT_SHIFT] ?? "reserved") : null,
    adMode: (hi & HI_AD_MODE_MASK) >>> HI_AD_MODE_SHIFT,
    flags,
  };
}

export { FROZEN_SPTE_LO, FROZEN_SPTE_HI };

function pushFlags(lo: number, hi: number, flags: string[]): void {
  if (lo & EPT_R) flags.push("R");
  if (lo & EPT_W) flags.push("W");
  if (lo & EPT_X) flags.push("X");
  if (lo & EPT_IPAT) flags.push("IPAT");
  if (lo & PT_PAGE_SIZE_MASK) flags.push("LARGE");
  if (lo & SPTE_ACCESSED) flags.push("A");
  if (lo & SPTE_DIRTY) flags.push("D");
  if (lo & SPTE_MMU_PRESENT) flags.push("MMU_PRESENT");
  if (hi & HI_HOST_WRITABLE) flags.push("HOST_WRITABLE");
  if (hi & HI_MMU_WRITABLE) flags.push("MMU_WRITABLE");
  if (hi & HI_SUPPRESS_VE) flags.push("SUPPRESS_VE");
}
