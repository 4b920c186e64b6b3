/**
 * The checker that chrome-trace.test.ts runs on tdpemu's traces catches what it is meant to:
 * each deliberately broken trace here is reported, and a sound one is not.
 */
import { describe, expect, it } from "vitest";
import { checkChromeTrace, traceEvents } from "./chrome-trace-check.js";

const meta = [
  { name: "thread_name", ph: "M", ts: 0, pid: 1, tid: 1, args: { name: "host" } },
  { name: "thread_name", ph: "M", ts: 0, pid: 1, tid: 2, args: { name: "vcpu0" } },
];

function x(name: string, ts: number, dur: number, tid = 2) {
  return { name, ph: "X", ts, dur, pid: 1, tid };
}

describe("the Chrome trace checker", () => {
  it("passes a sound trace and gives each slice its parent", () => {
    const r = checkChromeTrace([
      ...meta,
      { name: "access", ph: "B", ts: 0, pid: 1, tid: 2 },
      {
        name: "TDH.MEM.PAGE.AUG",
        ph: "i",
        s: "t",
        ts: 1.5,
        pid: 1,
        tid: 2,
        args: { status: "SUCCESS" },
      },
      { name: "access", ph: "E", ts: 10, pid: 1, tid: 2 },
      x("fault fixed", 1, 3),
      x("fault fixed", 4, 6),
      { name: "mapped", ph: "C", ts: 3.5, pid: 1, tid: 1, args: { "4K": 1 } },
    ]);
    expect(r.problems).toEqual([]);
    const faults = r.slices.filter((s) => s.name === "fault fixed");
    expect(faults.map((f) => f.parent?.name)).toEqual(["access", "access"]);
  });

  it("reports slices that overlap without nesting", () => {
    const r = checkChromeTrace([...meta, x("op", 0, 10), x("fault", 5, 10)]);
    expect(r.problems).toEqual(["1:2: fault [5, 15] overlaps op [0, 10]"]);
  });

  it("reports an X that overlaps a B/E slice, and one that starts in a sibling", () => {
    const overB = checkChromeTrace([
      ...meta,
      { name: "op", ph: "B", ts: 0, pid: 1, tid: 2 },
      { name: "op", ph: "E", ts: 5, pid: 1, tid: 2 },
      x("fault", 4, 2),
    ]);
    expect(overB.problems).toHaveLength(1);
    const siblings = checkChromeTrace([...meta, x("a", 0, 5), x("b", 5, 5), x("c", 9, 2)]);
    expect(siblings.problems).toEqual(["1:2: c [9, 11] overlaps b [5, 10]"]);
  });

  it("reports missing fields: dur on X, s on an instant, args on a counter, a tid or a ts", () => {
    const r = checkChromeTrace([
      ...meta,
      { name: "f", ph: "X", ts: 0, pid: 1, tid: 2 },
      { name: "call", ph: "i", ts: 1, pid: 1, tid: 2 },
      { name: "pages", ph: "C", ts: 1, pid: 1, tid: 1 },
      { name: "op", ph: "B", ts: 1, pid: 1 },
      { name: "op", ph: "E", pid: 1, tid: 2 },
      { ph: "i", s: "t", ts: 1, pid: 1, tid: 2 },
    ]);
    expect(r.problems).toEqual([
      "event 2: X without dur",
      "event 3: instant without scope s",
      "event 4: counter without args",
      "event 5: no tid",
      "event 6: no ts",
      "event 7: no name",
    ]);
  });

  it("reports a thread with no thread_name", () => {
    const r = checkChromeTrace([...meta, x("fault", 0, 1, 7)]);
    expect(r.problems).toEqual(["event 2 (fault): tid 1:7 has no thread_name"]);
  });

  it("reports time going back on a track, an E with no B, and an E that closes another B", () => {
    const r = checkChromeTrace([
      ...meta,
      { name: "a", ph: "B", ts: 5, pid: 1, tid: 2 },
      { name: "b", ph: "i", s: "t", ts: 4, pid: 1, tid: 2 },
      { name: "z", ph: "E", ts: 6, pid: 1, tid: 2 },
      { name: "y", ph: "E", ts: 7, pid: 1, tid: 1 },
    ]);
    expect(r.problems).toEqual([
      "event 3 (b): ts 4 goes back on 1:2",
      "event 4 (z): closes B of a on 1:2",
      "event 5 (y): E with no B open on 1:1",
    ]);
  });

  it("reads both forms of the format", () => {
    expect(traceEvents([x("a", 0, 1)])).toHaveLength(1);
    expect(traceEvents({ traceEvents: [x("a", 0, 1)] })).toHaveLength(1);
    expect(() => traceEvents({ events: [] })).toThrow(/not a trace/);
  });
});
