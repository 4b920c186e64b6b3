/**
 * KVM's door to the RMM (the `rmi_*` wrappers of the arm64 realm support): each RMI command it
 * issues for one realm, counted by name, failed on cue by an injected fault, and shown as an
 * event. The RMM itself (`rmm/`) knows nothing of counting, injection or events.
 */
import {
  CallCounts,
  R_INJECTED,
  resourceId,
  type BackendVm,
  type FaultSpec,
} from "@tdpemu/backend-sdk";
import type { Rmm } from "./rmm/rmm.js";
import {
  RMI_NAMES,
  RMI_SUCCESS,
  formatReturn,
  parseReturn,
  returnStatus,
} from "./rmm/rmi-status.js";
import {
  dataCreate,
  dataCreateUnknown,
  dataDestroy,
  rttCreate,
  rttDestroy,
  rttFold,
  rttInitRipas,
  rttMapUnprotected,
  rttReadEntry,
  rttSetRipas,
  rttUnmapUnprotected,
  type RttEntryRead,
} from "./rmm/rtt-commands.js";
import { recEnter, type RipasResponse } from "./rmm/realm-side.js";

/** RMI commands by their index in RMI_NAMES (the call counts' order). */
const I_DATA_CREATE = RMI_NAMES.indexOf("RMI_DATA_CREATE");
const I_DATA_CREATE_UNKNOWN = RMI_NAMES.indexOf("RMI_DATA_CREATE_UNKNOWN");
const I_DATA_DESTROY = RMI_NAMES.indexOf("RMI_DATA_DESTROY");
const I_GRANULE_DELEGATE = RMI_NAMES.indexOf("RMI_GRANULE_DELEGATE");
const I_GRANULE_UNDELEGATE = RMI_NAMES.indexOf("RMI_GRANULE_UNDELEGATE");
const I_REALM_ACTIVATE = RMI_NAMES.indexOf("RMI_REALM_ACTIVATE");
const I_REALM_DESTROY = RMI_NAMES.indexOf("RMI_REALM_DESTROY");
const I_REC_DESTROY = RMI_NAMES.indexOf("RMI_REC_DESTROY");
const I_REC_ENTER = RMI_NAMES.indexOf("RMI_REC_ENTER");
const I_RTT_CREATE = RMI_NAMES.indexOf("RMI_RTT_CREATE");
const I_RTT_DESTROY = RMI_NAMES.indexOf("RMI_RTT_DESTROY");
const I_RTT_FOLD = RMI_NAMES.indexOf("RMI_RTT_FOLD");
const I_RTT_INIT_RIPAS = RMI_NAMES.indexOf("RMI_RTT_INIT_RIPAS");
const I_RTT_MAP_UNPROTECTED = RMI_NAMES.indexOf("RMI_RTT_MAP_UNPROTECTED");
const I_RTT_READ_ENTRY = RMI_NAMES.indexOf("RMI_RTT_READ_ENTRY");
const I_RTT_SET_RIPAS = RMI_NAMES.indexOf("RMI_RTT_SET_RIPAS");
const I_RTT_UNMAP_UNPROTECTED = RMI_NAMES.indexOf("RMI_RTT_UNMAP_UNPROTECTED");
export const I_REALM_CREATE = RMI_NAMES.indexOf("RMI_REALM_CREATE");
export const I_REC_AUX_COUNT = RMI_NAMES.indexOf("RMI_REC_AUX_COUNT");
export const I_REC_CREATE = RMI_NAMES.indexOf("RMI_REC_CREATE");

/**
 * What `calls` counts beside the RMI commands: the realm's RSI calls and the exits and
 * exceptions the model raises, so that `compare` shows where a realm's time goes.
 */
