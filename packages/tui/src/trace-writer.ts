/**
 * `--trace file.jsonl`: every event as one JSON object per line, SPTEs as 16-digit hex. Lines are
 * gathered in a buffer and written in large chunks, so tracing a million faults stays fast.
 *
 * A trace cut short (Ctrl-C, a kill) must say so: a reader must not take it for a whole run. A
 * run is one synchronous computation, so no signal handler could run before the process dies;
 * instead every chunk is written together with a last line `{"type":"interrupted",...}`, which
 * the next chunk overwrites and `close` cuts off. Whenever the process dies, the file ends with it.
 */
import { closeSync, fstatSync, ftruncateSync, openSync, writeSync } from "node:fs";
import { formatSpte, type TdpEvent } from "@tdpemu/core";
import { UsageError } from "./usage-error.js";

const CHUNK = 1 << 20;

export class TraceWriter {
  private fd: number;
  private buf: string[] = [];
  private size = 0;
  /** Bytes of events in the file: where the next chunk (and the trailer after it) goes. */
  private pos = 0;
  count = 0;

  /** A regular file, which can be written at a position; a pipe or a device is written in order, with no trailer. */
  private readonly seekable: boolean;

  constructor(readonly path: string) {
    this.fd = openSync(path, "w");
    this.seekable = fstatSync(this.fd).isFile();
    if (this.seekable) this.writeAt(this.trailer());
  }

  private trailer(): string {
    return JSON.stringify({ type: "interrupted", events: this.count, reason: "the command ended before the run did" }) + "\n";
  }

  private writeAt(text: string): number {
    try {
      return this.seekable ? writeSync(this.fd, text, this.pos) : writeSync(this.fd, text);
    } catch (e) {
      // A full disk or a file that takes no writes (/dev/full, /proc/version): bad output, not a crash.
      throw new UsageError(`--trace: cannot write '${this.path}': ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
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
    const chunk = this.buf.join("\n") + "\n";
    // One write, events and trailer together: a kill falls before it or after it.
    this.writeAt(this.seekable ? chunk + this.trailer() : chunk);
    this.pos += Buffer.byteLength(chunk);
    this.buf = [];
    this.size = 0;
  }

  close(): void {
    this.flush();
    // The run ended: the trailer goes.
    if (this.seekable) ftruncateSync(this.fd, this.pos);
    closeSync(this.fd);
  }
}
