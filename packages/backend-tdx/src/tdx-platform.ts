/**
 * What TDX puts on a host, shared by every TD on it: the TDX module (one per platform: its PAMT
 * covers all of host memory) and the platform's KeyIDs. Registered in the host's container by
 * the registration's `registerHost`; `TdxBackend` is handed both by its constructor.
 */
import { HOST, IdAllocator, instanceCachingFactory, type DependencyContainer, type InjectionToken } from "@tdpemu/backend-sdk";
import { SeamModule, type SeamResult } from "./seam/seam-module.js";
import type { BringUpRecord } from "./seam/seam-core.js";
import { formatStatus, isOk } from "./seam/status.js";
import { TDMR_ALIGN_FRAMES } from "./seam/sys-leaves.js";

/**
 * The platform's TDX KeyIDs. Linux keeps the first for the module's own key
 * (`tdx_global_keyid`, used to flush the TDR's cache lines at teardown) and gives the others to
 * TDs as their HKIDs, one each (`tdx_guest_keyid_alloc`).
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
      const module = broughtUp(host.frames.totalFrames, r.resolve(TDX_KEYIDS).globalKeyid);
      // The module's memory goes with the host: a discarded host's PAMT blocks and S-EPT pages
      // serve the next host's module.
      host.onRelease(module.pamt);
      host.onRelease(module.sept);
      return module;
    }),
  });
  c.register(TDX_KEYIDS, { useFactory: instanceCachingFactory(() => new TdxKeyIds()) });
}

/**
 * The host kernel's bring-up of the module (`init_tdx_module` in arch/x86/virt/vmx/tdx/tdx.c),
 * through the leaves: TDH.SYS.INIT, TDH.SYS.LP.INIT on every logical processor, TDH.SYS.CONFIG
 * with one TDMR over the host's memory (1 GiB aligned and sized) and the global KeyID,
 * TDH.SYS.KEY.CONFIG on the one package, then TDH.SYS.TDMR.INIT until RDX reaches the TDMR's
 * end. A failure is the kernel's: TDX is then off on this host, and no TD can be made.
 */
export function tdxEnable(module: SeamModule, globalKeyid: number): void {
  const must = (what: string, r: SeamResult) => {
    if (!isOk(r.status)) throw new Error(`TDX module bring-up: ${what} failed: ${formatStatus(r.status)}`);
    return r;
  };
  must("TDH.SYS.INIT", module.sysInit());
  for (let lp = 0; lp < module.sys.numLps; lp++) must("TDH.SYS.LP.INIT", module.sysLpInit(lp));
  const frames = Math.max(TDMR_ALIGN_FRAMES, Math.ceil(module.pamt.totalFrames / TDMR_ALIGN_FRAMES) * TDMR_ALIGN_FRAMES);
  must("TDH.SYS.CONFIG", module.sysConfig(frames, 1, globalKeyid));
  must("TDH.SYS.KEY.CONFIG", module.sysKeyConfig(0));
  for (let next = 0; next < frames;) next = Number(must("TDH.SYS.TDMR.INIT", module.sysTdmrInit(0)).regs!.rdx >> 12n);
}

/**
 * The bring-up of each platform size this process has brought up once, through the leaves.
 * The bring-up is deterministic and changes only the module's global bring-up state (and its
 * counts): a module for a host of the same size takes that state instead of making its 300 or
 * more SEAMCALLs again, which cost more than the rest of an explorer schedule, each of which
 * makes a host.
 */
const bringUps = new Map<string, BringUpRecord>();

function broughtUp(frames: number, globalKeyid: number): SeamModule {
  const module = new SeamModule(frames, { cold: true });
  const key = `${frames}/${globalKeyid}`;
  const done = bringUps.get(key);
  if (done) {
    module.restoreBringUp(done);
    return module;
  }
  tdxEnable(module, globalKeyid);
  bringUps.set(key, module.bringUpRecord());
  return module;
}
