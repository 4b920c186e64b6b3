/**
 * What a backend sees of the VM it serves: narrow on purpose (the rust-vmm way). A backend gets
 * the host, the VM's configuration and memory state, and the event stream; it never reaches
 * into the MMU's tables.
 */
import type { Host } from "../mem/host.js";
import type { Memslots } from "../mem/memslots.js";
import type { MemAttributes } from "../mem/mem-attributes.js";
import type { EventSink } from "../events/events.js";
import type { Clock } from "../exec/clock.js";

export interface VmConfig {
  /** Bytes of guest memory, starting at GPA 0. */
  memory: number;
  /** Guest physical address width: 48 (4-level) or 52 (5-level). */
  gpaw: number;
  vcpus: number;
  /** Host page size backing guest memory: 1 (4 KiB), 2 (2 MiB), 3 (1 GiB). */
  hostPageLevel: 1 | 2 | 3;
  /**
   * The TDX huge-page switch (a kvm_intel parameter in the TDX huge-page series): 2 MiB private
   * mappings where the guest_memfd folio and the attributes allow. Other backends ignore it.
   */
  tdxHugePages?: boolean;
}

export interface BackendVm {
  readonly id: number;
  readonly owner: number;
  readonly host: Host;
  readonly config: VmConfig;
  readonly memslots: Memslots;
  readonly attributes: MemAttributes;
  readonly events: EventSink;
  readonly clock: Clock;
  /** A page the backend could not give back safely: leaked on purpose, counted with its cause. */
  leak(cause: string): void;
}
