/**
 * The readers that record nothing (`peek*`: the checks', the views' and the audits' way in) are
 * for between steps. A task's step that calls one reads shared state its footprint does not
 * hold, and the run fails there, naming the task and the state, in every run that steps its
 * tasks one by one: not only where an audit happens to compare the right two states.
 */
import { describe, expect, it } from "vitest";
import {
  UnrecordedAccess,
  parseScenarioText,
  runScenario,
  stepTask,
  type BackendVm,
  type Op,
  type Task,
  type Vm,
} from "../src/testing.js";
import { FakeMirrorBackend, makeVm, run } from "./helpers.js";

const READERS: [what: RegExp, read: (vm: Vm) => unknown][] = [
  [/the memslots/, (vm) => vm.memslots.peekAll()],
  [/a memslot's flags/, (vm) => vm.memslots.all()[0]!.peekFlags()],
  [/whether a memslot is invalid/, (vm) => vm.memslots.all()[0]!.peekInvalid()],
  [/a memslot's dirty bitmap/, (vm) => vm.memslots.all()[0]!.peekDirtyBitmap()],
  [/the memory attributes/, (vm) => vm.attributes.peekPrivate(0)],
  [/the memory attributes/, (vm) => vm.attributes.peekRunEnd(0, 16)],
  [
    /which host pages back guest memory/,
    (vm) => vm.memslots.all()[0]!.shared.peekNextPopulated(0, 16),
  ],
  [/the root list/, (vm) => vm.mmu.peekRoots()],
  [/whether a root is invalid/, (vm) => vm.vcpus[0]!.root!.peekInvalid()],
  [/a root's refcount/, (vm) => vm.vcpus[0]!.root!.peekRefcount()],
  [/whether a root is freed/, (vm) => vm.vcpus[0]!.root!.peekFreed()],
  [/whether a root waits for its zap/, (vm) => vm.vcpus[0]!.root!.peekScheduledZap()],
  [/mmu_lock's words/, (vm) => vm.mmu.lock.peekState()],
  [/whether the VM is torn down/, (vm) => vm.peekDead()],
  [/a vCPU's roots/, (vm) => vm.vcpus[0]!.peekRoots()],
];

/** A task whose second step calls `read`. */
function sneaky(vm: Vm, read: (vm: Vm) => unknown): Task {
  function* op(): Op {
    yield;
    read(vm);
    yield;
  }
  return { name: "sneaky", op: op(), done: false };
}

describe("readers that record nothing, inside a step", () => {
  for (const [what, read] of READERS) {
    it(`fail naming the task and the state (${what.source})`, () => {
      const vm = makeVm({ backend: new FakeMirrorBackend() });
      run(vm.reloadRoots(vm.vcpus[0]!, false));
      // Between steps (a check, a view) the reader answers.
      expect(() => read(vm)).not.toThrow();
      const tasks = [sneaky(vm, read)];
      stepTask(tasks, 0, vm.clock);
      let thrown: unknown;
      try {
        stepTask(tasks, 0, vm.clock);
      } catch (e) {
        thrown = e;
      }
      expect(UnrecordedAccess.is(thrown)).toBe(true);
      expect((thrown as Error).message).toMatch(/^sneaky's step 2 read /);
      expect((thrown as Error).message).toMatch(what);
      // The step is over: what runs next (the run's error handling, a check) is no step.
      expect(vm.clock.inStep).toBe(false);
      expect(vm.clock.ctx).toBeNull();
      expect(() => read(vm)).not.toThrow();
    });
  }

  it("record nothing, so a step has its recording accessors instead", () => {
    const vm = makeVm({ backend: new FakeMirrorBackend() });
    function* op(): Op {
      yield;
      vm.memslots.all();
      vm.attributes.isPrivate(0);
      void vm.dead;
      yield;
    }
    const tasks: Task[] = [{ name: "honest", op: op(), done: false }];
    stepTask(tasks, 0, vm.clock);
    expect(() => stepTask(tasks, 0, vm.clock)).not.toThrow();
  });
});

describe("a raw call that reads around its recording", () => {
  it("is a footprint-audit violation of the run, not bad input", () => {
    // The untrusted host's call into the backend is one step of the host task: a read the
    // backend makes there through a reader that records nothing is the backend's slip.
    class Sloppy extends FakeMirrorBackend {
      rawCall(vm: BackendVm): { status: string; detail: string } {
        (vm as Vm).memslots.peekAll();
        return { status: "OK", detail: "" };
      }
    }
    const r = runScenario(
      parseScenarioText(
        `
name: sloppy
vm: { memory: 16MiB, gpaw: 48, vcpus: 1 }
schedule: { mode: round-robin, interleave: true }
vcpus:
  - - { op: access, gpa: 0x0, write: true }
host:
  - { op: raw, call: ANY }
`,
        "sloppy.yaml",
      ),
      { backend: new Sloppy() },
    );
    const v = r.report.invariants.violations;
    expect(v.map((x) => x.check)).toEqual(["footprint-audit"]);
    expect(v[0]!.message).toMatch(/^host's step \d+ read the memslots through a reader/);
  });
});
