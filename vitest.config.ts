import { defineConfig } from "vitest/config";

export default defineConfig({
  // vite 8's oxc transform emits decorator metadata; set it explicitly so that test files
  // outside a tsconfig "include" get it too (toolchain.md, pitfall 1).
  oxc: { decorator: { legacy: true, emitDecoratorMetadata: true } },
  test: {
    include: ["packages/*/test/**/*.test.{ts,tsx}"],
    setupFiles: ["packages/core/test/setup.ts"],
    testTimeout: 60_000,
  },
});
