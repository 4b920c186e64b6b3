/**
 * The scenario parser: YAML or JSON text → a checked `Scenario`. The format is the zod schema in
 * `schema.ts`; this file reads the text, turns the schema's first issue into a `ScenarioError`,
 * and checks what the schema cannot see field by field (every range against the VM's memory).
 * Every error names the file, the line, the path inside the document (`vcpus[0][1].gpa`), what was
 * expected and what was found; unknown keys are errors too, so a typo never silently changes a run.
 */
import { readInputFile } from "./input-file.js";
import {
  LineCounter,
  isCollection,
  parseDocument,
  visit,
  type Document,
  type Node as YamlNode,
} from "yaml";
import {
  ScenarioFormat,
  type GuestOp,
  type HostOp,
  type Scenario,
  type ScenarioDocument,
} from "./schema.js";
import { issueDetail, show, size } from "./schema-kit.js";
import { ErrorOfKind } from "../error-kind.js";
import type { z } from "zod";

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

const PAGE = 4096;

export type Path = (string | number)[];

/** `vcpus[0][1].gpa`: a path inside a document, as messages print it. */
export function pathText(path: Path): string {
  let s = "";
  for (const p of path) s += typeof p === "number" ? `[${p}]` : s === "" ? p : `.${p}`;
  return s;
}

export class Ctx {
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
        const node = (n === 0 ? this.doc.contents : this.doc.getIn(path.slice(0, n), true)) as
          YamlNode | undefined;
        const off =
          node && typeof node === "object" && "range" in node ? node.range?.[0] : undefined;
        if (off !== undefined) line = this.lines.linePos(off).line;
      }
    }
    throw new ScenarioError(this.file, pathText(path), detail, line);
  }

  /** The first issue of a failed schema check, as a `ScenarioError`. */
  failIssues(error: z.ZodError, base: Path = []): never {
    const { path, detail } = issueDetail(error.issues[0]!, base);
    return this.fail(path, detail);
  }

  /** The line of the node at `path`, if the document is known. */
  lineOf(path: Path): number | undefined {
    const node = this.doc?.getIn(path, true) as YamlNode | undefined;
    const off = node && typeof node === "object" && "range" in node ? node.range?.[0] : undefined;
    return off !== undefined && this.lines ? this.lines.linePos(off).line : undefined;
  }
}

/** A context for checks made after parsing, that report every failure at one known line. */
export class LineCtx extends Ctx {
  constructor(
    file: string,
    private readonly line: number | undefined,
  ) {
    super(file, null, null);
  }

  override fail(path: Path, detail: string): never {
    throw new ScenarioError(this.file, pathText(path), detail, this.line);
  }
}

/** A size or number given on a command line (`2GiB`, `0x1000`, `4096`); null if it is not one. */
export function parseSizeText(text: string): number | null {
  const r = size().safeParse(/^\s*[0-9]+\s*$/.test(text) ? Number(text) : text);
  return r.success ? r.data : null;
}

/** `gpa` lies inside the VM's memory. */
function inMemory(c: Ctx, path: Path, gpa: number, memory: number): void {
  if (gpa >= memory)
    c.fail([...path, "gpa"], `${show(gpa)} is beyond the VM's memory (${show(memory)} bytes)`);
}

/** [gpa, gpa + size) lies inside the VM's memory. */
function rangeInMemory(c: Ctx, path: Path, gpa: number, sz: number, memory: number): void {
  inMemory(c, path, gpa, memory);
  if (gpa + sz > memory)
    c.fail(
      [...path, "size"],
      `the range ${show(gpa)}+${show(sz)} goes beyond the VM's memory (${show(memory)} bytes)`,
    );
}

/** `count` pages of `sz` from the page holding `gpa` lie inside the VM's memory. */
function pagesInMemory(
  c: Ctx,
  path: Path,
  gpa: number,
  count: number,
  sz: number,
  memory: number,
): void {
  inMemory(c, path, gpa, memory);
  const first = gpa - (gpa % PAGE);
  if (first + count * sz > memory) {
    const pages = sz === PAGE ? "pages" : "pages of 2MiB";
    c.fail(
      [...path, "count"],
      `${count} ${pages} from ${show(first)} go beyond the VM's memory (${show(memory)} bytes)`,
    );
  }
}

function resolveGuestOp(c: Ctx, path: Path, op: GuestOp, memory: number): GuestOp {
  switch (op.op) {
    case "access":
      pagesInMemory(c, path, op.gpa, op.count, PAGE, memory);
      break;
    case "accept":
    case "rmpadjust":
      pagesInMemory(c, path, op.gpa, op.count, op.size, memory);
      break;
    case "convert":
    case "psc":
      rangeInMemory(c, path, op.gpa, op.size, memory);
      break;
  }
  return op;
}

