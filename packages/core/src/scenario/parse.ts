/**
 * The scenario parser: YAML or JSON text → a checked `Scenario`. Every error names the file, the
 * line, the path inside the document (`vcpus[0][1].gpa`), what was expected and what was found;
 * unknown keys are errors too, so a typo never silently changes a run.
 */
import { readInputFile } from "./input-file.js";
import { LineCounter, isCollection, parseDocument, visit, type Document, type Node as YamlNode } from "yaml";
import {
  GUEST_OPS, HOST_OPS, STRATEGIES, type GuestOp, type HostOp, type HugePages, type InjectSpec, type Scenario,
  type ScheduleSpec, type VmSpec,
} from "./schema.js";
import { ErrorOfKind } from "../error-kind.js";
import type { HostOpParamKind, HostOpSchema } from "../backend/backend.js";

export class ScenarioError extends ErrorOfKind("ScenarioError") {
  constructor(
    readonly file: string,
    readonly path: string,
    readonly detail: string,
    readonly line?: number,
  ) {
    super(`${file}${line ? `:${line}` : ""}: ${path ? `${path}: ` : ""}${detail}`);
  }
}

const UNITS: Record<string, number> = { B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3, TiB: 1024 ** 4 };
const PAGE = 4096;

type Path = (string | number)[];

function pathStr(path: Path): string {
  let s = "";
  for (const p of path) s += typeof p === "number" ? `[${p}]` : s === "" ? p : `.${p}`;
  return s;
}

function show(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "number") return Number.isInteger(v) && v >= 4096 ? `0x${v.toString(16)}` : String(v);
  if (v === null || v === undefined) return "nothing";
  if (Array.isArray(v)) return "a list";
  if (typeof v === "object") return "a mapping";
  return String(v);
}

class Ctx {
  constructor(
    readonly file: string,
    readonly doc: Document | null,
    readonly lines: LineCounter | null,
  ) {}

  fail(path: Path, detail: string): never {
    let line: number | undefined;
    if (this.doc && this.lines) {
      // The deepest node that exists along the path gives the line.
      for (let n = path.length; n >= 0 && line === undefined; n--) {
        const node = (n === 0 ? this.doc.contents : this.doc.getIn(path.slice(0, n), true)) as YamlNode | undefined;
        const off = node && typeof node === "object" && "range" in node ? node.range?.[0] : undefined;
        if (off !== undefined) line = this.lines.linePos(off).line;
      }
    }
    throw new ScenarioError(this.file, pathStr(path), detail, line);
  }

  expect(path: Path, expected: string, got: unknown): never {
    return this.fail(path, `expected ${expected}, got ${show(got)}`);
  }

  /** The line of the node at `path`, if the document is known. */
  lineOf(path: Path): number | undefined {
    const node = this.doc?.getIn(path, true) as YamlNode | undefined;
    const off = node && typeof node === "object" && "range" in node ? node.range?.[0] : undefined;
    return off !== undefined && this.lines ? this.lines.linePos(off).line : undefined;
  }
}

/** A context for checks made after parsing, that report every failure at one known line. */
class LineCtx extends Ctx {
  constructor(file: string, private readonly line: number | undefined) {
    super(file, null, null);
  }

