/**
 * How much V8 inlines into an optimized function: the budget the fault path wants, and the one
 * a search on several threads wants. Compilation reads the flag (process-wide, every isolate),
 * so it applies to what is compiled after it is set.
 */
import v8 from "node:v8";

/** The bytecode, in bytes, V8 inlines into one optimized function at most (callees summed). */
function inliningBudget(bytes: number): void {
  v8.setFlagsFromString(`--max-inlined-bytecode-size-cumulative=${bytes}`);
}

/**
 * V8 inlines callees into an optimized function until their bytecode adds up to 920 bytes. The
 * fault path is many small functions (one per kernel function it models), and that budget runs
 * out a few calls deep: each call left is a few nanoseconds, and the SPTE halves it passes
 * (uint32 above 2^31) are boxed into heap numbers. With a larger budget V8 inlines more of it:
 * measured +15 % faults/s on plain and +30 % on SEV and TDX, with the explorer and the UI frame
 * unchanged (`tdpemu bench`). Raising the per-function limit as well made it slower. Set by
 * `cli.ts` before any hot code has run.
 */
export function inlineForFaultPath(): void {
  inliningBudget(4000);
}

/**
 * V8's own budget, for a search on several threads (`explore --jobs`, and its default threads).
 * Every thread compiles the search for itself, on a machine whose cores the threads already
 * fill, and the larger budget makes each optimized function larger to compile. A search runs
 * the fault path in steps of a few dozen nanoseconds between the explorer's own work, which the
 * budget does not speed up. Measured on `tdx-race-3vcpu --preemption-bound 3` (158,166
 * schedules) on two cores, `--jobs 2`: 7.99, 8.26 and 9.23 s against 8.28, 9.00 and 9.13 s with
 * the larger budget (alternating runs), and in `tdpemu bench --filter explore-jobs` 7.95 and
 * 7.98 s against 8.92 s; `explore-jobs-long` (70 s) does not move, its warm-up amortised.
 */
export function inlineForThreads(): void {
  inliningBudget(920);
}
