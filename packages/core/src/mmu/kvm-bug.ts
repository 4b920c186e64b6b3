import { defineErrorKind, errorKind } from "../error-kind.js";

/** A `KVM_BUG_ON` or a WARN of the kernel: in the model, a finding that ends the run as a violation. */
export class KvmBug extends Error {
  static is(e: unknown): e is KvmBug {
    return errorKind(e) === "KvmBug";
  }

  constructor(msg: string) {
    super(`KVM_BUG: ${msg}`);
  }
}
defineErrorKind(KvmBug, "KvmBug");
