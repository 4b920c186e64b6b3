/**
 * Where `--report` writes: checked before the command does its work (a search can take hours,
 * and a bad path should not be found at its end), and written whole or not at all (into a
 * temporary file beside it, renamed over it), so that no half-written page is ever left.
 */
import { accessSync, constants, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { UsageError } from "../usage-error.js";

const EXPECTED = "expected a file path such as race.html in a folder that exists and is writable";

function why(e: unknown): string {
  return (e as NodeJS.ErrnoException).code ?? (e as Error).message;
}

/** Throws a UsageError when `--report <path>` cannot be written. */
export function checkReportPath(cmd: string, path: string): void {
  const at = `${cmd}: --report: '${path}'`;
  if (path === "") throw new UsageError(`${cmd}: --report: an empty path; ${EXPECTED}`);
  const existing = statOrNull(path);
  if (existing?.isDirectory()) throw new UsageError(`${at} is a folder; ${EXPECTED}`);
  const folder = dirname(resolve(path));
  const dir = statOrNull(folder);
  if (dir === null) throw new UsageError(`${at}: folder '${folder}' does not exist; ${EXPECTED}`);
  if (!dir.isDirectory()) throw new UsageError(`${at}: '${folder}' is not a folder; ${EXPECTED}`);
  try {
    accessSync(folder, constants.W_OK);
    if (existing !== null) accessSync(path, constants.W_OK);
  } catch (e) {
    throw new UsageError(`${at}: cannot write there (${why(e)}); ${EXPECTED}`);
  }
}

function statOrNull(path: string) {
  try {
    return statSync(path);
  } catch {
    return null;
  }
}

/**
 * Writes the page, whole; a UsageError if that fails after all (the folder went away, a full
 * disk).
 */
export function writeReportFile(cmd: string, path: string, text: string): void {
  const tmp = join(dirname(resolve(path)), `.${basename(path)}.${process.pid}.tmp`);
  try {
    writeFileSync(tmp, text);
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new UsageError(`${cmd}: --report: cannot write '${path}' (${why(e)}); ${EXPECTED}`);
  }
}
