/**
 * The calls the module answers: their architectural names, the index each is counted and
 * dispatched by (a SEAMCALL's leaf number plays that part on the real module), and the text that
 * describes one call in the event stream. The text is made only when someone listens, from the
 * call's numeric operands, so a call on the fast path builds no string.
 */

/** Every call the module answers, by its architectural name. */
export const SEAMCALL_NAMES = [
  "TDH.MNG.CREATE",
  "TDH.MNG.KEY.CONFIG",
  "TDH.MNG.ADDCX",
  "TDH.MNG.INIT",
  "TDH.VP.CREATE",
  "TDH.MR.FINALIZE",
  "TDH.MR.EXTEND",
  "TDH.VP.FLUSH",
  "TDH.MNG.VPFLUSHDONE",
  "TDH.MNG.KEY.FREEID",
  "TDH.VP.ENTER",
  "TDH.MEM.SEPT.ADD",
  "TDH.MEM.PAGE.AUG",
  "TDH.MEM.PAGE.ADD",
  "TDH.MEM.RANGE.BLOCK",
  "TDH.MEM.RANGE.UNBLOCK",
  "TDH.MEM.TRACK",
  "TDH.MEM.PAGE.REMOVE",
  "TDH.MEM.SEPT.REMOVE",
  "TDH.PHYMEM.PAGE.RECLAIM",
  "TDH.PHYMEM.PAGE.WBINVD",
  "TDG.MEM.PAGE.ACCEPT",
  "TDH.PHYMEM.CACHE.WB",
  "TDH.MEM.PAGE.DEMOTE",
  "TDH.MEM.PAGE.PROMOTE",
  "TDH.VP.ADDCX",
  "TDH.VP.INIT",
  "TDH.PHYMEM.PAGE.RDMD",
  "TDH.SYS.INIT",
  "TDH.SYS.LP.INIT",
  "TDH.SYS.CONFIG",
  "TDH.SYS.KEY.CONFIG",
  "TDH.SYS.TDMR.INIT",
  "TDH.MNG.RD",
  "TDH.VP.RD",
  "TDH.VP.WR",
] as const;

export type SeamcallName = (typeof SEAMCALL_NAMES)[number];

const leaf = (name: SeamcallName): number => SEAMCALL_NAMES.indexOf(name);

export const TDH_MNG_CREATE = leaf("TDH.MNG.CREATE");
export const TDH_MNG_KEY_CONFIG = leaf("TDH.MNG.KEY.CONFIG");
export const TDH_MNG_ADDCX = leaf("TDH.MNG.ADDCX");
export const TDH_MNG_INIT = leaf("TDH.MNG.INIT");
export const TDH_VP_CREATE = leaf("TDH.VP.CREATE");
export const TDH_VP_ADDCX = leaf("TDH.VP.ADDCX");
export const TDH_VP_INIT = leaf("TDH.VP.INIT");
export const TDH_PHYMEM_PAGE_RDMD = leaf("TDH.PHYMEM.PAGE.RDMD");
export const TDH_SYS_INIT = leaf("TDH.SYS.INIT");
export const TDH_SYS_LP_INIT = leaf("TDH.SYS.LP.INIT");
export const TDH_SYS_CONFIG = leaf("TDH.SYS.CONFIG");
export const TDH_SYS_KEY_CONFIG = leaf("TDH.SYS.KEY.CONFIG");
export const TDH_SYS_TDMR_INIT = leaf("TDH.SYS.TDMR.INIT");
export const TDH_MNG_RD = leaf("TDH.MNG.RD");
export const TDH_VP_RD = leaf("TDH.VP.RD");
export const TDH_VP_WR = leaf("TDH.VP.WR");
export const TDH_MR_FINALIZE = leaf("TDH.MR.FINALIZE");
export const TDH_MR_EXTEND = leaf("TDH.MR.EXTEND");
export const TDH_VP_FLUSH = leaf("TDH.VP.FLUSH");
export const TDH_MNG_VPFLUSHDONE = leaf("TDH.MNG.VPFLUSHDONE");
export const TDH_MNG_KEY_FREEID = leaf("TDH.MNG.KEY.FREEID");
export const TDH_VP_ENTER = leaf("TDH.VP.ENTER");
export const TDH_MEM_SEPT_ADD = leaf("TDH.MEM.SEPT.ADD");
export const TDH_MEM_PAGE_AUG = leaf("TDH.MEM.PAGE.AUG");
export const TDH_MEM_PAGE_ADD = leaf("TDH.MEM.PAGE.ADD");
export const TDH_MEM_RANGE_BLOCK = leaf("TDH.MEM.RANGE.BLOCK");
export const TDH_MEM_RANGE_UNBLOCK = leaf("TDH.MEM.RANGE.UNBLOCK");
export const TDH_MEM_TRACK = leaf("TDH.MEM.TRACK");
export const TDH_MEM_PAGE_REMOVE = leaf("TDH.MEM.PAGE.REMOVE");
export const TDH_MEM_PAGE_DEMOTE = leaf("TDH.MEM.PAGE.DEMOTE");
export const TDH_MEM_PAGE_PROMOTE = leaf("TDH.MEM.PAGE.PROMOTE");
export const TDH_MEM_SEPT_REMOVE = leaf("TDH.MEM.SEPT.REMOVE");
export const TDH_PHYMEM_PAGE_RECLAIM = leaf("TDH.PHYMEM.PAGE.RECLAIM");
export const TDH_PHYMEM_PAGE_WBINVD = leaf("TDH.PHYMEM.PAGE.WBINVD");
export const TDG_MEM_PAGE_ACCEPT = leaf("TDG.MEM.PAGE.ACCEPT");
export const TDH_PHYMEM_CACHE_WB = leaf("TDH.PHYMEM.CACHE.WB");

