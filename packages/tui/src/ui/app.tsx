/**
 * The terminal UI: a scenario running step by step on one backend, its tables live. Frames come
 * from a timer at about 30 a second, each from one snapshot of the model; events never render.
 */
import { Box, Text, useApp, useInput, useStdout } from "ink";
import { useEffect, useMemo, useRef, useState } from "react";
import type { BackendRegistry, Scenario } from "@tdpemu/core";
import { EVENT_KINDS, SPEEDS, Session, compareBackends, formatCompare, type Snapshot } from "../session.js";
import { EventsPane, GpaMapPane, StatsPane, VcpuPane, WalkPane } from "./panes.js";
import { layoutFor, mapSize, type Layout } from "./layout.js";

export const FRAME_MS = 33;
export const MIN_COLUMNS = 100;
export const MIN_ROWS = 30;
const PANES = ["vcpus", "walk", "events", "stats", "map"] as const;

export const HELP: [string, string][] = [
  ["space", "pause / run"],
  ["s", "step one atomic point"],
  ["n", "run to the next event of the chosen kind"],
  ["p", "one step back (the run replayed to the step before)"],
  ["v", "run to the violation (or the end), and stop on the step that failed"],
  ["k", "choose that kind (any, fault, spte, call, flush, hook)"],
  ["+ / -", "faster / slower"],
  ["[ ] { }", "walk the previous / next page, 2 MiB back / on"],
  ["f", "the walk follows each new fault, or stays where it is"],
  ["r", "restart the scenario from the start, paused"],
  ["b", "next backend (restart the scenario on it)"],
  ["c", "comparison: the scenario on every backend"],
  ["tab", "focus the next pane"],
  ["↑ ↓", "in the events pane: choose an event (up is older)"],
  ["enter", "in the events pane: go to the step of the chosen event, the walk on its GPA"],
  ["t", "the events of one task only: each task in turn, then all"],
  ["g", "go to a step: type its number, then enter (back or forward)"],
  ["/", "show only events containing what you type (a kind, a GPA); enter keeps, esc clears"],
  ["?", "this help"],
  ["q", "quit"],
];

/** What a key does in the state shown, beside its help line (`?`). */
export function helpNow(key: string, snap: Snapshot): string {
  switch (key) {
    case "space": return snap.finished ? "  (now: the run has ended; r restarts)" : `  (now: ${snap.running ? "pauses" : "runs"})`;
    case "n": return `  (now: to the next ${snap.runTo} event)`;
    case "f": return `  (now: ${snap.followFaults ? "on" : "off"})`;
    case "t": return `  (now: ${snap.taskFilter ?? "all tasks"})`;
    case "/": return snap.search === "" ? "" : `  (now: "${snap.search}")`;
    case "p": return snap.choices === 0 ? "  (now: at the start)" : `  (now: back to step ${snap.choices - 1})`;
    default: return "";
  }
}

export interface AppProps {
  scenario: Scenario;
  registry: BackendRegistry;
  backend: string;
  strategy?: "freeze" | "atomic-then-hook";
  /** A session made beforehand (the command makes it first, so that bad input is one line, not an error screen). */
  session?: Session;
  /** Start running at once (the main job); tests start paused. */
  autoRun?: boolean;
  /** Frame interval; tests pass 0 to render only on input. */
  frameMs?: number;
  /** The terminal's size, for tests (else the terminal's, followed as it changes). */
  columns?: number;
  rows?: number;
}

/** Events the snapshot keeps: more than any terminal shows. */
const MAX_EVENTS = 120;

