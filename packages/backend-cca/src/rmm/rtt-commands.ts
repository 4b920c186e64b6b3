/**
 * The RMI commands on a realm's RTTs and its data granules (RMM specification 1.0; TF-RMM's
 * `runtime/rmi/rtt.c` at `rmm-spec-v1.0-rel0`), each with its checks in TF-RMM's order. An
 * RMI_ERROR_RTT carries the level its walk stopped at (the last level reached, or the level of
 * the entry found in the wrong state), which is how KVM learns which table to create.
 *
 * Outputs beside X0 go to the RMM's `x1`/`x2`. "top" (RTT_DESTROY, DATA_DESTROY,
 * RTT_UNMAP_UNPROTECTED) is where the host's teardown loop goes on: the address itself if its
 * entry is live, else the next live entry of the same table, else that table's end.
 */
import { GRANULE_DATA, GRANULE_DELEGATED, GRANULE_NS, GRANULE_RTT } from "./granules.js";
import {
  RMI_ERROR_INPUT,
  RMI_ERROR_REALM,
  RMI_ERROR_REC,
  RMI_ERROR_RTT,
  RMI_SUCCESS,
  packReturn,
} from "./rmi-status.js";
import { REALM_NEW, type Realm } from "./realm.js";
import type { Rmm } from "./rmm.js";
import {
  RIPAS_DESTROYED,
  RIPAS_EMPTY,
  RIPAS_RAM,
  RTT_MIN_BLOCK_LEVEL,
  RTT_PAGE_LEVEL,
  RTTE_ASSIGNED,
  RTTE_ASSIGNED_NS,
  RTTE_TABLE,
  RTTE_UNASSIGNED,
  RTTE_UNASSIGNED_NS,
  RttStore,
  addrValidAt,
  levelSize,
} from "./rtt.js";

const INPUT = packReturn(RMI_ERROR_INPUT);
const rttError = (level: number) => packReturn(RMI_ERROR_RTT, level);

/** Where a walk stopped: the table's slot, the entry's index (slot * 512 + i), the level. */
export interface WalkResult {
  slot: number;
  entry: number;
  level: number;
}

/**
 * The RMM's table walk (`s2tt_walk_lock_unlock`): from the starting table down through TABLE
 * entries to `target`, or to the first entry that is not a table. Fills `w`. Each table it
 * passes is read (recorded); `peek` records nothing (the checks, the UI).
 */
export function walk(
  m: Rmm,
  r: Realm,
  addr: number,
  target: number,
  w: WalkResult,
  peek = false,
): WalkResult {
  const rtts = m.rtts;
  let slot = r.rootSlot;
  let level = r.startLevel;
  let e = slot * 512 + RttStore.index(addr, level);
  // Every entry the walk reaches is read, the one it stops at too (its table is the one
  // `s2tt_walk_lock_unlock` leaves locked).
  while ((peek ? rtts.peekState(e) : rtts.state(e)) === RTTE_TABLE && level < target) {
    slot = peek ? rtts.peekChild(e) : rtts.child(e);
    level++;
    e = slot * 512 + RttStore.index(addr, level);
  }
  w.slot = slot;
  w.entry = e;
  w.level = level;
  return w;
}

const w: WalkResult = { slot: 0, entry: 0, level: 0 };

/** An entry holds a PA: ASSIGNED (protected or NS) or TABLE. */
function live(state: number): boolean {
  return state === RTTE_ASSIGNED || state === RTTE_ASSIGNED_NS || state === RTTE_TABLE;
}

/** "top" for the entry at `entry` of a table at `level` covering `addr`. */
function topFrom(m: Rmm, entry: number, level: number, addr: number): number {
  const size = levelSize(level);
  const first = entry - (entry % 512);
  let a = addr - (addr % size);
  for (let e = entry; e < first + 512; e++, a += size) {
    if (live(m.rtts.state(e))) return e === entry ? addr : a;
  }
  return a;
}

/** The level and address checks of RTT_CREATE, RTT_DESTROY and RTT_FOLD. */
function tableArgsValid(r: Realm, addr: number, level: number): boolean {
  return (
    Number.isInteger(level) &&
    level >= r.startLevel + 1 &&
    level <= RTT_PAGE_LEVEL &&
    addrValidAt(addr, level - 1, r.ipaBits)
  );
}