  override fail(path: Path, detail: string): never {
    throw new ScenarioError(this.file, pathStr(path), detail, this.line);
  }
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function checkKeys(c: Ctx, path: Path, obj: Record<string, unknown>, allowed: readonly string[]): void {
  for (const k of Object.keys(obj)) {
    if (!allowed.includes(k)) c.fail([...path, k], `unknown key (expected one of: ${allowed.join(", ")})`);
  }
}

/** A non-negative integer: a number, or a string in hex (`0x1000`) or decimal. */
function num(c: Ctx, path: Path, v: unknown, what = "a non-negative integer (decimal or 0x hex)"): number {
  let n: number | undefined;
  if (typeof v === "number") n = v;
  else if (typeof v === "string" && /^\s*(0x[0-9a-fA-F][0-9a-fA-F_]*|[0-9][0-9_]*)\s*$/.test(v)) n = Number(v.trim().replace(/_/g, ""));
  if (n === undefined || !Number.isSafeInteger(n) || n < 0) c.expect(path, what, v);
  return n;
}

/** A size: a number of bytes, hex, or a string with a unit (`4KiB`, `2MiB`, `1GiB`). */
function size(c: Ctx, path: Path, v: unknown): number {
  if (typeof v === "string") {
    const m = /^\s*([0-9]+)\s*(B|KiB|MiB|GiB|TiB)\s*$/.exec(v);
    if (m) {
      const n = Number(m[1]) * UNITS[m[2]!]!;
      if (!Number.isSafeInteger(n)) c.expect(path, "a size below 8 PiB", v);
      return n;
    }
  }
  return num(c, path, v, "a size such as 4KiB, 2MiB, 1GiB, or a number of bytes");
}

function bool(c: Ctx, path: Path, v: unknown, dflt: boolean): boolean {
  if (v === undefined) return dflt;
  if (typeof v !== "boolean") c.expect(path, "true or false", v);
  return v;
}

function oneOf<T extends string>(c: Ctx, path: Path, v: unknown, options: readonly T[]): T {
  if (typeof v !== "string" || !options.includes(v as T)) c.expect(path, `one of ${options.join(", ")}`, v);
  return v as T;
}

function parseVm(c: Ctx, v: unknown): VmSpec {
  const path: Path = ["vm"];
  if (!isObj(v)) c.expect(path, "a mapping with memory, gpaw, vcpus, hugepages", v);
  checkKeys(c, path, v, ["memory", "gpaw", "vcpus", "hugepages"]);
  if (v.memory === undefined) c.fail(path, "missing key 'memory' (the guest memory size, e.g. 1GiB)");
  const gpaw = v.gpaw === undefined ? 48 : num(c, [...path, "gpaw"], v.gpaw);
  if (gpaw !== 48 && gpaw !== 52) c.expect([...path, "gpaw"], "48 or 52", v.gpaw);
  const memory = size(c, [...path, "memory"], v.memory);
  const maxMem = 2 ** (gpaw - 1);
  if (memory === 0 || memory % PAGE !== 0) c.expect([...path, "memory"], "a positive multiple of 4KiB", v.memory);
  if (memory > maxMem) c.fail([...path, "memory"], `${show(memory)} bytes do not fit below the shared bit of a ${gpaw}-bit GPA space (at most ${show(maxMem)})`);
  const vcpus = v.vcpus === undefined ? 1 : num(c, [...path, "vcpus"], v.vcpus);
  if (vcpus < 1 || vcpus > 64) c.expect([...path, "vcpus"], "between 1 and 64 vCPUs", v.vcpus);
  let hugepages: HugePages;
  const h = v.hugepages;
  if (h === undefined || h === false) hugepages = false;
  else if (h === true || h === "2MiB") hugepages = "2MiB";
  else if (h === "1GiB") hugepages = "1GiB";
  else c.expect([...path, "hugepages"], "false, true, 2MiB or 1GiB", h);
  return { memory, gpaw: gpaw as 48 | 52, vcpus, hugepages };
}

function parseSchedule(c: Ctx, v: unknown): ScheduleSpec {
  const path: Path = ["schedule"];
  if (v === undefined) return { mode: "round-robin", seed: 0 };
  if (!isObj(v)) c.expect(path, "a mapping with mode and seed", v);
  checkKeys(c, path, v, ["mode", "seed", "file", "interleave"]);
  const mode = v.mode === undefined ? "round-robin" : oneOf(c, [...path, "mode"], v.mode, ["random", "round-robin", "replay"] as const);
  const seed = v.seed === undefined ? 0 : num(c, [...path, "seed"], v.seed);
  if (seed > 0xffffffff) c.expect([...path, "seed"], "a seed below 2^32", v.seed);
  const out: ScheduleSpec = { mode, seed };
  if (mode === "replay") {
    if (typeof v.file !== "string" || v.file === "") c.expect([...path, "file"], "the path of a schedule file (mode replay)", v.file);
    out.file = v.file;
  } else if (v.file !== undefined) {
    c.fail([...path, "file"], "only meaningful with mode: replay");
  }
  if (v.interleave !== undefined) out.interleave = bool(c, [...path, "interleave"], v.interleave, true);
  return out;
}

interface Range { gpa: number; size: number }

/** gpa and size of a range op; both default to the whole of guest memory. */
function range(c: Ctx, path: Path, o: Record<string, unknown>, vm: VmSpec, required: boolean): Range {
  if (required && o.gpa === undefined) c.fail(path, "missing key 'gpa'");
  const gpa = o.gpa === undefined ? 0 : num(c, [...path, "gpa"], o.gpa);
  if (gpa % PAGE !== 0) c.expect([...path, "gpa"], "a 4KiB-aligned guest physical address", o.gpa);
  if (gpa >= vm.memory) c.fail([...path, "gpa"], `${show(gpa)} is beyond the VM's memory (${show(vm.memory)} bytes)`);
  const sz = o.size === undefined ? (required ? PAGE : vm.memory - gpa) : size(c, [...path, "size"], o.size);
  if (sz === 0 || sz % PAGE !== 0) c.expect([...path, "size"], "a positive multiple of 4KiB", o.size);
  if (gpa + sz > vm.memory) c.fail([...path, "size"], `the range ${show(gpa)}+${show(sz)} goes beyond the VM's memory (${show(vm.memory)} bytes)`);
  return { gpa, size: sz };
}

/** gpa and count (pages of 4KiB) of a per-page guest op. */
function pages(c: Ctx, path: Path, o: Record<string, unknown>, vm: VmSpec, alignedGpa: boolean): { gpa: number; count: number } {
  if (o.gpa === undefined) c.fail(path, "missing key 'gpa'");
  const gpa = num(c, [...path, "gpa"], o.gpa);
  if (alignedGpa && gpa % PAGE !== 0) c.expect([...path, "gpa"], "a 4KiB-aligned guest physical address", o.gpa);
  if (gpa >= vm.memory) c.fail([...path, "gpa"], `${show(gpa)} is beyond the VM's memory (${show(vm.memory)} bytes)`);
  const count = o.count === undefined ? 1 : num(c, [...path, "count"], o.count);
  if (count < 1) c.expect([...path, "count"], "at least 1 page", o.count);
  const first = gpa - (gpa % PAGE);
  if (first + count * PAGE > vm.memory) {
    c.fail([...path, "count"], `${count} pages from ${show(first)} go beyond the VM's memory (${show(vm.memory)} bytes)`);
  }
  return { gpa, count };
}

function slotOf(c: Ctx, path: Path, o: Record<string, unknown>): number {
  const slot = o.slot === undefined ? 0 : num(c, [...path, "slot"], o.slot);
  if (slot !== 0) c.fail([...path, "slot"], `no memslot ${slot}: format v1 gives a VM one memslot, 0, covering all of its memory`);
  return slot;
}

/** `vmpl` of a guest op: the privilege level it runs at, 0 to 3 (0 unless given). */
function vmplOf(c: Ctx, path: Path, o: Record<string, unknown>): number {
  if (o.vmpl === undefined) return 0;
  const n = num(c, [...path, "vmpl"], o.vmpl);
  if (!Number.isInteger(n) || n < 0 || n > 3) c.expect([...path, "vmpl"], "a VMPL from 0 to 3", o.vmpl);
  return n;
}

/** gpa, count and size of a per-page op at 4KiB or 2MiB (`size`), from a `gpa` aligned to it. */
function sizedPages(c: Ctx, path: Path, v: Record<string, unknown>, vm: VmSpec): { gpa: number; count: number; size: number } {
  const sz = v.size === undefined ? PAGE : size(c, [...path, "size"], v.size);
  if (sz !== PAGE && sz !== 512 * PAGE) c.expect([...path, "size"], "4KiB or 2MiB", v.size);
  if (sz === PAGE) return { ...pages(c, path, v, vm, true), size: sz };
  if (v.gpa === undefined) c.fail(path, "missing key 'gpa'");
  const gpa = num(c, [...path, "gpa"], v.gpa);
  if (gpa % sz !== 0) c.expect([...path, "gpa"], "a 2MiB-aligned guest physical address (the size is 2MiB)", v.gpa);
  const count = v.count === undefined ? 1 : num(c, [...path, "count"], v.count);
  if (count < 1) c.expect([...path, "count"], "at least 1 page", v.count);
  if (gpa + count * sz > vm.memory) c.fail([...path, "count"], `${count} pages of 2MiB from ${show(gpa)} go beyond the VM's memory (${show(vm.memory)} bytes)`);
  return { gpa, count, size: sz };
}

function parseGuestOp(c: Ctx, path: Path, v: unknown, vm: VmSpec): GuestOp {
  if (!isObj(v)) c.expect(path, "an op mapping such as { op: access, gpa: 0x0 }", v);
  const op = oneOf(c, [...path, "op"], v.op, GUEST_OPS);
  switch (op) {
    case "access": {
      checkKeys(c, path, v, ["op", "gpa", "count", "write", "shared", "vmpl"]);
      const p = pages(c, path, v, vm, false);
      return { op, ...p, write: bool(c, [...path, "write"], v.write, false), shared: bool(c, [...path, "shared"], v.shared, false), vmpl: vmplOf(c, path, v) };
    }
    case "accept": {
      checkKeys(c, path, v, ["op", "gpa", "count", "size"]);
      // `size`: the page size the guest accepts at (TDG.MEM.PAGE.ACCEPT's level, PVALIDATE's
      // page size); `count` pages of it from `gpa`, which must be aligned to it. Always at VMPL0:
      // a guest above it validates through its SVSM (SVSM_CORE_PVALIDATE).
      return { op, ...sizedPages(c, path, v, vm) };
    }
    case "rmpadjust": {
      checkKeys(c, path, v, ["op", "gpa", "count", "size", "vmpl", "target", "perms", "vmsa"]);
      if (v.target === undefined) c.fail(path, "missing key 'target' (the VMPL whose permissions change, below the caller's)");
      const target = num(c, [...path, "target"], v.target);
      if (!Number.isInteger(target) || target < 0 || target > 3) c.expect([...path, "target"], "a VMPL from 0 to 3", v.target);
      const p = v.perms === undefined ? "" : v.perms;
      if (typeof p !== "string" || !/^[rwx]*$/.test(p)) c.expect([...path, "perms"], "permissions as letters r, w and x (execute, user and supervisor), such as rw, or \"\" for none", v.perms);
      const perms = (p.includes("r") ? 1 : 0) | (p.includes("w") ? 2 : 0) | (p.includes("x") ? 12 : 0);
      return { op, ...sizedPages(c, path, v, vm), vmpl: vmplOf(c, path, v), target, perms, vmsa: bool(c, [...path, "vmsa"], v.vmsa, false) };
    }
    case "convert": {
      checkKeys(c, path, v, ["op", "gpa", "size", "to"]);
      const r = range(c, path, v, vm, true);
      return { op, ...r, to: oneOf(c, [...path, "to"], v.to, ["private", "shared"] as const) };
    }
    case "psc": {
      checkKeys(c, path, v, ["op", "gpa", "size", "to", "pagesize"]);
      // `pagesize`: what the guest validates or gives up each page at (PVALIDATE's page size,
      // TDG.MEM.PAGE.ACCEPT's level); the range must be made of whole pages of it.
      const ps = v.pagesize === undefined ? PAGE : size(c, [...path, "pagesize"], v.pagesize);
      if (ps !== PAGE && ps !== 512 * PAGE) c.expect([...path, "pagesize"], "4KiB or 2MiB", v.pagesize);
      const r = range(c, path, v, vm, true);
      if (r.gpa % ps !== 0) c.expect([...path, "gpa"], `an address aligned to the page size (${show(ps)})`, v.gpa);
      if (r.size % ps !== 0) c.expect([...path, "size"], `a multiple of the page size (${show(ps)})`, v.size);
      return { op, ...r, to: oneOf(c, [...path, "to"], v.to, ["private", "shared"] as const), pageSize: ps };
    }
  }
}

/** A plugin's host op is named `<backend>.<op>`; built-in ops have no dot. */
const PLUGIN_OP = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_.-]+$/;

