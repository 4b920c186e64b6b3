/** Small TDs on a module of their own, for tests of the SEAM module's leaves. */
import { expect } from "vitest";
import { SeamModule, TDX_SUCCESS } from "../src/testing.js";

/** The pages of a TD's TDCS in these fixtures: the first (the S-EPT root) right after the TDR. */
export function tdcsPages(tdr: number): number[] {
  return [tdr + 1, tdr + 3, tdr + 4, tdr + 5, tdr + 6, tdr + 7];
}

/** The five TDCX pages of the vCPU whose TDVPR is `tdvpr` in these fixtures (MIN_TDVPS_PAGES - 1). */
export function tdcxPages(tdvpr: number): number[] {
  return [0, 1, 2, 3, 4].map((i) => 3000 + tdvpr * 5 + i);
}

/** A vCPU of TD `tdr` as KVM makes one: TDH.VP.CREATE, five TDH.VP.ADDCX, TDH.VP.INIT on LP `lp`. */
export function createVcpu(m: SeamModule, tdr: number, tdvpr: number, lp: number): void {
  expect(m.vpCreate(tdr, tdvpr).status).toBe(TDX_SUCCESS);
  for (const page of tdcxPages(tdvpr)) expect(m.vpAddcx(tdvpr, page).status).toBe(TDX_SUCCESS);
  expect(m.vpInit(tdvpr, lp).status).toBe(TDX_SUCCESS);
}

/**
 * A TD built but not finalized, with one vCPU on LP `lp`: TDR `tdr`, its six TDCS pages
 * (`tdcsPages`), TDVPR `tdr + 2` with its TDCX pages (`tdcxPages`) (by default TD 0 on a
 * module of its own).
 */
export function initializedTd(m = new SeamModule(4096), tdr = 0, hkid = 1, lp = 0): SeamModule {
  m.mngCreate(tdr, hkid);
  m.mngKeyConfig(tdr);
  for (const page of tdcsPages(tdr)) m.mngAddcx(tdr, page);
  m.mngInit(tdr, { gpaw: 48, septVeDisable: false });
  createVcpu(m, tdr, tdr + 2, lp);
  return m;
}

/** `initializedTd`, finalized. */
export function finalizedTd(): SeamModule {
  const m = initializedTd();
  m.mrFinalize(0);
  return m;
}

/**
 * The vCPU of TD `tdr` (TDVPR `tdr + 2`, on LP 0) leaves guest mode and the HKID is released, as
 * `tdx_mmu_release_hkid` does.
 */
export function releaseHkid(m: SeamModule, tdr = 0): void {
  m.tdExit(tdr + 2);
  expect(m.vpFlush(tdr + 2, 0).status).toBe(TDX_SUCCESS);
  expect(m.mngVpflushdone(tdr).status).toBe(TDX_SUCCESS);
  expect(m.phymemCacheWb(tdr).status).toBe(TDX_SUCCESS);
  expect(m.mngKeyFreeid(tdr).status).toBe(TDX_SUCCESS);
}

/**
 * TD 0's S-EPT tables over GPA 0 from level 3 down to TDX level `lowest` (1: down to the 4K
 * table): page 10 at level 3, 11 at level 2, 12 at level 1.
 */
export function addSeptTables(m: SeamModule, lowest = 1): SeamModule {
  for (let level = 3; level >= lowest; level--)
    expect(m.memSeptAdd(0, level, 0, 13 - level).status).toBe(TDX_SUCCESS);
  return m;
}

/** `finalizedTd` with S-EPT tables 10-12 over GPA 0 and page 100 AUGed at 0x1000. */
export function runnableTd(): SeamModule {
  const m = addSeptTables(finalizedTd());
  expect(m.memPageAug(0x1000, 0, 0, 100).status).toBe(TDX_SUCCESS);
  return m;
}
