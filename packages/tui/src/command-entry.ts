/**
 * The file a thread of this command starts from (`explore --jobs`, `compare`'s backends): the
 * command's own entry, which takes a worker's part when started as one.
 *
 * The bundle is `dist/tdpemu.mjs` and the chunks it loads lie beside it, so a bundled module
 * (whichever chunk holds it) finds the entry in its own directory. A compiled module finds
 * `dist/cli.js` beside it; run from the TypeScript sources (tests), the build's, if there is one.
 */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const BUNDLE_ENTRY = "tdpemu.mjs";

export function commandEntry(): string | null {
  const here = import.meta.url;
  const entry = here.endsWith(".mjs")
    ? new URL(`./${BUNDLE_ENTRY}`, here)
    : here.endsWith(".js")
      ? new URL("./cli.js", here)
      : new URL("../dist/cli.js", here);
  const path = fileURLToPath(entry);
  return existsSync(path) ? path : null;
}
