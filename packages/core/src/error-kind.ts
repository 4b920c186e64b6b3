/**
 * tdpemu's errors are recognised by kind, not by class. A plugin can run against another copy of
 * the core than the command's (a plugin with its own node_modules beside an unbundled CLI, a
 * test harness), and `instanceof` fails across copies: a `KvmBug` a plugin throws would end as
 * an internal error instead of a violation. So each error class carries its kind on its
 * prototype under a registered symbol (`Symbol.for`), which every copy, and every realm, shares;
 * `Class.is(e)` reads it.
 *
 * Below every layer of `docs/architecture.md`: any layer's errors use it.
 */
const KIND = Symbol.for("tdpemu.errorKind");

/** Marks `cls` (and its subclasses) as errors of `kind`, and names their instances after it. */
export function defineErrorKind(cls: { prototype: Error }, kind: string): void {
  Object.defineProperty(cls.prototype, KIND, { value: kind });
  Object.defineProperty(cls.prototype, "name", { value: kind, writable: true, configurable: true });
}

/**
 * The base of an error class of `kind`: its `is(e)` recognises an error of that kind from any
 * copy of the core, narrowed to the class it is called on, and its instances are named after
 * the kind. `class KvmBug extends ErrorOfKind("KvmBug") { ... }`.
 */
export function ErrorOfKind(kind: string) {
  class Kinded extends Error {
    static is<C extends abstract new (...args: never[]) => Error>(
      this: C,
      e: unknown,
    ): e is InstanceType<C> {
      return errorKind(e) === kind;
    }
  }
  defineErrorKind(Kinded, kind);
  return Kinded;
}

/** The kind of a tdpemu error, from whichever copy of the core made it; undefined for anything else. */
export function errorKind(e: unknown): string | undefined {
  if (typeof e !== "object" || e === null) return undefined;
  const k = (e as Record<symbol, unknown>)[KIND];
  return typeof k === "string" ? k : undefined;
}
