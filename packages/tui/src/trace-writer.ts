/**
 * `--trace file.jsonl`: every event as one JSON object per line, SPTEs as 16-digit hex. Lines are
 * gathered in a buffer and written in large chunks, so tracing a million faults stays fast.
 */
import { closeSync, openSync, writeSync } from "node:fs";
import { formatSpte, type TdpEvent } from "@tdpemu/core";
import { UsageError } from "./usage-error.js";

const CHUNK = 1 << 20;

export class TraceWriter {
  private fd: number;
  private buf: string[] = [];
  private size = 0;
  count = 0;

  constructor(readonly path: string) {
    this.fd = openSync(path, "w");
  }

  write = (e: TdpEvent): void => {
    let line: string;
    if (e.type === "spte") {
      const { oldLo, oldHi, newLo, newHi, ...rest } = e;
      line = JSON.stringify({ ...rest, old: formatSpte(oldLo, oldHi), new: formatSpte(newLo, newHi) });
    } else {
      line = JSON.stringify(e);
    }
    this.buf.push(line);
    this.size += line.length + 1;
    this.count++;
    if (this.size >= CHUNK) this.flush();
  };

  flush(): void {
    if (this.buf.length === 0) return;
    try {
      writeSync(this.fd, this.buf.join("\n") + "\n");
    } catch (e) {
      // A full disk or a file that takes no writes (/dev/full, /proc/version): bad output, not a crash.
      throw new UsageError(`--trace: cannot write '${this.path}': ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    this.buf = [];
    this.size = 0;
  }

  close(): void {
    this.flush();
    closeSync(this.fd);
  }
}
