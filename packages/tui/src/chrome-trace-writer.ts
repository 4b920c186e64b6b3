/**
 * `--trace file.json --trace-format chrome`: the run in the Chrome Trace Event Format
 * (`chrome-trace-events.ts`), written as its JSON array form in large chunks (`ChunkFile`).
 *
 * A trace cut short ends with a trailer that closes every open op, adds a global instant
 * `interrupted` and closes the array, so the file is still valid JSON and says it is partial.
 * Written to a pipe there is no trailer: the array then lacks its `]`, which the format allows
 * (chrome://tracing and Perfetto read such a file) for programs that die while tracing.
 */
import type { TdpEvent } from "@tdpemu/core";
import { ChromeTraceEvents } from "./chrome-trace-events.js";
import type { ChromeEvent, ChromeTraceMeta } from "./chrome-trace-events.js";
import { ChunkFile } from "./chunk-file.js";

export class ChromeTraceWriter {
  private readonly file: ChunkFile;
  private readonly events: ChromeTraceEvents;
  /** What goes before the next record: nothing before the first. */
  private sep = "[\n";

  constructor(
    readonly path: string,
    meta: ChromeTraceMeta,
  ) {
    this.file = new ChunkFile(path, () => this.ending(this.events.closing(true)));
    this.events = new ChromeTraceEvents(this.record, meta);
    this.file.flush();
  }

  /** The events of the run seen so far. */
  get count(): number {
    return this.events.events;
  }

  write = (e: TdpEvent): void => {
    this.events.event(e);
  };

  close(): void {
    this.file.close(this.ending(this.events.closing(false)));
  }

  private readonly record = (r: ChromeEvent): void => {
    this.file.append(this.sep + JSON.stringify(r));
    this.sep = ",\n";
  };

  /** `recs` and the array's end, after the records written so far. */
  private ending(recs: ChromeEvent[]): string {
    return recs.map((r) => ",\n" + JSON.stringify(r)).join("") + "\n]\n";
  }
}
