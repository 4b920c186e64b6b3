/**
 * The GPA a person types after `g`: hex (`0x7ff000`, `7ff000`), an offset with a size suffix
 * (`6M` is 0x600000; K, M, G, T, with or without `iB`), or terms joined by `+` or `|`, so that
 * the shared alias of a GPA reads as it is written (`0x800000000000|0x7ff000`).
 *
 * A bare number is hex, as GPAs are printed everywhere in the UI; a decimal count needs its
 * suffix. The shared bit (TDX's bit gpaw-1) is taken off and reported apart: the walk of a GPA
 * and of its shared alias is the same walk (the direct root is walked at the alias).
 */
import { printable } from "../printable.js";

/** What the VM allows: its memory, and the GPA value of its shared bit (0 without one). */
export interface GpaLimits {
  memory: number;
  sharedBit: number;
}

export type GpaParse = { ok: true; gpa: number; shared: boolean } | { ok: false; error: string };

const UNITS: Record<string, bigint> = { k: 1n << 10n, m: 1n << 20n, g: 1n << 30n, t: 1n << 40n };
const EXPECTED = "expected hex (0x7ff000, 7ff000) or a size (6M, 2MiB, 1G, 4K)";

/** One term as a byte address, or null when it is not one. */
function term(t: string): bigint | null {
  if (/^0x[0-9a-f]+$/i.test(t)) return BigInt(t);
  const sized = /^([0-9]+)([kmgt])(ib|b)?$/i.exec(t);
  if (sized) return BigInt(sized[1]!) * UNITS[sized[2]!.toLowerCase()]!;
  if (/^[0-9a-f]+$/i.test(t)) return BigInt(`0x${t}`);
  return null;
}

/** A size in the largest binary unit that divides it (1 GiB, 64 MiB, 12 KiB, 100 bytes). */
export function formatBytes(n: number): string {
  for (const [unit, shift] of [
    ["TiB", 40],
    ["GiB", 30],
    ["MiB", 20],
    ["KiB", 10],
  ] as const) {
    if (n >= 2 ** shift && n % 2 ** shift === 0) return `${n / 2 ** shift} ${unit}`;
  }
  return `${n} bytes`;
}

/** The GPA as the UI prints it: hex, with the shared bit when it is the shared alias. */
export function formatGpa(gpa: number, shared = false, sharedBit = 0): string {
  return `0x${(shared ? gpa + sharedBit : gpa).toString(16)}`;
}

export function parseGpaText(text: string, limits: GpaLimits): GpaParse {
  const t = text.trim().replace(/_/g, "");
  if (t === "") return { ok: false, error: `no GPA typed: ${EXPECTED}` };
  let value = 0n;
  let op = "+";
  for (const piece of t.split(/\s*([+|])\s*/)) {
    if (piece === "+" || piece === "|") {
      op = piece;
      continue;
    }
    const v = term(piece);
    if (v === null) return { ok: false, error: `'${printable(piece)}' is not a GPA: ${EXPECTED}` };
    value = op === "+" ? value + v : value | v;
  }
  const memory = BigInt(limits.memory);
  const bit = BigInt(limits.sharedBit);
  const shared = bit > 0n && (value & bit) !== 0n;
  const gpa = shared ? value - bit : value;
  if (gpa >= memory) {
    // A TDX shared alias (bit 47 or 51) typed on a VM without a shared bit.
    const alias = (value & ((1n << 47n) | (1n << 51n))) !== 0n;
    const noBit = bit === 0n && alias ? " (this VM has no shared bit)" : "";
    const what = `0x${value.toString(16)} is beyond the guest's ${formatBytes(limits.memory)}`;
    const orShared = bit > 0n ? ` (shared: | 0x${bit.toString(16)})` : "";
    const expected = `expected 0x0 to 0x${(memory - 1n).toString(16)}${orShared}`;
    return { ok: false, error: `${what}${noBit}: ${expected}` };
  }
  return { ok: true, gpa: Number(gpa), shared };
}