function resolveHostOp(
  c: Ctx,
  path: Path,
  op: ScenarioDocument["host"][number],
  vm: Scenario["vm"],
): HostOp {
  switch (op.op) {
    case "age":
    case "split":
    case "recover": {
      // Without a range, the whole of guest memory from `gpa`.
      inMemory(c, path, op.gpa, vm.memory);
      const sz = op.size ?? vm.memory - op.gpa;
      rangeInMemory(c, path, op.gpa, sz, vm.memory);
      return { ...op, size: sz };
    }
    case "populate":
    case "convert":
    case "zap":
      rangeInMemory(c, path, op.gpa, op.size, vm.memory);
      return op;
    case "raw":
      if (op.vcpu !== undefined && op.vcpu >= vm.vcpus) {
        c.fail(
          [...path, "vcpu"],
          `vCPU ${op.vcpu} does not exist: the VM has ${vm.vcpus} (0 to ${vm.vcpus - 1})`,
        );
      }
      return op;
    case "plugin":
      return { ...op, at: pathText(path), line: c.lineOf(path) };
    default:
      return op;
  }
}

/** Checks a parsed document (from YAML or JSON) against format v1. */
export function validateScenario(
  raw: unknown,
  file: string,
  c: Ctx = new Ctx(file, null, null),
): Scenario {
  const r = ScenarioFormat.safeParse(raw);
  if (!r.success) c.failIssues(r.error);
  const d = r.data;
  const { vm } = d;
  const maxMem = 2 ** (vm.gpaw - 1);
  if (vm.memory > maxMem) {
    c.fail(
      ["vm", "memory"],
      `${show(vm.memory)} bytes do not fit below the shared bit of a ${vm.gpaw}-bit GPA space (at most ${show(maxMem)})`,
    );
  }
  if (d.vcpus.length > vm.vcpus)
    c.fail(["vcpus"], `${d.vcpus.length} programs for a VM with ${vm.vcpus} vCPU(s) (vm.vcpus)`);
  return {
    name: d.name,
    source: file,
    vm,
    backend: d.backend,
    backendLine: c.lineOf(["backend"]),
    schedule: d.schedule,
    vcpus: d.vcpus.map((prog, i) =>
      prog.map((op, j) => resolveGuestOp(c, ["vcpus", i, j], op, vm.memory)),
    ),
    host: d.host.map((op, j) => resolveHostOp(c, ["host", j], op, vm)),
    options: d.options,
    inject: d.inject,
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
    return new ScenarioError(
      file,
      "",
      `not valid YAML: alias *${undefinedAlias[1]} names no anchor set before it (&${undefinedAlias[1]})`,
      at >= 0 ? lines.linePos(at).line : undefined,
    );
  }
  if (/alias count/i.test(m))
    return new ScenarioError(
      file,
      "",
      `not valid YAML: its aliases expand to more than ${MAX_ALIAS_COUNT} copies (an alias bomb?)`,
    );
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
    throw new ScenarioError(
      file,
      "",
      `not valid ${isJson ? "JSON" : "YAML"}: ${e.message.split("\n")[0]}`,
      line,
    );
  }
  if (isJson) {
    // The YAML parser accepts more than JSON (comments, trailing commas, bare words): a file
    // named .json must be JSON. The YAML document is still used for line numbers.
    try {
      JSON.parse(text);
    } catch (err) {
      const m = /position (\d+)/.exec((err as Error).message);
      throw new ScenarioError(
        file,
        "",
        `not valid JSON: ${(err as Error).message.split("\n")[0]}`,
        m ? lines.linePos(Number(m[1])).line : undefined,
      );
    }
  }
  // A map or list used as a key (`{ op: access }: 1`) has no meaning in a scenario, and `toJS`
  // would turn it into a string with a warning on the process's stderr.
  visit(doc, {
    Pair(_, pair) {
      if (isCollection(pair.key)) {
        const at = pair.key.range?.[0];
        throw new ScenarioError(
          file,
          "",
          "a map or list is used as a key; expected a name (did a '}' or ']' go missing, or a ':' come too early?)",
          at === undefined ? undefined : lines.linePos(at).line,
        );
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
  const text = readInputFile(
    path,
    "scenario",
    (why) => new ScenarioError(path, "", `cannot read the scenario: ${why}`),
  );
  return parseScenarioText(text, path);
}
