/**
 * Text that came from the input (a key, a value, a path, what was typed into a field) shown as
 * one line of plain text: control characters would otherwise break the line or recolour the
 * terminal.
 */

/** C0 and C1 controls, DEL, and the Unicode line and paragraph separators. */
export function isControl(c: number): boolean {
  return c <= 0x1f || (c >= 0x7f && c <= 0x9f) || c === 0x2028 || c === 0x2029;
}

/** `text` with each control character as a \u escape, and a newline as a space. */
export function printable(text: string): string {
  let out = "";
  for (const ch of text) {
    const c = ch.charCodeAt(0);
    out += ch === "\n" ? " " : isControl(c) ? `\\u${c.toString(16).padStart(4, "0")}` : ch;
  }
  return out;
}