/**
 * RMI_RTT_CREATE(rd, rtt, addr, level): a new table at `level` under the entry at level - 1.
 * The new table takes on its parent's state: an unassigned parent gives 512 unassigned
 * entries of its RIPAS (or NS), an assigned block 512 contiguous assigned entries.
 */
export function rttCreate(
  m: Rmm,
  rdAddr: number,
  rttAddr: number,
  addr: number,
  level: number,
): number {
  if (rttAddr === rdAddr) return INPUT;
  const g = m.findIn(rttAddr, GRANULE_DELEGATED);
  const r = m.realmAt(rdAddr);
  if (g < 0 || r === null) return INPUT;
  if (!tableArgsValid(r, addr, level)) return INPUT;
  walk(m, r, addr, level - 1, w);
  if (w.level < level - 1) return rttError(w.level);
  const rtts = m.rtts;
  const pe = w.entry;
  const ps = rtts.state(pe);
  if (ps === RTTE_TABLE) return rttError(level - 1);
  const child = m.allocTable(g, level, ps, rtts.ripas(pe));
  const parentG = rtts.granuleOf(w.slot);
  if (ps === RTTE_ASSIGNED || ps === RTTE_ASSIGNED_NS) {
    // A block split into its pages: contiguous, the block's RIPAS or attributes.
    const pages = levelSize(level) / 4096;
    for (let i = 0; i < 512; i++) {
      rtts.setAddr(child * 512 + i, rtts.addr(pe) + i * pages);
      rtts.setAttr(child * 512 + i, rtts.attr(pe));
    }
    // A protected block's pages count in the new table, the block no longer in its parent's
    // (which counts the table instead: unchanged); NS mappings count nowhere.
    if (ps === RTTE_ASSIGNED) m.setRefs(g, 512);
    else {
      m.setRefs(g, 0);
      m.addRefs(parentG, 1);
    }
  } else {
    m.setRefs(g, 0);
    m.addRefs(parentG, 1);
  }
  rtts.setState(pe, RTTE_TABLE);
  rtts.setAddr(pe, g);
  rtts.setChild(pe, child);
  m.setGranuleState(g, GRANULE_RTT);
  return RMI_SUCCESS;
}

/**
 * RMI_RTT_DESTROY(rd, addr, level): the table at `level` goes back to DELEGATED (X1) if no
 * entry of it is live; its parent entry becomes UNASSIGNED with RIPAS DESTROYED in the
 * protected half (the realm can tell the host took the range away), UNASSIGNED_NS above it.
 */
export function rttDestroy(m: Rmm, rdAddr: number, addr: number, level: number): number {
  // X1 is an output of this call alone (set on success): never a value another call left.
  m.x1 = 0;
  m.x2 = 0;
  const r = m.realmAt(rdAddr);
  if (r === null || !tableArgsValid(r, addr, level)) return INPUT;
  walk(m, r, addr, level - 1, w);
  const rtts = m.rtts;
  if (w.level < level - 1 || rtts.state(w.entry) !== RTTE_TABLE) {
    m.x2 = topFrom(m, w.entry, w.level, addr);
    return rttError(w.level);
  }
  const child = rtts.child(w.entry);
  const g = rtts.granuleOf(child);
  if (m.refs(g) !== 0) {
    m.x2 = addr;
    return rttError(level);
  }
  const par = r.inPar(addr);
  rtts.setState(w.entry, par ? RTTE_UNASSIGNED : RTTE_UNASSIGNED_NS);
  rtts.setRipas(w.entry, par ? RIPAS_DESTROYED : RIPAS_EMPTY);
  rtts.setAddr(w.entry, 0);
  rtts.setChild(w.entry, -1);
  m.addRefs(rtts.granuleOf(w.slot), -1);
  m.freeTable(child);
  m.setGranuleState(g, GRANULE_DELEGATED);
  m.x1 = g * 4096;
  m.x2 = topFrom(m, w.entry, w.level, addr);
  return RMI_SUCCESS;
}

