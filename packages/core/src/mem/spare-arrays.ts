/**
 * Per-host index arrays (block owners, block → pool chunk) handed from a discarded host to the
 * next host of the same size. The explorer makes a host per schedule; a typed array over 64
 * bytes keeps its store outside the V8 heap, and making and collecting those cost more than the
 * rest of a small host. An array taken here is filled as a new one would be.
 */
const SPARE_PER_LENGTH = 4;
const spare = new Map<number, Int32Array<ArrayBuffer>[]>();

/** An `Int32Array` of `length` elements, all `fill`. */
export function takeInt32Array(length: number, fill: number): Int32Array<ArrayBuffer> {
  const a = spare.get(length)?.pop();
  if (a === undefined) return new Int32Array(length).fill(fill);
  return a.fill(fill);
}

/** Gives `a` to the next `takeInt32Array` of its length; the giver must not use it again. */
export function giveInt32Array(a: Int32Array<ArrayBuffer>): void {
  let list = spare.get(a.length);
  if (list === undefined) {
    list = [];
    spare.set(a.length, list);
  }
  if (list.length < SPARE_PER_LENGTH) list.push(a);
}
