/**
 * A backend that does not record its own accesses is recorded whole by the core: each hook that
 * may change its state as a write of R_BACKEND, a hook that only reads as a read, and the
 * backend keeps being itself (`this`, fields it sets later, its own extra methods).
 */
import { describe, expect, it } from "vitest";
import {
  Clock,
  FootprintRecorder,
  KIND_READ,
  KIND_WRITE,
  R_BACKEND,
  recordedBackend,
  type BackendVm,
} from "../src/testing.js";
import { bareBackend } from "./helpers.js";

class Counting {
  readonly name = "counting";
  readonly description = "test";
  readonly usesMirrorRoot = false;
  readonly hasPrivateMemory = true;
  gmemCalls = 0;
  later?: string;
  init(): void {
    this.later = "set in init";
  }
  gmemPrepare(_vm: BackendVm, _gfn: number, _pfn: number): number {
    return ++this.gmemCalls;
  }
  maxMappingLevel(): 1 {
    return 1;
  }
  extra(): string {
    return `${this.name}:${this.gmemCalls}`;
  }
  stats() {
    return bareBackend().stats();
  }
}

describe("recordedBackend", () => {
  it("records a state-changing hook as a write of the backend and a reading hook as a read, and calls the backend as itself", () => {
    const clock = new Clock();
    const inner = new Counting();
    const b = recordedBackend(inner, clock) as unknown as Counting;
    const rec = new FootprintRecorder();
    clock.setRecorder(rec);
    b.init();
    expect(rec.kindOf(R_BACKEND)).toBe(0);
    expect(b.gmemPrepare(null as unknown as BackendVm, 1, 2)).toBe(1);
    expect(rec.kindOf(R_BACKEND) & KIND_WRITE).toBe(KIND_WRITE);
    rec.reset();
    expect(b.maxMappingLevel()).toBe(1);
    expect(rec.kindOf(R_BACKEND)).toBe(KIND_READ);
    // Fields the backend set later, and its own methods, read through the wrapper.
    expect(b.later).toBe("set in init");
    expect(b.extra()).toBe("counting:1");
    expect(inner.gmemCalls).toBe(1);
  });

  it("records a function it does not know as a write (the sound default), and the views and checks not at all", () => {
    const clock = new Clock();
    const b = recordedBackend(new Counting(), clock) as unknown as Counting;
    const rec = new FootprintRecorder();
    clock.setRecorder(rec);
    b.extra();
    expect(rec.kindOf(R_BACKEND) & KIND_WRITE).toBe(KIND_WRITE);
    rec.reset();
    b.stats();
    expect(rec.kindOf(R_BACKEND)).toBe(0);
  });

  it("leaves a backend that records its own accesses as it is", () => {
    const own = { ...bareBackend(), recordsOwnAccesses: true };
    expect(recordedBackend(own, new Clock())).toBe(own);
  });
});
