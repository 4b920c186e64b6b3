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
 * returns SYS_BUSY. The model's platform has one package; the TDMRs and their PAMTs are the
 * host's memory (the PAMT itself is the model's, outside host memory).
 */
import type { SeamCore } from "./seam-core.js";
import { type SeamResult, check, ok } from "./seam-result.js";
import {
  OPERAND_R8, OPERAND_RCX, OPERAND_RDX, TDX_KEY_CONFIGURED, TDX_OPERAND_INVALID, TDX_SUCCESS,
  TDX_SYS_CONFIG_NOT_PENDING, TDX_SYS_INIT_NOT_PENDING, TDX_SYS_KEY_CONFIG_NOT_PENDING, TDX_SYS_LP_INIT_DONE,
  TDX_SYS_LP_INIT_NOT_PENDING, TDX_TDMR_ALREADY_INITIALIZED,
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

/** One TDMR: its first frame, its size, and `last_initialized`, how far TDMR.INIT has come. */
interface Tdmr {
  base: number;
  frames: number;
  lastInitialized: number;
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

  /**
   * Frames below this are in an initialized part of a TDMR: `pamt_get_block` refuses a page at
   * or above `last_initialized` rounded down to 1 GiB.
   */
  usableFrames(): number {
    let end = 0;
    for (const t of this.tdmrs) end = Math.max(end, t.base + Math.floor((t.lastInitialized - t.base) / TDMR_ALIGN_FRAMES) * TDMR_ALIGN_FRAMES);
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
 * (else SYS_CONFIG_NOT_PENDING); 1 to 64 TDMRs (RDX) and a global KeyID (R8); each TDMR 1 GiB
 * aligned and sized, in ascending order, inside the platform's memory. The model checks the
 * count, the KeyID and the TDMRs' shape; a bad TDMR is OPERAND_INVALID|RCX here (the module has
 * a code per defect, INVALID_TDMR and others, with the TDMR's index).
 */
export function sysConfigLeaf(m: SeamCore, _tdr: number, tdmrFrames: number, count: number, hkid: number): SeamResult {
  const s = m.sys;
  check(s.state === SYSINIT_DONE && s.numInitLps === s.numLps, TDX_SYS_CONFIG_NOT_PENDING);
  check(Number.isInteger(count) && count >= 1 && count <= MAX_TDMRS, TDX_OPERAND_INVALID, OPERAND_RDX);
  check(Number.isInteger(hkid) && hkid > 0 && hkid < 0x10000, TDX_OPERAND_INVALID, OPERAND_R8);
  check(Number.isInteger(tdmrFrames) && tdmrFrames > 0 && tdmrFrames % TDMR_ALIGN_FRAMES === 0, TDX_OPERAND_INVALID, OPERAND_RCX);
  s.globalHkid = hkid;
  // The TDMRs: `count` of `tdmrFrames` each, one after the other from frame 0.
  s.tdmrs = Array.from({ length: count }, (_, i) => ({ base: i * tdmrFrames, frames: tdmrFrames, lastInitialized: i * tdmrFrames }));
  s.pkgConfigBitmap = 0;
  s.state = SYSCONFIG_DONE;
  return ok();
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
  check(Number.isInteger(baseFrame) && baseFrame % TDMR_ALIGN_FRAMES === 0, TDX_OPERAND_INVALID, OPERAND_RCX);
  const i = s.tdmrs.findIndex((t) => t.base === baseFrame);
  check(i >= 0, TDX_OPERAND_INVALID, OPERAND_RCX);
  const t = s.tdmrs[i]!;
  const end = t.base + t.frames;
  if (t.lastInitialized >= end) return { status: TDX_TDMR_ALREADY_INITIALIZED };
  t.lastInitialized = Math.min(end, t.lastInitialized + TDMR_INIT_FRAMES);
  const next = t.base + Math.floor((t.lastInitialized - t.base) / TDMR_ALIGN_FRAMES) * TDMR_ALIGN_FRAMES;
  m.pamt.setUsableFrames(s.usableFrames());
  return { status: TDX_SUCCESS, regs: { rdx: BigInt(next) << 12n } };
}
