/**
 * Small helpers over typed arrays shared by the emulator's indexes: bitmaps kept in array words
 * (occupancy of page-table and S-EPT pages, assigned PAMT granules) and arrays grown by copying.
 */

/**
 * The lowest set bit at or above bit `from` of the bitmap in `words[base .. base + nWords)`
 * (bit `i & 31` of word `i >>> 5`), or -1. Walking `for (i = next(.., 0); i >= 0; i = next(.., i + 1))`
 * visits the set bits in ascending order, a word at a time.
 */
export function nextSetBit(
  words: Uint32Array | Int32Array,
  base: number,
  nWords: number,
  from: number,
): number {
  let w = from >>> 5;
  if (w >= nWords) return -1;
  // The first word keeps only the bits at or above `from`.
  let bits = words[base + w]! & (-1 << (from & 31));
  for (;;) {
    if (bits !== 0) return (w << 5) | (31 - Math.clz32(bits & -bits));
    if (++w === nWords) return -1;
    bits = words[base + w]!;
  }
}

/** `to` with `from` copied to its start: an array grown to `to`'s length. */
export function grown<T extends Uint8Array | Uint16Array | Uint32Array | Int32Array | Float64Array>(
  from: T,
  to: T,
): T {
  (to as Uint8Array).set(from);
  return to;
}

/** The first index in `[lo, hi)` of the ascending `a` whose value is not below `x` (`hi` if none). */
export function lowerBound(a: Float64Array, lo: number, hi: number, x: number): number {
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid]! < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
