import { defineErrorKind, errorKind } from "../error-kind.js";

/** An op the VM cannot carry out as asked (the ioctl would fail); the run stops with this message. */
export class OpError extends Error {
  static is(e: unknown): e is OpError {
    return errorKind(e) === "OpError";
  }
}
defineErrorKind(OpError, "OpError");