export const EXTRA_NAMES = [
  "RSI_IPA_STATE_SET",
  "REC exit (RIPAS_CHANGE)",
  "REC exit (data abort)",
  "#SEA",
  "#GPF",
  "REC exit (DESTROYED)",
] as const;
export const RSI_IPA_STATE_SET = RMI_NAMES.length;
export const EXIT_RIPAS = RSI_IPA_STATE_SET + 1;
export const EXIT_ABORT = RSI_IPA_STATE_SET + 2;
export const SEA = RSI_IPA_STATE_SET + 3;
export const GPF = RSI_IPA_STATE_SET + 4;
export const EXIT_DESTROYED = RSI_IPA_STATE_SET + 5;

/**
 * Commands KVM issues only while it makes the realm (with the VMM's INIT_RIPAS), or never
 * (RMI_VERSION; RMI_FEATURES is left out of the model's KVM): nothing can be injected into them.
 */
export const BUILD_ONLY: readonly string[] = [
  "RMI_VERSION",
  "RMI_REALM_CREATE",
  "RMI_REC_CREATE",
  "RMI_REC_AUX_COUNT",
  "RMI_RTT_INIT_RIPAS",
];

interface Injected {
  call: number;
  nth: number;
  x0: number;
  times: number;
}

export class RmiCalls {
  readonly counts = new CallCounts([...RMI_NAMES, ...EXTRA_NAMES]);
  /** Invocations of each command, for injection (a call refused by injection counts too). */
  private readonly seen: number[] = RMI_NAMES.map(() => 0);
  private readonly injected: Injected[] = [];
  readonly errors: Record<string, number> = {};
  lastFailure = "";
  private vm: BackendVm | null = null;
  private injectedNow = false;

  constructor(readonly rmm: Rmm) {}

  private space = 0;

  /** The VM whose calls these are, and the resource space whose ids 1000 + n stand for command n's count. */
  attach(vm: BackendVm, space: number): void {
    this.vm = vm;
    this.space = space;
  }

  /** With faults injected, which call is the nth depends on the order of the calls: each count is shared state. */
  auditState(out: Map<number, string | number>): void {
    if (this.injected.length > 0)
      for (let c = 0; c < this.seen.length; c++)
        out.set(resourceId(this.space, 1000 + c), this.seen[c]!);
  }

  /** Fault injection: command `f.call` (its specification name) returns `f.status` on its `nth` call, `times` times. */
  inject(f: FaultSpec): void {
    const call = RMI_NAMES.indexOf(f.call);
    if (call < 0)
      throw new Error(`unknown RMI command '${f.call}' (known: ${RMI_NAMES.join(", ")})`);
    if (BUILD_ONLY.includes(f.call))
      throw new Error(
        `${f.call} is issued only while the realm is made, before a fault can be injected (injectable: ${RMI_NAMES.filter((n) => !BUILD_ONLY.includes(n)).join(", ")})`,
      );
    const x0 = parseReturn(f.status);
    // An injected status replaces the command, which then sets none of its outputs (X1, X2):
    // KVM would go on with whatever an earlier call left there. Only a failure can stand in.
    if (returnStatus(x0) === RMI_SUCCESS)
      throw new Error(
        `status ${f.status} cannot be injected (the command would not run, and KVM would read outputs it never set); inject an error status`,
      );
    this.injected.push({ call, nth: f.nth, x0, times: f.times });
  }

  /**
   * The realm is made: an injected fault's `nth` counts the calls from here on (KVM_CREATE_VM's
   * delegations are not the run's).
   */
  startCounting(): void {
    this.seen.fill(0);
  }

  /** The X0 an injected fault gives this invocation of `call`, or -1. */
  private due(call: number): number {
    const n = ++this.seen[call]!;
    if (this.injected.length === 0) return -1;
    this.vm?.clock.touch(resourceId(this.space, 1000 + call));
    // The caller's own next call may end otherwise: its retry is not a no-op.
    this.vm?.clock.update(R_INJECTED);
    for (const f of this.injected) {
      if (f.call === call && n >= f.nth && n < f.nth + f.times) {
        this.injectedNow = true;
        return f.x0;
      }
    }
    return -1;
  }

