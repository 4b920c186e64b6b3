/**
 * `--trace file.jsonl` (`--trace-format jsonl`, the default): every event as one JSON object per
 * line, SPTEs as 16-digit hex. Lines are gathered and written in large chunks (`ChunkFile`), so
 * tracing a million faults stays fast.
 *
 * A trace cut short (Ctrl-C, a kill) must say so: a reader must not take it for a whole run. Its
 * last line is then `{"type":"interrupted",...}`, which only a finished run's `close` cuts off.
 */
import { formatSpte, type TdpEvent } from "@tdpemu/core";
import { ChunkFile } from "./chunk-file.js";

export class TraceWriter {
  private readonly file: ChunkFile;
  count = 0;

  constructor(readonly path: string) {
    this.file = new ChunkFile(path, () => this.trailer());
    this.file.flush();
  }

  private trailer(): string {
    const reason = "the command ended before the run did";
    return JSON.stringify({ type: "interrupted", events: this.count, reason }) + "\n";
  }

  write = (e: TdpEvent): void => {
    let line: string;
    if (e.type === "spte") {
      const { oldLo, oldHi, newLo, newHi, ...rest } = e;
      const old = formatSpte(oldLo, oldHi);
      line = JSON.stringify({ ...rest, old, new: formatSpte(newLo, newHi) });
    } else {
      line = JSON.stringify(e);
    }
    this.count++;
    this.file.append(line + "\n");
  };

  close(): void {
    this.file.close("");
  }
}
