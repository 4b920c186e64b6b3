/**
 * What TDX puts on a host, shared by every TD on it: the TDX module (one per platform: its PAMT
 * covers all of host memory) and the platform's KeyIDs. Registered in the host's container by
 * the registration's `registerHost`; `TdxBackend` is handed both by its constructor.
 */
import {
  FRAMES_PER_BLOCK,
  HOST,
  IdAllocator,
  instanceCachingFactory,
  type DependencyContainer,
  type InjectionToken,
} from "@tdpemu/backend-sdk";
import { SeamModule, type SeamResult } from "./seam/seam-module.js";
import type { BringUpRecord } from "./seam/seam-core.js";
import { formatStatus, isOk } from "./seam/status.js";
import { TDMR_ALIGN_FRAMES, type RsvdArea, type TdmrInfo } from "./seam/sys-leaves.js";

/**
 * The platform's TDX KeyIDs. Linux (arch/x86/virt/vmx/tdx/tdx.c) keeps the first for the module's
 * own key (`tdx_global_keyid`, used to flush the TDR's cache lines at teardown) and gives the
 * others to TDs as their HKIDs, one each (`tdx_guest_keyid_alloc`).
 */
export class TdxKeyIds extends IdAllocator {
  readonly globalKeyid = 1;

  constructor() {
    super(2);
  }
}

/** The host's TDX module. */
export const SEAM_MODULE: InjectionToken<SeamModule> = Symbol.for("tdpemu.tdx.SeamModule");
/** The host's TDX KeyIDs. */
export const TDX_KEYIDS: InjectionToken<TdxKeyIds> = Symbol.for("tdpemu.tdx.KeyIds");

/** `registerHost` of the `tdx` registration: one module and one KeyID space per host, made on first use. */
export function registerTdxHost(c: DependencyContainer): void {
  c.register(SEAM_MODULE, {
    useFactory: instanceCachingFactory((r) => {
      const host = r.resolve(HOST);
      const total = host.frames.totalFrames;
      // The host kernel takes the PAMT from its own memory when it brings TDX up
      // (arch/x86/virt/vmx/tdx/tdx.c: `tdmr_set_up_pamt()`: one contiguous run per TDMR,
      // `alloc_contig_pages`), before any VM: here the first free frames, in whole 2 MiB blocks of
      // the host's allocator.
      const blocks = Math.ceil(
        pamtFrames(tdmrFramesFor(total)).reduce((a, b) => a + b) / FRAMES_PER_BLOCK,
      );
      const pamtBase =
        host.frames.allocBlocks(blocks, 1, host.newOwnerId(), "the TDX module's PAMT") *
        FRAMES_PER_BLOCK;
      const module = broughtUp(total, r.resolve(TDX_KEYIDS).globalKeyid, pamtBase);
      // The module's memory goes with the host: a discarded host's PAMT blocks and S-EPT pages
      // serve the next host's module.
      host.onRelease(module.pamt);
      host.onRelease(module.sept);
      return module;
    }),
  });
  c.register(TDX_KEYIDS, { useFactory: instanceCachingFactory(() => new TdxKeyIds()) });
}

/** The frames of the one TDMR over a host of `totalFrames` frames: from 0, 1 GiB aligned and sized. */
export function tdmrFramesFor(totalFrames: number): number {
  return Math.max(
    TDMR_ALIGN_FRAMES,
    Math.ceil(totalFrames / TDMR_ALIGN_FRAMES) * TDMR_ALIGN_FRAMES,
  );
}

/**
 * The frames of a TDMR's three PAMT areas, 4K, 2M and 1G (`tdmr_get_pamt_sz`): a 16-byte entry
 * (the module's PAMT_ENTRY_SIZE) per 4 KiB, 2 MiB and 1 GiB of the TDMR, each area rounded up to
 * whole pages.
 */
export function pamtFrames(tdmrFrames: number): [k4: number, m2: number, g1: number] {
  const frames = (entries: number) => Math.ceil((entries * 16) / 4096);
  return [frames(tdmrFrames), frames(tdmrFrames / 512), frames(tdmrFrames / TDMR_ALIGN_FRAMES)];
}

