/**
 * `--trace <file>` and `--trace-format jsonl|chrome` of `run` and `replay`: which file, which
 * format, and the writer that streams the run's events into it.
 */
import type { TdpEvent } from "@tdpemu/core";
import type { ChromeTraceMeta } from "./chrome-trace-events.js";
import { ChromeTraceWriter } from "./chrome-trace-writer.js";
import type { ParsedArgs } from "./cli-options.js";
import { TraceWriter } from "./trace-writer.js";
import { UsageError } from "./usage-error.js";

export const TRACE_OPTIONS = {
  trace: { type: "string" },
  "trace-format": { type: "string" },
} as const;

const FORMATS = ["jsonl", "chrome"] as const;
export type TraceFormat = (typeof FORMATS)[number];

export interface TraceRequest {
  path: string;
  format: TraceFormat;
}

/** A run's trace, whatever its format. */
export interface EventTrace {
  readonly path: string;
  /** The events of the run written so far. */
  readonly count: number;
  write(e: TdpEvent): void;
  /** Ends the file as a whole run's: a trace not closed says it was cut short. */
  close(): void;
}

/** The trace the command line asks for, checked before anything runs; null for none. */
export function traceOption(cmd: string, values: ParsedArgs["values"]): TraceRequest | null {
  const format = values["trace-format"];
  if (format !== undefined && !(FORMATS as readonly string[]).includes(format)) {
    const expected = FORMATS.join(" or ");
    throw new UsageError(`${cmd}: --trace-format: expected ${expected}, got '${format}'`);
  }
  if (values.trace === undefined) {
    if (format !== undefined) {
      const what = "expected --trace <file> to write the trace to";
      throw new UsageError(`${cmd}: --trace-format ${format}: ${what}`);
    }
    return null;
  }
  return { path: values.trace, format: (format ?? "jsonl") as TraceFormat };
}

export function openTrace(cmd: string, req: TraceRequest, meta: ChromeTraceMeta): EventTrace {
  try {
    if (req.format === "chrome") return new ChromeTraceWriter(req.path, meta);
    return new TraceWriter(req.path);
  } catch (e) {
    // A write that failed already says so (a full device); an open that failed is said here.
    if (UsageError.is(e)) throw e;
    const why = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
    throw new UsageError(`${cmd}: --trace: cannot create '${req.path}': ${why}`);
  }
}

/** The tracks of a run: the host's, then one per vCPU. */
export function traceMeta(scenario: string, backend: string, vcpus: number): ChromeTraceMeta {
  return {
    process: `${scenario} (${backend})`,
    tasks: ["host", ...Array.from({ length: vcpus }, (_, i) => `vcpu${i}`)],
  };
}
