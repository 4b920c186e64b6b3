/** A count as the reports print it: digits grouped by thousands ("1,004") on every locale. */
export function grouped(x: number): string {
  return x.toLocaleString("en-US");
}
