/**
 * TDH.SYS.*: the platform's bring-up, as the host kernel drives it before KVM can use the module
 * (`tdx_enable` in arch/x86/virt/vmx/tdx/tdx.c): TDH.SYS.INIT once, TDH.SYS.LP.INIT on every
 * logical processor, TDH.SYS.CONFIG with the TDMRs and the global KeyID, TDH.SYS.KEY.CONFIG on
 * each package, then TDH.SYS.TDMR.INIT again and again until each TDMR's PAMT is initialized.
 *
 * The global state (`sysinit_state_e`, tdx_global_data.h) moves SYSINIT_PENDING → SYSINIT_DONE
 * (SYS.INIT) → SYSCONFIG_DONE (SYS.CONFIG) → SYS_READY (the last package's KEY.CONFIG); until
 * then the dispatcher answers every other leaf, TDMR.INIT included, with SYS_NOT_READY
 * (`tdx_vmm_dispatcher.c`). The module's global lock is a try-lock: a leaf that finds it taken
 * returns SYS_BUSY. The model's platform has one package. The TDMRs cover the host's memory;
 * the PAMT the host kernel gives each lies in host memory too (`tdx-platform.ts` takes it from
 * the host's allocator when TDX comes up), inside a reserved area of its TDMR, and TDMR.INIT
 * makes its frames PT_RSVD, so a host that hands one to the module as a page is refused. (The
 * model keeps its PAMT in typed arrays of its own; those frames only carry the type.)
 */
import type { SeamCore } from "./seam-core.js";
import { type SeamResult, check, ok } from "./seam-result.js";
import { MAX_PA_PFN } from "./leaf-checks.js";
import {
  OPERAND_R8,
  OPERAND_RCX,
  OPERAND_RDX,
  TDX_INVALID_PAMT,
  TDX_INVALID_RESERVED_IN_TDMR,
  TDX_INVALID_TDMR,
  TDX_KEY_CONFIGURED,
  TDX_NON_ORDERED_RESERVED_IN_TDMR,
  TDX_NON_ORDERED_TDMR,
  TDX_OPERAND_INVALID,
  TDX_PAMT_OUTSIDE_CMRS,
  TDX_PAMT_OVERLAP,
  TDX_SUCCESS,
  TDX_SYS_CONFIG_NOT_PENDING,
  TDX_SYS_INIT_NOT_PENDING,
  TDX_SYS_KEY_CONFIG_NOT_PENDING,
  TDX_SYS_LP_INIT_DONE,
  TDX_SYS_LP_INIT_NOT_PENDING,
  TDX_TDMR_ALREADY_INITIALIZED,
  TDX_TDMR_OUTSIDE_CMRS,
} from "./status.js";

export const SYSINIT_PENDING = 0;
export const SYSINIT_DONE = 1;
export const SYSCONFIG_DONE = 2;
export const SYS_READY = 3;

/** `TDMR_4K_PAMT_INIT_COUNT`: one TDMR.INIT initializes 1024 4K PAMT entries, 4 MiB of the TDMR. */
const TDMR_INIT_FRAMES = 1024;
/** TDMRs are 1 GiB aligned and sized (TDH.SYS.CONFIG checks it). */
export const TDMR_ALIGN_FRAMES = 262144;
const MAX_TDMRS = 64;
/** `MAX_RESERVED_AREAS`: the slots of a TDMR_INFO entry. */
export const MAX_RESERVED_AREAS = 16;
/** Bytes of one PAMT entry (`pamt_entry_t`). */
const PAMT_ENTRY_BYTES = 16;

/** A range of frames: its first frame and how many. */
export interface FrameRange {
  base: number;
  frames: number;
}

/** A reserved area of a TDMR: its offset from the TDMR's base and its size, in frames (size 0: an unused slot). */
export interface RsvdArea {
  offset: number;
  frames: number;
}

/**
 * One TDMR_INFO entry (`tdmr_info_entry_t`, the array RCX of TDH.SYS.CONFIG points to), in
 * frames: the TDMR, the three PAMT areas (one entry of 16 bytes per 1 GiB, 2 MiB and 4 KiB of
 * the TDMR), and up to 16 reserved areas, ascending: parts of the TDMR the module must never
 * hand out, its own PAMT among them, whose PAMT entries TDMR.INIT makes PT_RSVD.
 */
