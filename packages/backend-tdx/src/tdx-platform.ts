/**
 * What TDX puts on a host, shared by every TD on it: the TDX module (one per platform: its PAMT
 * covers all of host memory) and the platform's KeyIDs. Registered in the host's container by
 * the registration's `registerHost`; `TdxBackend` is handed both by its constructor.
 */
import { HOST, IdAllocator, instanceCachingFactory, type DependencyContainer, type InjectionToken } from "@tdpemu/backend-sdk";
import { SeamModule } from "./seam/seam-module.js";

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
      const module = new SeamModule(host.frames.totalFrames);
      // The module's memory goes with the host: a discarded host's PAMT blocks and S-EPT pages
      // serve the next host's module.
      host.onRelease(module.pamt);
      host.onRelease(module.sept);
      return module;
    }),
  });
  c.register(TDX_KEYIDS, { useFactory: instanceCachingFactory(() => new TdxKeyIds()) });
}
