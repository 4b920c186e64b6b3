/**
 * Errors are recognised by kind, not by class: one thrown by another copy of the core (a plugin
 * with its own node_modules) is classified like one of ours, and anything else is not.
 */
import { describe, expect, it } from "vitest";
import {
  DeadlockError,
  GuestLivelock,
  KvmBug,
  LockdepError,
  OpError,
  RunInputError,
  buildRun,
  classifyRunError,
  defineErrorKind,
  errorKind,
  parseScenarioText,
} from "../src/testing.js";
import { bareBackend } from "./helpers.js";

/** What another copy of the core's KvmBug is: same kind, another class. */
class OtherCopysKvmBug extends Error {}
defineErrorKind(OtherCopysKvmBug, "KvmBug");

const scn = parseScenarioText(
  "name: t\nvm: { memory: 4MiB, gpaw: 48, vcpus: 1 }\nbackend: plain\nvcpus: [[]]\n",
  "t.yaml",
);

describe("error kinds", () => {
  it("a KvmBug from another copy is not an instance of ours, but is one by kind", () => {
    const e = new OtherCopysKvmBug("from a plugin");
    expect(e instanceof KvmBug).toBe(false);
    expect(KvmBug.is(e)).toBe(true);
    expect(e.name).toBe("KvmBug");
    const built = buildRun(scn, { backend: bareBackend() });
    expect(classifyRunError(e, scn, built)).toEqual([
      { check: "kvm-bug", message: "from a plugin", step: built.clock.step },
    ]);
  });

  it("each class answers for its own kind only, and plain errors and non-errors have none", () => {
    const errors = [
      new KvmBug("a"),
      new GuestLivelock("b"),
      new DeadlockError("c"),
      new LockdepError("d"),
      new OpError("e"),
      new RunInputError("f"),
    ];
    expect(errors.map((e) => errorKind(e))).toEqual([
      "KvmBug",
      "GuestLivelock",
      "DeadlockError",
      "LockdepError",
      "OpError",
      "RunInputError",
    ]);
    expect(errors.map((e) => e.name)).toEqual([
      "KvmBug",
      "GuestLivelock",
      "DeadlockError",
      "LockdepError",
      "OpError",
      "RunInputError",
    ]);
    expect(errors.filter((e) => KvmBug.is(e))).toEqual([errors[0]]);
    expect(errors.filter((e) => OpError.is(e))).toEqual([errors[4]]);
    for (const x of [new Error("x"), "KvmBug", null, undefined, { name: "KvmBug" }])
      expect(errorKind(x)).toBeUndefined();
  });

  it("an error of no kind is left to propagate (an emulator bug, not a finding)", () => {
    const built = buildRun(scn, { backend: bareBackend() });
    expect(classifyRunError(new Error("oops"), scn, built)).toBeNull();
    expect(() => classifyRunError(new OpError("bad op"), scn, built)).toThrow(RunInputError);
  });
});