export interface TdmrInfo extends FrameRange {
  pamt4k: FrameRange;
  pamt2m: FrameRange;
  pamt1g: FrameRange;
  rsvd: readonly RsvdArea[];
}

/** One TDMR as the module keeps it: `last_initialized` is how far TDMR.INIT has come; `rsvd` in absolute frames. */
interface Tdmr {
  base: number;
  frames: number;
  lastInitialized: number;
  rsvd: readonly FrameRange[];
}

/**
 * The module's global bring-up state. Not the explorer's shared state: the host kernel brings
 * the module up before any VM exists, and nothing after changes it.
 */
export class SysState {
  state = SYSINIT_PENDING;
  readonly lpIsInit: Uint8Array;
  numInitLps = 0;
  /** Bit i: package i ran KEY.CONFIG (`pkg_config_bitmap`). */
  pkgConfigBitmap = 0;
  numInitPkgs = 0;
  globalHkid = -1;
  tdmrs: Tdmr[] = [];

  constructor(
    readonly numLps: number,
    readonly numPkgs: number,
  ) {
    this.lpIsInit = new Uint8Array(numLps);
  }

  /** Takes `o`'s state (a platform brought up the same way: see `tdx-platform.ts`). */
  copyFrom(o: SysState): void {
    this.state = o.state;
    this.lpIsInit.set(o.lpIsInit);
    this.numInitLps = o.numInitLps;
    this.pkgConfigBitmap = o.pkgConfigBitmap;
    this.numInitPkgs = o.numInitPkgs;
    this.globalHkid = o.globalHkid;
    this.tdmrs = o.tdmrs.map((t) => ({ ...t }));
  }

  /** The whole state as text, for the footprint audit (`SeamCore.auditState`). */
  auditText(): string {
    return JSON.stringify([
      this.state,
      Array.from(this.lpIsInit),
      this.numInitLps,
      this.pkgConfigBitmap,
      this.numInitPkgs,
      this.globalHkid,
      this.tdmrs,
    ]);
  }

  /**
   * Frames below this are in an initialized part of a TDMR: `pamt_get_block` refuses a page at
   * or above `last_initialized` rounded down to 1 GiB.
   */
  usableFrames(): number {
    let end = 0;
    for (const t of this.tdmrs)
      end = Math.max(
        end,
        t.base + Math.floor((t.lastInitialized - t.base) / TDMR_ALIGN_FRAMES) * TDMR_ALIGN_FRAMES,
      );
    return end;
  }
}

/** TDH.SYS.INIT (`tdh_sys_init.c`): once, from SYSINIT_PENDING; a second one is SYS_INIT_NOT_PENDING. */
export function sysInitLeaf(m: SeamCore): SeamResult {
  const s = m.sys;
  check(s.state === SYSINIT_PENDING, TDX_SYS_INIT_NOT_PENDING);
  s.numInitLps = 0;
  s.numInitPkgs = 0;
  s.pkgConfigBitmap = 0;
  s.state = SYSINIT_DONE;
  return ok();
}

/**
 * TDH.SYS.LP.INIT on logical processor `lp` (`tdh_sys_lp_init.c`): only while SYSINIT_DONE
 * (before SYS.INIT, or after SYS.CONFIG: SYS_LP_INIT_NOT_PENDING), once per LP
 * (SYS_LP_INIT_DONE).
 */
export function sysLpInitLeaf(m: SeamCore, _tdr: number, lp: number): SeamResult {
  const s = m.sys;
  check(s.state === SYSINIT_DONE, TDX_SYS_LP_INIT_NOT_PENDING);
  check(s.lpIsInit[lp] === 0, TDX_SYS_LP_INIT_DONE);
  s.lpIsInit[lp] = 1;
  s.numInitLps++;
  return ok();
}