function parseHostOp(c: Ctx, path: Path, v: unknown, vm: VmSpec): HostOp {
  if (!isObj(v)) c.expect(path, "an op mapping such as { op: zap, gpa: 0x0, size: 2MiB }", v);
  if (typeof v.op === "string" && PLUGIN_OP.test(v.op)) {
    const { op: name, ...args } = v;
    return { op: "plugin", name: name as string, args, at: pathStr(path), line: c.lineOf(path) };
  }
  if (typeof v.op !== "string" || !(HOST_OPS as readonly string[]).includes(v.op)) {
    c.expect([...path, "op"], `one of ${HOST_OPS.join(", ")}, or a plugin's op named <backend>.<op>`, v.op);
  }
  const op = v.op as (typeof HOST_OPS)[number];
  switch (op) {
    case "populate":
      checkKeys(c, path, v, ["op", "gpa", "size", "measure"]);
      return { op, ...range(c, path, v, vm, true), measure: bool(c, [...path, "measure"], v.measure, true) };
    case "zap":
    case "age":
    case "split":
    case "recover":
      checkKeys(c, path, v, ["op", "gpa", "size"]);
      return { op, ...range(c, path, v, vm, op === "zap") };
    case "convert": {
      checkKeys(c, path, v, ["op", "gpa", "size", "to"]);
      const r = range(c, path, v, vm, true);
      return { op, ...r, to: oneOf(c, [...path, "to"], v.to, ["private", "shared"] as const) };
    }
    case "dirty-log":
      checkKeys(c, path, v, ["op", "action", "slot"]);
      return { op, action: oneOf(c, [...path, "action"], v.action, ["start", "collect", "stop"] as const), slot: slotOf(c, path, v) };
    case "delete-memslot":
      checkKeys(c, path, v, ["op", "slot"]);
      return { op, slot: slotOf(c, path, v) };
    case "finalize":
    case "teardown":
    case "terminate":
      checkKeys(c, path, v, ["op"]);
      return { op };
    case "raw": {
      // An untrusted host's raw call: operands are passed as given (the point is to break rules).
      checkKeys(c, path, v, ["op", "call", "gpa", "level", "page", "vcpu", "field", "value", "mask"]);
      if (typeof v.call !== "string" || v.call === "") c.expect([...path, "call"], "the architectural name of a call, e.g. TDH.MEM.PAGE.REMOVE", v.call);
      const out: HostOp = { op, call: v.call as string };
      if (v.gpa !== undefined) out.gpa = num(c, [...path, "gpa"], v.gpa);
      if (v.level !== undefined) out.level = num(c, [...path, "level"], v.level);
      if (v.page !== undefined) out.page = v.page === "fresh" || v.page === "mapped" ? v.page : num(c, [...path, "page"], v.page, "a host PFN, fresh or mapped");
      if (v.field !== undefined) {
        if (typeof v.field !== "string" || v.field === "") c.expect([...path, "field"], "a metadata field's name (TSC_OFFSET, POSTED_INTR_NV, ...) or its id in hex", v.field);
        out.field = v.field as string;
      }
      for (const k of ["value", "mask"] as const) {
        if (v[k] === undefined) continue;
        const x = v[k];
        if (typeof x === "number" && Number.isSafeInteger(x) && x >= 0) out[k] = String(x);
        else if (typeof x === "string" && /^0x[0-9a-f]{1,16}$/i.test(x)) out[k] = x;
        else c.expect([...path, k], "a 64-bit value: a number, or hex such as 0xffffffffffffffff", x);
      }
      if (v.vcpu !== undefined) {
        out.vcpu = num(c, [...path, "vcpu"], v.vcpu, "a vCPU index");
        if (out.vcpu >= vm.vcpus) c.fail([...path, "vcpu"], `vCPU ${out.vcpu} does not exist: the VM has ${vm.vcpus} (0 to ${vm.vcpus - 1})`);
      }
      return out;
    }
  }
}