/**
 * RMI_RTT_FOLD(rd, addr, level): a table whose 512 entries are alike becomes one entry of its
 * parent: unassigned of one RIPAS (or NS) with no live entry; a block of contiguous assigned
 * pages of one RIPAS, or of contiguous NS mappings of one attribute, where the parent's level
 * has blocks (a level-1 table of mappings does not fold into level 0). The table's granule is
 * DELEGATED again (X1).
 */
export function rttFold(m: Rmm, rdAddr: number, addr: number, level: number): number {
  const r = m.realmAt(rdAddr);
  if (r === null || !tableArgsValid(r, addr, level)) return INPUT;
  walk(m, r, addr, level - 1, w);
  const rtts = m.rtts;
  if (w.level < level - 1) return rttError(w.level);
  if (rtts.state(w.entry) !== RTTE_TABLE) return rttError(level - 1);
  const child = rtts.child(w.entry);
  const g = rtts.granuleOf(child);
  const b = child * 512;
  const s0 = rtts.state(b);
  const rip = rtts.ripas(b);
  const pages = levelSize(level) / 4096;
  let alike = true;
  for (let i = 1; i < 512 && alike; i++) {
    const e = b + i;
    if (rtts.state(e) !== s0) alike = false;
    else if (s0 === RTTE_UNASSIGNED && rtts.ripas(e) !== rip) alike = false;
    else if (
      (s0 === RTTE_ASSIGNED || s0 === RTTE_ASSIGNED_NS) &&
      rtts.addr(e) !== rtts.addr(b) + i * pages
    )
      alike = false;
    else if (s0 === RTTE_ASSIGNED && rtts.ripas(e) !== rip) alike = false;
    else if (s0 === RTTE_ASSIGNED_NS && rtts.attr(e) !== rtts.attr(b)) alike = false;
  }
  const assigned = s0 === RTTE_ASSIGNED || s0 === RTTE_ASSIGNED_NS;
  // A block must be aligned to its own size.
  const aligned = rtts.addr(b) % (pages * 512) === 0;
  // TF-RMM's order: a table of 512 protected pages is refused at a level with no blocks before
  // its entries are looked at; NS mappings are looked at first (misaligned or mixed: RTT(level)).
  if (m.refs(g) === 512 && level - 1 < RTT_MIN_BLOCK_LEVEL) return rttError(level - 1);
  if (!alike || s0 === RTTE_TABLE || (assigned && !aligned)) return rttError(level);
  if (assigned && level - 1 < RTT_MIN_BLOCK_LEVEL) return rttError(level - 1);
  const parentG = rtts.granuleOf(w.slot);
  rtts.setState(w.entry, s0);
  rtts.setRipas(w.entry, rip);
  rtts.setAddr(w.entry, assigned ? rtts.addr(b) : 0);
  rtts.setAttr(w.entry, rtts.attr(b));
  rtts.setChild(w.entry, -1);
  // An assigned block counts once in its parent, as its table did; an unassigned one not at all.
  if (s0 !== RTTE_ASSIGNED) m.addRefs(parentG, -1);
  m.setRefs(g, 0);
  m.freeTable(child);
  m.setGranuleState(g, GRANULE_DELEGATED);
  m.x1 = g * 4096;
  return RMI_SUCCESS;
}

/**
 * RMI_DATA_CREATE(rd, data, addr, src, flags) before activation: a copy of NS page `src` into
 * a delegated granule, measured with RMI_MEASURE_CONTENT (flags 1). The entry becomes
 * ASSIGNED with RIPAS RAM, whatever its RIPAS was.
 */
export function dataCreate(
  m: Rmm,
  rdAddr: number,
  dataAddr: number,
  addr: number,
  srcAddr: number,
  flags: number,
): number {
  if (flags !== 0 && flags !== 1) return INPUT;
  if (m.findIn(srcAddr, GRANULE_NS) < 0) return INPUT;
  const r0 = dataChecks(m, rdAddr, dataAddr, addr, true);
  if (r0 !== RMI_SUCCESS) return r0;
  mapData(m, m.granules.find(dataAddr), RIPAS_RAM);
  // The RIM is extended either way; the flag says whether the content is hashed into it.
  const r = m.realmAt(rdAddr)!;
  r.measurements++;
  return RMI_SUCCESS;
}