/**
 * TDH.SYS.CONFIG (`tdh_sys_config.c`): while SYSINIT_DONE and only once every LP ran LP.INIT
 * (else SYS_CONFIG_NOT_PENDING); 1 to 64 TDMR_INFO entries (`m.tdmrInfo`, RCX; their count
 * RDX) and a global KeyID (R8). Each entry is checked as `check_and_set_tdmrs` does, in its
 * order: the TDMRs ascending and apart, 1 GiB aligned and sized; the reserved areas ascending,
 * apart, inside their TDMR; the PAMT areas big enough, apart from each other and from every
 * TDMR's non-reserved part, inside convertible memory; the non-reserved part of the TDMR
 * inside convertible memory. Convertible memory (the CMRs) is the host's memory.
 */
export function sysConfigLeaf(m: SeamCore, _tdr: number, count: number, hkid: number): SeamResult {
  const s = m.sys;
  const info = m.tdmrInfo;
  check(s.state === SYSINIT_DONE && s.numInitLps === s.numLps, TDX_SYS_CONFIG_NOT_PENDING);
  check(
    Number.isInteger(count) && count >= 1 && count <= MAX_TDMRS && count <= info.length,
    TDX_OPERAND_INVALID,
    OPERAND_RDX,
  );
  check(Number.isInteger(hkid) && hkid > 0 && hkid < 0x10000, TDX_OPERAND_INVALID, OPERAND_R8);
  // An entry has 16 reserved-area slots: a 17th cannot be written into the array RCX points to.
  for (let i = 0; i < count; i++)
    check(info[i]!.rsvd.length <= MAX_RESERVED_AREAS, TDX_OPERAND_INVALID, OPERAND_RCX);
  const cmrEnd = m.pamt.totalFrames;
  for (let i = 0; i < count; i++) {
    const t = info[i]!;
    check(
      Number.isInteger(t.base) && Number.isInteger(t.frames) && t.base >= 0,
      multi(TDX_INVALID_TDMR, i),
    );
    if (i > 0) {
      const prev = info[i - 1]!;
      check(t.base >= prev.base, multi(TDX_NON_ORDERED_TDMR, i));
      check(t.base >= prev.base + prev.frames, multi(TDX_NON_ORDERED_TDMR, i));
    }
    check(
      t.base % TDMR_ALIGN_FRAMES === 0 && t.frames > 0 && t.frames % TDMR_ALIGN_FRAMES === 0,
      multi(TDX_INVALID_TDMR, i),
    );
    check(t.base + t.frames <= MAX_PA_PFN, multi(TDX_INVALID_TDMR, i));
    checkReservedAreas(t, i);
    checkPamtAreas(info, i, cmrEnd);
    for (const [, to] of availableAreas(t)) check(to <= cmrEnd, multi(TDX_TDMR_OUTSIDE_CMRS, i));
  }
  s.globalHkid = hkid;
  s.tdmrs = info.slice(0, count).map((t) => ({
    base: t.base,
    frames: t.frames,
    lastInitialized: t.base,
    rsvd: t.rsvd
      .filter((r) => r.frames > 0)
      .map((r) => ({ base: t.base + r.offset, frames: r.frames })),
  }));
  s.pkgConfigBitmap = 0;
  s.state = SYSCONFIG_DONE;
  return ok();
}

/** `api_error_with_multiple_info`: the details in bytes 0 to 2 of the status's low half. */
function multi(status: bigint, info0: number, info1 = 0, info2 = 0): bigint {
  return status + BigInt(info0) + (BigInt(info1) << 8n) + (BigInt(info2) << 16n);
}