export function App(props: AppProps) {
  const { exit } = useApp();
  const { stdout } = useStdout();
  const session = useMemo(() => props.session ?? new Session(props.scenario, props.registry, props.backend, { strategy: props.strategy }), []);
  const [snap, setSnap] = useState<Snapshot>(() => session.snapshot(256, MAX_EVENTS));
  const [view, setViewState] = useState<"main" | "help" | "compare">("main");
  // Keys act on the view the previous key made, kept in a ref the key handler sets and reads:
  // React renders, and Ink re-subscribes the handler, only after the keys already typed are
  // handled, so a handler reading `view` saw a stale one ("?", "?", "c" typed quickly closed the
  // help and then toggled instead of comparing).
  const viewRef = useRef(view);
  const setView = (v: "main" | "help" | "compare") => {
    viewRef.current = v;
    setViewState(v);
  };
  const [compare, setCompare] = useState<string>("");
  const [focus, setFocus] = useState(0);
  // The chosen event in the events pane, counted from the latest (null: none chosen). In a ref
  // too, for keys typed faster than frames (see viewRef).
  const [cursor, setCursorState] = useState<number | null>(null);
  const cursorRef = useRef<number | null>(null);
  const setCursor = (c: number | null) => {
    cursorRef.current = c;
    setCursorState(c);
  };
  const focusRef = useRef(0);
  // While '/' or 'g' is being typed: the text so far (null when not typing).
  const searchRef = useRef<string | null>(null);
  const gotoRef = useRef(false);
  const [searching, setSearching] = useState<string | null>(null);
  const setSearch = (t: string | null) => {
    searchRef.current = t;
    setSearching(t);
  };
  const [size, setSizeState] = useState({ columns: props.columns ?? stdout?.columns ?? 120, rows: props.rows ?? stdout?.rows ?? 40 });
  // The timer's snapshots are sized by the terminal as it is now, not as it was at the start.
  const sizeRef = useRef(size);
  const setSize = (s: { columns: number; rows: number }) => {
    sizeRef.current = s;
    setSizeState(s);
  };
  const take = () => {
    const m = mapSize(sizeRef.current.columns, sizeRef.current.rows);
    return session.snapshot(m.mapRows * m.mapCols, MAX_EVENTS, m.mapCols);
  };

  useEffect(() => {
    session.running = props.autoRun ?? false;
    setSnap(take());
    const ms = props.frameMs ?? FRAME_MS;
    if (ms <= 0) return;
    const timer = setInterval(() => {
      if (!session.running) return;
      session.advanceFrame();
      if (session.finished) session.running = false;
      setSnap(take());
    }, ms);
    return () => clearInterval(timer);
  }, []);

  useEffect(() => {
    if (!stdout || props.columns !== undefined) return;
    const onResize = () => {
      setSize({ columns: stdout.columns, rows: stdout.rows });
      setSnap(take());
    };
    stdout.on("resize", onResize);
    return () => {
      stdout.off("resize", onResize);
    };
  }, [stdout]);

  const refresh = () => setSnap(take());

  useInput((input, key) => {
    if (key.ctrl && input === "c") {
      exit();
      return;
    }
    // A notice is shown until the next key.
    session.notice = null;
    if (searchRef.current !== null && gotoRef.current) {
      // Typing a step number: enter goes there.
      const t = searchRef.current;
      if (key.escape) setSearch(null);
      else if (key.return) {
        if (t !== "") session.goToStep(Number(t));
        setSearch(null);
      } else if (key.backspace || key.delete) setSearch(t.slice(0, -1));
      else if (/^[0-9]$/.test(input) && t.length < 9) setSearch(t + input);
      if (searchRef.current === null) gotoRef.current = false;
      refresh();
      return;
    }
    if (searchRef.current !== null) {
      // Typing a search: the text filters the events as it grows.
      const t = searchRef.current;
      if (key.escape) {
        session.search = "";
        setSearch(null);
      } else if (key.return) setSearch(null);
      else if (key.backspace || key.delete) setSearch(t.slice(0, -1));
      else if (input.length > 0 && !key.ctrl && !key.meta) setSearch(t + input);
      if (searchRef.current !== null) session.search = searchRef.current;
      setCursor(null);
      refresh();
      return;
    }
    // q quits, except while a search or a step number is typed (above: it is text there).
    if (input === "q") {
      exit();
      return;
    }
    if (viewRef.current !== "main") {
      if (input === "?" || input === "c" || key.escape) setView("main");
      return;
    }
    if (input === " ") session.running = !session.running;
    else if (input === "s") {
      session.running = false;
      session.step();
    } else if (input === "n") {
      session.running = false;
      session.stepToEvent();
    } else if (input === "p") {
      session.stepBack();
    } else if (input === "v") {
      session.running = false;
      session.runToEnd();
    } else if (input === "k") session.runTo = EVENT_KINDS[(EVENT_KINDS.indexOf(session.runTo) + 1) % EVENT_KINDS.length]!;
    else if (input === "+" || input === "=") session.speedIndex = Math.min(SPEEDS.length - 1, session.speedIndex + 1);
    else if (input === "-") session.speedIndex = Math.max(0, session.speedIndex - 1);
    else if (input === "[") session.moveWalk(-4096);
    else if (input === "]") session.moveWalk(4096);
    else if (input === "{") session.moveWalk(-(2 ** 21));
    else if (input === "}") session.moveWalk(2 ** 21);
    else if (input === "f") session.followFaults = !session.followFaults;
    else if (input === "r") {
      session.running = false;
      session.restart();
    }
    else if (input === "b") session.cycleBackend();
    else if (input === "c") {
      setCompare(formatCompare(props.scenario, compareBackends(props.scenario, props.registry, props.strategy ? { strategy: props.strategy } : undefined)));
      setView("compare");
    } else if (key.tab) {
      focusRef.current = (focusRef.current + 1) % PANES.length;
      setFocus(focusRef.current);
    } else if (PANES[focusRef.current] === "events" && (key.upArrow || key.downArrow)) {
      const n = session.snapshot(1, MAX_EVENTS, 1).events.length;
      const c = cursorRef.current;
      if (n === 0) setCursor(null);
      else if (key.upArrow) setCursor(Math.min(n - 1, c === null ? 0 : c + 1));
      else setCursor(c === null || c === 0 ? null : c - 1);
    } else if (PANES[focusRef.current] === "events" && key.return && cursorRef.current !== null) {
      const events = session.snapshot(1, MAX_EVENTS, 1).events;
      const row = events[events.length - 1 - cursorRef.current];
      if (row) session.selectEvent(row);
      setCursor(null);
    } else if (input === "g") {
      gotoRef.current = true;
      setSearch("");
    } else if (input === "/") {
      setSearch(session.search);
      setCursor(null);
    } else if (input === "t") {
      session.cycleTaskFilter();
      setCursor(null);
    }
    else if (input === "?") setView("help");
    refresh();
  });

  if (size.columns < MIN_COLUMNS || size.rows < MIN_ROWS) {
    return (
      <Text color="yellow">
        {`tdpemu needs a terminal of at least ${MIN_COLUMNS}x${MIN_ROWS}; this one is ${size.columns}x${size.rows}. Make it larger (q quits).`}
      </Text>
    );
  }
  const header = (
    <Text wrap="truncate-end">
      <Text bold>tdpemu</Text>
      {`  ${snap.scenario} on `}
      <Text bold color="cyan">{snap.backend}</Text>
      {`${snap.strategy !== null ? `  strategy ${snap.strategy}` : ""}  step ${snap.choices}  ${snap.running ? "running" : snap.finished ? "finished" : "paused"}  speed ${snap.speed === Infinity ? "max" : `${snap.speed}/frame`}  run-to ${snap.runTo}`}
    </Text>
  );
  const status = snap.notice !== null
    ? <Text color="yellow" wrap="truncate-end">{snap.notice}</Text>
    : searching !== null && gotoRef.current
    ? <Text wrap="truncate-end">{`go to step: ${searching}▏ (enter goes, esc cancels)`}</Text>
    : searching !== null
    ? <Text wrap="truncate-end">{`search the events: ${searching}▏ (enter keeps it, esc clears it)`}</Text>
    : <Text dimColor wrap="truncate-end">space run/pause · s step · p back · n next {snap.runTo} · v to the violation · / search · b backend · c compare · ? help · q quit</Text>;
  if (view === "help") {
    return (
      <Box flexDirection="column">
        {header}
        <Box flexDirection="column" borderStyle="round" paddingX={1}>
          <Text bold>keys</Text>
          {HELP.map(([k, d]) => <Text key={k}>{`${k.padEnd(10)} ${d}`}<Text color="cyan">{helpNow(k, snap)}</Text></Text>)}
          <Text dimColor>press ? or esc to go back</Text>
        </Box>
      </Box>
    );
  }
  if (view === "compare") {
    return (
      <Box flexDirection="column">
        {header}
        <Box flexDirection="column" borderStyle="round" paddingX={1}>
          <Text bold>comparison: the scenario on every backend</Text>
          {compare.split("\n").map((l, i) => <Text key={i}>{l}</Text>)}
          <Text dimColor>press c or esc to go back</Text>
        </Box>
      </Box>
    );
  }
  return (
    <Box flexDirection="column">
      {header}
      <MainView snap={snap} focus={focus} columns={size.columns} rows={size.rows} cursor={cursor} />
      {status}
    </Box>
  );
}

