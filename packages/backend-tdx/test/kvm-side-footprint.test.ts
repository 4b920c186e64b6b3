/**
 * KVM's own TDX state is read through accessors that record: a vCPU's mode (`vcpu->mode`) and
 * `kvm_tdx->nr_premapped`. The module's recorded reads happen to order the same steps today,
 * so neither audit notices one of these reads gone (a review took each out in turn: both
 * audits stayed clean); this test does.
 */
import { describe, expect, it } from "vitest";
import { Host, Vm, recordedStep, type BackendVm } from "@tdpemu/core/testing";
import type { TdxBackend } from "../src/testing.js";
import { newTdx } from "./tdx-source.js";

const MiB = 2 ** 20;
/** `KIND_READ`: the access's kind bit for a read. */
const READ = 1;

function tdVm(vcpus: number): { vm: Vm; be: TdxBackend } {
  const host = new Host({ memory: 96 * MiB });
  const be = newTdx(host);
  const vm = new Vm(host, { memory: 16 * MiB, gpaw: 48, vcpus, hostPageLevel: 1 }, be);
  return { vm, be };
}

/**
 * The ids of KVM's TDX state, from the backend's audit snapshot, which ends with them: the
 * control pages, then KVM's VM-wide state, then one per vCPU.
 */
function kvmIds(vm: Vm, be: TdxBackend, vcpus: number): { kvm: number; vcpu: number[] } {
  const out = new Map<number, string | number>();
  vm.clock.observe(() => be.auditState(vm as BackendVm, out));
  const keys = [...out.keys()];
  const first = keys.length - vcpus;
  return { kvm: keys[first - 1]!, vcpu: keys.slice(first) };
}

describe("KVM's side of TDX records what it reads", () => {
  it("a guest access reads its own vCPU's mode, and only its own", () => {
    const { vm, be } = tdVm(2);
    const ids = kvmIds(vm, be, 2);
    const rec = recordedStep(vm.clock, () => be.checkGuestAccess(vm, 1, 0x1000, false, true));
    expect(rec.kindOf(ids.vcpu[1]!) & READ).toBe(READ);
    expect(rec.kindOf(ids.vcpu[0]!)).toBe(0);
  });

  it("nr_premapped is a read of KVM's VM-wide state", () => {
    const { vm, be } = tdVm(1);
    const ids = kvmIds(vm, be, 1);
    const rec = recordedStep(vm.clock, () => be.nrPremapped);
    expect(rec.kindOf(ids.kvm) & READ).toBe(READ);
  });
});