/** `check_tdmr_reserved_areas`: used slots first, ascending and apart, whole frames, inside the TDMR. */
function checkReservedAreas(t: TdmrInfo, i: number): void {
  for (let j = 0; j < t.rsvd.length; j++) {
    const r = t.rsvd[j]!;
    if (r.frames === 0) {
      check(
        j + 1 >= t.rsvd.length || t.rsvd[j + 1]!.frames === 0,
        multi(TDX_NON_ORDERED_RESERVED_IN_TDMR, i, j),
      );
      continue;
    }
    check(
      Number.isInteger(r.offset) && Number.isInteger(r.frames) && r.offset >= 0 && r.frames > 0,
      multi(TDX_INVALID_RESERVED_IN_TDMR, i, j),
    );
    if (j > 0) {
      const prev = t.rsvd[j - 1]!;
      check(r.offset >= prev.offset, multi(TDX_NON_ORDERED_RESERVED_IN_TDMR, i, j));
      check(r.offset >= prev.offset + prev.frames, multi(TDX_NON_ORDERED_RESERVED_IN_TDMR, i, j));
    }
    check(r.offset + r.frames <= t.frames, multi(TDX_INVALID_RESERVED_IN_TDMR, i, j));
  }
}

/** The PAMT levels as `page_size_t` numbers them (the second detail of a PAMT error). */
const PT_4KB = 0;
const PT_2MB = 1;
const PT_1GB = 2;

function pamtOf(t: TdmrInfo, level: number): FrameRange {
  return level === PT_4KB ? t.pamt4k : level === PT_2MB ? t.pamt2m : t.pamt1g;
}

function overlap(a: FrameRange, from: number, to: number): boolean {
  return a.base < to && from < a.base + a.frames;
}

/** The TDMR's parts outside its reserved areas, as [from, to) frame ranges. */
function availableAreas(t: TdmrInfo): [number, number][] {
  const out: [number, number][] = [];
  let at = t.base;
  for (const r of t.rsvd) {
    if (r.frames === 0) break;
    if (t.base + r.offset > at) out.push([at, t.base + r.offset]);
    at = t.base + r.offset + r.frames;
  }
  if (at < t.base + t.frames) out.push([at, t.base + t.frames]);
  return out;
}

/**
 * `check_tdmr_pamt_areas` for entry `i`: each PAMT area (1G, 2M, 4K) whole frames below MAX_PA
 * and big enough for the TDMR (INVALID_PAMT); apart from the earlier entries' PAMTs and from its
 * own other levels, then from the non-reserved parts of every TDMR up to it, both ways
 * (PAMT_OVERLAP); inside convertible memory (PAMT_OUTSIDE_CMRS).
 */
function checkPamtAreas(info: readonly TdmrInfo[], i: number, cmrEnd: number): void {
  const t = info[i]!;
  for (const level of [PT_1GB, PT_2MB, PT_4KB]) {
    const p = pamtOf(t, level);
    const entries =
      level === PT_4KB
        ? t.frames
        : level === PT_2MB
          ? t.frames / 512
          : t.frames / TDMR_ALIGN_FRAMES;
    const ok =
      Number.isInteger(p.base) &&
      Number.isInteger(p.frames) &&
      p.base >= 0 &&
      p.frames >= 0 &&
      p.base + p.frames <= MAX_PA_PFN &&
      p.frames * 4096 >= entries * PAMT_ENTRY_BYTES;
    check(ok, multi(TDX_INVALID_PAMT, i, level));
  }
  const levels = [PT_4KB, PT_2MB, PT_1GB];
  for (let j = 0; j < i; j++) {
    for (const level of levels) {
      const p = pamtOf(t, level);
      const hit = levels.some((l) =>
        overlap(p, pamtOf(info[j]!, l).base, pamtOf(info[j]!, l).base + pamtOf(info[j]!, l).frames),
      );
      check(!hit, multi(TDX_PAMT_OVERLAP, i, level, j));
    }
  }
  for (const [a, b] of [
    [PT_4KB, PT_2MB],
    [PT_4KB, PT_1GB],
    [PT_2MB, PT_1GB],
  ] as const) {
    const q = pamtOf(t, b);
    check(!overlap(pamtOf(t, a), q.base, q.base + q.frames), multi(TDX_PAMT_OVERLAP, i, a, i));
  }
  const hitsAvailable = (p: FrameRange, tdmr: TdmrInfo) =>
    availableAreas(tdmr).some(([from, to]) => overlap(p, from, to));
  for (let j = 0; j <= i; j++) {
    for (const level of levels)
      check(!hitsAvailable(pamtOf(t, level), info[j]!), multi(TDX_PAMT_OVERLAP, i, level, j));
    if (j < i)
      for (const level of levels)
        check(!hitsAvailable(pamtOf(info[j]!, level), t), multi(TDX_PAMT_OVERLAP, j, level, i));
  }
  for (const level of [PT_1GB, PT_2MB, PT_4KB]) {
    const p = pamtOf(t, level);
    check(p.base + p.frames <= cmrEnd, multi(TDX_PAMT_OUTSIDE_CMRS, i, level));
  }
}

