/**
 * A malicious host's own RMI calls, bypassing KVM (the scenario op `raw` and the tests): any
 * command on any granule, IPA and level it names. The RMM must refuse what would hurt the
 * realm; the answer is X0 as the specification names it, with its index ("RMI_ERROR_RTT
 * (level 2)"). `NS.WRITE` is the host writing a frame through its own mapping, which the
 * Granule Protection Table refuses for a delegated granule (a granule protection fault).
 */
import type { BackendVm, RawCallArgs } from "@tdpemu/backend-sdk";
import type { CcaBackend } from "./cca-backend.js";
import { RMI_SUCCESS, formatReturn, returnStatus } from "./rmm/rmi-status.js";
import { levelSize, RIPAS_NAMES, RTTE_STATE_NAMES } from "./rmm/rtt.js";
import { GRANULE_NS, GRANULE_STATE_NAMES } from "./rmm/granules.js";
import type { RttEntryRead } from "./rmm/rtt-commands.js";
import { recExit } from "./rmm/realm-side.js";

export const RAW_CALLS = [
  "RMI_GRANULE_DELEGATE",
  "RMI_GRANULE_UNDELEGATE",
  "RMI_DATA_CREATE",
  "RMI_DATA_CREATE_UNKNOWN",
  "RMI_DATA_DESTROY",
  "RMI_RTT_CREATE",
  "RMI_RTT_DESTROY",
  "RMI_RTT_FOLD",
  "RMI_RTT_INIT_RIPAS",
  "RMI_RTT_SET_RIPAS",
  "RMI_RTT_MAP_UNPROTECTED",
  "RMI_RTT_UNMAP_UNPROTECTED",
  "RMI_RTT_READ_ENTRY",
  "RMI_REALM_ACTIVATE",
  "RMI_REALM_DESTROY",
  "RMI_REC_DESTROY",
  "RMI_REC_ENTER",
  "NS.WRITE",
] as const;

/** The frame `args.page` names: a PFN, the realm's page at `gpa` ("mapped"), or a fresh host frame. */
function page(vm: BackendVm, args: RawCallArgs): number {
  if (typeof args.page === "number") return args.page;
  const gfn = Math.floor((args.gpa ?? 0) / 4096);
  if (args.page === "mapped") {
    const slot = vm.memslots.find(gfn);
    const pfn = slot?.gmem?.peekPfn(gfn - slot.baseGfn) ?? -1;
    if (pfn < 0)
      throw new Error(`page: mapped: no private page at gpa 0x${(gfn * 4096).toString(16)}`);
    return pfn;
  }
  return vm.host.frames.allocBlocks(1, 1, vm.owner, "untrusted host page") * 512;
}

export function rawRmiCall(
  be: CcaBackend,
  vm: BackendVm,
  call: string,
  args: RawCallArgs,
): { status: string; detail: string } {
  const rmi = be.rmi;
  const rd = be.rd;
  const ipa = args.gpa ?? 0;
  const level = args.level ?? 3;
  const rec = () => {
    const v = args.vcpu ?? 0;
    const pa = be.recPas[v];
    if (pa === undefined) throw new Error(`vcpu ${v}: the realm has ${be.recPas.length} REC(s)`);
    return pa;
  };
  const x0 = (x: number, detail = "") => ({ status: formatReturn(x), detail });
  // X1 (the granule given back) is defined only on success.
  const success = (x: number) => returnStatus(x) === RMI_SUCCESS;
  switch (call) {
    case "RMI_GRANULE_DELEGATE": {
      const p = page(vm, args);
      return x0(rmi.granuleDelegate(p * 4096), `pa 0x${(p * 4096).toString(16)}`);
    }
    case "RMI_GRANULE_UNDELEGATE": {
      const p = page(vm, args);
      return x0(rmi.granuleUndelegate(p * 4096), `pa 0x${(p * 4096).toString(16)}`);
    }
    case "RMI_DATA_CREATE": {
      const p = page(vm, args);
      return x0(rmi.dataCreate(rd, p * 4096, ipa, page(vm, { page: "fresh" }) * 4096, 1));
    }
    case "RMI_DATA_CREATE_UNKNOWN": {
      const p = page(vm, args);
      return x0(rmi.dataCreateUnknown(rd, p * 4096, ipa));
    }
    case "RMI_DATA_DESTROY": {
      const r = rmi.dataDestroy(rd, ipa);
      return x0(
        r,
        `${success(r) ? `pa 0x${be.rmm.x1.toString(16)} ` : ""}top 0x${be.rmm.x2.toString(16)}`,
      );
    }
    case "RMI_RTT_CREATE": {
      const p = page(vm, args);
      return x0(rmi.rttCreate(rd, p * 4096, ipa, level));
    }
    case "RMI_RTT_DESTROY": {
      const r = rmi.rttDestroy(rd, ipa, level);
      return x0(
        r,
        `${success(r) ? `rtt 0x${be.rmm.x1.toString(16)} ` : ""}top 0x${be.rmm.x2.toString(16)}`,
      );
    }
    case "RMI_RTT_FOLD":
      return x0(rmi.rttFold(rd, ipa, level));
    case "RMI_RTT_INIT_RIPAS":
      return x0(rmi.rttInitRipas(rd, ipa, ipa + levelSize(level)));
    case "RMI_RTT_SET_RIPAS":
      return x0(rmi.rttSetRipas(rd, rec(), ipa, ipa + levelSize(level)));
    case "RMI_RTT_MAP_UNPROTECTED": {
      const p = page(vm, args);
      return x0(rmi.rttMapUnprotected(rd, ipa, level, p * 4096 + 0xd8));
    }
    case "RMI_RTT_UNMAP_UNPROTECTED":
      return x0(rmi.rttUnmapUnprotected(rd, ipa, level));
    case "RMI_RTT_READ_ENTRY": {
      const out: RttEntryRead = { level: 0, state: 0, pa: 0, ripas: 0 };
      const r = rmi.rttReadEntry(rd, ipa, level, out);
      return x0(
        r,
        r === 0
          ? `level ${out.level} ${RTTE_STATE_NAMES[out.state]} pa 0x${out.pa.toString(16)} ripas ${RIPAS_NAMES[out.ripas]}`
          : "",
      );
    }
    case "RMI_REALM_ACTIVATE":
      return x0(rmi.realmActivate(rd));
    case "RMI_REALM_DESTROY":
      return x0(rmi.realmDestroy(rd));
    case "RMI_REC_DESTROY":
      return x0(rmi.recDestroy(rec()));
    case "RMI_REC_ENTER": {
      // REC_ENTER is a blocking call: it returns when the REC exits (`smc_rec_enter` releases
      // the REC granule on its way out), so a host's own call leaves the REC idle again. The
      // realm runs nothing of the scenario's here: it exits at once, as on an interrupt.
      const pa = rec();
      const r = rmi.recEnter(pa, null);
      if (success(r)) recExit(be.rmm.recAt(pa)!);
      return x0(r, success(r) ? "the REC ran and exited (RMI_EXIT_IRQ)" : "");
    }
    case "NS.WRITE": {
      const p = page(vm, args);
      // The Granule Protection Table lets a non-secure access through to an NS granule only.
      const state = be.rmm.granuleState(p);
      return {
        status: state === GRANULE_NS ? "OK" : "GPF",
        detail: `pa 0x${(p * 4096).toString(16)} is ${GRANULE_STATE_NAMES[state]}`,
      };
    }
    default:
      throw new Error(
        `raw call '${call}' is not one the CCA backend knows (${RAW_CALLS.join(", ")})`,
      );
  }
}