function parseOptions(c: Ctx, v: unknown): Scenario["options"] {
  if (v === undefined) return { strategy: "freeze", tdxHugePages: false };
  if (!isObj(v)) c.expect(["options"], "a mapping such as { strategy: freeze }", v);
  checkKeys(c, ["options"], v, ["strategy", "tdxHugePages"]);
  return {
    strategy: v.strategy === undefined ? "freeze" : oneOf(c, ["options", "strategy"], v.strategy, STRATEGIES),
    tdxHugePages: bool(c, ["options", "tdxHugePages"], v.tdxHugePages, false),
  };
}

/** A list of faults to inject, checked as a scenario's `inject` is (schedule files record one). */
export function parseInjectList(file: string, v: unknown): InjectSpec[] {
  return parseInject(new Ctx(file, null, null), v);
}

function parseInject(c: Ctx, v: unknown): InjectSpec[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) c.expect(["inject"], "a list such as [{ call: TDH.MEM.PAGE.AUG, nth: 1, status: OPERAND_BUSY }]", v);
  return v.map((f, i) => {
    const path: Path = ["inject", i];
    if (!isObj(f)) c.expect(path, "a mapping with call, nth, status", f);
    checkKeys(c, path, f, ["call", "nth", "status", "times", "backend"]);
    if (f.backend !== undefined && (typeof f.backend !== "string" || f.backend === "")) c.expect([...path, "backend"], "a backend name", f.backend);
    if (typeof f.call !== "string" || f.call === "") c.expect([...path, "call"], "the architectural name of a call", f.call);
    if (typeof f.status !== "string" || f.status === "") c.expect([...path, "status"], "a status name such as OPERAND_BUSY", f.status);
    const nth = f.nth === undefined ? 1 : num(c, [...path, "nth"], f.nth);
    if (nth < 1) c.expect([...path, "nth"], "1 or more (the first call is 1)", f.nth);
    const times = f.times === undefined ? 1 : num(c, [...path, "times"], f.times);
    if (times < 1) c.expect([...path, "times"], "1 or more", f.times);
    const spec: InjectSpec = { call: f.call as string, nth, status: f.status as string, times };
    if (typeof f.backend === "string") spec.backend = f.backend;
    return spec;
  });
}