  /**
   * Counts `call`'s result. Its operands (-1 for none) make the event's text, built only for a
   * listener or a failure: nothing is allocated per successful call.
   */
  private done(call: number, x0: number, ipa: number, pa: number, level: number, top = -1): number {
    this.counts.add(call);
    if (x0 !== RMI_SUCCESS) {
      const name = formatReturn(x0);
      this.errors[name] = (this.errors[name] ?? 0) + 1;
      this.lastFailure = `${RMI_NAMES[call]} ${detail(ipa, pa, level, top)}: ${name}`;
    }
    if (this.vm?.events.on) {
      this.vm.events.emit({
        type: "call",
        vm: this.vm.id,
        name: RMI_NAMES[call]!,
        detail: detail(ipa, pa, level, top),
        status: formatReturn(x0),
        tone: returnStatus(x0) === RMI_SUCCESS ? "ok" : "error",
        ...(this.injectedNow ? { injected: true } : {}),
      });
    }
    this.injectedNow = false;
    return x0;
  }

  /** One of the realm's own events (an RSI call, an exit, an exception) at `gpa`; its text is made only for a listener. */
  note(what: number, gpa: number, tone: "ok" | "exception" = "ok"): void {
    this.counts.add(what);
    if (this.vm?.events.on) {
      this.vm.events.emit({
        type: "call",
        vm: this.vm.id,
        name: EXTRA_NAMES[what - RSI_IPA_STATE_SET]!,
        detail: `gpa ${hex(gpa)}`,
        status: tone === "ok" ? "exit" : "raised",
        tone,
      });
    }
  }

  granuleDelegate(pa: number): number {
    const inj = this.due(I_GRANULE_DELEGATE);
    return this.done(
      I_GRANULE_DELEGATE,
      inj >= 0 ? inj : this.rmm.granuleDelegate(pa),
      -1,
      pa,
      NO_LEVEL,
    );
  }

  granuleUndelegate(pa: number): number {
    const inj = this.due(I_GRANULE_UNDELEGATE);
    return this.done(
      I_GRANULE_UNDELEGATE,
      inj >= 0 ? inj : this.rmm.granuleUndelegate(pa),
      -1,
      pa,
      NO_LEVEL,
    );
  }

  dataCreate(rd: number, data: number, ipa: number, src: number, flags: number): number {
    const inj = this.due(I_DATA_CREATE);
    return this.done(
      I_DATA_CREATE,
      inj >= 0 ? inj : dataCreate(this.rmm, rd, data, ipa, src, flags),
      ipa,
      data,
      NO_LEVEL,
    );
  }

  dataCreateUnknown(rd: number, data: number, ipa: number): number {
    const inj = this.due(I_DATA_CREATE_UNKNOWN);
    return this.done(
      I_DATA_CREATE_UNKNOWN,
      inj >= 0 ? inj : dataCreateUnknown(this.rmm, rd, data, ipa),
      ipa,
      data,
      NO_LEVEL,
    );
  }

  /** X1 the data granule's PA, X2 "top" (in the RMM's registers). */
  dataDestroy(rd: number, ipa: number): number {
    const inj = this.due(I_DATA_DESTROY);
    return this.done(
      I_DATA_DESTROY,
      inj >= 0 ? inj : dataDestroy(this.rmm, rd, ipa),
      ipa,
      -1,
      NO_LEVEL,
    );
  }

  rttCreate(rd: number, rtt: number, ipa: number, level: number): number {
    const inj = this.due(I_RTT_CREATE);
    return this.done(
      I_RTT_CREATE,
      inj >= 0 ? inj : rttCreate(this.rmm, rd, rtt, ipa, level),
      ipa,
      rtt,
      level,
    );
  }

  rttDestroy(rd: number, ipa: number, level: number): number {
    const inj = this.due(I_RTT_DESTROY);
    return this.done(
      I_RTT_DESTROY,
      inj >= 0 ? inj : rttDestroy(this.rmm, rd, ipa, level),
      ipa,
      -1,
      level,
    );
  }

  rttFold(rd: number, ipa: number, level: number): number {
    const inj = this.due(I_RTT_FOLD);
    return this.done(
      I_RTT_FOLD,
      inj >= 0 ? inj : rttFold(this.rmm, rd, ipa, level),
      ipa,
      -1,
      level,
    );
  }

