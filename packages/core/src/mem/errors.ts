import { ErrorOfKind } from "../error-kind.js";

/** Raised when the host has no frame left to give: a resource error, never a crash. */
export class HostMemoryExhausted extends ErrorOfKind("HostMemoryExhausted") {
  constructor(readonly what: string, readonly requestedFrames: number, readonly totalFrames: number) {
    super(`host out of memory: ${what} needs ${requestedFrames} more frame(s) and all ${totalFrames} frames of the host are in use`);
  }
}
