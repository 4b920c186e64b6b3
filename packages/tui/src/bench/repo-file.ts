/**
 * Where the benchmarks find the repository's files (`scenarios/`), wherever `tdpemu bench` runs
 * from: the bundle sits in packages/tui/dist, the compiled modules in packages/tui/dist/bench and
 * dist/commands, so the file is looked for going up from this module before the working
 * directory.
 */
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** `rel` (a path relative to the repository's root) as an absolute path. */
export function repoFile(rel: string): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); ;) {
    const p = join(dir, rel);
    if (existsSync(p)) return p;
    const up = dirname(dir);
    if (up === dir) return resolve(rel);
    dir = up;
  }
}
