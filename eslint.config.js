// ESLint with typescript-eslint's type-checked rules (`pnpm lint`). Formatting is Prettier's
// (`pnpm format`), so no stylistic rule is on here.
import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["**/dist/**", "**/node_modules/**", "reports/**", ".stryker-tmp/**", "fuzz/**"] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: {
        projectService: {
          allowDefaultProject: ["*.ts", "*.js", "*.mjs", "scripts/*.mjs"],
          defaultProject: "tsconfig.base.json",
        },
        tsconfigRootDir: import.meta.dirname,
      },
    },
  },
  {
    rules: {
      // The compiler's convention (noUnusedParameters): a leading underscore marks a parameter a
      // hook's signature requires and this implementation does not use; a rest sibling drops a key.
      "@typescript-eslint/no-unused-vars": [
        "error",
        { argsIgnorePattern: "^_", varsIgnorePattern: "^_", ignoreRestSiblings: true },
      ],
      // A critical section or an op is a generator by contract (`withWriteLock(mmu, ctx, function* () {...})`),
      // whether or not this one has a point to yield at.
      "require-yield": "off",
      // The TDX module model ends a leaf by throwing a `SeamError` (seam/seam-result.ts), which the
      // SEAMCALL dispatcher catches: a status, not an Error, so that a failed check (OPERAND_BUSY
      // in every contended step the explorer runs) captures no stack.
      "@typescript-eslint/only-throw-error": [
        "error",
        { allow: [{ from: "file", name: "SeamError" }] },
      ],
    },
  },
  {
    // No generator closures in the packages' code: V8 gives each `function*` closure its own
    // prototype map, an old-generation object that points at the closure, so what it captured
    // (a VM, in the explorer one per schedule) is promoted instead of dying young. A section
    // passes an arrow that calls a module-level `function*` (see `TdpMmu.forEachRoot`).
    files: ["packages/*/src/**/*.ts"],
    rules: {
      "no-restricted-syntax": [
        "error",
        {
          selector: "FunctionExpression[generator=true]:not(MethodDefinition > FunctionExpression)",
          message:
            "a generator closure keeps what it captures alive through young collections: call a module-level function* from an arrow",
        },
        {
          selector: ":function FunctionDeclaration[generator=true]",
          message:
            "a nested generator function is a closure made per call: declare it at module level",
        },
      ],
    },
  },
  {
    files: ["**/*.js", "**/*.mjs"],
    extends: [tseslint.configs.disableTypeChecked],
    languageOptions: { globals: { process: "readonly", console: "readonly" } },
  },
);
