/**
 * What must hold of a realm between steps:
 * - `rtt-mirror`: the RTTs are the mirror: every present mirror leaf is an ASSIGNED entry of the
 *   same page, every mirror table an RTT (its external page), and every ASSIGNED protected entry
 *   a mirror leaf (or one whose hook is under way). RTTs KVM made itself may stand where the
 *   mirror has no table, as long as they map nothing.
 * - `rtt-unprotected`: the direct root's leaves are the ASSIGNED_NS entries, page for page.
 * - `granule-state`: a protected ASSIGNED entry maps a DATA granule, a table a granule in state
 *   RTT, an RTT's count of live entries is what it holds.
 * - `ns-access`: no unprotected mapping names a granule the host has delegated (the realm's
 *   access through it would be a non-secure access to Realm PAS memory).
 */
import type { BackendVm, MirrorView } from "@tdpemu/backend-sdk";
import type { CcaBackend } from "./cca-backend.js";
import { GRANULE_DATA, GRANULE_NS, GRANULE_RTT } from "./rmm/granules.js";
import { walk, type WalkResult } from "./rmm/rtt-commands.js";
import {
  RTT_PAGE_LEVEL,
  RTTE_ASSIGNED,
  RTTE_ASSIGNED_NS,
  RTTE_TABLE,
  levelSize,
} from "./rmm/rtt.js";

type Violation = { check: string; message: string };
const w: WalkResult = { slot: 0, entry: 0, level: 0 };
const hex = (n: number) => `0x${n.toString(16)}`;

export function checkCcaInvariants(be: CcaBackend, vm: BackendVm, mirror: MirrorView): Violation[] {
  const out: Violation[] = [];
  const rmm = be.rmm;
  const r = be.realm;
  if (r === undefined || !rmm.realms.has(r.rd)) return out;
  const rtts = rmm.rtts;
  const unprotected = 2 ** (r.ipaBits - 1);

  // The mirror, entry by entry, against the RTTs.
  mirror.forEach((gfn, level, kind, pfn, externalSpt) => {
    const l = 4 - level;
    walk(rmm, r, gfn * 4096, l, w, true);
    const s = rtts.peekState(w.entry);
    if (kind === "leaf") {
      if (w.level !== l || s !== RTTE_ASSIGNED || rtts.peekAddr(w.entry) !== pfn) {
        if (!mirror.inFlight(gfn, level) && r.peekState() !== 0)
          out.push({
            check: "rtt-mirror",
            message: `mirror leaf gfn ${hex(gfn)} → pfn ${hex(pfn)}, the RTT has ${w.level !== l ? `no table at level ${l}` : `${s === RTTE_ASSIGNED ? `pa ${hex(rtts.peekAddr(w.entry) * 4096)}` : "no assigned entry"}`}`,
          });
      }
    } else if (w.level !== l || s !== RTTE_TABLE || rtts.peekAddr(w.entry) !== externalSpt) {
      if (!mirror.inFlight(gfn, level))
        out.push({
          check: "rtt-mirror",
          message: `mirror table under gfn ${hex(gfn)} level ${level} (page ${hex(externalSpt)}) is not the RTT there`,
        });
    }
  });

  // The direct root's leaves, against the unprotected half.
  // Two valid direct roots may map one GFN: the RTT has it once.
  const nsLeaves = new Set<number>();
  mirror.forEachDirect((gfn, level, kind, pfn) => {
    if (kind !== "leaf") return;
    nsLeaves.add(gfn * 4 + level);
    const l = 4 - level;
    walk(rmm, r, gfn * 4096 + unprotected, l, w, true);
    if (
      w.level !== l ||
      rtts.peekState(w.entry) !== RTTE_ASSIGNED_NS ||
      rtts.peekAddr(w.entry) !== pfn
    ) {
      out.push({
        check: "rtt-unprotected",
        message: `direct leaf gfn ${hex(gfn)} → pfn ${hex(pfn)} is not mapped unprotected at RTT level ${l}`,
      });
    }
  });

  // Every RTT of the realm: its entries, their granules, its count.
  let nsEntries = 0;
  const visit = (slot: number, level: number, base: number) => {
    const g = rtts.granuleOf(slot);
    if (rmm.granules.state[g] !== GRANULE_RTT)
      out.push({
        check: "granule-state",
        message: `RTT at ${hex(base)} level ${level} is granule ${hex(g)}, not in state RTT`,
      });
    let live = 0;
    const size = levelSize(level);
    for (let i = 0; i < 512; i++) {
      const e = slot * 512 + i;
      const a = base + i * size;
      const s = rtts.peekState(e);
      if (s === RTTE_TABLE) {
        live++;
        visit(rtts.peekChild(e), level + 1, a);
      } else if (s === RTTE_ASSIGNED) {
        live++;
        const data = rtts.peekAddr(e);
        if (rmm.granules.state[data] !== GRANULE_DATA)
          out.push({
            check: "granule-state",
            message: `ipa ${hex(a)} maps granule ${hex(data)}, not DATA`,
          });
        if (
          level === RTT_PAGE_LEVEL &&
          mirror.lookup(a / 4096, 1) === null &&
          !mirror.inFlight(a / 4096, 1) &&
          r.peekState() !== 0
        ) {
          out.push({
            check: "rtt-mirror",
            message: `ipa ${hex(a)} is ASSIGNED (granule ${hex(data)}) with no mirror leaf`,
          });
        }
      } else if (s === RTTE_ASSIGNED_NS) {
        nsEntries++;
        const pfn = rtts.peekAddr(e);
        if (rmm.granules.state[pfn] !== GRANULE_NS)
          out.push({
            check: "ns-access",
            message: `unprotected ipa ${hex(a)} maps ${hex(pfn * 4096)}, a delegated granule`,
          });
      }
    }
    const refs = rmm.granules.refcount[g]!;
    // A level-3 RTT split from an assigned block counts 512; otherwise tables and protected assigned entries.
    if (refs !== live)
      out.push({
        check: "granule-state",
        message: `RTT at ${hex(base)} level ${level} counts ${refs} live entries, holds ${live}`,
      });
  };
  // From the starting RTT, whose count REALM_DESTROY goes by, down.
  visit(r.rootSlot, r.startLevel, 0);
  if (nsEntries !== nsLeaves.size)
    out.push({
      check: "rtt-unprotected",
      message: `${nsEntries} unprotected mappings in the RTTs, ${nsLeaves.size} direct leaves`,
    });
  void vm;
  return out;
}
