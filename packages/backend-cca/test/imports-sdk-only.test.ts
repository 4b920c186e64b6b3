/**
 * The CCA backend is a plugin's proof: its sources import nothing but the backend SDK and each
 * other, not the core, another backend, tsyringe or Node.
 */
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const SRC = fileURLToPath(new URL("../src/", import.meta.url));

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) =>
    d.isDirectory()
      ? sources(join(dir, d.name))
      : d.name.endsWith(".ts")
        ? [join(dir, d.name)]
        : [],
  );
}

/** Every module specifier of a file: static imports and re-exports, dynamic imports. */
export function specifiers(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/\b(?:import|export)\b[^;"'`]*?\bfrom\s*["']([^"']+)["']/g))
    out.push(m[1]!);
  for (const m of text.matchAll(/\bimport\s*(?:\(\s*)?["']([^"']+)["']/g)) out.push(m[1]!);
  return out;
}

describe("packages/backend-cca", () => {
  const files = sources(SRC);

  it("has sources", () => {
    expect(files.length).toBeGreaterThan(5);
  });

  it("imports nothing but @tdpemu/backend-sdk and its own modules", () => {
    const foreign: string[] = [];
    for (const f of files) {
      for (const s of specifiers(readFileSync(f, "utf8"))) {
        if (s !== "@tdpemu/backend-sdk" && !s.startsWith("./") && !s.startsWith("../"))
          foreign.push(`${f.slice(SRC.length)}: ${s}`);
        if (s.startsWith("../") && !join(f, "..", s).startsWith(SRC))
          foreign.push(`${f.slice(SRC.length)}: ${s} (outside the package)`);
      }
    }
    expect(foreign).toEqual([]);
  });

  it("the check sees what it looks for", () => {
    expect(
      specifiers(
        `import { a } from "@tdpemu/core";\nexport * from "./x.js";\nimport "reflect-metadata";\nconst m = await import("tsyringe");`,
      ),
    ).toEqual(["@tdpemu/core", "./x.js", "reflect-metadata", "tsyringe"]);
  });

  it("declares no dependency but the SDK", () => {
    const pkg = JSON.parse(
      readFileSync(fileURLToPath(new URL("../package.json", import.meta.url)), "utf8"),
    ) as { dependencies: Record<string, string> };
    expect(Object.keys(pkg.dependencies)).toEqual(["@tdpemu/backend-sdk"]);
  });
});
