/**
 * How much of each pane fits the terminal: the main view is exactly as tall as the terminal,
 * from the minimum (100x30: a compact view, one map row, no legend, the stats without the call
 * list) to a large one (more events, a taller and wider map). Ink draws what it is given; a view
 * taller than the terminal scrolls its top (the header, the vCPUs and the walk) out of sight.
 */

export interface Layout {
  /** Event rows shown (the latest). */
  events: number;
  /** Stats rows shown, and call rows under them. */
  statsLines: number;
  calls: number;
  /** Rows left under the call list for the cost breakdown (its heading and kinds), or 0. */
  costLines: number;
  mapRows: number;
  mapCols: number;
  /** Whether the map's legend line fits. */
  legend: boolean;
}

/** The map's size, which the snapshot needs before anything else is known. */
export function mapSize(
  columns: number,
  rows: number,
): { mapRows: number; mapCols: number; legend: boolean } {
  return {
    mapRows: rows >= 70 ? 8 : rows >= 45 ? 4 : rows >= 36 ? 2 : 1,
    // Inside the border and padding; at most 256 cells a row.
    mapCols: Math.max(16, Math.min(256, columns - 4)),
    legend: rows >= 36,
  };
}

/**
 * The rest, given what the top row holds (its tallest pane's lines: the walk's roots and rows,
 * or the tasks), the lines a violation takes under the panes, and the stats there are.
 */
export function layoutFor(
  columns: number,
  rows: number,
  topLines: number,
  violationLines: number,
  statsCount: number,
): Layout {
  const map = mapSize(columns, rows);
  const header = 1;
  const status = 1;
  const pane = 3; // a border above and below, a title
  const mapHeight = map.mapRows + (map.legend ? 1 : 0) + pane;
  const middle = rows - header - status - (topLines + pane) - mapHeight - violationLines - pane;
  // At the minimum size the rows left are never fewer than one; a smaller terminal is refused
  // before this (MIN_ROWS), so the view is never taller than the terminal.
  const lines = Math.max(1, middle);
  const statsLines = Math.min(statsCount, lines);
  // The call list needs its heading line and one call at least.
  const calls = lines - statsLines >= 2 ? Math.min(12, lines - statsLines - 1) : 0;
  // What the call list leaves: the cost breakdown's heading and up to three kinds.
  const costLines = Math.max(0, Math.min(4, lines - statsLines - (calls > 0 ? calls + 1 : 0)));
  return { events: lines, statsLines, calls, costLines, ...map };
}
