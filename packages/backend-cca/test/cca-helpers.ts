/**
 * Fixtures for the CCA backend's tests: a realm on a host, made through the registration as the
 * command makes it; the realm's accesses and accepts run to the end; the frames guest_memfd
 * gives a GFN; an RTT entry as RMI_RTT_READ_ENTRY reads it (without counting a call).
 */
import {
  Host,
  backendSource,
  Vm,
  guestAcceptPage,
  guestAccessPage,
  runToEnd,
  type AccessOutcome,
} from "@tdpemu/core/testing";
import {
  registration,
  rttReadEntry,
  RTTE_STATE_NAMES,
  RIPAS_NAMES,
  type CcaBackend,
  type RttEntryRead,
} from "../src/testing.js";

export const MiB = 2 ** 20;
export const cca = backendSource(registration);

export interface CcaFixture {
  host: Host;
  vm: Vm;
  be: CcaBackend;
}

export function makeRealm(o: { host?: Host; memory?: number; vcpus?: number } = {}): CcaFixture {
  const host = o.host ?? new Host({ memory: 256 * MiB });
  const be = cca.create(host) as CcaBackend;
  const vm = new Vm(
    host,
    { memory: o.memory ?? 64 * MiB, gpaw: 48, vcpus: o.vcpus ?? 1, hostPageLevel: 1 },
    be,
  );
  return { host, vm, be };
}

/** One access of the page at `gpa` by vCPU `v`: protected unless `shared`. */
export function access(vm: Vm, gpa: number, write = true, shared = false, v = 0): AccessOutcome {
  return runToEnd(guestAccessPage(vm, vm.vcpus[v]!, gpa, write, shared));
}

/** RSI_IPA_STATE_SET to RAM of the 4K page at `gpa` by vCPU 0 (the `accept` op). */
export function accept(vm: Vm, gpa: number): AccessOutcome {
  return runToEnd(guestAcceptPage(vm, vm.vcpus[0]!, gpa));
}

export function gmemPfn(vm: Vm, gfn: number): number {
  const slot = vm.memslots.find(gfn);
  return slot?.gmem?.peekPfn(gfn - slot.baseGfn) ?? -1;
}

/** The RTT entry at `ipa`, as deep as `level`: "L3 ASSIGNED RAM pa 0x...". */
export function rtte(be: CcaBackend, ipa: number, level = 3): string {
  const out: RttEntryRead = { level: 0, state: 0, pa: 0, ripas: 0 };
  const x0 = rttReadEntry(be.rmm, be.rd, ipa, level, out);
  if (x0 !== 0) return `x0 ${x0}`;
  return `L${out.level} ${RTTE_STATE_NAMES[out.state]} ${RIPAS_NAMES[out.ripas]}${out.pa ? ` pa 0x${out.pa.toString(16)}` : ""}`;
}
