/**
 * What a SEAMCALL gives back and how a leaf fails: the result and guest-exit shapes, the shared
 * success result (a successful call allocates nothing), the failure a check throws, and the
 * status an injected fault puts in place of a call's.
 */
import { TDX_SUCCESS, isOk } from "./status.js";

export interface SeamResult {
  status: bigint;
  /** The status came from fault injection (`--inject`), not from the leaf: events say so. */
  injected?: boolean;
  /** RCX on S-EPT errors: the architectural entry where the operation stopped. */
  entry?: bigint;
  /** RDX on S-EPT errors: level (bits 2:0) and state (bits 15:8). */
  levelState?: bigint;
  /** RCX of PAGE.REMOVE: the HPA (PFN) that was mapped. */
  pfn?: number;
  /** Output registers of a leaf that reads metadata (TDH.PHYMEM.PAGE.RDMD), by name. */
  regs?: Readonly<Record<string, bigint>>;
  /**
   * A TDCALL that did not complete: the TD exited to KVM instead (an EPT violation), and the
   * guest runs the TDCALL again once re-entered. No status reaches the guest.
   */
  tdExit?: GuestExit["exit"];
}

/** What TDG.MEM.PAGE.ACCEPT or a guest access ends in when KVM must act first. */
export interface GuestExit {
  exit: "ept-violation" | "pending-ept-violation";
}

/** Makes a named call return a chosen status on its nth invocation (1-based), `times` times in a row. */
export interface InjectedFault {
  call: string;
  nth: number;
  status: bigint;
  times: number;
}

export interface SeamStats {
  calls: Record<string, number>;
  busy: number;
  errors: Record<string, number>;
}

/**
 * Hears of every call made for a TD: the leaf (an index into SEAMCALL_NAMES), its result, and
 * the operands the event text is made from (`callDetail`), only if the listener wants it. An
 * object with a method, not a function: the VMM listens itself, and a method of its class
 * measured about 30 instructions a call cheaper than a closure made per TD.
 */
export interface CallListener {
  seamcallDone(
    leaf: number,
    r: SeamResult,
    tdr: number,
    a: number,
    b: number,
    c: number,
    d: number,
  ): void;
}

/** The result of every call that succeeds with nothing more to say: shared, so never changed. */
export const SUCCESS: SeamResult = Object.freeze({ status: TDX_SUCCESS });
export const EPT_VIOLATION: GuestExit = Object.freeze({ exit: "ept-violation" });
export const PENDING_EPT_VIOLATION: GuestExit = Object.freeze({ exit: "pending-ept-violation" });
/** The result of a TDG.MEM.PAGE.ACCEPT that ended in an EPT-violation TD exit (see `SeamResult.tdExit`). */
export const ACCEPT_EXITED: SeamResult = Object.freeze({
  status: TDX_SUCCESS,
  tdExit: "ept-violation",
});

export const ok = (): SeamResult => SUCCESS;

/**
 * `isOk(r.status)` and `r.status !== TDX_SUCCESS`, with the shared SUCCESS tested by identity
 * first: comparing bigints is a builtin call (a few ns), and nearly every call on a fault's
 * path returns SUCCESS.
 */
export function resultOk(r: SeamResult): boolean {
  return r === SUCCESS || isOk(r.status);
}

export function resultNotSuccess(r: SeamResult): boolean {
  return r !== SUCCESS && r.status !== TDX_SUCCESS;
}

export const fail = (status: bigint, operand = 0n): SeamResult => ({ status: status + operand });

export class SeamError {
  constructor(readonly result: SeamResult) {}
}

/** A failed check: the leaf ends with `status` + `operand` (the dispatcher catches it). */
export function check(cond: boolean, status: bigint, operand?: bigint): void {
  // Kept this small (V8 then inlines it without spending the caller's inlining budget, which
  // every leaf's dozen checks would exhaust): the failure is built apart.
  if (!cond) failed(status, operand);
}

/**
 * Throws the failure `status` (+ `operand`): a call, not an inline `throw new SeamError(...)`,
 * so that the helpers every leaf inlines (`check`, `lock`...) stay small.
 */
export function failed(status: bigint, operand = 0n): never {
  throw new SeamError(fail(status, operand));
}

/** The status an injected fault gives the `n`th call named `name` (the last matching fault wins), or null. */
export function injectedResult(
  faults: readonly InjectedFault[],
  name: string,
  n: number,
): SeamResult | null {
  let r: SeamResult | null = null;
  for (const f of faults) {
    if (f.call === name && n >= f.nth && n < f.nth + f.times)
      r = { status: f.status, injected: true };
  }
  return r;
}
