/**
 * TDX's own invariants, checked with the core's: the mirror and the S-EPT describe the same
 * mappings (the same leaves over the same pages, the same tables over the pages KVM handed to
 * the module, states that agree), and the PAMT agrees with both (each private page owned by the
 * TD and mapped exactly once; the child count equals the pages the TD owns).
 *
 * A mirror entry whose backend call is under way (frozen, or published but not yet propagated
 * under `atomic-then-hook`) may differ from the S-EPT for that one step; premapped pages (mapped
 * in the mirror before finalize, waiting for PAGE.ADD) have no S-EPT leaf yet.
 *
 * Nothing here is keyed by a Map (a 64 GiB TD has 16.7 million leaves, past V8's Map limit):
 * each side is checked by looking the entry up in the other, and "mapped once" is a bitmap over
 * host frames.
 */
import { grown, type MirrorView } from "@tdpemu/backend-sdk";
import { PT_EPT, PT_REG, PT_TDCX, PT_TDVPR, PAGE_TYPE_NAMES } from "./seam/pamt.js";
import {
  SEPT_FREE,
  SEPT_MAPPED,
  SEPT_NL_BLOCKED,
  SEPT_NL_MAPPED,
  SEPT_PENDING,
  SEPT_STATE_NAMES,
  septPfn,
  septState,
  type SeptPages,
} from "./seam/sept.js";
import { LC_TEARDOWN, OP_RUNNABLE, type Td } from "./seam/td.js";
import type { TdxBackend } from "./tdx-backend.js";

const hex = (n: number) => `0x${n.toString(16)}`;

/**
 * The present entries of the S-EPT below the root, as the last `collectSept` found them, in the
 * order of `SeamModule.septEntries` (an entry, then the table under it): ascending GFN, and at
 * one GFN the higher level first, which is the order the mirror's walk gives its entries in.
 * In typed arrays kept from check to check: the checks run after every explorer step.
 */
let sGfn = new Float64Array(64);
let sPfn = new Float64Array(64);
/** TDX level (0 = 4K) and state. */
let sLevel = new Uint8Array(64);
let sState = new Uint8Array(64);
/** 1 if the module's walk reaches the entry (every entry above it NL_MAPPED), as `entryAt` does. */
let sReached = new Uint8Array(64);
/** 1 once a present mirror entry was met at the entry's GFN and level. */
let sMatched = new Uint8Array(64);
let nSept = 0;

function collectSept(pages: SeptPages, td: Td): void {
  nSept = 0;
  visitSept(pages, td.septRoot, td.rootLevel, 0, 1);
  sMatched.fill(0, 0, nSept);
}

/** GFNs an entry at TDX level `level` spans (`512 ** level`, which V8 computes as a call to pow). */
const GFNS_PER_ENTRY = [1, 512, 512 ** 2, 512 ** 3, 512 ** 4];

function visitSept(
  pages: SeptPages,
  page: number,
  level: number,
  base: number,
  reached: number,
): void {
  const t = pages.get(page)!;
  // Only the entries the occupancy bitmap marks, in ascending order: every other entry is the
  // FREE encoding, which is FREE at every level.
  for (let i = pages.peekNextUsed(t, 0); i >= 0; i = pages.peekNextUsed(t, i + 1)) {
    const lo = pages.peekLo(t, 2 * i);
    const hi = pages.peekHi(t, 2 * i);
    const st = septState(lo, hi, level);
    if (st === SEPT_FREE) continue;
    const gfn = base + i * GFNS_PER_ENTRY[level]!;
    if (nSept === sGfn.length) growSept();
    sGfn[nSept] = gfn;
    sPfn[nSept] = septPfn(lo, hi);
    sLevel[nSept] = level;
    sState[nSept] = st;
    sReached[nSept++] = reached;
    // The walk goes on through a blocked table, which the module's own walk does not.
    if (st === SEPT_NL_MAPPED || st === SEPT_NL_BLOCKED)
      visitSept(pages, septPfn(lo, hi), level - 1, gfn, st === SEPT_NL_MAPPED ? reached : 0);
  }
}

function growSept(): void {
  const cap = 2 * sGfn.length;
  sGfn = grown(sGfn, new Float64Array(cap));
  sPfn = grown(sPfn, new Float64Array(cap));
  sLevel = grown(sLevel, new Uint8Array(cap));
  sState = grown(sState, new Uint8Array(cap));
  sReached = grown(sReached, new Uint8Array(cap));
  sMatched = new Uint8Array(cap);
}

/** Whether S-EPT entry `k` comes before the mirror entry at (`gfn`, KVM `level`) in the walks' order. */
function septBefore(k: number, gfn: number, level: number): boolean {
  return sGfn[k]! < gfn || (sGfn[k] === gfn && sLevel[k]! + 1 > level);
}

