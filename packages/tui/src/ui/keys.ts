/**
 * Every key the terminal UI knows, in one table: the input handler finds the key's binding here
 * and runs it, and the help screen (`?`) lists this table, so the two cannot disagree.
 */
import type { Key } from "ink";
import { EVENT_KINDS, SPEEDS, type Session, type Snapshot } from "../session.js";

/** Where a key is typed: a view, or a field being typed into (`/`, `:`, `g`). */
export type KeyContext = "main" | "help" | "compare" | "field";

/** What a key can do to the UI beyond the session; the App implements it. */
export interface KeyActions {
  session: Session;
  quit(): void;
  showHelp(open: boolean): void;
  startCompare(): void;
  /** Cancels a comparison under way, or closes the finished one. */
  leaveCompare(): void;
  openField(kind: "search" | "step" | "gpa"): void;
  acceptField(): void;
  cancelField(): void;
  eraseInField(): void;
  focusNext(): void;
  /** The events pane's chosen event: older (1) or newer (-1). */
  moveCursor(dir: 1 | -1): void;
  goToChosenEvent(): void;
  /** Forgets the chosen event (a filter changed what the pane lists). */
  clearCursor(): void;
}

export interface KeyBinding {
  /** The key names it answers to (`keyName`). */
  keys: readonly string[];
  /** Where it answers: one context, or several (it is listed once, under "anywhere"). */
  contexts: readonly KeyContext[];
  /** Only with the events pane focused. */
  eventsPane?: boolean;
  does: string;
  /** What it would do now, beside its help line. */
  now?: (snap: Snapshot) => string;
  run(a: KeyActions, name: string): void;
}

const pause = (a: KeyActions) => {
  a.session.running = false;
};

export const KEY_TABLE: readonly KeyBinding[] = [
  {
    keys: ["space"],
    contexts: ["main"],
    does: "pause / run",
    now: (s) => (s.finished ? "the run has ended; r restarts" : s.running ? "pauses" : "runs"),
    run: (a) => {
      a.session.running = !a.session.running;
    },
  },
  {
    keys: ["s"],
    contexts: ["main"],
    does: "step one atomic point",
    run: (a) => {
      pause(a);
      a.session.step();
    },
  },
  {
    keys: ["n"],
    contexts: ["main"],
    does: "run to the next event of the chosen kind",
    now: (s) => `to the next ${s.runTo} event`,
    run: (a) => {
      pause(a);
      a.session.stepToEvent();
    },
  },
  {
    keys: ["p"],
    contexts: ["main"],
    does: "one step back (the run replayed to it)",
    now: (s) => (s.choices === 0 ? "at the start" : `back to step ${s.choices - 1}`),
    run: (a) => a.session.stepBack(),
  },
  {
    keys: ["v"],
    contexts: ["main"],
    does: "run to the violation (or the end), stop on it",
    run: (a) => {
      pause(a);
      a.session.runToEnd();
    },
  },
  {
    keys: ["k"],
    contexts: ["main"],
    does: `n's kind: ${EVENT_KINDS.join(", ")}`,
    run: (a) => {
      const s = a.session;
      s.runTo = EVENT_KINDS[(EVENT_KINDS.indexOf(s.runTo) + 1) % EVENT_KINDS.length]!;
    },
  },
  {
    keys: ["+", "=", "-"],
    contexts: ["main"],
    does: "faster / slower",
    run: (a, name) => {
      const s = a.session;
      const i = s.speedIndex + (name === "-" ? -1 : 1);
      s.speedIndex = Math.min(SPEEDS.length - 1, Math.max(0, i));
    },
  },
  {
    keys: ["[", "]", "{", "}"],
    contexts: ["main"],
    does: "walk the previous / next page, 2 MiB back / on",
    run: (a, name) => {
      const by = { "[": -4096, "]": 4096, "{": -(2 ** 21), "}": 2 ** 21 }[name] ?? 0;
      a.session.moveWalk(by);
    },
  },
  {
    keys: ["g"],
    contexts: ["main"],
    does: "walk a GPA: type it (0x7ff000, 7ff000, 6M), enter",
    run: (a) => a.openField("gpa"),
  },
  {
    keys: ["f"],
    contexts: ["main"],
    does: "the walk follows each new fault, or stays",
    now: (s) => (s.followFaults ? "on" : "off"),
    run: (a) => {
      a.session.followFaults = !a.session.followFaults;
    },
  },
  {
    keys: ["r"],
    contexts: ["main"],
    does: "restart the scenario from the start, paused",
    run: (a) => {
      pause(a);
      a.session.restart();
    },
  },
  {
    keys: ["b"],
    contexts: ["main"],
    does: "next backend (restart the scenario on it)",
    run: (a) => a.session.cycleBackend(),
  },
  {
    keys: ["c"],
    contexts: ["main"],
    does: "compare the backends, in the background",
    run: (a) => a.startCompare(),
  },
  { keys: ["tab"], contexts: ["main"], does: "focus the next pane", run: (a) => a.focusNext() },
  {
    keys: ["up", "down"],
    contexts: ["main"],
    eventsPane: true,
    does: "events pane: choose an event (up is older)",
    run: (a, name) => a.moveCursor(name === "up" ? 1 : -1),
  },
  {
    keys: ["enter"],
    contexts: ["main"],
    eventsPane: true,
    does: "events pane: go to the chosen event's step and GPA",
    run: (a) => a.goToChosenEvent(),
  },
  {
    keys: ["t"],
    contexts: ["main"],
    does: "the events of one task: each in turn, then all",
    now: (s) => s.taskFilter ?? "all tasks",
    run: (a) => {
      a.session.cycleTaskFilter();
      a.clearCursor();
    },
  },
  {
    keys: [":"],
    contexts: ["main"],
    does: "go to a step: type its number, enter",
    run: (a) => a.openField("step"),
  },
  {
    keys: ["/"],
    contexts: ["main"],
    does: "show only the events containing what you type",
    now: (s) => (s.search === "" ? "" : `"${s.search}"`),
    run: (a) => {
      a.openField("search");
      a.clearCursor();
    },
  },
  { keys: ["?"], contexts: ["main"], does: "this list of keys", run: (a) => a.showHelp(true) },
  {
    keys: ["?", "esc"],
    contexts: ["help"],
    does: "close this list",
    run: (a) => a.showHelp(false),
  },
  {
    keys: ["c", "esc"],
    contexts: ["compare"],
    does: "cancel it while it runs (nothing is kept), or close it",
    run: (a) => a.leaveCompare(),
  },
  {
    keys: ["enter"],
    contexts: ["field"],
    does: "go there, or keep the search",
    run: (a) => a.acceptField(),
  },
  {
    keys: ["esc"],
    contexts: ["field"],
    does: "cancel: nothing changes (a search clears)",
    run: (a) => a.cancelField(),
  },
  {
    keys: ["backspace"],
    contexts: ["field"],
    does: "erase the last character",
    run: (a) => a.eraseInField(),
  },
  // In a field q is text.
  { keys: ["q"], contexts: ["main", "help", "compare"], does: "quit", run: (a) => a.quit() },
  {
    keys: ["ctrl+c"],
    contexts: ["main", "help", "compare", "field"],
    does: "quit, even while typing",
    run: (a) => a.quit(),
  },
];

