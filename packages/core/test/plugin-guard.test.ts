/**
 * The guard around a plugin backend: a throw that is not one of tdpemu's errors becomes a
 * PluginError naming the plugin and the hook (a KvmBug stays a KvmBug), a step machine a hook
 * returns answers the same way, and strict mode names a hook that returns a bad value.
 */
import { describe, expect, it } from "vitest";
import {
  KvmBug,
  PluginError,
  checkPluginBackend,
  emptyBackendStats,
  guardPlugin,
  type Backend,
  type StepMachine,
} from "../src/testing.js";

const info = { name: "p", origin: "/x/p.mjs", strict: false };

function backend(extra: Partial<Backend> & Record<string, unknown>): Backend {
  return {
    name: "p",
    description: "d",
    usesMirrorRoot: false,
    hasPrivateMemory: false,
    stats: () => emptyBackendStats(),
    ...extra,
  };
}

const vm = {} as never;

describe("guardPlugin", () => {
  it("names the plugin and the hook of a foreign throw, and keeps the thrown error as the cause", () => {
    const boom = new TypeError("nope");
    const g = guardPlugin(
      backend({
        flushTlb: () => {
          throw boom;
        },
      }),
      info,
    );
    let caught: unknown;
    try {
      g.flushTlb!(vm, 0);
    } catch (e) {
      caught = e;
    }
    expect(PluginError.is(caught)).toBe(true);
    expect((caught as Error).message).toBe(
      "plugin 'p' (/x/p.mjs): flushTlb() threw TypeError: nope",
    );
    expect((caught as Error).cause).toBe(boom);
  });

  it("strict: adoptExternalSpt must give a page handle or -1", () => {
    const strict = { ...info, strict: true };
    for (const ok of [-1, 0, 7])
      expect(
        guardPlugin(backend({ adoptExternalSpt: () => ok }), strict).adoptExternalSpt!(vm, 0, 2),
      ).toBe(ok);
    for (const bad of [-2, 1.5, undefined]) {
      expect(() =>
        guardPlugin(backend({ adoptExternalSpt: () => bad as never }), strict).adoptExternalSpt!(
          vm,
          0,
          2,
        ),
      ).toThrow(
        /: adoptExternalSpt\(\) returned .*; expected the handle of the secure table it already has, an integer ≥ 0, or -1 for none/,
      );
    }
  });

  it("lets tdpemu's own errors through: a KvmBug from a plugin is a finding", () => {
    const g = guardPlugin(
      backend({
        flushTlb: () => {
          throw new KvmBug("seen");
        },
      }),
      info,
    );
    expect(() => g.flushTlb!(vm, 0)).toThrow(KvmBug);
  });

  it("calls the hook with the backend as this, and reads fields through", () => {
    const b = backend({
      count: 0,
      flushTlb(this: { count: number }) {
        this.count++;
      },
    });
    const g = guardPlugin(b, info);
    g.flushTlb!(vm, 0);
    g.flushTlb!(vm, 1);
    expect((b as unknown as { count: number }).count).toBe(2);
    expect((g as unknown as { count: number }).count).toBe(2);
    expect(g.name).toBe("p");
  });

  it("guards the step machine a removal returns: its steps' throws and, strict, their results", () => {
    let n = 0;
    const m: StepMachine = {
      step: () =>
        ++n === 1
          ? -1
          : n === 2
            ? 7.5
            : (() => {
                throw new RangeError("late");
              })(),
      abort: () => {},
    };
    const loose = guardPlugin(backend({ removeExternalSpte: () => m }), info);
    const sm = loose.removeExternalSpte!(vm, 0, 1, 0) as StepMachine;
    expect(sm.step()).toBe(-1);
    expect(sm.step()).toBe(7.5);
    expect(() => sm.step()).toThrow(
      "plugin 'p' (/x/p.mjs): the step machine of removeExternalSpte(): step() threw RangeError: late",
    );
    n = 1;
    const strict = guardPlugin(backend({ removeExternalSpte: () => m }), { ...info, strict: true });
    expect(() => (strict.removeExternalSpte!(vm, 0, 1, 0) as StepMachine).step()).toThrow(
      /returned 7\.5 from step\(\); expected a result ≥ 0/,
    );
  });

  it("strict: each hook's return against its contract; loose: returned as is", () => {
    const b = backend({
      setExternalSpte: () => 1,
      maxMappingLevel: () => 4,
      classifyFault: () => "yes" as never,
      mapCell: () => "x",
      guestPage: () => 4,
    });
    const strict = guardPlugin(b, { ...info, strict: true });
    expect(() => strict.setExternalSpte!(vm, 0, 1, 0)).toThrow(
      "plugin 'p' (/x/p.mjs): setExternalSpte() returned 1; expected a status: 0, or a negative errno",
    );
    expect(() => strict.maxMappingLevel!(vm, 0, 0)).toThrow(
      /maxMappingLevel\(\) returned 4; expected a level/,
    );
    expect(() => strict.classifyFault!(vm, 0, true)).toThrow(
      /classifyFault\(\) returned "yes"; expected a boolean/,
    );
    expect(() => strict.mapCell!(vm, 0, 1)).toThrow(
      /mapCell\(\) returned "x"; expected null, or one of the map's classes/,
    );
    expect(() => strict.guestPage!(vm, 0, 1)).toThrow(
      /guestPage\(\) returned 4; expected GUEST_PAGE_ACCEPTED \(1\) and GUEST_PAGE_OWNED \(2\)/,
    );
    expect(guardPlugin(b, info).setExternalSpte!(vm, 0, 1, 0)).toBe(1);
    expect(
      guardPlugin(backend({ setExternalSpte: () => -16 }), { ...info, strict: true })
        .setExternalSpte!(vm, 0, 1, 0),
    ).toBe(-16);
  });
});