/**
 * The TDMR_INFO the host kernel hands TDH.SYS.CONFIG (`construct_tdmrs`): one TDMR over the
 * host's memory; its PAMT in one run from `pamtBase`, 4K area first, then 2M, then 1G
 * (`tdmr_set_up_pamt`); as reserved areas, in address order, the PAMT where it lies in the TDMR
 * (`tdmr_populate_rsvd_pamts`) and the TDMR's part past the end of memory
 * (`tdmr_populate_rsvd_holes`).
 */
export function kernelTdmrInfo(totalFrames: number, pamtBase: number): TdmrInfo[] {
  const frames = tdmrFramesFor(totalFrames);
  const [k4, m2, g1] = pamtFrames(frames);
  const rsvd: RsvdArea[] = [];
  if (pamtBase < frames)
    rsvd.push({ offset: pamtBase, frames: Math.min(k4 + m2 + g1, frames - pamtBase) });
  if (totalFrames < frames) rsvd.push({ offset: totalFrames, frames: frames - totalFrames });
  rsvd.sort((a, b) => a.offset - b.offset);
  return [
    {
      base: 0,
      frames,
      pamt4k: { base: pamtBase, frames: k4 },
      pamt2m: { base: pamtBase + k4, frames: m2 },
      pamt1g: { base: pamtBase + k4 + m2, frames: g1 },
      rsvd,
    },
  ];
}

/**
 * The host kernel's bring-up of the module (`init_tdx_module` in arch/x86/virt/vmx/tdx/tdx.c),
 * through the leaves: TDH.SYS.INIT, TDH.SYS.LP.INIT on every logical processor, TDH.SYS.CONFIG
 * with the TDMR_INFO of `kernelTdmrInfo` (its PAMT at `pamtBase`) and the global KeyID,
 * TDH.SYS.KEY.CONFIG on the one package, then TDH.SYS.TDMR.INIT until RDX reaches the TDMR's
 * end. A failure is the kernel's: TDX is then off on this host, and no TD can be made.
 *
 * Between LP.INIT and CONFIG the kernel reads the module's global metadata with TDH.SYS.RD, a
 * field a call (`get_tdx_sys_info`: version, features, the TDMR limits and PAMT entry sizes, the
 * TD control and configuration sizes and CPUID configuration). The model has no TDH.SYS.RD: its
 * kernel knows the values the model's module has (64 TDMRs, 16 reserved areas each, 16-byte PAMT
 * entries, its TDCS and TDVPS page counts), so the bring-up's call counts lack
 * those reads.
 */
export function tdxEnable(module: SeamModule, globalKeyid: number, pamtBase: number): void {
  const must = (what: string, r: SeamResult) => {
    if (!isOk(r.status))
      throw new Error(`TDX module bring-up: ${what} failed: ${formatStatus(r.status)}`);
    return r;
  };
  must("TDH.SYS.INIT", module.sysInit());
  for (let lp = 0; lp < module.sys.numLps; lp++) must("TDH.SYS.LP.INIT", module.sysLpInit(lp));
  const tdmrs = kernelTdmrInfo(module.pamt.totalFrames, pamtBase);
  must("TDH.SYS.CONFIG", module.sysConfig(tdmrs, globalKeyid));
  must("TDH.SYS.KEY.CONFIG", module.sysKeyConfig(0));
  const end = tdmrs[0]!.frames;
  for (let next = 0; next < end;)
    next = Number(must("TDH.SYS.TDMR.INIT", module.sysTdmrInit(0)).regs!.rdx! >> 12n);
}

/**
 * The bring-up of each platform size this process has brought up once, through the leaves.
 * The bring-up is deterministic and changes only the module's global bring-up state, the PAMT's
 * reserved entries (and its counts): a module for a host of the same size takes that state
 * instead of making its 300 or more SEAMCALLs again, which cost more than the rest of an
 * explorer schedule, each of which makes a host.
 */
const bringUps = new Map<string, BringUpRecord>();

function broughtUp(frames: number, globalKeyid: number, pamtBase: number): SeamModule {
  const module = new SeamModule(frames, { cold: true });
  const key = `${frames}/${globalKeyid}/${pamtBase}`;
  const done = bringUps.get(key);
  if (done) module.restoreBringUp(done);
  else {
    tdxEnable(module, globalKeyid, pamtBase);
    bringUps.set(key, module.bringUpRecord());
  }
  module.broughtUpAs(key);
  return module;
}
