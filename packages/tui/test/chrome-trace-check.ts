/**
 * A checker of Chrome Trace Event Format files, as Perfetto and chrome://tracing read them: the
 * fields each phase requires, a name for every thread used, B/E and instants in time order on
 * their track, counters in time order, and slices that nest on each track (a child ends no later
 * than its parent: never a partial overlap). It returns the problems, not a verdict, so a test
 * can show that a bad trace is caught, and the slices with their parents for further checks.
 */

export interface Slice {
  name: string;
  cat: string | undefined;
  pid: number;
  tid: number;
  start: number;
  /** Infinity for a B that no E closed. */
  end: number;
  args: Record<string, unknown>;
  /** The slice it lies in on its track, or null at the top. */
  parent: Slice | null;
}

export interface TraceCheck {
  problems: string[];
  slices: Slice[];
  /** Each named thread's name, by "pid:tid". */
  threads: Map<string, string>;
}

type Rec = Record<string, unknown>;

/** An event `fieldProblems` passed: the fields every phase requires are there, of their types. */
interface CheckedEvent {
  name: string;
  ph: string;
  ts: number;
  pid: number;
  tid: number;
  cat?: unknown;
  dur?: unknown;
  args?: unknown;
}

const PHASES = new Set(["B", "E", "X", "i", "I", "C", "M"]);

function isObject(v: unknown): v is Rec {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** The events of a trace in either form: a JSON array, or an object with `traceEvents`. */
export function traceEvents(doc: unknown): unknown[] {
  if (Array.isArray(doc)) return doc;
  if (isObject(doc) && Array.isArray(doc.traceEvents)) return doc.traceEvents;
  throw new Error("not a trace: expected a JSON array or an object with traceEvents");
}

/** The fields its phase requires, or what is wrong with them. */
function fieldProblems(e: unknown, k: number): string[] {
  if (!isObject(e)) return [`event ${k}: not an object`];
  const p: string[] = [];
  if (typeof e.name !== "string" || e.name === "") p.push(`event ${k}: no name`);
  if (typeof e.ph !== "string" || !PHASES.has(e.ph)) p.push(`event ${k}: phase ${String(e.ph)}`);
  if (typeof e.ts !== "number" || !Number.isFinite(e.ts) || e.ts < 0) p.push(`event ${k}: no ts`);
  if (!Number.isInteger(e.pid)) p.push(`event ${k}: no pid`);
  if (!Number.isInteger(e.tid)) p.push(`event ${k}: no tid`);
  const dur = e.dur;
  if (e.ph === "X" && !(typeof dur === "number" && dur >= 0)) p.push(`event ${k}: X without dur`);
  if ((e.ph === "i" || e.ph === "I") && !["t", "p", "g"].includes(e.s as string)) {
    p.push(`event ${k}: instant without scope s`);
  }
  if (e.ph === "C") {
    const vals = isObject(e.args) ? Object.values(e.args) : [];
    if (vals.length === 0 || vals.some((v) => typeof v !== "number")) {
      p.push(`event ${k}: counter without args`);
    }
  }
  if (e.ph === "M" && (e.name === "thread_name" || e.name === "process_name")) {
    if (!isObject(e.args) || typeof e.args.name !== "string") {
      p.push(`event ${k}: ${e.name} without args.name`);
    }
  }
  return p;
}

export function checkChromeTrace(events: unknown[]): TraceCheck {
  const problems: string[] = [];
  events.forEach((e, k) => problems.push(...fieldProblems(e, k)));
  if (problems.length > 0) return { problems, slices: [], threads: new Map() };
  const recs = events as CheckedEvent[];
  const threads = new Map<string, string>();
  for (const e of recs) {
    if (e.ph !== "M" || e.name !== "thread_name") continue;
    threads.set(`${e.pid}:${e.tid}`, (e.args as Rec).name as string);
  }
  const lastTs = new Map<string, number>();
  const open = new Map<string, Slice[]>();
  const slices: Slice[] = [];
  recs.forEach((e, k) => {
    if (e.ph === "M") return;
    const track = `${e.pid}:${e.tid}`;
    const ts = e.ts;
    const what = `event ${k} (${e.name})`;
    if (!threads.has(track)) problems.push(`${what}: tid ${track} has no thread_name`);
    // B/E must come in time order on their thread; this writer keeps its instants and counters
    // in order too (only X may come in any order).
    const order = e.ph === "C" ? `counter ${e.pid}:${e.name}` : e.ph === "X" ? null : track;
    if (order !== null) {
      if (ts < (lastTs.get(order) ?? 0)) {
        problems.push(`${what}: ts ${ts} goes back on ${order}`);
      }
      lastTs.set(order, ts);
    }
    const args = isObject(e.args) ? e.args : {};
    const base = {
      name: e.name,
      cat: e.cat as string | undefined,
      pid: e.pid,
      tid: e.tid,
    };
    if (e.ph === "X") {
      slices.push({ ...base, start: ts, end: ts + (e.dur as number), args, parent: null });
    }
    if (e.ph === "B") {
      const s: Slice = { ...base, start: ts, end: Infinity, args, parent: null };
      slices.push(s);
      const stack = open.get(track) ?? [];
      stack.push(s);
      open.set(track, stack);
    }
    if (e.ph === "E") {
      const s = open.get(track)?.pop();
      if (s === undefined) problems.push(`${what}: E with no B open on ${track}`);
      else if (s.name !== e.name) problems.push(`${what}: closes B of ${s.name} on ${track}`);
      else {
        s.end = ts;
        Object.assign(s.args, args);
      }
    }
  });
  problems.push(...nestingProblems(slices));
  return { problems, slices, threads };
}

/** Sets each slice's parent; a slice that starts inside another and ends after it is a problem. */
export function nestingProblems(slices: Slice[]): string[] {
  const problems: string[] = [];
  const byTrack = new Map<string, Slice[]>();
  for (const s of slices) {
    const key = `${s.pid}:${s.tid}`;
    const list = byTrack.get(key) ?? [];
    list.push(s);
    byTrack.set(key, list);
  }
  for (const [track, list] of byTrack) {
    // Parents before their children: by start, the longer first (a stable sort keeps file order).
    const sorted = [...list].sort((a, b) => a.start - b.start || b.end - a.end);
    const stack: Slice[] = [];
    for (const s of sorted) {
      while (stack.length > 0 && stack.at(-1)!.end <= s.start) stack.pop();
      const top = stack.at(-1);
      if (top !== undefined && s.end > top.end) {
        const span = (x: Slice) => `${x.name} [${x.start}, ${x.end}]`;
        problems.push(`${track}: ${span(s)} overlaps ${span(top)}`);
        continue;
      }
      s.parent = top ?? null;
      stack.push(s);
    }
  }
  return problems;
}
