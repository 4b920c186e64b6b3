/**
 * The RMM's commands on their own, with no KVM: a realm built call by call, each command's
 * result and its registers checked against TF-RMM's behaviour at rmm-spec-v1.0-rel0.
 */
import { describe, expect, it } from "vitest";
import {
  GRANULE_DATA,
  GRANULE_DELEGATED,
  GRANULE_NS,
  GRANULE_RTT,
  MEMATTR_FWB_NORMAL_WB,
  RIPAS_DESTROYED,
  RIPAS_EMPTY,
  RIPAS_RAM,
  RSI_ACCEPT,
  RTTE_ASSIGNED,
  RTTE_ASSIGNED_NS,
  RTTE_TABLE,
  Rmm,
  S2AP_R,
  S2AP_W,
  dataCreate,
  dataCreateUnknown,
  dataDestroy,
  formatReturn,
  recEnter,
  rsiIpaStateSet,
  rttCreate,
  rttDestroy,
  rttFold,
  rttInitRipas,
  rttMapUnprotected,
  rttReadEntry,
  rttSetRipas,
  type RttEntryRead,
} from "../src/testing.js";

const MiB = 2 ** 20;
const NS_HALF = 2 ** 47;
const RD = 0x10000;
const ROOT = 0x11000;

/** A NEW realm of 48-bit IPAs on a 64 MiB machine, its RD and starting RTT at fixed granules. */
function realm(): Rmm {
  const m = new Rmm((64 * MiB) / 4096);
  expect(m.granuleDelegate(RD)).toBe(0);
  expect(m.granuleDelegate(ROOT)).toBe(0);
  expect(m.realmCreate(RD, { ipaBits: 48, rttLevelStart: 0, rttBase: ROOT, vmid: 1 })).toBe(0);
  return m;
}

let next = 0x100000;
/** A fresh delegated granule's PA. */
function delegated(m: Rmm): number {
  const pa = next;
  next += 4096;
  expect(m.granuleDelegate(pa)).toBe(0);
  return pa;
}

/** RTTs from level 1 to `to` over `ipa`. */
function tables(m: Rmm, ipa: number, to: number): void {
  for (let l = 1; l <= to; l++)
    expect(
      formatReturn(rttCreate(m, RD, delegated(m), ipa - (ipa % 2 ** (12 + 9 * (4 - l))), l)),
    ).toBe("RMI_SUCCESS");
}

function read(m: Rmm, ipa: number, level = 3): RttEntryRead {
  const out: RttEntryRead = { level: 0, state: 0, pa: 0, ripas: 0 };
  expect(rttReadEntry(m, RD, ipa, level, out)).toBe(0);
  return out;
}

