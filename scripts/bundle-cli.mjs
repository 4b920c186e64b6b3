/**
 * Builds the `tdpemu` binary, `packages/tui/dist/tdpemu.mjs`: the compiled packages (`tsc -b`
 * output) bundled, with esbuild's syntax minification, into that module and the chunks it loads
 * (below). Run by `pnpm build`.
 *
 * Why a bundle: V8 reads every binding a module imports through a cell, with a hole check, at
 * run time. The fault path is many small functions across the packages and reads dozens of
 * imported constants (SPTE bits, levels, result codes) per fault; it could not fold them, nor
 * turn a division by one into a shift. Bundled, esbuild inlines those constants where they are
 * used. Measured on the 1 GiB fault cases (`tdpemu bench --child fault-*`, both files): +15 %
 * faults/s on plain, +25 % on SEV, +6 % on TDX; the explorer +14 %. Identifiers are kept; `node --enable-source-maps` leads stack traces back to the
 * sources through the source map (or run the unbundled `packages/tui/dist/cli.js`).
 *
 * The npm packages the tui depends on itself (ink, react, tsyringe, reflect-metadata) stay
 * external: Node resolves them from `packages/tui`, one instance for every package. The rest
 * (yaml, which only core depends on) is bundled, with a `require` for its CommonJS.
 *
 * Split in chunks, all beside `tdpemu.mjs`: the terminal UI (ink, React and the views) is
 * imported only by `tui` and the `ui-frame` bench case, so it is a chunk of its own, loaded
 * then. Loading ink and React took 0.4 of the 0.6 s any command took to start, and every
 * worker thread of `explore --jobs` and `compare` paid it again. The code both reach (nearly
 * all of it) is one shared chunk, in which esbuild still inlines the constants.
 */
import { build } from "esbuild";
import { readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const tui = JSON.parse(readFileSync(resolve(root, "packages/tui/package.json"), "utf8"));
const external = Object.keys(tui.dependencies).filter((d) => !d.startsWith("@tdpemu/"));

const dist = resolve(root, "packages/tui/dist");
/** The files the last build wrote (`tdpemu-files.json`), kept through this one. */
const manifest = resolve(dist, "tdpemu-files.json");
let previous = [];
try {
  const list = JSON.parse(readFileSync(manifest, "utf8"));
  if (Array.isArray(list)) previous = list;
} catch {
  // No build before this one (or a damaged list): only this build's files are kept.
}

const result = await build({
  metafile: true,
  entryPoints: { tdpemu: resolve(dist, "cli.js") },
  outdir: dist,
  outExtension: { ".js": ".mjs" },
  chunkNames: "tdpemu-[name]-[hash]",
  splitting: true,
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  minifySyntax: true,
  sourcemap: "linked",
  // `ink` and `react` also have subpath imports (react/jsx-runtime).
  external: external.flatMap((d) => [d, `${d}/*`]),
  banner: {
    js: "import { createRequire as __tdpemuCreateRequire } from 'node:module'; const require = __tdpemuCreateRequire(import.meta.url);",
  },
  logLevel: "warning",
});

// A chunk's name holds its content's hash, so every build that changes the code adds chunks:
// the ones older than the last build go. The last build's stay: a `tdpemu` started before this
// build imports some of its own chunks only when it needs them (`tui`'s views, the ui-frame
// bench case, compare's thread), and would fail to find them.
const written = Object.keys(result.metafile.outputs).map((f) => basename(f));
const keep = new Set([...written, ...previous]);
for (const f of readdirSync(dist)) {
  if (/^tdpemu(-.*)?\.mjs(\.map)?$/.test(f) && !keep.has(f)) rmSync(resolve(dist, f));
}
writeFileSync(manifest, JSON.stringify(written) + "\n");
