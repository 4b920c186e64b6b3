// The tests `pnpm mutate` (Stryker) runs against each mutant of packages/core/src/mmu and vm:
// the core and backend suites. The CLI's tests drive the built bundle, which a mutant of the
// sources does not change, and its brute-force explorations take minutes each.
//
// The backends' tests import `@tdpemu/core`, which normally resolves to the built `dist`: here
// it resolves to the core's sources, so that those tests run against each mutant too (the TDX
// and SEV tests are what exercise the guest's accept, the local retry of private faults and
// the RMP fix-up of `vm/guest-access.ts`).
import { resolve } from "node:path";
import { defineConfig, mergeConfig, type ViteUserConfig } from "vitest/config";
import base from "./vitest.config.js";

const config: ViteUserConfig = mergeConfig(
  base,
  defineConfig({
    resolve: {
      alias: [
        {
          find: /^@tdpemu\/core\/testing$/,
          replacement: resolve(import.meta.dirname, "packages/core/src/testing.ts"),
        },
        {
          find: /^@tdpemu\/core$/,
          replacement: resolve(import.meta.dirname, "packages/core/src/index.ts"),
        },
      ],
    },
  }),
);
// Set, not merged: `mergeConfig` concatenates arrays, and the base's pattern takes in the CLI's
// tests, whose explorations (minutes each) ran for every mutant they covered without ever
// being able to kill one.
config.test!.include = ["packages/core/test/**/*.test.ts", "packages/backend-*/test/**/*.test.ts"];
// One module graph per worker, not one per test file: Stryker switches mutants at run time
// (a global it reads), so nothing needs evaluating again, and re-importing the core for every
// file of every mutant's run was most of the time (the 409 tests: 23 s in one worker against
// 40 s in two isolated ones). The tests keep no state between files that another relies on.
config.test!.isolate = false;
export default config;
