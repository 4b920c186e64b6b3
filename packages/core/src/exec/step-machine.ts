/**
 * Step machines: an operation written as explicit atomic steps, so that one implementation
 * serves both ways of running it.
 *
 * - Interleaved (the scheduler, the explorer), a coroutine runs one step, yields, runs the next:
 *   `runSteps`.
 * - Not interleaved (a vCPU running alone, bulk runs, benchmarks), the steps run back to back in
 *   a plain loop, `runNow`, with no generator per call. The fault path is a step machine for
 *   this reason: a generator costs more than a whole 4 KiB fault's table work.
 *
 * `step()` runs up to the next atomic point and says what follows: a result (>= 0) when the
 * operation is done, `STEP_YIELD` when an atomic point follows (a coroutine may be preempted
 * there), `STEP_BLOCKED` when it cannot go on until someone else changes shared state. The
 * machine bumps `clock.step` itself at each atomic point, so step numbers read the same both
 * ways.
 */
import { BLOCKED, type ExecCtx, type Op } from "./ctx.js";

export const STEP_YIELD = -1;
export const STEP_BLOCKED = -2;

export interface StepMachine {
  /** Runs to the next atomic point: a result (>= 0), `STEP_YIELD` or `STEP_BLOCKED`. */
  step(): number;
  /** Drops what the machine holds (locks, RCU) when a step threw, as the kernel's unwinding would. */
  abort(): void;
}

/** Runs a machine to its end in one go (a context that does not interleave). */
export function runNow(m: StepMachine): number {
  try {
    let r: number;
    while ((r = m.step()) < 0) {
      /* no one to yield to */
    }
    return r;
  } catch (e) {
    m.abort();
    throw e;
  }
}

/** Runs a machine as a coroutine: yields at each atomic point and while blocked. */
export function* runSteps(m: StepMachine, ctx: ExecCtx): Op<number> {
  try {
    let r: number;
    while ((r = m.step()) < 0) {
      if (r === STEP_BLOCKED) yield BLOCKED;
      else if (ctx.interleave) yield;
    }
    return r;
  } catch (e) {
    m.abort();
    throw e;
  }
}
