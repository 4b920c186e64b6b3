/**
 * TDX's parts come from the containers: the host's TDX module and KeyIDs are one per host,
 * shared by its TDs, and a test can hand the backend a module of its own.
 */
import { describe, expect, it } from "vitest";
import { HOST, instanceCachingFactory } from "@tdpemu/backend-sdk";
import { Host, Vm, parseScenarioText, runScenario } from "@tdpemu/core/testing";
import {
  SEAM_MODULE,
  SeamModule,
  TDX_KEYIDS,
  TDX_OPERAND_BUSY,
  type SeamResult,
  type TdxBackend,
} from "../src/testing.js";
import { newTdx, tdx } from "./tdx-source.js";

const MiB = 2 ** 20;

/** A TDX module whose first `busy` TDH.MEM.PAGE.AUGs answer TDX_OPERAND_BUSY, as one contended by another TD would. */
class BusyAugModule extends SeamModule {
  busy = 1;
  answeredBusy = 0;
  override memPageAug(gpa: number, level: number, tdr: number, page: number): SeamResult {
    if (this.busy > 0) {
      this.busy--;
      this.answeredBusy++;
      return { status: TDX_OPERAND_BUSY };
    }
    return super.memPageAug(gpa, level, tdr, page);
  }
}

describe("TDX's host-wide parts", () => {
  it("two TDs on one host share its module and get HKIDs of their own; another host has its own module", () => {
    const a = new Host({ memory: 256 * MiB });
    const b = new Host({ memory: 256 * MiB });
    const cfg = { memory: 8 * MiB, gpaw: 48, vcpus: 1, hostPageLevel: 1 as const };
    const one = newTdx(a);
    new Vm(a, cfg, one);
    const two = newTdx(a);
    new Vm(a, cfg, two);
    const other = newTdx(b);
    new Vm(b, cfg, other);
    expect(two.module).toBe(one.module);
    expect(one.module).toBe(a.container.resolve(SEAM_MODULE));
    expect(other.module).not.toBe(one.module);
    // KeyID 1 is the module's own (tdx_global_keyid); TDs get the next ones, per host.
    expect(a.container.resolve(TDX_KEYIDS).globalKeyid).toBe(1);
    expect([one.hkid, two.hkid, other.hkid]).toEqual([2, 3, 2]);
  });
});

describe("a TDX module substituted through the host's container", () => {
  it("the backend is handed it: an AUG answered OPERAND_BUSY is retried by the fault, as tdx_operand_busy says", () => {
    const scn = parseScenarioText(
      `
name: busy-aug
vm: { memory: 8MiB, gpaw: 48, vcpus: 1 }
backend: tdx
vcpus:
  - - { op: accept, gpa: 0x0 }
`,
      "busy-aug.yaml",
    );
    const r = runScenario(scn, {
      backend: tdx,
      configureHost: (c) =>
        c.register(SEAM_MODULE, {
          useFactory: instanceCachingFactory(
            (x) => new BusyAugModule(x.resolve(HOST).frames.totalFrames),
          ),
        }),
    });
    const be = r.vm.backend as TdxBackend;
    expect(be.module).toBeInstanceOf(BusyAugModule);
    expect((be.module as BusyAugModule).answeredBusy).toBe(1);
    expect(r.report.stats.faultRetries).toBe(1);
    expect(r.report.invariants.violations).toEqual([]);
    expect(r.report.ops[0]!.result).toEqual({ ok: 1, exceptions: 0 });
  });
});
