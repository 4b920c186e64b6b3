/**
 * The leaves the scenario and schedule schemas are built from, in zod 4. Every check of a leaf
 * carries the same message, "expected <what>, got <what was found>", so that whichever check
 * fails, the reader learns what the field takes; `issueDetail` turns zod's issue into the path
 * and the words a `ScenarioError` prints.
 *
 * Conventions the formatter relies on:
 * - a message that starts with "missing key" is about the mapping, not the absent field, and is
 *   reported at the mapping's path;
 * - a union without its own message reports its first alternative's first issue (a schema puts
 *   the alternative whose words matter first: the built-in ops before a plugin's);
 * - an unknown key is reported at its own path, with the keys the mapping takes.
 */
import { z } from "zod";

export const UNITS: Readonly<Record<string, number>> = {
  B: 1,
  KiB: 1024,
  MiB: 1024 ** 2,
  GiB: 1024 ** 3,
  TiB: 1024 ** 4,
};

/** A value as a message shows it: strings quoted, addresses in hex, containers by kind. */
export function show(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "number")
    return Number.isInteger(v) && v >= 4096 ? `0x${v.toString(16)}` : String(v);
  if (v === null || v === undefined) return "nothing";
  if (Array.isArray(v)) return "a list";
  if (typeof v === "object") return "a mapping";
  if (typeof v === "boolean" || typeof v === "bigint") return String(v);
  return typeof v;
}

type Msg = { error: (iss: { input?: unknown }) => string };

/** The error option of a leaf: `missing` replaces the message when the key is absent. */
function expected(what: string, missing?: string): Msg {
  return {
    error: (iss) =>
      iss.input === undefined && missing !== undefined
        ? missing
        : `expected ${what}, got ${show(iss.input)}`,
  };
}

export interface LeafOptions {
  /** The message when the key is absent, beginning "missing key '<name>'". */
  missing?: string;
}

const NUM_TEXT = /^\s*(0x[0-9a-fA-F][0-9a-fA-F_]*|[0-9][0-9_]*)\s*$/;
const SIZE_TEXT = /^\s*([0-9]+)\s*(B|KiB|MiB|GiB|TiB)\s*$/;

export const NUM_WHAT = "a non-negative integer (decimal or 0x hex)";

/** A non-negative integer: a number, or a string in hex (`0x1000`) or decimal, `_` allowed. */
export function num(what = NUM_WHAT, o: LeafOptions = {}) {
  const e = expected(what, o.missing);
  return z
    .union([z.number(e).int(e).min(0, e), z.string(e).regex(NUM_TEXT, e)], e)
    .transform((v, ctx) => {
      if (typeof v === "number") return v;
      const n = Number(v.trim().replace(/_/g, ""));
      if (!Number.isSafeInteger(n))
        ctx.issues.push({ code: "custom", input: v, message: `expected ${what}, got ${show(v)}` });
      return n;
    });
}

export const SIZE_WHAT = "a size such as 4KiB, 2MiB, 1GiB, or a number of bytes";
const PAGE = 4096;

export interface SizeOptions extends LeafOptions {
  /** A positive multiple of 4KiB. */
  pageMultiple?: boolean;
  /** Only these sizes, which `what` names ("4KiB or 2MiB"). */
  only?: readonly number[];
  what?: string;
}

/**
 * A size: bytes as a number or in hex, or a string with a unit (`4KiB`, `2MiB`, `1GiB`). The
 * checks of `o` see the size as written, so a message quotes what the reader wrote ("1GiB").
 */
export function size(o: SizeOptions = {}) {
  const e = expected(SIZE_WHAT, o.missing);
  return z
    .union(
      [
        z.number(e).int(e).min(0, e),
        z.string(e).regex(SIZE_TEXT, e),
        z.string(e).regex(NUM_TEXT, e),
      ],
      e,
    )
    .transform((v, ctx) => {
      const fail = (what: string) => {
        ctx.issues.push({ code: "custom", input: v, message: `expected ${what}, got ${show(v)}` });
        return z.NEVER;
      };
      let n: number;
      if (typeof v === "number") n = v;
      else {
        const m = SIZE_TEXT.exec(v);
        n = m ? Number(m[1]) * UNITS[m[2]!]! : Number(v.trim().replace(/_/g, ""));
        if (!Number.isSafeInteger(n)) return fail(m ? "a size below 8 PiB" : SIZE_WHAT);
      }
      if (o.only && !o.only.includes(n)) return fail(o.what ?? o.only.join(" or "));
      if (o.pageMultiple && (n === 0 || n % PAGE !== 0)) return fail("a positive multiple of 4KiB");
      return n;
    });
}

export function bool() {
  return z.boolean(expected("true or false"));
}

/** One of the given words. */
export function oneOf<const T extends readonly [string, ...string[]]>(
  options: T,
  o: LeafOptions = {},
) {
  return z.enum(options, expected(`one of ${options.join(", ")}`, o.missing));
}

/** A non-empty string; `what` says what it names. */
export function text(what: string, o: LeafOptions = {}) {
  const e = expected(what, o.missing);
  return z.string(e).min(1, e);
}

/**
 * A mapping that takes exactly the keys of `shape`; `what` describes it for a value that is not a
 * mapping ("a mapping with memory, gpaw, vcpus, hugepages").
 */
export function mapping<S extends z.core.$ZodLooseShape>(
  shape: S,
  what: string,
  o: LeafOptions = {},
) {
  const keys = Object.keys(shape).join(", ");
  const e = expected(what, o.missing);
  return z.strictObject(shape, {
    error: (iss) =>
      iss.code === "unrecognized_keys" ? `unknown key (expected one of: ${keys})` : e.error(iss),
  });
}

/** A list of `item`; `what` describes it for a value that is not a list. */
export function list<T extends z.ZodType>(item: T, what: string) {
  return z.array(item, expected(what));
}

/** Where an issue is and what it says, as a `ScenarioError` prints them. */
export interface IssueDetail {
  path: (string | number)[];
  detail: string;
}

/** The issue a reader is shown: the first, followed into unions as the conventions above say. */
export function issueDetail(
  issue: z.core.$ZodIssue,
  base: readonly (string | number)[] = [],
): IssueDetail {
  const path = [...base, ...issue.path.map((p) => (typeof p === "symbol" ? String(p) : p))];
  if (
    issue.code === "invalid_union" &&
    issue.message === "Invalid input" &&
    issue.errors.length > 0
  ) {
    const first = issue.errors[0]?.[0];
    if (first) return issueDetail(first, path);
  }
  if (issue.code === "unrecognized_keys")
    return { path: [...path, issue.keys[0] ?? ""], detail: issue.message };
  if (issue.message.startsWith("missing key"))
    return { path: path.slice(0, -1), detail: issue.message };
  return { path, detail: issue.message };
}
