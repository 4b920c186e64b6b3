/**
 * Shipped scenarios cut down for the audits (`footprint-audit.test.ts`, `commute-audit.test.ts`):
 * guest memory of at most 4 MiB, ops past it dropped and ranges clamped. The audits copy the
 * shared state around steps, and a smaller guest runs the same code.
 */
import { readdirSync } from "node:fs";
import { resolve } from "node:path";
import { RunInputError, type Scenario } from "@tdpemu/core/testing";

/** The shipped scenarios' file names (in `scenarios/`), sorted. */
export const shippedScenarioFiles: readonly string[] = readdirSync(resolve("scenarios"))
  .filter((f) => f.endsWith(".yaml"))
  .sort();

/** `f()`, or null if the backend refuses the scenario (an op it does not take: RunInputError). */
export function unlessRefused<T>(f: () => T): T | null {
  try {
    return f();
  } catch (e) {
    if (e instanceof RunInputError) return null;
    throw e;
  }
}

const MAX_MEMORY = 4 * 2 ** 20;
const PAGE = 4096;

/** The scenario with its guest memory at most MAX_MEMORY, ops cut to fit. */
export function shrunk(scn: Scenario): Scenario {
  if (scn.vm.memory <= MAX_MEMORY) return scn;
  const mem = MAX_MEMORY;
  const fit = <T extends { op: string }>(op: T): T | null => {
    const o = op as T & { gpa?: number; count?: number; size?: number };
    if (o.gpa === undefined) return op;
    if (o.gpa >= mem) return null;
    if (o.count !== undefined) return { ...o, count: Math.min(o.count, (mem - o.gpa) / PAGE) };
    if (o.size !== undefined) return { ...o, size: Math.min(o.size, mem - o.gpa) };
    return op;
  };
  return {
    ...scn,
    vm: { ...scn.vm, memory: mem },
    vcpus: scn.vcpus.map((ops) => ops.map(fit).filter((o) => o !== null)),
    host: scn.host.map(fit).filter((o) => o !== null),
  };
}
