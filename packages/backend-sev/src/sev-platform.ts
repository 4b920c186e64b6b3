/**
 * What the SEV-like backend puts on a host, shared by every guest on it: the RMP (one per
 * machine, covering all of host memory, as the hardware's) and the ASIDs. Registered in the
 * host's container by the registration's `registerHost`; `SevBackend` is handed both by its
 * constructor.
 */
import {
  FRAMES,
  IdAllocator,
  instanceCachingFactory,
  type DependencyContainer,
  type InjectionToken,
} from "@tdpemu/backend-sdk";
import { Rmp } from "./rmp.js";

/** The host's RMP. */
export const RMP: InjectionToken<Rmp> = Symbol.for("tdpemu.sev.Rmp");
/**
 * The host's ASIDs, one per guest (`sev_asid_new`). Numbered from 1: ASID 0 is the host's own,
 * and SEV-ES and SNP guests take the low ones.
 */
export const SEV_ASIDS: InjectionToken<IdAllocator> = Symbol.for("tdpemu.sev.Asids");

/** `registerHost` of the `sev` registration: one RMP and one ASID space per host, made on first use. */
export function registerSevHost(c: DependencyContainer): void {
  c.register(RMP, {
    useFactory: instanceCachingFactory((r) => new Rmp(r.resolve(FRAMES).totalFrames)),
  });
  c.register(SEV_ASIDS, { useFactory: instanceCachingFactory(() => new IdAllocator(1)) });
}
