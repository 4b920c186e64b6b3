/**
 * TDX's 2 MiB private pages in the UI: the walk ends at a level-2 mirror leaf with the S-EPT
 * state beside it, and the GPA map shows the page as private 2M+ ('P') or pending ('?').
 */
import { describe, expect, it } from "vitest";
import { parseScenarioText } from "@tdpemu/core";
import { Session } from "../src/session.js";
import { builtinRegistry } from "../src/registry.js";

function session(vcpu: string): Session {
  const scn = parseScenarioText(
    [
      "name: tdx-huge-ui",
      "vm: { memory: 8MiB, vcpus: 1, hugepages: 2MiB }",
      "backend: tdx",
      "options: { tdxHugePages: true }",
      "vcpus:",
      `  - - ${vcpu}`,
    ].join("\n"),
    "tdx-huge-ui.yaml",
  );
  const s = new Session(scn, builtinRegistry(), "tdx");
  s.runToEnd();
  s.walkGpa = 0x201000;
  return s;
}

describe("the UI with TDX huge pages", () => {
  it("an accepted 2 MiB page: a level-2 leaf, MAPPED in the S-EPT, and 'P' cells over its 2 MiB", () => {
    const snap = session("{ op: accept, gpa: 0x200000, size: 2MiB }").snapshot(64);
    const mirror = snap.walk[0]!.rows;
    expect(mirror.at(-1)).toMatchObject({ level: 2, kind: "leaf", secure: "MAPPED" });
    const perCell = snap.map.cellBytes;
    const cells = snap.map.cells;
    for (let gpa = 0x200000; gpa < 0x400000; gpa += perCell) expect(cells[gpa / perCell]).toBe("P");
    expect(cells[0]).toBe(".");
  });

  it("a 2 MiB page touched before it is accepted: PENDING in the walk, '?' on the map", () => {
    const snap = session("{ op: access, gpa: 0x200000 }").snapshot(64);
    expect(snap.walk[0]!.rows.at(-1)).toMatchObject({ level: 2, kind: "leaf", secure: "PENDING" });
    expect(snap.map.cells[0x200000 / snap.map.cellBytes]).toBe("?");
  });
});