const PARAM_KINDS: Readonly<Record<HostOpParamKind, string>> = {
  gpa: "a guest physical address inside the VM (decimal or 0x hex)",
  size: "a size such as 4KiB, 2MiB, or a number of bytes",
  count: "a count, 1 or more",
  number: "a non-negative integer (decimal or 0x hex)",
  string: "a non-empty string",
  boolean: "true or false",
};

/**
 * Checks the scenario's plugin host ops against `backend`'s schema (`Backend.hostOps`) and fills
 * each op's `values`, or throws a `ScenarioError` at the op's line: an op of another backend,
 * one the backend does not define, an unknown or missing operand, an operand of the wrong kind.
 * Called when a run is built, once the backend is known.
 */
export function checkPluginOps(scn: Scenario, backend: { name: string; hostOps?: Readonly<Record<string, HostOpSchema>> }): void {
  for (const op of scn.host) {
    if (op.op !== "plugin") continue;
    const c: Ctx = new LineCtx(scn.source, op.line);
    const at: Path = [op.at];
    const dot = op.name.indexOf(".");
    const owner = op.name.slice(0, dot);
    const short = op.name.slice(dot + 1);
    if (owner !== backend.name) c.fail([...at, "op"], `'${op.name}' is an op of backend '${owner}', and this run is on '${backend.name}'`);
    const schema = backend.hostOps && Object.hasOwn(backend.hostOps, short) ? backend.hostOps[short]! : undefined;
    if (!schema) {
      const known = Object.keys(backend.hostOps ?? {}).map((k) => `${backend.name}.${k}`);
      c.fail([...at, "op"], `backend '${backend.name}' defines no host op '${short}' (its ops: ${known.join(", ") || "none"})`);
    }
    const params = Object.keys(schema.params);
    for (const k of Object.keys(op.args)) if (!params.includes(k)) c.fail([...at, k], `unknown key (expected one of: ${["op", ...params].join(", ")})`);
    const values: Record<string, number | string | boolean> = {};
    for (const [k, p] of Object.entries(schema.params)) {
      const v = op.args[k];
      const path: Path = [...at, k];
      if (v === undefined) {
        if (!p.optional) c.fail(path, `missing; expected ${PARAM_KINDS[p.kind]}`);
        continue;
      }
      switch (p.kind) {
        case "gpa": {
          const gpa = num(c, path, v, PARAM_KINDS.gpa);
          if (gpa >= scn.vm.memory) c.fail(path, `${show(gpa)} is beyond the VM's memory (${show(scn.vm.memory)} bytes)`);
          values[k] = gpa;
          break;
        }
        case "size": values[k] = size(c, path, v); break;
        case "count": {
          const n = num(c, path, v, PARAM_KINDS.count);
          if (n < 1) c.expect(path, PARAM_KINDS.count, v);
          values[k] = n;
          break;
        }
        case "number": values[k] = num(c, path, v); break;
        case "string":
          if (typeof v !== "string" || v === "") c.expect(path, PARAM_KINDS.string, v);
          values[k] = v;
          break;
        case "boolean": values[k] = bool(c, path, v, false); break;
      }
    }
    op.values = values;
  }
}