describe("the RMM's commands", () => {
  it("RTT_CREATE: level by level from the top; a missing parent is RMI_ERROR_RTT at the walk's level", () => {
    next = 0x100000;
    const m = realm();
    expect(formatReturn(rttCreate(m, RD, delegated(m), 0, 3))).toBe("RMI_ERROR_RTT (level 0)");
    tables(m, 0, 3);
    expect(read(m, 0x1000)).toMatchObject({ level: 3, state: 0, ripas: RIPAS_EMPTY });
    expect(m.granules.state[ROOT / 4096]).toBe(GRANULE_RTT);
  });

  it("RTT_INIT_RIPAS: EMPTY to RAM within one table, X1 where it stopped; after activation RMI_ERROR_REALM", () => {
    next = 0x100000;
    const m = realm();
    tables(m, 0, 2);
    expect(rttInitRipas(m, RD, 0, 8 * MiB)).toBe(0);
    expect(m.x1).toBe(8 * MiB);
    expect(read(m, 2 * MiB)).toMatchObject({ level: 2, ripas: RIPAS_RAM });
    expect(m.realmAt(RD)!.measurements).toBe(4);
    // A range not aligned to the level the tables reach: nothing done, RMI_ERROR_RTT there.
    expect(formatReturn(rttInitRipas(m, RD, 8 * MiB + 0x1000, 10 * MiB))).toBe(
      "RMI_ERROR_RTT (level 2)",
    );
    expect(m.realmActivate(RD)).toBe(0);
    expect(formatReturn(rttInitRipas(m, RD, 16 * MiB, 18 * MiB))).toBe("RMI_ERROR_REALM");
  });

  it("DATA_CREATE measures with or without hashing the content, and maps RAM; DATA_CREATE_UNKNOWN keeps the RIPAS", () => {
    next = 0x100000;
    const m = realm();
    tables(m, 0, 3);
    const src = 0x3000000; // an NS page
    expect(dataCreate(m, RD, delegated(m), 0x0, src, 0)).toBe(0);
    expect(dataCreate(m, RD, delegated(m), 0x1000, src, 1)).toBe(0);
    expect(m.realmAt(RD)!.measurements).toBe(2);
    expect(read(m, 0x0)).toMatchObject({ state: RTTE_ASSIGNED, ripas: RIPAS_RAM });
    expect(formatReturn(dataCreate(m, RD, delegated(m), 0x2000, src, 2))).toBe("RMI_ERROR_INPUT");
    const d = delegated(m);
    expect(dataCreateUnknown(m, RD, d, 0x3000)).toBe(0);
    expect(read(m, 0x3000)).toMatchObject({ state: RTTE_ASSIGNED, ripas: RIPAS_EMPTY, pa: d });
    expect(m.granules.state[d / 4096]).toBe(GRANULE_DATA);
  });

  it("DATA_DESTROY: RAM becomes DESTROYED, EMPTY stays EMPTY; X1 the granule, X2 the next live entry", () => {
    next = 0x100000;
    const m = realm();
    tables(m, 0, 3);
    const a = delegated(m);
    expect(dataCreate(m, RD, a, 0x0, 0x3000000, 1)).toBe(0);
    const b = delegated(m);
    expect(dataCreateUnknown(m, RD, b, 0x5000)).toBe(0);
    expect(dataDestroy(m, RD, 0x0)).toBe(0);
    expect([m.x1, m.x2]).toEqual([a, 0x5000]);
    expect(read(m, 0x0)).toMatchObject({ state: 0, ripas: RIPAS_DESTROYED });
    expect(dataDestroy(m, RD, 0x5000)).toBe(0);
    expect(read(m, 0x5000)).toMatchObject({ state: 0, ripas: RIPAS_EMPTY });
    expect(m.x2).toBe(2 * MiB);
    expect(m.granules.state[a / 4096]).toBe(GRANULE_DELEGATED);
    expect(formatReturn(dataDestroy(m, RD, 0x5000))).toBe("RMI_ERROR_RTT (level 3)");
  });

  it("RTT_FOLD: 512 contiguous protected pages become a 2M block, 512 NS 2M blocks a 1G block; level 1 has no blocks to fold into", () => {
    next = 0x100000;
    const m = realm();
    tables(m, 0, 3);
    // 512 contiguous granules from 4 MiB, 2 MiB aligned.
    for (let i = 0; i < 512; i++) {
      const pa = 4 * MiB + i * 4096;
      expect(m.granuleDelegate(pa)).toBe(0);
      expect(dataCreateUnknown(m, RD, pa, i * 4096)).toBe(0);
    }
    expect(m.granules.refcount[(next - 4096) / 4096]).toBe(512);
    const rtt = read(m, 0x0, 2).pa;
    expect(rttFold(m, RD, 0x0, 3)).toBe(0);
    expect(m.x1).toBe(0x100000 + 2 * 4096);
    expect(read(m, 0x0)).toMatchObject({
      level: 2,
      state: RTTE_ASSIGNED,
      pa: 4 * MiB,
      ripas: RIPAS_EMPTY,
    });
    expect(rtt).toBe(m.x1);

    // The unprotected half: a level-2 RTT of 512 NS 2M mappings folds into a 1G one.
    tables(m, NS_HALF, 2);
    const attrs = MEMATTR_FWB_NORMAL_WB + S2AP_R + S2AP_W;
    for (let i = 0; i < 512; i++)
      expect(
        rttMapUnprotected(m, RD, NS_HALF + i * 2 * MiB, 2, 2 ** 30 + i * 2 * MiB + attrs),
      ).toBe(0);
    expect(formatReturn(rttFold(m, RD, NS_HALF, 2))).toBe("RMI_SUCCESS");
    expect(read(m, NS_HALF, 1)).toMatchObject({
      level: 1,
      state: RTTE_ASSIGNED_NS,
      pa: 2 ** 30 + attrs,
    });
    // Contiguous but not aligned to 1G: not a block, RMI_ERROR_RTT at the table's own level.
    expect(rttCreate(m, RD, delegated(m), NS_HALF + 2 ** 30, 2)).toBe(0);
    for (let i = 0; i < 512; i++)
      expect(
        rttMapUnprotected(
          m,
          RD,
          NS_HALF + 2 ** 30 + i * 2 * MiB,
          2,
          2 ** 31 + 2 * MiB + i * 2 * MiB + attrs,
        ),
      ).toBe(0);
    expect(formatReturn(rttFold(m, RD, NS_HALF + 2 ** 30, 2))).toBe("RMI_ERROR_RTT (level 2)");
    // The level-1 table now holds a 1G NS block and a table: mixed, RMI_ERROR_RTT at its level.
    expect(formatReturn(rttFold(m, RD, NS_HALF, 1))).toBe("RMI_ERROR_RTT (level 1)");
  });

  it("RTT_DESTROY: refused while an entry is live, then the parent is DESTROYED in the protected half", () => {
    next = 0x100000;
    const m = realm();
    tables(m, 0, 3);
    const d = delegated(m);
    expect(dataCreateUnknown(m, RD, d, 0x1000)).toBe(0);
    expect(formatReturn(rttDestroy(m, RD, 0x0, 3))).toBe("RMI_ERROR_RTT (level 3)");
    expect(m.x2).toBe(0);
    expect(dataDestroy(m, RD, 0x1000)).toBe(0);
    expect(rttDestroy(m, RD, 0x0, 3)).toBe(0);
    expect(read(m, 0x0)).toMatchObject({ level: 2, state: 0, ripas: RIPAS_DESTROYED });
    expect(m.granules.state[m.x1 / 4096]).toBe(GRANULE_DELEGATED);
  });

  it("RTT_MAP_UNPROTECTED: the descriptor may hold only the PA, MemAttr and S2AP; READ_ENTRY gives it back", () => {
    next = 0x100000;
    const m = realm();
    tables(m, NS_HALF, 3);
    const attrs = MEMATTR_FWB_NORMAL_WB + S2AP_R;
    expect(formatReturn(rttMapUnprotected(m, RD, NS_HALF, 3, 0x5000 + attrs + 1))).toBe(
      "RMI_ERROR_INPUT",
    );
    expect(formatReturn(rttMapUnprotected(m, RD, NS_HALF, 3, 2 ** 54 + 0x5000 + attrs))).toBe(
      "RMI_ERROR_INPUT",
    );
    expect(formatReturn(rttMapUnprotected(m, RD, NS_HALF, 3, 0x5000 + 0x10 + S2AP_R))).toBe(
      "RMI_ERROR_INPUT",
    ); // the reserved MemAttr
    expect(formatReturn(rttMapUnprotected(m, RD, NS_HALF, 4, 0x5000 + attrs))).toBe(
      "RMI_ERROR_INPUT",
    );
    expect(rttMapUnprotected(m, RD, NS_HALF, 3, 0x5000 + attrs)).toBe(0);
    expect(read(m, NS_HALF)).toMatchObject({ state: RTTE_ASSIGNED_NS, pa: 0x5000 + attrs });
    expect(formatReturn(rttMapUnprotected(m, RD, NS_HALF, 3, 0x6000 + attrs))).toBe(
      "RMI_ERROR_RTT (level 3)",
    );
    expect(m.granules.state[0x5]).toBe(GRANULE_NS);
  });

  it("RSI_IPA_STATE_SET and RTT_SET_RIPAS: only X4 = 1 lets DESTROYED change; REC_ENTER reports how far it got", () => {
    next = 0x100000;
    const m = realm();
    tables(m, 0, 3);
    const rec = delegated(m);
    const aux = Array.from({ length: 16 }, () => delegated(m));
    expect(m.recCreate(RD, rec, 0, aux)).toBe(0);
    expect(m.realmActivate(RD)).toBe(0);
    const d = delegated(m);
    expect(dataCreateUnknown(m, RD, d, 0x0)).toBe(0);
    expect(dataDestroy(m, RD, 0x0)).toBe(0); // EMPTY stays EMPTY
    const r = m.recAt(rec)!;
    // RAM over a DESTROYED page needs the flag: 3 is not it.
    expect(m.recs.size).toBe(1);
    const destroyed = delegated(m);
    expect(dataCreateUnknown(m, RD, destroyed, 0x1000)).toBe(0);
    expect(rsiIpaStateSet(r, 0x1000, 0x2000, RIPAS_RAM, 0)).toBe(-1);
    expect(rttSetRipas(m, RD, rec, 0x1000, 0x2000)).toBe(0);
    expect(recEnter(m, rec, false, null)).toBe(0);
    r.running = false;
    expect(dataDestroy(m, RD, 0x1000)).toBe(0);
    expect(read(m, 0x1000).ripas).toBe(RIPAS_DESTROYED);
    expect(rsiIpaStateSet(r, 0x1000, 0x2000, RIPAS_EMPTY, 3)).toBe(-1);
    expect(formatReturn(rttSetRipas(m, RD, rec, 0x1000, 0x2000))).toBe("RMI_ERROR_RTT (level 3)");
    expect(rsiIpaStateSet(r, 0x1000, 0x2000, RIPAS_EMPTY, 1)).toBe(-1);
    expect(rttSetRipas(m, RD, rec, 0x1000, 0x2000)).toBe(0);
    const done = { next: 0, response: -1 };
    expect(recEnter(m, rec, true, done)).toBe(0);
    expect(done).toEqual({ next: 0x2000, response: RSI_ACCEPT });
    expect(read(m, 0x1000).ripas).toBe(RIPAS_EMPTY);
    expect(read(m, 0x0, 2).state).toBe(RTTE_TABLE);
  });
});