/**
 * RMI_DATA_CREATE_UNKNOWN(rd, data, addr): a delegated granule of unknown content (zeroed by
 * the delegation) mapped at `addr`, in any realm state. The RIPAS stays what it was.
 */
export function dataCreateUnknown(m: Rmm, rdAddr: number, dataAddr: number, addr: number): number {
  const r0 = dataChecks(m, rdAddr, dataAddr, addr, false);
  if (r0 !== RMI_SUCCESS) return r0;
  mapData(m, m.granules.find(dataAddr), m.rtts.ripas(w.entry));
  return RMI_SUCCESS;
}

/** DATA_CREATE's and DATA_CREATE_UNKNOWN's common checks; on success `w` is at the level-3 entry. */
function dataChecks(
  m: Rmm,
  rdAddr: number,
  dataAddr: number,
  addr: number,
  mustBeNew: boolean,
): number {
  if (dataAddr === rdAddr) return INPUT;
  const g = m.findIn(dataAddr, GRANULE_DELEGATED);
  const r = m.realmAt(rdAddr);
  if (g < 0 || r === null) return INPUT;
  if (mustBeNew && r.state !== REALM_NEW) return packReturn(RMI_ERROR_REALM);
  if (!r.inPar(addr) || !addrValidAt(addr, RTT_PAGE_LEVEL, r.ipaBits)) return INPUT;
  walk(m, r, addr, RTT_PAGE_LEVEL, w);
  if (w.level < RTT_PAGE_LEVEL) return rttError(w.level);
  if (m.rtts.state(w.entry) !== RTTE_UNASSIGNED) return rttError(RTT_PAGE_LEVEL);
  return RMI_SUCCESS;
}

function mapData(m: Rmm, g: number, ripas: number): void {
  const rtts = m.rtts;
  rtts.setState(w.entry, RTTE_ASSIGNED);
  rtts.setRipas(w.entry, ripas);
  rtts.setAddr(w.entry, g);
  m.takeData(g, rtts.granuleOf(w.slot));
}

/**
 * RMI_DATA_DESTROY(rd, addr): the data granule goes back to DELEGATED (X1); the entry becomes
 * UNASSIGNED, with RIPAS DESTROYED if it was RAM (the realm sees the host took it), else as it
 * was. X2 is "top" on success and on an RTT error.
 */
export function dataDestroy(m: Rmm, rdAddr: number, addr: number): number {
  // X1 is an output of this call alone (set on success): never a value another call left.
  m.x1 = 0;
  m.x2 = 0;
  const r = m.realmAt(rdAddr);
  if (r === null) return INPUT;
  if (!r.inPar(addr) || !addrValidAt(addr, RTT_PAGE_LEVEL, r.ipaBits)) return INPUT;
  walk(m, r, addr, RTT_PAGE_LEVEL, w);
  const rtts = m.rtts;
  if (w.level < RTT_PAGE_LEVEL) {
    m.x2 = topFrom(m, w.entry, w.level, addr);
    return rttError(w.level);
  }
  if (rtts.state(w.entry) !== RTTE_ASSIGNED) {
    m.x2 = topFrom(m, w.entry, w.level, addr);
    return rttError(RTT_PAGE_LEVEL);
  }
  const g = rtts.addr(w.entry);
  if (m.granuleState(g) !== GRANULE_DATA)
    throw new Error(`RMM model: an assigned entry maps granule ${g} in state ${m.granuleState(g)}`);
  rtts.setState(w.entry, RTTE_UNASSIGNED);
  if (rtts.ripas(w.entry) === RIPAS_RAM) rtts.setRipas(w.entry, RIPAS_DESTROYED);
  rtts.setAddr(w.entry, 0);
  m.dropData(g, rtts.granuleOf(w.slot));
  m.x1 = g * 4096;
  m.x2 = topFrom(m, w.entry, w.level, addr);
  return RMI_SUCCESS;
}

/**
 * RMI_RTT_INIT_RIPAS(rd, base, top) while the realm is NEW: unassigned EMPTY entries of one
 * table, from `base` as deep as the tables go, become RAM (measured); it stops at the first
 * entry that is neither unassigned EMPTY nor unassigned RAM, or does not fit below `top`.
 * X1 is where it stopped; nothing done is an RMI_ERROR_RTT at the level reached.
 */
