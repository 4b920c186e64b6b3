/**
 * For tests: what a piece of code records when it runs as one of the explorer's steps, with a
 * recorder on the clock (and on everything that shares the clock's recorder).
 */
import type { Clock } from "./clock.js";
import { FootprintRecorder } from "./footprint.js";

export function recordedStep(clock: Clock, f: () => void): FootprintRecorder {
  const rec = new FootprintRecorder();
  clock.setRecorder(rec);
  try {
    f();
  } finally {
    clock.setRecorder(null);
  }
  return rec;
}
