/**
 * Inputs for `tdpemu fuzz`, from a seed: random valid workloads (a scenario any backend takes),
 * malformed files made by breaking a valid one, and command lines that misuse the CLI. The same
 * seed gives the same inputs on every machine (`Prng`).
 */
import { Prng } from "@tdpemu/core";

const MiB = 2 ** 20;

function pick<T>(r: Prng, xs: readonly T[]): T {
  return xs[r.below(xs.length)]!;
}

const hex = (n: number) => `0x${n.toString(16)}`;

/**
 * A valid scenario on `backend`: a VM of 4 to 16 MiB, one to three vCPUs of guest ops and a host
 * program of host ops, on GFNs inside the VM. Ops a backend refuses for its own reasons (a
 * second populate, dirty logging of private memory) may end the run with exit 2: that is an
 * answer, not a crash.
 */
export function randomWorkload(r: Prng, backend: string): string {
  const memory = pick(r, [4, 8, 16]) * MiB;
  const pages = memory / 4096;
  const vcpus = 1 + r.below(3);
  const gpa = (count = 1) => hex(r.below(pages - count + 1) * 4096);
  const gpa2m = () => hex(r.below(memory / (2 * MiB)) * 2 * MiB);
  const guestOp = () => {
    switch (r.below(4)) {
      case 0: {
        const count = 1 + r.below(8);
        return `{ op: access, gpa: ${gpa(count)}, count: ${count}, write: ${r.below(2) === 0} }`;
      }
      case 1: return `{ op: access, gpa: ${gpa()}, shared: true, write: true }`;
      case 2: {
        // A 2 MiB accept now and then (TDG.MEM.PAGE.ACCEPT at level 1, a 2M PVALIDATE).
        if (r.below(4) === 0) return `{ op: accept, gpa: ${gpa2m()}, size: 2MiB }`;
        const count = 1 + r.below(4);
        return `{ op: accept, gpa: ${gpa(count)}, count: ${count} }`;
      }
      default: return `{ op: convert, gpa: ${gpa2m()}, size: 2MiB, to: ${pick(r, ["shared", "private"])} }`;
    }
  };
  const hostOp = () => {
    switch (r.below(5)) {
      case 0: return `{ op: zap, gpa: ${gpa2m()}, size: 2MiB }`;
      case 1: return `{ op: age, gpa: ${gpa2m()}, size: 2MiB }`;
      case 2: return `{ op: convert, gpa: ${gpa2m()}, size: 2MiB, to: ${pick(r, ["shared", "private"])} }`;
      case 3: return `{ op: split, gpa: ${gpa2m()}, size: 2MiB }`;
      default: return `{ op: recover, gpa: ${gpa2m()}, size: 2MiB }`;
    }
  };
  const lines = [
    `name: fuzz-${backend}`,
    `vm: { memory: ${memory / MiB}MiB, vcpus: ${vcpus}, hugepages: ${pick(r, ["false", "2MiB"])} }`,
    `backend: ${backend}`,
    `schedule: { mode: random, seed: ${r.below(1000)}, interleave: ${r.below(2) === 0} }`,
    // TDX's 2 MiB private pages on or off (other backends ignore the switch).
    `options: { tdxHugePages: ${r.below(2) === 0} }`,
    "vcpus:",
  ];
  for (let v = 0; v < vcpus; v++) {
    const n = 1 + r.below(4);
    for (let i = 0; i < n; i++) lines.push(`${i === 0 ? "  - - " : "    - "}${guestOp()}`);
  }
  // As a VMM launches a confidential guest: pages populated, then the VM finalized, and only
  // then do the vCPUs run (they wait for finalize when the host program has one).
  const host: string[] = [];
  const populates = r.below(3);
  for (let i = 0; i < populates; i++) host.push(`{ op: populate, gpa: ${gpa()}, size: 4KiB }`);
  if (populates > 0) host.push("{ op: finalize }");
  for (let i = 0, n = r.below(4); i < n; i++) host.push(hostOp());
  if (host.length > 0) lines.push("host:", ...host.map((o) => `  - ${o}`));
  return lines.join("\n") + "\n";
}

