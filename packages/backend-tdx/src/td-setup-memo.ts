/**
 * A TD's set-up, remembered. `TdxBackend.init` makes 11 SEAMCALLs and 10 a vCPU (TDH.MNG.CREATE to
 * the last TDH.VP.WR) before the VM runs; the explorer builds a VM for every schedule, and those
 * calls were a tenth of an exhaustive search. They are deterministic: in a module that has made
 * no call since its platform's bring-up, with the same pages, HKID and configuration, they leave
 * the same state. So the first such set-up on a platform is made through the leaves, and what it
 * left (`SeamCore.saveTdSetup`) is given to the next ones instead (`restoreTdSetup`), as the
 * platform's bring-up already is (`tdx-platform.ts`).
 *
 * Only where nobody can tell: no events (each call would be one), nothing recording (the
 * explorer records only after the build), nothing injected. A test holds every piece of the
 * state a restored set-up leaves to the one the leaves leave.
 */
import type { SeamModule, TdSetupRecord } from "./seam/seam-module.js";

/** The pages KVM hands the module for a TD (`tdx_td_init`) and each of its vCPUs (`tdx_td_vcpu_init`). */
export interface TdPages {
  readonly tdr: number;
  readonly tdcs: readonly number[];
  readonly vcpus: readonly { readonly tdvpr: number; readonly tdcx: readonly number[] }[];
}

/** What a set-up depends on besides its platform (`tdSetupKey`), as numbers. */
export interface TdSetupKey {
  readonly platform: string;
  readonly values: readonly number[];
}

const setUps: { key: TdSetupKey; record: TdSetupRecord }[] = [];
/** Set-ups of different shapes a process remembers (a scenario's runs all have the same one). */
const MAX_SET_UPS = 32;
let enabled = true;

/**
 * What a set-up in `module` depends on, or null if it cannot be remembered: the platform, the
 * module's state (pristine, at its versions), the HKID, the TD's GPAW and the pages.
 */
export function tdSetupKey(
  module: SeamModule,
  hkid: number,
  pages: TdPages,
  gpaw: number,
): TdSetupKey | null {
  const platform = module.pristinePlatform;
  if (!enabled || platform === "") return null;
  const values = [module.pamt.version, module.sept.version, module.tdsVersion, hkid, gpaw];
  values.push(pages.tdr, pages.tdcs.length, ...pages.tdcs, pages.vcpus.length);
  for (const v of pages.vcpus) values.push(v.tdvpr, v.tdcx.length, ...v.tdcx);
  return { platform, values };
}

function sameKey(a: TdSetupKey, b: TdSetupKey): boolean {
  if (a.platform !== b.platform || a.values.length !== b.values.length) return false;
  for (let i = 0; i < a.values.length; i++) if (a.values[i] !== b.values[i]) return false;
  return true;
}

export function savedTdSetup(key: TdSetupKey | null): TdSetupRecord | undefined {
  if (key === null) return undefined;
  for (const s of setUps) if (sameKey(s.key, key)) return s.record;
  return undefined;
}

export function saveTdSetup(key: TdSetupKey | null, record: TdSetupRecord | null): void {
  if (key === null || record === null || setUps.length >= MAX_SET_UPS) return;
  setUps.push({ key, record });
}

/** Turns remembering off (or back on) and forgets what was remembered: for tests comparing both. */
export function rememberTdSetups(on: boolean): void {
  enabled = on;
  setUps.length = 0;
}
