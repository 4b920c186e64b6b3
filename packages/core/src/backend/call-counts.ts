/**
 * `n` zeros in a packed array of small integers, made element by element: `new Array(n).fill(0)`
 * is holey (every increment then checks for a hole), and `Array.from({ length: n }, f)` takes
 * V8's generic array-like path, ten times slower than this loop (it was 5 % of an explorer
 * schedule, which builds a TD's counters afresh).
 */
export function packedZeros(n: number): number[] {
  const a: number[] = [];
  for (let i = 0; i < n; i++) a.push(0);
  return a;
}

/**
 * A backend's call counts (`BackendStats.calls`: SEAMCALLs, RMP instructions, exceptions raised).
 * How many times each call was made, counted by index in an array (a string-keyed record costs a
 * keyed property store per call) and reported as the record `backendStats.calls` has always
 * been: names in the order each call was first made, as insertion into a record orders them.
 * A plain array, not a typed one: a typed array over 64 bytes has its store outside the heap,
 * which cost more to make and collect than anything else of a TD built per explorer schedule.
 */
export class CallCounts {
  private readonly n: number[];
  private readonly order: number[] = [];

  constructor(readonly names: readonly string[]) {
    this.n = packedZeros(names.length);
  }

  /** One more call `i`; returns how many there have been. */
  add(i: number): number {
    const n = ++this.n[i]!;
    if (n === 1) this.order.push(i);
    return n;
  }

  /** `k` more calls `i` at once. */
  addMany(i: number, k: number): void {
    if (k <= 0) return;
    if (this.n[i] === 0) this.order.push(i);
    this.n[i]! += k;
  }

  get(i: number): number {
    return this.n[i]!;
  }

  /** The calls made at least once, in first-use order. */
  used(): readonly number[] {
    return this.order;
  }

  /** The counts by name, in first-use order (a new object each time). */
  record(): Record<string, number> {
    const r: Record<string, number> = {};
    for (const i of this.order) r[this.names[i]!] = this.n[i]!;
    return r;
  }
}
