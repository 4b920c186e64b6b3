/** An `Io` that keeps what a command writes, for tests that call `main` in-process. */
import type { Io } from "../src/index.js";

export function captureIo(): Io & { outText: () => string; errText: () => string } {
  const out: string[] = [];
  const err: string[] = [];
  return { out: (t) => out.push(t), err: (t) => err.push(t), outText: () => out.join("\n"), errText: () => err.join("\n") };
}
