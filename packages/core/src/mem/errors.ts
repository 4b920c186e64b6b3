import { ErrorOfKind } from "../error-kind.js";

/**
 * Raised when the host has no run of frames left for a request: a resource error, never a
 * crash. It says what was asked, what is free, and how fragmented the free frames are (the
 * largest free run that starts on the alignment asked for).
 */
export class HostMemoryExhausted extends ErrorOfKind("HostMemoryExhausted") {
  constructor(
    readonly what: string,
    readonly requestedFrames: number,
    readonly alignFrames: number,
    readonly totalFrames: number,
    readonly freeFrames: number,
    readonly largestFreeRun: number,
  ) {
    super(
      `host out of memory: ${what} needs ${requestedFrames} contiguous frame(s)` +
        `${alignFrames > 1 ? ` aligned to ${alignFrames}` : ""}; ${freeFrames} of the host's ${totalFrames} frames are free, ` +
        `the largest free run so aligned is ${largestFreeRun} frames`,
    );
  }
}
