// Mutation testing of the MMU and VM layers (`pnpm mutate`; not part of CI: it runs the
// test suite once per mutant). The vitest runner runs only the tests that cover each mutant.
/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  testRunner: "vitest",
  vitest: { configFile: "vitest.mutate.config.ts" },
  plugins: ["@stryker-mutator/vitest-runner"],
  mutate: ["packages/core/src/mmu/**/*.ts", "packages/core/src/vm/**/*.ts"],
  coverageAnalysis: "perTest",
  concurrency: 2,
  timeoutMS: 60000,
  // The initial run instruments the core's sources for per-test coverage under the backends'
  // tests too (they import the sources here): about 4 minutes on a 2-CPU machine.
  dryRunTimeoutMinutes: 20,
  reporters: ["clear-text", "progress", "json"],
  jsonReporter: { fileName: "reports/mutation/mutation.json" },
  tempDirName: ".stryker-tmp",
  ignoreStatic: true,
};