const hex = (n: number): string => `0x${n.toString(16)}`;

/**
 * A SEAMCALL's level operand in the one convention the UI and the walk use, KVM's (L1 = 4K),
 * with the TDX module's own (0 = 4K) in brackets ("L1 [tdx 0]"), as the call takes it.
 */
function level(tdxLevel: number): string {
  return `L${tdxLevel + 1} [tdx ${tdxLevel}]`;
}

/**
 * The event text of one call, from its operands as the leaf's method took them: `tdr` is the TD
 * the call was made for, `a`-`d` the method's other numeric operands in order.
 */
export function callDetail(
  leaf: number,
  tdr: number,
  a: number,
  b: number,
  c: number,
  d: number,
): string {
  switch (leaf) {
    case TDH_MNG_CREATE:
      return `tdr ${tdr} hkid ${a}`;
    case TDH_MNG_ADDCX:
      return `tdr ${tdr} page ${a}`;
    case TDH_MNG_INIT:
      return `tdr ${tdr} gpaw ${a}`;
    case TDH_VP_CREATE:
      return `tdr ${tdr} tdvpr ${a}`;
    case TDH_VP_ADDCX:
      return `tdvpr ${a} tdcx ${b}`;
    case TDH_VP_INIT:
      return `tdvpr ${a} lp ${b}`;
    case TDH_PHYMEM_PAGE_RDMD:
      return `page ${a}`;
    case TDH_SYS_INIT:
      return "";
    case TDH_SYS_LP_INIT:
      return `lp ${a}`;
    case TDH_SYS_CONFIG:
      return `${a} TDMR(s), global KeyID ${b}`;
    case TDH_SYS_KEY_CONFIG:
      return `lp ${a}`;
    case TDH_SYS_TDMR_INIT:
      return `tdmr at frame ${a}`;
    // The field id's high and low halves.
    case TDH_MNG_RD:
      return `tdr ${tdr} field ${fieldHex(b, a)}`;
    case TDH_VP_RD:
    case TDH_VP_WR:
      return `tdvpr ${a} lp ${b} field ${fieldHex(d, c)}`;
    case TDH_MR_EXTEND:
      return `gpa ${hex(a)}`;
    case TDH_VP_FLUSH:
    case TDH_VP_ENTER:
      return `tdvpr ${a} lp ${b}`;
    case TDH_MEM_SEPT_ADD:
    case TDH_MEM_PAGE_DEMOTE:
    case TDH_MEM_PAGE_AUG:
      return `gpa ${hex(a)} ${level(b)} page ${c}`;
    case TDH_MEM_PAGE_ADD:
      return `gpa ${hex(a)} page ${c}`;
    case TDH_MEM_RANGE_BLOCK:
    case TDH_MEM_RANGE_UNBLOCK:
    case TDH_MEM_PAGE_PROMOTE:
    case TDH_MEM_PAGE_REMOVE:
    case TDH_MEM_SEPT_REMOVE:
      return `gpa ${hex(a)} ${level(b)}`;
    case TDH_PHYMEM_PAGE_RECLAIM:
      return `page ${a}`;
    case TDH_PHYMEM_PAGE_WBINVD:
      return `page ${a} hkid ${b}`;
    case TDG_MEM_PAGE_ACCEPT:
      return `gpa ${hex(b)} ${level(c)}`;
    default:
      return `tdr ${tdr}`; // KEY.CONFIG, MR.FINALIZE, VPFLUSHDONE, KEY.FREEID, TRACK, CACHE.WB (for that TD's HKID)
  }
}

/** A 64-bit field id given as its high and low 32-bit halves, in hex. */
function fieldHex(hi: number, lo: number): string {
  return hi === 0
    ? `0x${lo.toString(16)}`
    : `0x${hi.toString(16)}${lo.toString(16).padStart(8, "0")}`;
}