describe("checkPluginBackend", () => {
  it("a complete backend has no problems; each missing piece is one", () => {
    expect(checkPluginBackend(backend({}), "p")).toEqual([]);
    expect(checkPluginBackend(null, "p")).toEqual([
      "its registration resolved null, not a backend object",
    ]);
    const mirror = checkPluginBackend(
      backend({
        usesMirrorRoot: true,
        hasPrivateMemory: true,
        classifyFault: () => true,
        checkGuestAccess: () => 0,
      }),
      "p",
    );
    expect(mirror).toEqual([
      "it uses a mirror root but lacks linkExternalSpt, setExternalSpte, removeExternalSpte, freeExternalSpt (the core calls them on every private fault and zap)",
    ]);
  });

  it("host ops: a declaration needs runHostOp, a description and params of known kinds", () => {
    const ok = {
      mark: {
        description: "d",
        params: { gpa: { kind: "gpa" }, n: { kind: "count", optional: true } },
      },
    };
    expect(checkPluginBackend(backend({ hostOps: ok, runHostOp: () => 0 } as never), "p")).toEqual(
      [],
    );
    expect(checkPluginBackend(backend({ hostOps: ok } as never), "p")).toEqual([
      "it defines hostOps but no runHostOp to run them",
    ]);
    const bad = {
      mark: { description: "d", params: { op: { kind: "gpa" }, x: { kind: "colour" } } },
      "sp ace": { params: {} },
    };
    expect(checkPluginBackend(backend({ hostOps: bad, runHostOp: () => 0 } as never), "p")).toEqual(
      [
        "host op 'mark': a parameter may not be named 'op'",
        "host op 'mark', parameter 'x': kind \"colour\", expected one of gpa, size, count, number, string, boolean",
        "host op 'sp ace': a name of letters, digits, '_', '-' and '.' only",
        "host op 'sp ace' is {\"params\":{}}, expected { description, params }",
      ],
    );
  });
});
