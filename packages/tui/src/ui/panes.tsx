/** The panes of the terminal UI: each renders one part of a `Snapshot`, nothing else. */
import { Box, Text } from "ink";
import { MAP_CELL_CLASSES } from "@tdpemu/core";
import type { EventRow, Snapshot } from "../session.js";
import { formatGpa } from "./gpa-text.js";

export function Pane(props: {
  title: string;
  focused: boolean;
  width?: number | string;
  children: React.ReactNode;
}) {
  return (
    <Box
      flexDirection="column"
      borderStyle="round"
      borderColor={props.focused ? "cyan" : "gray"}
      width={props.width}
      paddingX={1}
    >
      <Text
        bold
        color={props.focused ? "cyan" : undefined}
        wrap="truncate-end"
      >{`${props.focused ? "▶ " : ""}${props.title}`}</Text>
      {props.children}
    </Box>
  );
}

const STATE_COLOR: Record<string, string> = {
  done: "gray",
  blocked: "red",
  retrying: "yellow",
  running: "green",
};

/** One colour per task, the same in every pane: the host, then the vCPUs in turn. */
const TASK_COLORS = ["cyan", "yellow", "magenta", "green", "blue", "redBright"];
export function taskColor(task: string): string {
  if (task === "host") return "white";
  const m = /^vcpu(\d+)$/.exec(task);
  return m ? TASK_COLORS[Number(m[1]) % TASK_COLORS.length]! : "gray";
}

export function VcpuPane({ snap, focused }: { snap: Snapshot; focused: boolean }) {
  return (
    <Pane title="vCPUs and host" focused={focused} width="45%">
      <Text dimColor wrap="truncate-end">
        {"task   state              op       gpa             steps retries"}
      </Text>
      {snap.vcpus.map((v) => (
        <Text key={v.id} wrap="truncate-end">
          <Text color={taskColor(v.name)}>{v.name.padEnd(7)}</Text>
          <Text color={STATE_COLOR[v.state] ?? "white"}>{v.state.padEnd(19)}</Text>
          {`${v.op.padEnd(9)}${v.gpa.padEnd(15)}${String(v.steps).padStart(6)} ${String(v.retries).padStart(7)}`}
        </Text>
      ))}
    </Pane>
  );
}

/** The walk's GPA as asked for: a shared alias with its bit, and what it is the alias of. */
function walkTitleGpa(snap: Snapshot): string {
  const plain = formatGpa(snap.walkGpa);
  if (!snap.walkShared) return plain;
  return `${formatGpa(snap.walkGpa, true, snap.sharedBit)} (shared alias of ${plain})`;
}

export function WalkPane({ snap, focused }: { snap: Snapshot; focused: boolean }) {
  return (
    <Pane
      title={`walk of GPA ${walkTitleGpa(snap)} · ${
        snap.followFaults ? "follows faults (f)" : "fixed (f follows)"
      } · [ ] { } move`}
      focused={focused}
      width="55%"
    >
      {snap.walk.length === 0 ? <Text dimColor>no root loaded yet</Text> : null}
      {snap.walk.map((t) => (
        <Box key={t.title} flexDirection="column">
          <Text underline>{t.title}</Text>
          {t.rows.map((r) => (
            <Text key={r.level} wrap="truncate-end">
              {`L${r.level} [${String(r.index).padStart(3)}] `}
              <Text
                color={
                  r.kind === "frozen"
                    ? "magenta"
                    : r.kind === "leaf"
                      ? "green"
                      : r.kind === "table"
                        ? "blue"
                        : "gray"
                }
              >
                {r.hex}
              </Text>
              {r.secure ? <Text color="yellow">{` ${r.secure.padEnd(10)}`}</Text> : null}
              {` ${r.kind.padEnd(6)} ${r.flags}`}
            </Text>
          ))}
        </Box>
      ))}
    </Pane>
  );
}

const TONE: Record<EventRow["tone"], string | undefined> = {
  error: "red",
  busy: "yellow",
  fault: "cyan",
  plain: undefined,
};

