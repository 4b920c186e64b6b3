/**
 * The terminal UI: a scenario running step by step on one backend, its tables live. Frames come
 * from a timer at about 30 a second, each from one snapshot of the model; events never render.
 */
import { Box, Text, useApp, useInput, useStdout, type Key } from "ink";
import { useEffect, useMemo, useRef, useState } from "react";
import type { BackendRegistry, Scenario } from "@tdpemu/core";
import { CompareJob, type CompareState } from "../compare-job.js";
import { Session, type Snapshot } from "../session.js";
import * as fields from "./field.js";
import { bindingFor, keyName, type KeyActions } from "./keys.js";
import { CompareView, HelpView } from "./overlays.js";
import { EventsPane, GpaMapPane, StatsPane, VcpuPane, WalkPane } from "./panes.js";
import { layoutFor, mapSize, type Layout } from "./layout.js";

export const FRAME_MS = 33;
export const MIN_COLUMNS = 100;
export const MIN_ROWS = 30;
const PANES = ["vcpus", "walk", "events", "stats", "map"] as const;

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
  const session = useMemo(
    () =>
      props.session ??
      new Session(props.scenario, props.registry, props.backend, { strategy: props.strategy }),
    [],
  );
  const [size, setSizeState] = useState({
    columns: props.columns ?? stdout?.columns ?? 120,
    rows: props.rows ?? stdout?.rows ?? 40,
  });
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
  // The first frame's map is sized as every later one is (it was 256 cells until the first key).
  const [snap, setSnap] = useState<Snapshot>(take);
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
  // The comparison under way or done, in a ref too: a cancelled job's last message is dropped.
  const [compare, setCompare] = useState<CompareState | null>(null);
  const jobRef = useRef<CompareJob | null>(null);
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
  // The field being typed into after '/', ':' or 'g' (null when none), in a ref as the view is.
  const fieldRef = useRef<fields.Field | null>(null);
  const [field, setFieldState] = useState<fields.Field | null>(null);
  const setField = (f: fields.Field | null) => {
    fieldRef.current = f;
    setFieldState(f);
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

  // A comparison still running when the UI goes would keep the process alive.
  useEffect(() => () => jobRef.current?.cancel(), []);

  const refresh = () => setSnap(take());

  const quit = () => {
    jobRef.current?.cancel();
    exit();
  };
  const actions: KeyActions = {
    session,
    quit,
    showHelp: (open) => setView(open ? "help" : "main"),
    startCompare: () => {
      const mmu = props.strategy ? { strategy: props.strategy } : undefined;
      const job = new CompareJob(props.scenario, props.registry, mmu, (s) => {
        if (jobRef.current === job) setCompare({ ...s });
      });
      jobRef.current = job;
      setCompare({ ...job.state });
      setView("compare");
    },
    leaveCompare: () => {
      jobRef.current?.cancel();
      jobRef.current = null;
      setCompare(null);
      setView("main");
    },
    openField: (kind) => setField(fields.openField(kind, session)),
    acceptField: () => setField(fieldRef.current && fields.acceptField(fieldRef.current, session)),
    cancelField: () => {
      if (fieldRef.current) fields.cancelField(fieldRef.current, session);
      setField(null);
    },
    eraseInField: () => {
      setField(fieldRef.current && fields.eraseInField(fieldRef.current, session));
    },
    focusNext: () => {
      focusRef.current = (focusRef.current + 1) % PANES.length;
      setFocus(focusRef.current);
    },
    moveCursor: (dir) => {
      const n = session.snapshot(1, MAX_EVENTS, 1).events.length;
      const c = cursorRef.current;
      if (n === 0) setCursor(null);
      else if (dir === 1) setCursor(Math.min(n - 1, c === null ? 0 : c + 1));
      else setCursor(c === null || c === 0 ? null : c - 1);
    },
    goToChosenEvent: () => {
      if (cursorRef.current === null) return;
      const events = session.snapshot(1, MAX_EVENTS, 1).events;
      const row = events[events.length - 1 - cursorRef.current];
      if (row) session.selectEvent(row);
      setCursor(null);
    },
    clearCursor: () => setCursor(null),
  };

  useInput((input, key) => {
    // A notice is shown until the next key.
    session.notice = null;
    // Keys that arrive together (typed fast, pasted, sent by tmux) come as one string: each is
    // a key of its own, and one of them may open the field the next ones go into.
    const chars = [...input];
    const plain = !key.ctrl && !key.meta && !key.return && !key.escape && !key.tab;
    if (chars.length > 1 && plain) for (const ch of chars) onKey(ch, key);
    else onKey(input, key);
    refresh();
  });

  function onKey(input: string, key: Key): void {
    const name = keyName(input, key);
    const typing = fieldRef.current;
    const where = typing !== null ? "field" : viewRef.current;
    const binding = bindingFor(where, name, PANES[focusRef.current] === "events");
    if (binding) binding.run(actions, name);
    else if (typing !== null && !key.ctrl && !key.meta) {
      setField(fields.typeInField(typing, input, session));
    }
    // What a search shows may have changed under the chosen event.
    if (typing?.kind === "search") setCursor(null);
  }

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
      <Text bold color="cyan">
        {snap.backend}
      </Text>
      {`${snap.strategy !== null ? `  strategy ${snap.strategy}` : ""}  step ${snap.choices}  ${snap.running ? "running" : snap.finished ? "finished" : "paused"}  speed ${snap.speed === Infinity ? "max" : `${snap.speed}/frame`}  run-to ${snap.runTo}`}
    </Text>
  );
  const status =
    snap.notice !== null ? (
      <Text color="yellow" wrap="truncate-end">
        {snap.notice}
      </Text>
    ) : field !== null ? (
      <Text color={field.error !== null ? "red" : undefined} wrap="truncate-end">
        {fields.fieldLine(field)}
      </Text>
    ) : (
      <Text dimColor wrap="truncate-end">
        {`${snap.cost !== null ? `virtual ${snap.cost.elapsed} · ` : ""}space run/pause · s step · p back · n next ${snap.runTo} · v to the violation · `}
        g walk a GPA · / search · c compare · ? keys · q quit
      </Text>
    );
  if (view === "help") {
    return (
      <Box flexDirection="column">
        {header}
        <HelpView snap={snap} />
      </Box>
    );
  }
  if (view === "compare" && compare !== null) {
    return (
      <Box flexDirection="column">
        {header}
        <CompareView scenario={props.scenario} state={compare} />
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
export function MainView({
  snap,
  focus,
  columns = 120,
  rows = 60,
  cursor = null,
}: {
  snap: Snapshot;
  focus: number;
  columns?: number;
  rows?: number;
  cursor?: number | null;
}) {
  // One line a violation, cut to the width, at most three and a count of the rest: a height known
  // before it is drawn (wrapped text would take what the words make of it).
  const shown = snap.violations
    .slice(0, 3)
    .map((v, i) => `${i === 0 ? "violations: " : "            "}${v}`);
  if (snap.violations.length > 3)
    shown.push(
      `            … and ${snap.violations.length - 3} more (tdpemu replay lists them all)`,
    );
  const layout: Layout = layoutFor(columns, rows, topLines(snap), shown.length, snap.stats.length);
  return (
    <Box flexDirection="column">
      <Box>
        <VcpuPane snap={snap} focused={PANES[focus] === "vcpus"} />
        <WalkPane snap={snap} focused={PANES[focus] === "walk"} />
      </Box>
      <Box>
        <EventsPane
          snap={snap}
          focused={PANES[focus] === "events"}
          rows={layout.events}
          cursor={cursor}
        />
        <StatsPane
          snap={snap}
          focused={PANES[focus] === "stats"}
          lines={layout.statsLines}
          calls={layout.calls}
          costLines={layout.costLines}
        />
      </Box>
      <GpaMapPane snap={snap} focused={PANES[focus] === "map"} legend={layout.legend} />
      {shown.map((l, i) => (
        <Text key={i} color="red" wrap="truncate-end">
          {l}
        </Text>
      ))}
    </Box>
  );
}