/**
 * The "used by the S-EPT" bitmap over host frames, and the runs of frames this check marked in
 * it (a check clears what the previous one marked, not the whole map: a fill per check cost
 * 4 KiB of stores for a 128 MiB host, after every explorer step; checks do not nest). Marked
 * frames come in runs (a 2 MiB page's 512, the 512 leaves of a split one), so a run is kept as
 * its first frame and its end, and cleared by the bytes it covers: every bit set in the map is
 * one this check's predecessor marked, so clearing a whole byte clears nothing else.
 */
let used = new Uint8Array(0);
let runFrom = new Float64Array(64);
let runTo = new Float64Array(64);
let nRuns = 0;

function usedBitmap(frames: number): Uint8Array {
  if (used.length !== Math.ceil(frames / 8)) used = new Uint8Array(Math.ceil(frames / 8));
  else for (let r = 0; r < nRuns; r++) used.fill(0, runFrom[r]! >>> 3, ((runTo[r]! - 1) >>> 3) + 1);
  nRuns = 0;
  return used;
}

/** Marks frames `[pfn, pfn + n)` used. */
function mark(pfn: number, n: number): void {
  if (nRuns > 0 && runTo[nRuns - 1] === pfn) runTo[nRuns - 1] = pfn + n;
  else {
    if (nRuns === runFrom.length) {
      runFrom = grown(runFrom, new Float64Array(2 * nRuns));
      runTo = grown(runTo, new Float64Array(2 * nRuns));
    }
    runFrom[nRuns] = pfn;
    runTo[nRuns++] = pfn + n;
  }
  for (let i = pfn; i < pfn + n; i++) used[i >>> 3] = used[i >>> 3]! | (1 << (i & 7));
}

