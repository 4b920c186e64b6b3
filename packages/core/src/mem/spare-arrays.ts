/**
 * Per-host and per-VM arrays (block owners, block → pool chunk, per-GFN bitmaps) handed from a
 * discarded host, and the VMs on it, to the next host or VM of the same size. The explorer makes
 * a host and a VM per schedule; a typed array over 64 bytes keeps its store outside the V8 heap,
 * and making and collecting those cost more than the rest of a small host. An array taken here
 * is filled as a new one would be.
 */
const SPARE_PER_LENGTH = 4;

class Spares<A extends Int32Array<ArrayBuffer> | Uint32Array<ArrayBuffer>> {
  private readonly byLength = new Map<number, A[]>();

  constructor(private readonly make: (length: number) => A) {}

  take(length: number, fill: number): A {
    const a = this.byLength.get(length)?.pop();
    return (a ?? this.make(length)).fill(fill) as A;
  }

  give(a: A): void {
    let list = this.byLength.get(a.length);
    if (list === undefined) {
      list = [];
      this.byLength.set(a.length, list);
    }
    if (list.length < SPARE_PER_LENGTH) list.push(a);
  }
}

const int32 = new Spares((n) => new Int32Array(n));
const uint32 = new Spares((n) => new Uint32Array(n));

/** An `Int32Array` of `length` elements, all `fill`. */
export function takeInt32Array(length: number, fill: number): Int32Array<ArrayBuffer> {
  return int32.take(length, fill);
}

/** Gives `a` to the next `takeInt32Array` of its length; the giver must not use it again. */
export function giveInt32Array(a: Int32Array<ArrayBuffer>): void {
  int32.give(a);
}

/** A `Uint32Array` of `length` elements, all 0. */
export function takeUint32Array(length: number): Uint32Array<ArrayBuffer> {
  return uint32.take(length, 0);
}

/** Gives `a` to the next `takeUint32Array` of its length; the giver must not use it again. */
export function giveUint32Array(a: Uint32Array<ArrayBuffer>): void {
  uint32.give(a);
}
