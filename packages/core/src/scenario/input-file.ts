/**
 * Reading a scenario or schedule file with a bound: a file that is too large (a 50 MB scenario
 * took 183 s and 4.3 GB before V8 gave up) or never ends (`/dev/zero`) is refused after reading
 * one byte more than the limit, in one line. The default fits every real scenario by three orders
 * of magnitude; `--max-input` raises it.
 */
import { closeSync, openSync, readSync } from "node:fs";

export const DEFAULT_MAX_INPUT = 4 * 2 ** 20;

/** The limit for this process (the command sets it from `--max-input`). */
export const inputLimits = { maxBytes: DEFAULT_MAX_INPUT };

/** Why a file could not be read, in words (`no such file`, `permission denied`...). */
export function readFailure(e: unknown, what: string): string {
  const code = (e as NodeJS.ErrnoException).code;
  return code === "ENOENT"
    ? "no such file"
    : code === "EISDIR"
      ? `is a directory, not a ${what} file`
      : code === "EACCES"
        ? "permission denied"
        : (code ?? String((e as Error).message));
}

/**
 * The text of `path`, or `fail(why)` thrown: unreadable, or larger than the limit. Reads in
 * chunks, so a device or a pipe is bounded too.
 */
export function readInputFile(path: string, what: string, fail: (why: string) => Error): string {
  const max = inputLimits.maxBytes;
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (e) {
    throw fail(readFailure(e, what));
  }
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for (;;) {
      const buf = Buffer.allocUnsafe(Math.min(1 << 20, max + 1 - total));
      let n: number;
      try {
        n = readSync(fd, buf, 0, buf.length, null);
      } catch (e) {
        throw fail(readFailure(e, what));
      }
      if (n === 0) break;
      chunks.push(buf.subarray(0, n));
      total += n;
      if (total > max)
        throw fail(
          `larger than the ${formatLimit(max)} a ${what} file may have (raise it with --max-input <size>)`,
        );
    }
  } finally {
    closeSync(fd);
  }
  return Buffer.concat(chunks, total).toString("utf8");
}

function formatLimit(n: number): string {
  return n % 2 ** 20 === 0 ? `${n / 2 ** 20}MiB` : n % 1024 === 0 ? `${n / 1024}KiB` : `${n} bytes`;
}