/** A size or number given on a command line (`2GiB`, `0x1000`, `4096`); null if it is not one. */
export function parseSizeText(text: string): number | null {
  try {
    return size(new Ctx("", null, null), [], /^\s*[0-9]+\s*$/.test(text) ? Number(text) : text);
  } catch {
    return null;
  }
}

/** Checks a parsed document (from YAML or JSON) against format v1. */
export function validateScenario(raw: unknown, file: string, c: Ctx = new Ctx(file, null, null)): Scenario {
  if (!isObj(raw)) c.expect([], "a scenario mapping with name, vm, vcpus", raw);
  checkKeys(c, [], raw, ["name", "vm", "backend", "schedule", "vcpus", "host", "options", "inject"]);
  if (typeof raw.name !== "string" || raw.name.trim() === "") c.expect(["name"], "a non-empty string", raw.name);
  if (raw.vm === undefined) c.fail([], "missing key 'vm' (e.g. vm: { memory: 1GiB })");
  const vm = parseVm(c, raw.vm);
  const backend = raw.backend === undefined ? "tdx" : raw.backend;
  if (typeof backend !== "string" || backend === "") c.expect(["backend"], "a backend name (tdx, sev, plain) or a module path", raw.backend);
  const schedule = parseSchedule(c, raw.schedule);
  const vcpus: GuestOp[][] = [];
  if (raw.vcpus !== undefined) {
    if (!Array.isArray(raw.vcpus)) c.expect(["vcpus"], "a list with one list of ops per vCPU", raw.vcpus);
    if (raw.vcpus.length > vm.vcpus) c.fail(["vcpus"], `${raw.vcpus.length} programs for a VM with ${vm.vcpus} vCPU(s) (vm.vcpus)`);
    raw.vcpus.forEach((prog, i) => {
      if (prog === null) prog = [];
      if (!Array.isArray(prog)) c.expect(["vcpus", i], "a list of guest ops", prog);
      vcpus.push(prog.map((op, j) => parseGuestOp(c, ["vcpus", i, j], op, vm)));
    });
  }
  const host: HostOp[] = [];
  if (raw.host !== undefined && raw.host !== null) {
    if (!Array.isArray(raw.host)) c.expect(["host"], "a list of host ops", raw.host);
    raw.host.forEach((op, j) => host.push(parseHostOp(c, ["host", j], op, vm)));
  }
  return {
    name: raw.name, source: file, vm, backend, backendLine: c.lineOf(["backend"]), schedule, vcpus, host,
    options: parseOptions(c, raw.options), inject: parseInject(c, raw.inject),
  };
}

