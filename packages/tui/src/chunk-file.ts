/**
 * A trace file written in large chunks, each followed by a trailer that says the run was cut
 * short. A run is one synchronous computation, so no signal handler could run before the process
 * dies; instead every chunk is written together with the trailer, which the next chunk
 * overwrites and `close` replaces with the file's proper ending. Whenever the process dies, the
 * file ends with a trailer. A pipe or a device is written in order, with no trailer.
 */
import { closeSync, fstatSync, ftruncateSync, openSync, writeSync } from "node:fs";
import { UsageError } from "./usage-error.js";

const CHUNK = 1 << 20;

export class ChunkFile {
  private readonly fd: number;
  private buf: string[] = [];
  private size = 0;
  /** Bytes of records in the file: where the next chunk (and the trailer after it) goes. */
  private pos = 0;
  /** A regular file, which can be written at a position. */
  private readonly seekable: boolean;

  /** `trailer` is asked for its text at every chunk, so it may tell how far the run got. */
  constructor(
    readonly path: string,
    private readonly trailer: () => string,
  ) {
    this.fd = openSync(path, "w");
    this.seekable = fstatSync(this.fd).isFile();
  }

  append(text: string): void {
    this.buf.push(text);
    this.size += text.length;
    if (this.size >= CHUNK) this.flush();
  }

  /** Also called once at the start: a run killed before its first chunk still says so. */
  flush(): void {
    this.writeChunk(true);
  }

  /** The run ended: `ending` takes the trailer's place. */
  close(ending: string): void {
    this.buf.push(ending);
    this.writeChunk(false);
    if (this.seekable) ftruncateSync(this.fd, this.pos);
    closeSync(this.fd);
  }

  private writeChunk(withTrailer: boolean): void {
    const chunk = this.buf.join("");
    // One write, records and trailer together: a kill falls before it or after it.
    this.writeAt(withTrailer && this.seekable ? chunk + this.trailer() : chunk);
    this.pos += Buffer.byteLength(chunk);
    this.buf = [];
    this.size = 0;
  }

  private writeAt(text: string): void {
    if (text.length === 0) return;
    try {
      if (this.seekable) writeSync(this.fd, text, this.pos);
      else writeSync(this.fd, text);
    } catch (e) {
      // A full disk or a file that takes no writes (/dev/full, /proc/version): bad output, not
      // a crash.
      const why = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
      throw new UsageError(`--trace: cannot write '${this.path}': ${why}`);
    }
  }
}
