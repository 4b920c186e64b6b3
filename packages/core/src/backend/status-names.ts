/**
 * A technology's status codes and their architectural names, both ways: a backend names a
 * status in its events, stats and messages (`name`), and reads a name a user wrote, for fault
 * injection (`code`), with the same one-line error in every backend when the name is unknown.
 * Codes are numbers (SEV's RMP instructions) or bigints (TDX's 64-bit SEAMCALL statuses).
 */
export class StatusNames<T extends number | bigint> {
  private readonly byCode = new Map<T, string>();
  private readonly byName = new Map<string, T>();

  constructor(
    /** What the codes are, for messages: "TDX status", "RMP status". */
    readonly what: string,
    entries: Iterable<readonly [T, string]>,
    /** How a code without a name is shown (default: decimal for numbers, 0x hex for bigints). */
    private readonly unnamed: (code: T) => string = (c) =>
      typeof c === "bigint" ? `0x${c.toString(16)}` : String(c),
  ) {
    for (const [code, name] of entries) {
      if (this.byName.has(name)) throw new Error(`${what}: the name ${name} is given twice`);
      this.byCode.set(code, name);
      this.byName.set(name, code);
    }
  }

  /** The name of `code`, or the code itself if it has none. */
  name(code: T): string {
    return this.byCode.get(code) ?? this.unnamed(code);
  }

  /** The code named `name`; an unknown name throws one line listing the known ones. */
  code(name: string): T {
    const c = this.byName.get(name);
    if (c === undefined)
      throw new Error(`unknown ${this.what} '${name}' (known: ${this.names().join(", ")})`);
    return c;
  }

  names(): string[] {
    return [...this.byName.keys()];
  }
}
