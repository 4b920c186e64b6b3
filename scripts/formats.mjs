// The files generated from the formats' one definition (packages/core/src/scenario/schema.ts and
// schedule-file.ts): `npm run formats` writes them after `npm run build`; a test
// (packages/tui/test/format-schema.test.ts) fails when a committed one is out of date.
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** The scenarios docs/scenario-format.md shows as examples. */
const EXAMPLES = [
  "scenarios/tdx-race-2m-4k.yaml",
  "scenarios/sev-vmpl.yaml",
  "scenarios/dirty-log.yaml",
];

/** Each generated file and the `tdpemu` arguments that print it. */
export const GENERATED = [
  { file: "schemas/scenario.schema.json", args: ["schema", "scenario"] },
  { file: "schemas/schedule.schema.json", args: ["schema", "schedule"] },
  { file: "docs/scenario-format.md", args: ["schema", "scenario", "--markdown", ...EXAMPLES] },
];

export function generate(args) {
  return execFileSync(process.execPath, [resolve(ROOT, "packages/tui/dist/tdpemu.mjs"), ...args], {
    cwd: ROOT,
    encoding: "utf8",
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  for (const g of GENERATED) {
    writeFileSync(resolve(ROOT, g.file), generate(g.args));
    console.log(`wrote ${g.file}`);
  }
}