const CONTROL_CHARS: Record<string, string> = {
  "\r": "enter",
  "\n": "enter",
  "\t": "tab",
  "\u001b": "esc",
  "\u007f": "backspace",
  "\b": "backspace",
};

/** The name a keystroke has in the table: a character, or tab, up, down, enter, esc... */
export function keyName(input: string, key: Key): string {
  if (key.ctrl && input === "c") return "ctrl+c";
  if (key.tab) return "tab";
  if (key.upArrow) return "up";
  if (key.downArrow) return "down";
  if (key.return) return "enter";
  if (key.escape) return "esc";
  // Terminals send DEL (0x7f) for backspace, which ink reports as delete.
  if (key.backspace || key.delete) return "backspace";
  if (input === " ") return "space";
  // The same keys as characters of a chunk of several (keys sent together reach ink as one).
  return CONTROL_CHARS[input] ?? input;
}

/** The binding of a key where it is typed, or undefined (then it does nothing there). */
export function bindingFor(
  context: KeyContext,
  name: string,
  eventsFocused: boolean,
): KeyBinding | undefined {
  return KEY_TABLE.find(
    (b) =>
      b.contexts.includes(context) &&
      b.keys.includes(name) &&
      (b.eventsPane !== true || eventsFocused),
  );
}

/** The help screen's sections: where the keys are typed ("anywhere": in several places). */
export const SECTIONS: readonly { title: string; bindings: readonly KeyBinding[] }[] = [
  { title: "in the main view", bindings: KEY_TABLE.filter((b) => b.contexts.join() === "main") },
  {
    title: "typing after g, : or /",
    bindings: KEY_TABLE.filter((b) => b.contexts.join() === "field"),
  },
  { title: "in this list", bindings: KEY_TABLE.filter((b) => b.contexts.join() === "help") },
  {
    title: "in the comparison",
    bindings: KEY_TABLE.filter((b) => b.contexts.join() === "compare"),
  },
  { title: "anywhere", bindings: KEY_TABLE.filter((b) => b.contexts.length > 1) },
];
