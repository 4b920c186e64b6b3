import { ErrorOfKind } from "../error-kind.js";

/** An op the VM cannot carry out as asked (the ioctl would fail); the run stops with this message. */
export class OpError extends ErrorOfKind("OpError") {}
