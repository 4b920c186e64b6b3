/** The views that replace the panes: the list of keys (`?`) and the comparison (`c`). */
import { Box, Text } from "ink";
import type { Scenario } from "@tdpemu/core";
import type { CompareState } from "../compare-job.js";
import { formatCompare, type CompareRow, type Snapshot } from "../session.js";
import { SECTIONS, type KeyBinding } from "./keys.js";

const SHOWN: Record<string, string> = { up: "↑", down: "↓" };

/** One section of the list; `wrap`: long lines wrap (the right column has rows to spare). */
function Section({
  title,
  bindings,
  snap,
  wrap = false,
}: {
  title: string;
  bindings: readonly KeyBinding[];
  snap: Snapshot;
  wrap?: boolean;
}) {
  return (
    <Box flexDirection="column">
      <Text underline>{title}</Text>
      {bindings.map((b) => {
        const now = b.now?.(snap) ?? "";
        return (
          <Text key={b.keys.join(" ")} wrap={wrap ? "wrap" : "truncate-end"}>
            {`${b.keys
              .map((k) => SHOWN[k] ?? k)
              .join(" ")
              .padEnd(8)} ${b.does}`}
            <Text color="cyan">{now === "" ? "" : `  (now: ${now})`}</Text>
          </Text>
        );
      })}
    </Box>
  );
}

/**
 * Every binding of the key table, by where it is typed, with what it would do now: the main
 * view's keys on the left, the rest on the right, so that the list fits a 100x30 terminal.
 */
export function HelpView({ snap }: { snap: Snapshot }) {
  const [main, ...rest] = SECTIONS;
  return (
    <Box flexDirection="column" borderStyle="round" paddingX={1}>
      <Text bold>keys</Text>
      <Box>
        <Box width="62%" flexDirection="column">
          <Section {...main!} snap={snap} />
        </Box>
        <Box width="38%" flexDirection="column" paddingLeft={1}>
          {rest.map((s) => (
            <Section key={s.title} {...s} snap={snap} wrap />
          ))}
        </Box>
      </Box>
      <Text dimColor>press ? or esc to go back</Text>
    </Box>
  );
}

const BAR = 30;

export function bar(fraction: number): string {
  const n = Math.round(Math.max(0, Math.min(1, fraction)) * BAR);
  const percent = String(Math.floor(fraction * 100)).padStart(3);
  return `${"█".repeat(n)}${"░".repeat(BAR - n)} ${percent}%`;
}

function rowState(row: CompareRow | undefined, running: boolean): string {
  if (row?.error !== undefined) return "not run";
  if (row !== undefined) return `done in ${row.values.ms} ms`;
  return running ? "running" : "waiting";
}

/** The comparison: a bar per backend and one overall while it runs, then the table. */
export function CompareView({ scenario, state }: { scenario: Scenario; state: CompareState }) {
  const rows = state.rows;
  const done = rows.every((r) => r !== undefined);
  if (done && state.error === null) {
    return (
      <Box flexDirection="column" borderStyle="round" paddingX={1}>
        <Text bold>comparison: the scenario on every backend</Text>
        {formatCompare(scenario, rows)
          .split("\n")
          .map((l, i) => (
            <Text key={i}>{l}</Text>
          ))}
        <Text dimColor>press c or esc to go back</Text>
      </Box>
    );
  }
  const width = Math.max(7, ...state.backends.map((b) => b.length));
  const current = rows.findIndex((r) => r === undefined);
  const overall = state.fractions.reduce((a, f) => a + f, 0) / Math.max(1, state.fractions.length);
  return (
    <Box flexDirection="column" borderStyle="round" paddingX={1}>
      <Text bold>comparison: the scenario on every backend, running in the background</Text>
      {state.backends.map((b, i) => (
        <Text key={b} wrap="truncate-end">
          {`${b.padEnd(width)} ${bar(state.fractions[i] ?? 0)}  `}
          <Text dimColor>{rowState(rows[i], i === current)}</Text>
        </Text>
      ))}
      <Text bold wrap="truncate-end">{`${"overall".padEnd(width)} ${bar(overall)}`}</Text>
      {state.error !== null ? (
        <Text color="red" wrap="truncate-end">{`stopped: ${state.error}`}</Text>
      ) : null}
      <Text dimColor>
        {state.error !== null ? "press c or esc to go back" : "press esc or c to cancel it"}
      </Text>
    </Box>
  );
}