/**
 * TDH.SYS.KEY.CONFIG on `lp`'s package (`tdh_sys_key_config.c`): while SYSCONFIG_DONE (else
 * SYS_KEY_CONFIG_NOT_PENDING); a package already configured is KEY_CONFIGURED (a warning);
 * the last package makes the module SYS_READY.
 */
export function sysKeyConfigLeaf(m: SeamCore, _tdr: number, lp: number): SeamResult {
  const s = m.sys;
  check(s.state === SYSCONFIG_DONE, TDX_SYS_KEY_CONFIG_NOT_PENDING);
  const pkg = lp % s.numPkgs;
  if ((s.pkgConfigBitmap >> pkg) & 1) return { status: TDX_KEY_CONFIGURED };
  s.pkgConfigBitmap |= 1 << pkg;
  s.numInitPkgs++;
  if (s.numInitPkgs === s.numPkgs) s.state = SYS_READY;
  return ok();
}

/**
 * TDH.SYS.TDMR.INIT (`tdh_sys_tdmr_init.c`, after the dispatcher's SYS_READY check): the TDMR
 * whose base is RCX (1 GiB aligned and configured, else OPERAND_INVALID|RCX) gets 4 MiB more of
 * its PAMT initialized; RDX is how far it has come, rounded down to 1 GiB. A TDMR done already is
 * TDMR_ALREADY_INITIALIZED (a warning). The module takes the TDMR's mutex first (OPERAND_BUSY|RCX
 * for a concurrent caller); the model's bring-up runs on one CPU, so no call finds it taken.
 */
export function sysTdmrInitLeaf(m: SeamCore, _tdr: number, baseFrame: number): SeamResult {
  const s = m.sys;
  check(
    Number.isInteger(baseFrame) && baseFrame % TDMR_ALIGN_FRAMES === 0,
    TDX_OPERAND_INVALID,
    OPERAND_RCX,
  );
  const i = s.tdmrs.findIndex((t) => t.base === baseFrame);
  check(i >= 0, TDX_OPERAND_INVALID, OPERAND_RCX);
  const t = s.tdmrs[i]!;
  const end = t.base + t.frames;
  if (t.lastInitialized >= end) return { status: TDX_TDMR_ALREADY_INITIALIZED };
  const from = t.lastInitialized;
  t.lastInitialized = Math.min(end, t.lastInitialized + TDMR_INIT_FRAMES);
  markReserved(m, t, from, t.lastInitialized);
  const next =
    t.base + Math.floor((t.lastInitialized - t.base) / TDMR_ALIGN_FRAMES) * TDMR_ALIGN_FRAMES;
  m.pamt.setUsableFrames(s.usableFrames());
  return { status: TDX_SUCCESS, regs: { rdx: BigInt(next) << 12n } };
}

/**
 * The PAMT entries of the reserved frames in [from, to) of TDMR `t` become PT_RSVD
 * (`pamt_4kb_init`). Only frames of the host's memory have entries in the model: a reserved
 * hole past the end of host memory (the TDMR is 1 GiB sized, the host need not be) is left out,
 * and a page there is refused as outside the TDMRs (OPERAND_ADDR_RANGE_ERROR) where the module
 * would find PT_RSVD (PAGE_METADATA_INCORRECT).
 */
export function markReserved(m: SeamCore, t: Tdmr, from: number, to: number): void {
  const end = Math.min(to, m.pamt.totalFrames);
  for (const r of t.rsvd) {
    const a = Math.max(from, r.base);
    const b = Math.min(end, r.base + r.frames);
    if (a < b) m.pamt.setReserved(a, b);
  }
}
