/**
 * `tdpemu new-backend <name> [dir]`: a new backend's package, outside the workspace, made from
 * this checkout (`new-backend-files.ts`): its hooks stubbed with their contracts, example
 * scenarios, a test that runs them through this checkout's `tdpemu`, and a README with the two
 * commands that build and run it. The folder must not exist or be empty; nothing is written
 * unless everything can be.
 */
import { existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { checkoutHolding } from "../checkout.js";
import { builtinRegistry } from "../registry.js";
import { UsageError } from "../usage-error.js";
import type { Io } from "../io.js";
import { scaffoldFiles } from "./new-backend-files.js";

/** Where this checkout's SDK types and bundled command are, from the running command's own file. */
function checkoutPaths(): { sdkTypes: string; tdpemu: string } {
  const dir = checkoutHolding(join("packages", "backend-sdk", "package.json"));
  if (dir === null)
    throw new UsageError(
      "new-backend: this tdpemu is not in a checkout (no packages/backend-sdk above it): the new package needs the SDK's types",
    );
  const sdkTypes = join(dir, "packages", "backend-sdk", "dist", "index.d.ts");
  const tdpemu = join(dir, "packages", "tui", "dist", "tdpemu.mjs");
  for (const [what, p] of [
    ["the SDK's types", sdkTypes],
    ["the bundled tdpemu", tdpemu],
  ]) {
    if (!existsSync(p!))
      throw new UsageError(
        `new-backend: ${what} (${p}) are not built: run the build in ${dir} first`,
      );
  }
  return { sdkTypes, tdpemu };
}

export function newBackendCommand(args: string[], io: Io): number {
  let positionals: string[];
  try {
    ({ positionals } = parseArgs({ args, options: {}, allowPositionals: true }));
  } catch (e) {
    throw new UsageError(`new-backend: ${(e as Error).message.split("\n")[0]}`);
  }
  if (positionals.length < 1 || positionals.length > 2)
    throw new UsageError(
      `new-backend: expected a name and, optionally, a folder (tdpemu new-backend <name> [dir]), got ${positionals.length} argument(s)`,
    );
  const name = positionals[0]!;
  if (!/^[a-z][a-z0-9-]{0,30}$/.test(name)) {
    throw new UsageError(
      `new-backend: name '${name}': expected a lowercase letter, then up to 30 lowercase letters, digits or '-' (it names the backend in scenarios and the package)`,
    );
  }
  const taken = builtinRegistry()
    .list()
    .map((b) => b.name);
  if (taken.includes(name))
    throw new UsageError(
      `new-backend: '${name}' is a built-in backend's name (taken: ${taken.join(", ")})`,
    );
  const dir = resolve(positionals[1] ?? `${name}-backend`);
  if (existsSync(dir) && readdirSync(dir).length > 0)
    throw new UsageError(`new-backend: ${dir} exists and is not empty: give a new or empty folder`);
  const paths = checkoutPaths();
  const files = scaffoldFiles({ name, ...paths });
  for (const [rel, text] of Object.entries(files)) {
    const path = join(dir, rel);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, text);
  }
  io.out(`made the '${name}' backend in ${dir}:`);
  for (const rel of Object.keys(files)) io.out(`  ${rel}`);
  io.out("");
  io.out(`cd ${dir}`);
  io.out(
    `npm install && npm run build && node ${paths.tdpemu} run scenarios/${name}-demo.yaml --plugin dist/index.js`,
  );
  io.out("npm test");
  return 0;
}
