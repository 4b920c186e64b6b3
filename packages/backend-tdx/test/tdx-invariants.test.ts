/**
 * TDX's own invariants catch a PAMT that disagrees with the S-EPT: a page the S-EPT uses twice,
 * and a page the TD owns that its S-EPT does not use. The check runs after every explorer step
 * and keeps its "used" map between runs, so a clean state checked again stays clean.
 */
import { describe, expect, it } from "vitest";
import { Host, Vm, checkInvariants, guestAcceptPage, runToEnd } from "@tdpemu/core/testing";
import { PT_NDA, PT_REG, SEPT_MAPPED } from "../src/testing.js";
import { newTdx } from "./tdx-source.js";

const MiB = 2 ** 20;

function tdWithPages(pages: number) {
  const host = new Host({ memory: 96 * MiB });
  const be = newTdx(host);
  const vm = new Vm(host, { memory: 16 * MiB, gpaw: 48, vcpus: 1, hostPageLevel: 1 }, be);
  for (let p = 0; p < pages; p++)
    expect(runToEnd(guestAcceptPage(vm, vm.vcpus[0]!, p * 4096))).toBe("ok");
  return { vm, be };
}

const messages = (vm: Vm) =>
  checkInvariants(vm, { final: false }).violations.map((v) => `${v.check}: ${v.message}`);

describe("TDX invariants: the PAMT against the S-EPT", () => {
  it("a clean TD stays clean when checked again and again", () => {
    const { vm } = tdWithPages(3);
    for (let i = 0; i < 3; i++) expect(messages(vm)).toEqual([]);
  });

  it("names a page the S-EPT maps twice", () => {
    const { vm, be } = tdWithPages(2);
    const m = be.module;
    const page0 = vm.memslots.find(0)!.gmem!.peekPfn(0);
    m.walk(be.td, 1, 0);
    m.sept.setEntry(m.walkTable, m.walkOff, SEPT_MAPPED, page0, 0);
    expect(messages(vm)).toContainEqual(
      `pamt-consistent: page 0x${page0.toString(16)} is used twice in the S-EPT`,
    );
  });

  it("names a page the TD owns that its S-EPT does not use", () => {
    const { vm, be } = tdWithPages(1);
    const stray = vm.memslots.find(5)!.gmem!.peekPfn(5);
    expect(stray).toBeGreaterThan(0);
    expect(messages(vm)).toEqual([]);
    be.module.pamt.set(stray, PT_REG, be.tdr);
    expect(messages(vm)).toContainEqual(
      `pamt-consistent: REG page 0x${stray.toString(16)} owned by the TD is not in its S-EPT`,
    );
  });

  it("a 2 MiB page: its 4K PAMT entries assigned under its 2M entry, and a 4K leaf on one of its frames, are named", () => {
    const { vm, be } = tdWithPages(1);
    const m = be.module;
    const big = vm.host.frames.allocBlocks(1, 1, vm.host.newOwnerId(), "a 2 MiB page") * 512;
    // AUG at 2M over GPA 2 MiB, behind KVM's back, as the raw host call would.
    expect(be.rawCall(vm, "TDH.MEM.PAGE.AUG", { gpa: 0x200000, level: 1, page: big }).status).toBe(
      "SUCCESS",
    );
    const pamtOnly = () => messages(vm).filter((x) => x.startsWith("pamt-consistent"));
    expect(pamtOnly()).toEqual([]);
    m.pamt.set(big + 7, PT_REG, be.tdr);
    expect(pamtOnly()).toContainEqual(
      `pamt-consistent: the 2 MiB page at 0x${big.toString(16)} has 4K PAMT entries assigned under its 2M entry`,
    );
    m.pamt.set(big + 7, PT_NDA, -1);
    m.walk(be.td, 0, 0);
    m.sept.setEntry(m.walkTable, m.walkOff, SEPT_MAPPED, big + 9, 0);
    expect(pamtOnly()).toContainEqual(
      `pamt-consistent: page 0x${(big + 9).toString(16)} is used twice in the S-EPT`,
    );
  });
});
