/** An `Io` that keeps what a command writes, for tests that call `main` in-process. */
import { expect } from "vitest";
import type { Io } from "../src/index.js";

export function captureIo(): Io & { outText: () => string; errText: () => string } {
  const out: string[] = [];
  const err: string[] = [];
  return {
    out: (t) => out.push(t),
    err: (t) => err.push(t),
    outText: () => out.join("\n"),
    errText: () => err.join("\n"),
  };
}

/**
 * Stderr without explore's progress lines, which it prints every 2 s: how many there are depends
 * on how loaded the machine is.
 */
export function withoutProgress(err: string): string {
  return err
    .split("\n")
    .filter(
      (l) => !/^explored [\d,]+ schedules, [\d,]+ steps, ([\d,]+\/s|on \d+ threads?)$/.test(l),
    )
    .join("\n");
}

/** Exit 2 and exactly one line on stderr, starting with "tdpemu: " and matching `re`. */
export function expectOneLine(r: { code: number; err: string }, re: RegExp): void {
  expect(r.err.split("\n")).toHaveLength(1);
  expect(r.err).toMatch(/^tdpemu: /);
  expect(r.err).toMatch(re);
  expect(r.code).toBe(2);
}
