/**
 * The `tdx` backend as the command makes it: from its registration, through the containers
 * (the host's TDX module and KeyIDs, then the VM's backend), never with `new`.
 */
import { backendSource, type Host } from "@tdpemu/core/testing";
import { registration, type TdxBackend } from "../src/testing.js";

export const tdx = backendSource(registration);

/** A TdxBackend for a VM on `host`, resolved through the host's container. */
export function newTdx(host: Host): TdxBackend {
  return tdx.create(host) as TdxBackend;
}
