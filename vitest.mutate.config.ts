// The tests `pnpm mutate` (Stryker) runs against each mutant of packages/core/src/mmu and vm:
// the core and backend suites. The CLI's tests drive the built bundle, which a mutant of the
// sources does not change, and its brute-force explorations take minutes each.
import { defineConfig, mergeConfig } from "vitest/config";
import base from "./vitest.config.js";

export default mergeConfig(base, defineConfig({
  test: { include: ["packages/core/test/**/*.test.ts", "packages/backend-*/test/**/*.test.ts"] },
}));
