/**
 * The one-line fields of the status line: a search of the events (`/`), a step to go to (`:`),
 * a GPA to walk (`g`). What each accepts, what enter does with it, and how the line reads.
 */
import type { Session } from "../session.js";
import { parseGpaText } from "./gpa-text.js";
import { isControl } from "../printable.js";

export type FieldKind = "search" | "step" | "gpa";

export interface Field {
  kind: FieldKind;
  text: string;
  /** Why enter refused the text (shown in the field until the next key), or null. */
  error: string | null;
}

/** Longest text a field takes: a step number fits in 9 digits, a GPA expression in 40. */
const MAX: Record<FieldKind, number> = { search: 80, step: 9, gpa: 40 };

export function openField(kind: FieldKind, session: Session): Field {
  return { kind, text: kind === "search" ? session.search : "", error: null };
}

/** The field after a character is typed into it (one it does not take changes nothing). */
export function typeInField(f: Field, input: string, session: Session): Field {
  const takes =
    f.kind === "step"
      ? /^[0-9]$/.test(input)
      : input.length > 0 && ![...input].some((ch) => isControl(ch.charCodeAt(0)));
  if (!takes || f.text.length + input.length > MAX[f.kind]) return { ...f, error: null };
  return changed({ ...f, text: f.text + input, error: null }, session);
}

export function eraseInField(f: Field, session: Session): Field {
  return changed({ ...f, text: f.text.slice(0, -1), error: null }, session);
}

/** A search filters the events as it is typed. */
function changed(f: Field, session: Session): Field {
  if (f.kind === "search") session.search = f.text;
  return f;
}

/** Esc: nothing changes, and a search typed so far is cleared. */
export function cancelField(f: Field, session: Session): void {
  if (f.kind === "search") session.search = "";
}

/** Enter: the field's text takes effect and the field closes (null), or it stays with an error. */
export function acceptField(f: Field, session: Session): Field | null {
  if (f.kind === "step") {
    if (f.text !== "") session.goToStep(Number(f.text));
    return null;
  }
  if (f.kind === "gpa") {
    const p = parseGpaText(f.text, { memory: session.memory, sharedBit: session.sharedBit() });
    if (!p.ok) return { ...f, error: p.error };
    session.jumpTo(p.gpa, p.shared);
  }
  return null;
}

const PROMPT: Record<FieldKind, [string, string]> = {
  search: ["search the events", "enter keeps it, esc clears it"],
  step: ["go to step", "enter goes, esc cancels"],
  gpa: ["walk GPA", "enter jumps, esc cancels"],
};

/** The status line while the field is open. */
export function fieldLine(f: Field): string {
  const [what, keys] = PROMPT[f.kind];
  return `${what}: ${f.text}▏ ${f.error !== null ? `✗ ${f.error}` : `(${keys})`}`;
}
