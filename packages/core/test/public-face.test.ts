/**
 * The core's public face (`src/index.ts`) holds what the command, the backend SDK and programs
 * that run scenarios use; the MMU's internals are reached by tests through `@tdpemu/core/testing`.
 */
import { describe, expect, it } from "vitest";
import * as core from "../src/index.js";
import * as testing from "../src/testing.js";

const INTERNALS = [
  "PtPool",
  "U32_PER_TABLE",
  "stepTask",
  "TdpMmu",
  "TdpIter",
  "RwLock",
  "WaitTracker",
  "zapLeafs",
  "FootprintAudit",
  "ScenarioFormat",
  "explore",
];

describe("the core's public face", () => {
  it("leaves the MMU's internals out", () => {
    for (const name of INTERNALS) expect(Object.hasOwn(core, name), name).toBe(false);
  });

  it("the testing entry has every public name and the internals", () => {
    for (const name of Object.keys(core)) expect(Object.hasOwn(testing, name), name).toBe(true);
    for (const name of INTERNALS) expect(Object.hasOwn(testing, name), name).toBe(true);
  });

  it("still offers what a program needs to run, explore and check a scenario", () => {
    for (const name of [
      "loadScenario",
      "runScenario",
      "exploreScenario",
      "BackendRegistry",
      "scenarioJsonSchema",
      "decodeSpte",
      "KvmBug",
    ]) {
      expect(Object.hasOwn(core, name), name).toBe(true);
    }
  });
});
