/**
 * What the CCA backend puts on a host, shared by every realm on it: the RMM (one per machine,
 * with its granule table, as the hardware's Granule Protection Table is one) and KVM's VMIDs.
 * Registered in the host's container by the registration's `registerHost`.
 */
import {
  FRAMES,
  IdAllocator,
  instanceCachingFactory,
  type DependencyContainer,
  type InjectionToken,
} from "@tdpemu/backend-sdk";
import { Rmm } from "./rmm/rmm.js";

export const RMM: InjectionToken<Rmm> = Symbol.for("tdpemu.cca.Rmm");
/** KVM's VMID bitmap for realms (`kvm_arm_vmid_alloc`'s reserved range in the series); VMID 0 is the host's. */
export const CCA_VMIDS: InjectionToken<IdAllocator> = Symbol.for("tdpemu.cca.Vmids");

export function registerCcaHost(c: DependencyContainer): void {
  c.register(RMM, {
    useFactory: instanceCachingFactory((r) => new Rmm(r.resolve(FRAMES).totalFrames)),
  });
  c.register(CCA_VMIDS, { useFactory: instanceCachingFactory(() => new IdAllocator(1)) });
}