export function rttInitRipas(m: Rmm, rdAddr: number, base: number, top: number): number {
  if (!(top > base)) return INPUT;
  const r = m.realmAt(rdAddr);
  if (r === null) return INPUT;
  if (
    !addrValidAt(base, RTT_PAGE_LEVEL, r.ipaBits) ||
    !addrValidAt(top, RTT_PAGE_LEVEL, r.ipaBits + 1)
  )
    return INPUT;
  if (!r.inPar(base) || !r.inPar(top - 4096)) return INPUT;
  if (r.state !== REALM_NEW) return packReturn(RMI_ERROR_REALM);
  walk(m, r, base, RTT_PAGE_LEVEL, w);
  const size = levelSize(w.level);
  if (base % size !== 0) return rttError(w.level);
  const rtts = m.rtts;
  let a = base;
  for (let e = w.entry; e < w.slot * 512 + 512 && a + size <= top; e++, a += size) {
    if (rtts.state(e) !== RTTE_UNASSIGNED || rtts.ripas(e) === RIPAS_DESTROYED) break;
    rtts.setRipas(e, RIPAS_RAM);
    r.measurements++;
  }
  if (a === base) return rttError(w.level);
  m.x1 = a;
  return RMI_SUCCESS;
}

/**
 * RMI_RTT_SET_RIPAS(rd, rec, base, top): completes part of the RIPAS change the REC's realm
 * asked for (RSI_IPA_STATE_SET), from `base`, within one table. EMPTY → RAM and RAM → EMPTY
 * for assigned and unassigned entries; DESTROYED only with the request's "change destroyed";
 * a table or NS entry ends it. X1 is the progress, which the REC keeps for the next call and
 * reports to the realm on its next entry.
 */
export function rttSetRipas(
  m: Rmm,
  rdAddr: number,
  recAddr: number,
  base: number,
  top: number,
): number {
  if (!(top > base)) return INPUT;
  const r = m.realmAt(rdAddr);
  const rec = m.recAt(recAddr);
  if (r === null || rec === null) return INPUT;
  if (rec.running || rec.realm !== r) return packReturn(RMI_ERROR_REC);
  if (!rec.ripasPending || base !== rec.ripasAddr || top > rec.ripasTop) return INPUT;
  walk(m, r, base, RTT_PAGE_LEVEL, w);
  const size = levelSize(w.level);
  if (base % size !== 0) return rttError(w.level);
  const rtts = m.rtts;
  const want = rec.ripasValue;
  let a = base;
  for (let e = w.entry; e < w.slot * 512 + 512 && a + size <= top; e++, a += size) {
    const s = rtts.state(e);
    if (s !== RTTE_UNASSIGNED && s !== RTTE_ASSIGNED) break;
    const cur = rtts.ripas(e);
    if (cur === RIPAS_DESTROYED && !rec.ripasChangeDestroyed) break;
    if (cur !== want) {
      rtts.setRipas(e, want);
    }
  }
  if (a === base) return rttError(w.level);
  rec.ripasAddr = a;
  m.x1 = a;
  return RMI_SUCCESS;
}

/**
 * RMI_RTT_MAP_UNPROTECTED's descriptor: the PA, and the host's MemAttr [4:2] and S2AP [7:6]
 * bits (TF-RMM's S2TTE_NS_ATTR_MASK); any other bit is refused.
 */
export const NS_DESC_ATTR_MASK = 0xdc;
/** S2AP: read (bit 6) and write (bit 7). */
export const S2AP_R = 0x40;
export const S2AP_W = 0x80;
/** MemAttr with FEAT_S2FWB: normal write-back (0b110), and the one reserved encoding (0b100). */
export const MEMATTR_FWB_NORMAL_WB = 0x18;
const MEMATTR_MASK = 0x1c;
const MEMATTR_FWB_RESERVED = 0x10;

/**
 * RMI_RTT_MAP_UNPROTECTED(rd, addr, level, desc): an NS page or block the host chose, in the
 * unprotected half, at level 1 to 3. The level is checked before the RD, as TF-RMM does.
 */
