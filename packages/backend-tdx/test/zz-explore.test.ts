import { it } from "vitest";
import { parseScenarioText, runScenario } from "@tdpemu/core";
import { TdxBackend } from "../src/index.js";

it("explore", () => {
  const text = `
name: t
vm: { memory: 16MiB, gpaw: 48, vcpus: 1 }
backend: tdx
schedule: { mode: round-robin, interleave: false }
vcpus:
  - - { op: accept, gpa: 0x0, count: 2 }
    - { op: accept, gpa: 0x40000000 }
host:
  - { op: teardown }
`;
  const scn = parseScenarioText(text.replace("0x40000000", "0x200000"), "x.yaml");
  const calls: string[] = [];
  const r = runScenario(scn, { backend: new TdxBackend(), onEvent: (e) => { if (e.type === "call") calls.push(`${e.name} ${e.detail} ${e.status}`); } });
  console.log(calls.join("\n"));
  console.log(JSON.stringify(r.report, null, 1));
});