export function checkTdxInvariants(
  be: TdxBackend,
  mirror: MirrorView,
): { check: string; message: string }[] {
  const out: { check: string; message: string }[] = [];
  const fail = (check: string, message: string) => {
    if (out.length < 20) out.push({ check, message });
  };
  const td = be.td;
  if (!td || td.lifecycle === LC_TEARDOWN || !be.module.tds.has(be.tdr)) return out;
  const module = be.module;

  // Mirror → S-EPT, by one pass over both: each side's walk gives its entries in the same
  // order, so the S-EPT entry at a mirror entry's GFN and level is found by moving a cursor
  // forward (a lookup per entry, from the root, cost most of the check). Should the mirror's
  // entries come out of that order (two valid mirror roots), the rest are looked up instead.
  collectSept(module.sept, td);
  let premapped = 0;
  let cursor = 0;
  let ordered = true;
  let lastGfn = -1;
  let lastLevel = 0;
  mirror.forEach((gfn, level, kind, pfn, ext) => {
    if (ordered && (gfn < lastGfn || (gfn === lastGfn && level >= lastLevel))) ordered = false;
    lastGfn = gfn;
    lastLevel = level;
    let state = SEPT_FREE;
    let spfn = 0;
    if (ordered) {
      while (cursor < nSept && septBefore(cursor, gfn, level)) cursor++;
      if (cursor < nSept && sGfn[cursor] === gfn && sLevel[cursor]! + 1 === level) {
        sMatched[cursor] = 1;
        // `entryAt`: an entry below a blocked table is not where the module's walk goes.
        if (sReached[cursor] === 1) {
          state = sState[cursor]!;
          spfn = sPfn[cursor]!;
        }
      }
    }
    if (mirror.inFlight(gfn, level)) return;
    if (!ordered) {
      const s = module.entryAt(td, gfn, level - 1);
      state = s.state;
      spfn = s.pfn;
    }
    if (kind === "leaf") {
      if (state === SEPT_FREE) {
        if (td.opState !== OP_RUNNABLE) premapped++;
        else
          fail(
            "mirror-equals-sept",
            `mirror leaf at gfn ${hex(gfn)} (page ${hex(pfn)}) has no S-EPT leaf`,
          );
        return;
      }
      if (spfn !== pfn)
        fail(
          "mirror-equals-sept",
          `gfn ${hex(gfn)}: mirror maps page ${hex(pfn)}, the S-EPT ${hex(spfn)}`,
        );
      if (state !== SEPT_MAPPED && state !== SEPT_PENDING) {
        fail(
          "mirror-equals-sept",
          `gfn ${hex(gfn)}: mirror leaf present, S-EPT leaf ${SEPT_STATE_NAMES[state]}`,
        );
      }
    } else if (state !== SEPT_NL_MAPPED || spfn !== ext) {
      fail(
        "mirror-equals-sept",
        `gfn ${hex(gfn)} level ${level}: mirror table over page ${hex(ext)}, S-EPT ${SEPT_STATE_NAMES[state]} over ${hex(spfn)}`,
      );
    }
  });
  // A leaf KVM is setting now (frozen, not yet published) may have been counted already: its
  // `set_external_spte` runs between the freeze and the publish.
  let settingNow = 0;
  mirror.forEachInFlight((gfn, level) => {
    if (
      level === 1 &&
      mirror.lookup(gfn, 1) === null &&
      module.entryAt(td, gfn, 0).state === SEPT_FREE
    )
      settingNow++;
  });
  if (be.nrPremapped < premapped || be.nrPremapped > premapped + settingNow) {
    fail(
      "mirror-equals-sept",
      `${premapped} mirror leaves wait for PAGE.ADD${settingNow > 0 ? ` (and ${settingNow} being set)` : ""}, KVM counts ${be.nrPremapped} premapped`,
    );
  }

  // S-EPT → mirror (a present mirror entry at the same GFN and level, met by the pass above),
  // and each page the S-EPT uses: the TD's, of the right type, used once.
  const used = usedBitmap(module.pamt.totalFrames);
  for (let k = 0; k < nSept; k++) {
    const gfn = sGfn[k]!;
    const level = sLevel[k]!;
    const state = sState[k]!;
    const pfn = sPfn[k]!;
    const inMirror = ordered ? sMatched[k] === 1 : mirror.lookup(gfn, level + 1) !== null;
    if (!inMirror && !mirror.inFlight(gfn, level + 1)) {
      fail(
        "mirror-equals-sept",
        `S-EPT ${SEPT_STATE_NAMES[state]} at gfn ${hex(gfn)} TDX level ${level} (page ${hex(pfn)}) is not in the mirror`,
      );
    }
    if (used[pfn >>> 3]! & (1 << (pfn & 7)))
      fail("pamt-consistent", `page ${hex(pfn)} is used twice in the S-EPT`);
    if (level === 1 && state !== SEPT_NL_MAPPED && state !== SEPT_NL_BLOCKED) {
      // A 2 MiB page: one 2M PAMT entry of the TD's, the 512 4K entries under it NDA.
      for (let i = 1; i < 512; i++) {
        if (used[(pfn + i) >>> 3]! & (1 << ((pfn + i) & 7)))
          fail("pamt-consistent", `page ${hex(pfn + i)} is used twice in the S-EPT`);
      }
      mark(pfn, 512);
      if (module.pamt.type2m(pfn) !== PT_REG || module.pamt.owner2m(pfn) !== be.tdr) {
        fail(
          "pamt-consistent",
          `the S-EPT maps a 2 MiB page at ${hex(pfn)}, which the PAMT's 2M entry says is ${PAGE_TYPE_NAMES[module.pamt.type2m(pfn)]} owned by ${hex(module.pamt.owner2m(pfn))}`,
        );
      }
      if (module.pamt.anyAssigned4k(pfn))
        fail(
          "pamt-consistent",
          `the 2 MiB page at ${hex(pfn)} has 4K PAMT entries assigned under its 2M entry`,
        );
      continue;
    }
    mark(pfn, 1);
    const ownedAs = module.pamt.typeIfOwnedBy(pfn, be.tdr);
    if (ownedAs !== PT_REG && ownedAs !== PT_EPT) {
      const t = module.pamt.type(pfn);
      fail(
        "pamt-consistent",
        `the S-EPT uses page ${hex(pfn)}, which the PAMT says is ${PAGE_TYPE_NAMES[t]} owned by ${hex(module.pamt.owner(pfn))}`,
      );
    }
  }

  // The PAMT: what the TD owns against what its S-EPT and TDCS use.
  let owned = 0;
  const pamt = module.pamt;
  for (let pfn = pamt.nextPageOf(be.tdr, 0); pfn >= 0; pfn = pamt.nextPageOf(be.tdr, pfn + 1)) {
    const type = pamt.type(pfn);
    owned++;
    if (type === PT_REG || type === PT_EPT) {
      if ((used[pfn >>> 3]! & (1 << (pfn & 7))) === 0)
        fail(
          "pamt-consistent",
          `${PAGE_TYPE_NAMES[type]} page ${hex(pfn)} owned by the TD is not in its S-EPT`,
        );
    } else if (type !== PT_TDCX && type !== PT_TDVPR) {
      fail(
        "pamt-consistent",
        `page ${hex(pfn)} of type ${PAGE_TYPE_NAMES[type]} is owned by the TD`,
      );
    }
  }
  for (
    let pfn = pamt.next2mPageOf(be.tdr, 0);
    pfn >= 0;
    pfn = pamt.next2mPageOf(be.tdr, pfn + 512)
  ) {
    owned += 512;
    if ((used[pfn >>> 3]! & (1 << (pfn & 7))) === 0)
      fail("pamt-consistent", `2 MiB page ${hex(pfn)} owned by the TD is not in its S-EPT`);
  }
  if (owned !== td.childCount)
    fail(
      "pamt-consistent",
      `the TD owns ${owned} pages besides its TDR, its child count says ${td.childCount}`,
    );
  return out;
}