export function rttMapUnprotected(
  m: Rmm,
  rdAddr: number,
  addr: number,
  level: number,
  desc: number,
): number {
  if (!Number.isInteger(level) || level < RTT_MIN_BLOCK_LEVEL || level > RTT_PAGE_LEVEL)
    return INPUT;
  const r = m.realmAt(rdAddr);
  if (r === null) return INPUT;
  const low = desc % 4096;
  const pa = desc - low;
  // Without LPA2 every bit from 48 up must be clear too (XN and the rest are the RMM's to set).
  if (
    !Number.isInteger(desc) ||
    desc < 0 ||
    desc >= 2 ** 48 ||
    (low & ~NS_DESC_ATTR_MASK) !== 0 ||
    (low & MEMATTR_MASK) === MEMATTR_FWB_RESERVED ||
    pa % levelSize(level) !== 0
  )
    return INPUT;
  if (!addrValidAt(addr, level, r.ipaBits) || r.inPar(addr)) return INPUT;
  walk(m, r, addr, level, w);
  if (w.level < level) return rttError(w.level);
  const rtts = m.rtts;
  if (rtts.state(w.entry) !== RTTE_UNASSIGNED_NS) return rttError(level);
  rtts.setState(w.entry, RTTE_ASSIGNED_NS);
  rtts.setAddr(w.entry, pa / 4096);
  rtts.setAttr(w.entry, low);
  return RMI_SUCCESS;
}

/** RMI_RTT_UNMAP_UNPROTECTED(rd, addr, level): back to UNASSIGNED_NS; X1 is "top", also on an RTT error. */
export function rttUnmapUnprotected(m: Rmm, rdAddr: number, addr: number, level: number): number {
  m.x1 = 0;
  if (!Number.isInteger(level) || level < RTT_MIN_BLOCK_LEVEL || level > RTT_PAGE_LEVEL)
    return INPUT;
  const r = m.realmAt(rdAddr);
  if (r === null) return INPUT;
  if (!addrValidAt(addr, level, r.ipaBits) || r.inPar(addr)) return INPUT;
  walk(m, r, addr, level, w);
  const rtts = m.rtts;
  if (w.level < level || rtts.state(w.entry) !== RTTE_ASSIGNED_NS) {
    m.x1 = topFrom(m, w.entry, w.level, addr);
    return rttError(w.level);
  }
  rtts.setState(w.entry, RTTE_UNASSIGNED_NS);
  rtts.setAddr(w.entry, 0);
  rtts.setAttr(w.entry, 0);
  m.x1 = topFrom(m, w.entry, w.level, addr);
  return RMI_SUCCESS;
}

/** What RMI_RTT_READ_ENTRY returns beside X0. */
export interface RttEntryRead {
  level: number;
  /** RTTE_* (the model's own, which tells NS entries apart). */
  state: number;
  /**
   * The PA of an assigned entry or a table (0 for an assigned DESTROYED one, as TF-RMM reports
   * it); for an unprotected mapping the host's descriptor, its MemAttr and S2AP bits included.
   */
  pa: number;
  ripas: number;
}

/** RMI_RTT_READ_ENTRY(rd, addr, level): the entry as deep as `level` the tables go. */
export function rttReadEntry(
  m: Rmm,
  rdAddr: number,
  addr: number,
  level: number,
  out: RttEntryRead,
): number {
  const r = m.realmAt(rdAddr);
  if (r === null) return INPUT;
  if (
    !Number.isInteger(level) ||
    level < r.startLevel ||
    level > RTT_PAGE_LEVEL ||
    !addrValidAt(addr, level, r.ipaBits)
  )
    return INPUT;
  walk(m, r, addr, level, w);
  const rtts = m.rtts;
  const s = rtts.state(w.entry);
  out.level = w.level;
  out.state = s;
  out.ripas = s === RTTE_UNASSIGNED || s === RTTE_ASSIGNED ? rtts.ripas(w.entry) : RIPAS_EMPTY;
  out.pa =
    s === RTTE_ASSIGNED && out.ripas === RIPAS_DESTROYED
      ? 0
      : live(s)
        ? rtts.addr(w.entry) * 4096
        : 0;
  if (s === RTTE_ASSIGNED_NS) out.pa += rtts.attr(w.entry);
  return RMI_SUCCESS;
}
