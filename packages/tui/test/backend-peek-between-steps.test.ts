/**
 * The backends' readers that record nothing (TDX's S-EPT and TD readers, CCA's RTT, realm and REC
 * readers, SEV's list of assigned RMP entries) hold themselves to running between steps as the core's do: a task's step that calls
 * one fails there, naming the task and the state.
 */
import { describe, expect, it } from "vitest";
import {
  UnrecordedAccess,
  buildRun,
  parseScenarioText,
  stepTask,
  type Op,
  type Task,
} from "@tdpemu/core/testing";
import { builtinRegistry } from "../src/registry.js";

const registry = builtinRegistry();

type Built = ReturnType<typeof buildRun>;
interface Tdx {
  module: {
    peekTds(): ReadonlyMap<number, { septRoot: number }>;
    sept: {
      get(pfn: number): unknown;
      peekLo(t: unknown, off: number): number;
      peekHi(t: unknown, off: number): number;
      peekNextUsed(t: unknown, i: number): number;
    };
  };
}
interface Cca {
  rmm: {
    rtts: { peekState(e: number): number; peekRipas(e: number): number };
    realms: Map<number, { peek(): unknown; peekState(): number }>;
    recs: Map<number, { peek(): unknown }>;
  };
}

const tdx = (b: Built) => b.vm.backend as unknown as Tdx;
/** The TD's S-EPT root page, found as an observer would: the read under test is the next one. */
const septRoot = (b: Built) =>
  b.clock.observe(() => {
    const m = tdx(b).module;
    return m.sept.get([...m.peekTds().values()][0]!.septRoot);
  });
const cca = (b: Built) => (b.vm.backend as unknown as Cca).rmm;
const rmp = (b: Built) =>
  (b.vm.backend as unknown as { rmp: { assigned(): Iterable<unknown> } }).rmp;

const READERS: [backend: string, what: RegExp, read: (b: Built) => unknown][] = [
  ["tdx", /the TDs/, (b) => tdx(b).module.peekTds()],
  ["tdx", /an S-EPT entry/, (b) => tdx(b).module.sept.peekLo(septRoot(b), 0)],
  ["tdx", /an S-EPT entry/, (b) => tdx(b).module.sept.peekHi(septRoot(b), 0)],
  ["tdx", /an S-EPT page's occupancy/, (b) => tdx(b).module.sept.peekNextUsed(septRoot(b), 0)],
  ["cca", /an RTT entry/, (b) => cca(b).rtts.peekState(0)],
  ["cca", /an RTT entry/, (b) => cca(b).rtts.peekRipas(0)],
  ["cca", /a realm descriptor/, (b) => [...cca(b).realms.values()][0]!.peek()],
  ["cca", /a realm descriptor/, (b) => [...cca(b).realms.values()][0]!.peekState()],
  ["sev", /the RMP's assigned entries/, (b) => [...rmp(b).assigned()]],
  ["cca", /a REC/, (b) => [...cca(b).recs.values()][0]!.peek()],
];

function run(backend: string): Built {
  const scn = parseScenarioText(
    `name: peek\nvm: { memory: 4MiB, gpaw: 48, vcpus: 1 }\nbackend: ${backend}\nvcpus: [[]]\n`,
    "peek.yaml",
  );
  return buildRun(scn, { backend: registry.source(backend), interleave: true });
}

describe("a backend's readers that record nothing, inside a step", () => {
  for (const [backend, what, read] of READERS) {
    it(`fail on ${backend} naming the task and the state (${what.source})`, () => {
      const b = run(backend);
      // Between steps (a check, a view) the reader answers.
      expect(() => read(b)).not.toThrow();
      function* op(): Op {
        yield;
        read(b);
      }
      const tasks: Task[] = [{ name: "sneaky", op: op(), done: false }];
      stepTask(tasks, 0, b.clock);
      let thrown: unknown;
      try {
        stepTask(tasks, 0, b.clock);
      } catch (e) {
        thrown = e;
      }
      expect(UnrecordedAccess.is(thrown)).toBe(true);
      expect((thrown as Error).message).toMatch(/^sneaky's step \d+ read /);
      expect((thrown as Error).message).toMatch(what);
      b.host.release();
    });
  }
});