/** The lines of the top row's tallest pane: the vCPUs (a heading and a line a task) or the walk (each root's title and rows). */
function topLines(snap: Snapshot): number {
  const walk = snap.walk.length === 0 ? 1 : snap.walk.reduce((n, t) => n + 1 + t.rows.length, 0);
  return Math.max(1 + snap.vcpus.length, walk);
}

/** The main view's panes for one snapshot, sized to the terminal: what one frame renders. */
export function MainView({ snap, focus, columns = 120, rows = 60, cursor = null }: { snap: Snapshot; focus: number; columns?: number; rows?: number; cursor?: number | null }) {
  // One line a violation, cut to the width, at most three and a count of the rest: a height known
  // before it is drawn (wrapped text would take what the words make of it).
  const shown = snap.violations.slice(0, 3).map((v, i) => `${i === 0 ? "violations: " : "            "}${v}`);
  if (snap.violations.length > 3) shown.push(`            … and ${snap.violations.length - 3} more (tdpemu replay lists them all)`);
  const layout: Layout = layoutFor(columns, rows, topLines(snap), shown.length, snap.stats.length);
  return (
    <Box flexDirection="column">
      <Box>
        <VcpuPane snap={snap} focused={PANES[focus] === "vcpus"} />
        <WalkPane snap={snap} focused={PANES[focus] === "walk"} />
      </Box>
      <Box>
        <EventsPane snap={snap} focused={PANES[focus] === "events"} rows={layout.events} cursor={cursor} />
        <StatsPane snap={snap} focused={PANES[focus] === "stats"} lines={layout.statsLines} calls={layout.calls} />
      </Box>
      <GpaMapPane snap={snap} focused={PANES[focus] === "map"} legend={layout.legend} />
      {shown.map((l, i) => <Text key={i} color="red" wrap="truncate-end">{l}</Text>)}
    </Box>
  );
}