  rttInitRipas(rd: number, base: number, top: number): number {
    const inj = this.due(I_RTT_INIT_RIPAS);
    return this.done(
      I_RTT_INIT_RIPAS,
      inj >= 0 ? inj : rttInitRipas(this.rmm, rd, base, top),
      base,
      -1,
      NO_LEVEL,
      top,
    );
  }

  rttSetRipas(rd: number, rec: number, base: number, top: number): number {
    const inj = this.due(I_RTT_SET_RIPAS);
    return this.done(
      I_RTT_SET_RIPAS,
      inj >= 0 ? inj : rttSetRipas(this.rmm, rd, rec, base, top),
      base,
      -1,
      NO_LEVEL,
      top,
    );
  }

  rttMapUnprotected(rd: number, ipa: number, level: number, desc: number): number {
    const inj = this.due(I_RTT_MAP_UNPROTECTED);
    return this.done(
      I_RTT_MAP_UNPROTECTED,
      inj >= 0 ? inj : rttMapUnprotected(this.rmm, rd, ipa, level, desc),
      ipa,
      desc,
      level,
    );
  }

  rttUnmapUnprotected(rd: number, ipa: number, level: number): number {
    const inj = this.due(I_RTT_UNMAP_UNPROTECTED);
    return this.done(
      I_RTT_UNMAP_UNPROTECTED,
      inj >= 0 ? inj : rttUnmapUnprotected(this.rmm, rd, ipa, level),
      ipa,
      -1,
      level,
    );
  }

  rttReadEntry(rd: number, ipa: number, level: number, out: RttEntryRead): number {
    const inj = this.due(I_RTT_READ_ENTRY);
    return this.done(
      I_RTT_READ_ENTRY,
      inj >= 0 ? inj : rttReadEntry(this.rmm, rd, ipa, level, out),
      ipa,
      -1,
      level,
    );
  }

  realmActivate(rd: number): number {
    const inj = this.due(I_REALM_ACTIVATE);
    return this.done(
      I_REALM_ACTIVATE,
      inj >= 0 ? inj : this.rmm.realmActivate(rd),
      -1,
      rd,
      NO_LEVEL,
    );
  }

  realmDestroy(rd: number): number {
    const inj = this.due(I_REALM_DESTROY);
    return this.done(I_REALM_DESTROY, inj >= 0 ? inj : this.rmm.realmDestroy(rd), -1, rd, NO_LEVEL);
  }

  recDestroy(rec: number): number {
    const inj = this.due(I_REC_DESTROY);
    return this.done(I_REC_DESTROY, inj >= 0 ? inj : this.rmm.recDestroy(rec), -1, rec, NO_LEVEL);
  }

  recEnter(rec: number, ripasDone: RipasResponse | null): number {
    const inj = this.due(I_REC_ENTER);
    return this.done(
      I_REC_ENTER,
      inj >= 0 ? inj : recEnter(this.rmm, rec, false, ripasDone),
      -1,
      rec,
      NO_LEVEL,
    );
  }

  /** A command KVM issues only while it builds the realm (REALM_CREATE, REC_AUX_COUNT, REC_CREATE): counted, not injectable. */
  counted(call: number, x0: number, pa: number): number {
    return this.done(call, x0, -1, pa, NO_LEVEL);
  }
}

const NO_LEVEL = -9;
const hex = (n: number) => `0x${n.toString(16)}`;

/** An event's text: "ipa 0x200000-0x400000 level 3 pa 0x1234000". */
function detail(ipa: number, pa: number, level: number, top: number): string {
  const parts: string[] = [];
  if (ipa >= 0) parts.push(top >= 0 ? `ipa ${hex(ipa)}-${hex(top)}` : `ipa ${hex(ipa)}`);
  if (level !== NO_LEVEL) parts.push(`level ${level}`);
  if (pa >= 0) parts.push(`pa ${hex(pa)}`);
  return parts.join(" ");
}
