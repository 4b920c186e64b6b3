/**
 * Scenario format v1 (ARCHITECTURE.md, "The guest and the host in a scenario"): the VM, the
 * default backend, the schedule, one program per vCPU and one for the host. Every key named
 * here is part of the contract. Addresses and sizes are bytes; the parser has checked that
 * every range lies inside guest memory.
 */
export type HugePages = false | "2MiB" | "1GiB";

export interface VmSpec {
  memory: number;
  gpaw: 48 | 52;
  vcpus: number;
  hugepages: HugePages;
}

export interface ScheduleSpec {
  mode: "random" | "round-robin" | "replay";
  seed: number;
  /** replay: the schedule file, resolved against the scenario's folder. */
  file?: string;
  /**
   * true: vCPUs and the host interleave at every atomic point; false: each op runs whole.
   * Defaults to true when more than one program has ops.
   */
  interleave?: boolean;
}

/**
 * `vmpl`: the privilege level the vCPU runs the op at (SEV-SNP's VMPLs; 0 unless given, and
 * only a backend with levels takes another).
 */
export type GuestOp =
  | { op: "access"; gpa: number; count: number; write: boolean; shared: boolean; vmpl: number }
  /** `count` pages of `size` bytes (4 KiB or 2 MiB) from `gpa`. */
  | { op: "accept"; gpa: number; count: number; size: number }
  /**
   * RMPADJUST of `count` pages of `size` from `gpa`, at `vmpl`: VMPL `target` gets `perms`
   * (read 1, write 2, execute-user 4, execute-supervisor 8); `vmsa` sets the VMSA bit (VMPL0).
   */
  | { op: "rmpadjust"; gpa: number; count: number; size: number; vmpl: number; target: number; perms: number; vmsa: boolean }
  | { op: "convert"; gpa: number; size: number; to: "private" | "shared" }
  /**
   * The guest converts [gpa, gpa + size) itself (`guestPageStateChange`): PVALIDATE or ACCEPT
   * around a Page State Change / MapGPA request, in pages of `pageSize` bytes (4 KiB or 2 MiB).
   */
  | { op: "psc"; gpa: number; size: number; to: "private" | "shared"; pageSize: number };

export type HostOp =
  /** `measure`: KVM_TDX_MEASURE_MEMORY_REGION (TDH.MR.EXTEND of each page); true unless `measure: false`. */
  | { op: "populate"; gpa: number; size: number; measure: boolean }
  | { op: "finalize" }
  | { op: "convert"; gpa: number; size: number; to: "private" | "shared" }
  | { op: "zap"; gpa: number; size: number }
  | { op: "dirty-log"; action: "start" | "collect" | "stop"; slot: number }
  | { op: "age"; gpa: number; size: number }
  | { op: "split"; gpa: number; size: number }
  | { op: "recover"; gpa: number; size: number }
  | { op: "delete-memslot"; slot: number }
  | { op: "teardown" }
  | { op: "terminate" }
  | { op: "raw"; call: string; gpa?: number; level?: number; page?: number | "fresh" | "mapped"; vcpu?: number; field?: string; value?: string; mask?: string }
  /**
   * A host op a plugin backend defines (`Backend.hostOps`), named `<backend>.<op>`: its operands
   * as written (`args`) are checked against the backend's schema when the run is built, which
   * fills `values` (`checkPluginOps`). `at` and `line` say where it was written.
   */
  | { op: "plugin"; name: string; args: Record<string, unknown>; at: string; line?: number; values?: Record<string, number | string | boolean> };

/** How a mirror SPTE becomes present (see `MirrorStrategy` in the core). */
export type Strategy = "freeze" | "atomic-then-hook";

export interface InjectSpec {
  /** The architectural name of the call (TDH.MEM.PAGE.AUG, RMPUPDATE, ...). */
  call: string;
  /** Its nth invocation (1-based) in this VM fails ... */
  nth: number;
  /** ... with this status (a status name of the backend: OPERAND_BUSY, FAIL_INUSE, ...) ... */
  status: string;
  /** ... and so do the following times - 1 invocations. */
  times: number;
  /** Only on this backend (calls are architectural, so a scenario for several backends names it). */
  backend?: string;
}

export interface Scenario {
  name: string;
  /** Where it was read from (for messages and relative paths); "<built-in>" for the default. */
  source: string;
  vm: VmSpec;
  backend: string;
  /** The line of `backend:` in the file, for messages about it. */
  backendLine?: number;
  schedule: ScheduleSpec;
  vcpus: GuestOp[][];
  host: HostOp[];
  /**
   * `tdxHugePages`: TDX maps private memory at 2 MiB where it can (the TDX huge-page series for
   * KVM, a kvm_intel parameter there); off, as in mainline, private mappings are 4K.
   */
  options: { strategy: Strategy; tdxHugePages: boolean };
  inject: InjectSpec[];
}

export const GUEST_OPS = ["access", "accept", "convert", "psc", "rmpadjust"] as const;
export const HOST_OPS = ["populate", "finalize", "convert", "zap", "dirty-log", "age", "split", "recover", "delete-memslot", "teardown", "terminate", "raw"] as const;
export const STRATEGIES = ["freeze", "atomic-then-hook"] as const;
