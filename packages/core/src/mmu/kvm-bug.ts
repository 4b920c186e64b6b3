import { ErrorOfKind } from "../error-kind.js";

/** A `KVM_BUG_ON` or a WARN of the kernel: in the model, a finding that ends the run as a violation. */
export class KvmBug extends ErrorOfKind("KvmBug") {
  constructor(msg: string) {
    super(`KVM_BUG: ${msg}`);
  }
}