/**
 * How many times aliases may be expanded in one document: a scenario has no use for more, and an
 * alias bomb (aliases of aliases, ten by ten) would otherwise build an exponential tree.
 */
const MAX_ALIAS_COUNT = 100;

/** `toJS`'s errors, which are about aliases: an undefined one, or too many expansions. */
function aliasError(e: unknown, text: string, file: string, lines: LineCounter): ScenarioError {
  const m = String((e as Error).message);
  const undefinedAlias = /Unresolved alias[^:]*: (\S+)/.exec(m);
  if (undefinedAlias) {
    const at = text.indexOf(`*${undefinedAlias[1]}`);
    return new ScenarioError(file, "", `not valid YAML: alias *${undefinedAlias[1]} names no anchor set before it (&${undefinedAlias[1]})`, at >= 0 ? lines.linePos(at).line : undefined);
  }
  if (/alias count/i.test(m)) return new ScenarioError(file, "", `not valid YAML: its aliases expand to more than ${MAX_ALIAS_COUNT} copies (an alias bomb?)`);
  return new ScenarioError(file, "", `not valid YAML: ${m.split("\n")[0]}`);
}

/** Parses scenario text; YAML and JSON both go through the YAML 1.2 parser (JSON is a subset). */
export function parseScenarioText(text: string, file: string): Scenario {
  const isJson = /\.json$/i.test(file);
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    const line = e.linePos?.[0]?.line ?? lines.linePos(e.pos[0]).line;
    throw new ScenarioError(file, "", `not valid ${isJson ? "JSON" : "YAML"}: ${e.message.split("\n")[0]}`, line);
  }
  if (isJson) {
    // The YAML parser accepts more than JSON (comments, trailing commas, bare words): a file
    // named .json must be JSON. The YAML document is still used for line numbers.
    try {
      JSON.parse(text);
    } catch (err) {
      const m = /position (\d+)/.exec((err as Error).message);
      throw new ScenarioError(file, "", `not valid JSON: ${(err as Error).message.split("\n")[0]}`, m ? lines.linePos(Number(m[1])).line : undefined);
    }
  }
  // A map or list used as a key (`{ op: access }: 1`) has no meaning in a scenario, and `toJS`
  // would turn it into a string with a warning on the process's stderr.
  visit(doc, {
    Pair(_, pair) {
      if (isCollection(pair.key)) {
        const at = pair.key.range?.[0];
        throw new ScenarioError(file, "", "a map or list is used as a key; expected a name (did a '}' or ']' go missing, or a ':' come too early?)", at === undefined ? undefined : lines.linePos(at).line);
      }
    },
  });
  const c: Ctx = new Ctx(file, doc, lines);
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (e) {
    throw aliasError(e, text, file, lines);
  }
  return validateScenario(raw, file, c);
}

export function loadScenario(path: string): Scenario {
  const text = readInputFile(path, "scenario", (why) => new ScenarioError(path, "", `cannot read the scenario: ${why}`));
  return parseScenarioText(text, path);
}
