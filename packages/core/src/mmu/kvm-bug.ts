/** A `KVM_BUG_ON` or a WARN of the kernel: in the model, a finding that ends the run as a violation. */
export class KvmBug extends Error {
  constructor(msg: string) {
    super(`KVM_BUG: ${msg}`);
    this.name = "KvmBug";
  }
}
