/**
 * This checkout's files, found from the running command's own file, wherever it runs from: the
 * bundle is packages/tui/dist/tdpemu.mjs, the compiled modules sit deeper in packages/tui/dist,
 * so the checkout's root is whichever directory above holds what is looked for.
 */
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The nearest directory above this module that holds `rel` (a relative path), or null. */
export function checkoutHolding(rel: string): string | null {
  for (let dir = dirname(fileURLToPath(import.meta.url)); ;) {
    if (existsSync(join(dir, rel))) return dir;
    const up = dirname(dir);
    if (up === dir) return null;
    dir = up;
  }
}

/** `rel` (a path from the checkout's root) as an absolute path; else the working directory's. */
export function repoFile(rel: string): string {
  const dir = checkoutHolding(rel);
  return dir === null ? resolve(rel) : join(dir, rel);
}