/** Ways to break a file: each takes its text and returns a broken one. */
const BREAKERS: ((r: Prng, text: string) => string)[] = [
  (r, t) => t.slice(0, r.below(t.length)), // cut short
  (r, t) => { const i = r.below(t.length); return t.slice(0, i) + t.slice(i + 1 + r.below(20)); }, // a hole
  (r, t) => { const i = r.below(t.length); return t.slice(0, i) + pick(r, ["{", "}", "[", "]", ":", "-", "*", "&", "!", "%", "\"", "'", "#", "\t", "\u0000", "\u001b[31m", "\u2028", "\uffff"]) + t.slice(i); },
  (r, t) => t.replace(/\d+/, () => pick(r, ["-1", "0", "1e400", "NaN", "99999999999999999999", "0x", "1.5", "9007199254740993", "-0"])),
  (r, t) => t.replace(/: [^\n,}]+/, () => `: ${pick(r, ["null", "[]", "{}", "true", "~", "''", "*nope", "&a x", "!!binary AAAA", "[[[[[[[[[["])}`),
  (r, t) => t.replace(/\b(name|vm|vcpus|host|backend|schedule|op|gpa|size|memory|count|mode|seed)\b/, () => pick(r, ["nmae", "VM", "vcpu", "hosts", "backends", "", "op op", "ga", "szie"])),
  (_r, t) => t.replace(/\n/g, "\r\n").replace(/ /g, "\t"),
  (r, t) => t + pick(r, ["\nname: again\n", "\n---\nname: second\n", "\n  - stray\n", "\n? complex key\n: value\n", "\nx: &a [*a]\n"]),
  (r, t) => Array.from(t).map((c) => (r.below(40) === 0 ? String.fromCharCode(r.below(256)) : c)).join(""),
  (r, t) => t.replace(/backend: \w+/, () => `backend: ${pick(r, ["", "./nope.mjs", "/etc/passwd", "file:///dev/null", "data:text/javascript,export default 1", "tdx tdx", "../../x.js", "arm-cca"])}`),
];

/** `text` broken one to three times. */
export function malformed(r: Prng, text: string): string {
  let t = text;
  for (let i = 0, n = 1 + r.below(3); i < n; i++) t = pick(r, BREAKERS)(r, t);
  return t;
}

const COMMANDS = ["run", "explore", "explore-merge", "audit", "replay", "compare", "backends", "tui", "help", "bench", "schema", "nope", ""];
const OPTIONS = [
  "--json", "--seed", "--seed=-1", "--backend", "--plugin", "--host-memory", "--host-memory=3MiB", "--check", "--strategy", "--inject",
  "--max-schedules", "--preemption-bound", "--out", "--trace", "--steps", "--filter", "--max-input", "--allow-plugins", "--debug",
  "--strict-plugin", "--unsafe-non-atomic-set", "--shard", "--split-depth", "--", "-", "-x", "--no-such-option",
  "--trace-format", "--report", "--costs", "--trace-schedules",
];
const VALUES = [
  "", "0", "-1", "x", "1e9", "16TiB", "1KiB", "none", "freeze", "TDH.MEM.PAGE.AUG:1:OPERAND_BUSY",
  "A:B:C:D:E", "tdx", "plain", "nope", "/dev/null", "/dev/full", "scenarios/zap-refault.yaml",
  "0/2", "1/1", "chrome",
];

/**
 * A command line that misuses the CLI: a command, options in any order, values of every kind.
 * Commands that would start the terminal UI or the benchmarks, or write outside `dir`, are
 * steered: `tui` has no terminal here (it refuses), `bench` only lists with a filter that
 * matches nothing, and paths to write go into `dir`.
 */
export function misuse(r: Prng, dir: string): string[] {
  const cmd = pick(r, COMMANDS);
  // The benchmarks take minutes: only their option checks are fuzzed, with a filter that
  // matches no case last (a later --filter, or one after "--", would be the one taken).
  if (cmd === "bench") return ["bench", ...[pick(r, ["--json", "--quick", "--bogus", "x", "--plugin", "--child"])].filter(() => r.below(2) === 0), "--filter", "no-such-case"];
  const args = cmd === "" ? [] : [cmd];
  for (let i = 0, n = r.below(5); i < n; i++) {
    const o = pick(r, OPTIONS);
    args.push(o);
    if (r.below(2) === 0 && !o.includes("=")) {
      const v = pick(r, VALUES);
      const writes = o === "--out" || o === "--trace" || o === "--report";
      args.push(writes ? `${dir}/out-${r.below(100)}` : v);
    }
  }
  // An exploration of a real scenario may take hours: bounded, last (the last value is taken).
  if (cmd === "explore") args.push("--max-schedules", "20");
  if (cmd === "audit") args.push("--max-schedules", "20", "--trace-schedules", "20", "--walks", "1");
  return args;
}