export function EventsPane({
  snap,
  focused,
  rows,
  cursor = null,
}: {
  snap: Snapshot;
  focused: boolean;
  rows?: number;
  cursor?: number | null;
}) {
  // The window ends at the latest event, or scrolls up to keep the chosen one (`cursor`, counted
  // from the latest) in view.
  const n = snap.events.length;
  const shown = rows ?? n;
  const offset = cursor === null ? 0 : Math.max(0, cursor - shown + 1);
  const events = snap.events.slice(Math.max(0, n - shown - offset), n - offset);
  const chosen = cursor === null ? -1 : events.length - 1 - (cursor - offset);
  // Columns as wide as what they hold: the steps shown, the task names.
  const stepWidth = String(events.at(-1)?.step ?? 0).length;
  const taskWidth = Math.max(4, ...events.map((e) => e.task.length));
  return (
    <Pane
      title={`events (latest last${snap.taskFilter !== null ? `; ${snap.taskFilter} only, t for more` : ""}${snap.search !== "" ? `; containing "${snap.search}"` : ""}${cursor !== null ? `; step ${events[chosen]?.at ?? "?"} chosen, enter goes there` : ""})`}
      focused={focused}
      width="67%"
    >
      {events.length === 0 ? <Text dimColor>none yet: press s to step</Text> : null}
      {events.map((e, i) => (
        <Text key={i} wrap="truncate-end" inverse={i === chosen}>
          {`${String(e.step).padStart(stepWidth)} `}
          <Text color={taskColor(e.task)}>{e.task.padEnd(taskWidth)}</Text>
          <Text color={TONE[e.tone]}>{` ${e.text}`}</Text>
        </Text>
      ))}
    </Pane>
  );
}

export function StatsPane({
  snap,
  focused,
  lines = snap.stats.length,
  calls = 6,
  costLines = 4,
}: {
  snap: Snapshot;
  focused: boolean;
  lines?: number;
  calls?: number;
  costLines?: number;
}) {
  // The cost breakdown takes only the rows the call list leaves (layout.ts).
  const costRows =
    snap.cost !== null && costLines >= 2 ? Math.min(costLines - 1, snap.cost.kinds.length) : 0;
  return (
    <Pane title="stats" focused={focused} width="33%">
      {snap.stats.slice(0, lines).map(([k, v]) => (
        <Text key={k} wrap="truncate-end">{`${k.padEnd(15)} ${v}`}</Text>
      ))}
      {calls > 0 ? <Text dimColor>calls</Text> : null}
      {snap.calls.slice(0, calls).map(([k, n]) => (
        <Text key={k} wrap="truncate-end">{`  ${k.padEnd(24)} ${n}`}</Text>
      ))}
      {costRows > 0 ? (
        <Text dimColor wrap="truncate-end">{`cost (${snap.cost!.table})`}</Text>
      ) : null}
      {snap.cost?.kinds.slice(0, costRows).map(([k, v]) => (
        <Text key={`cost-${k}`} wrap="truncate-end">{`  ${k.padEnd(24)} ${v}`}</Text>
      ))}
    </Pane>
  );
}

const CELL_COLOR: Record<string, string> = {
  ".": "gray",
  s: "green",
  p: "blue",
  P: "magenta",
  "?": "yellow",
  b: "red",
};

export function GpaMapPane({
  snap,
  focused,
  legend = true,
}: {
  snap: Snapshot;
  focused: boolean;
  legend?: boolean;
}) {
  const { cells, cols, cellBytes } = snap.map;
  const rows: string[] = [];
  for (let i = 0; i < cells.length; i += cols) rows.push(cells.slice(i, i + cols));
  return (
    <Pane
      title={`GPA map (${cellBytes >= 2 ** 20 ? `${cellBytes / 2 ** 20} MiB` : `${cellBytes / 1024} KiB`} a cell)`}
      focused={focused}
    >
      {rows.map((r, i) => (
        <Text key={i}>
          {[...r].map((c, j) => (
            <Text key={j} color={CELL_COLOR[c]}>
              {c}
            </Text>
          ))}
        </Text>
      ))}
      {legend ? (
        <Text dimColor wrap="truncate-end">
          {Object.entries(MAP_CELL_CLASSES)
            .map(([c, what]) => `${c} ${what}`)
            .join("  ")}
        </Text>
      ) : null}
    </Pane>
  );
}
