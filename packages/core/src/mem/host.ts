/**
 * The host: physical memory shared by every VM running on it, and the page-table pool.
 * Several VMs on one host is a first-class case (two guests on one host is where confidential
 * computing's guarantees are tested).
 */
import { FrameAllocator, OWNER_PT_POOL } from "./frame-allocator.js";
import { PtPool } from "./pt-pool.js";

export interface HostOptions {
  /** Bytes of host physical memory; 2 MiB to 16 TiB. */
  memory: number;
}

/**
 * A named place on a host for platform state the core knows nothing of (a TDX module, an RMP:
 * one per machine). The state hangs off the host itself rather than a WeakMap keyed by it: the
 * explorer makes a host per schedule, and weak entries for hundreds of thousands of short-lived
 * keys kept every host alive through young-generation collections (promoted, then swept by full
 * ones), which cost more than building them.
 */
export class HostSlot<T> {
  constructor(readonly what: string) {}
  /** Only for the type parameter. */
  declare private readonly phantom: T;
}

/** Storage that lives as long as a host and can be handed on when the host is discarded. */
export interface HostStorage {
  release(): void;
}

export class Host {
  readonly frames: FrameAllocator;
  readonly pool: PtPool;
  private nextOwner = OWNER_PT_POOL + 1;
  /** Platform state kept per host (a TDX module's PAMT and S-EPT pages), released with it. */
  private readonly storage: HostStorage[] = [];
  /** `HostSlot`s and their values, side by side (a host has one or two). */
  private readonly slotKeys: HostSlot<unknown>[] = [];
  private readonly slotValues: unknown[] = [];

  constructor(opts: HostOptions) {
    this.frames = new FrameAllocator(opts.memory);
    this.pool = new PtPool(this.frames);
  }

  /** The value in `slot`, undefined until `set`. */
  get<T>(slot: HostSlot<T>): T | undefined {
    const i = this.slotKeys.indexOf(slot);
    return i < 0 ? undefined : (this.slotValues[i] as T);
  }

  /** The value in `slot`, made by `make(host)` on first use (platform state made on demand). */
  slot<T>(slot: HostSlot<T>, make: (host: Host) => T): T {
    const have = this.get(slot);
    if (have !== undefined) return have;
    const v = make(this);
    this.set(slot, v);
    return v;
  }

  set<T>(slot: HostSlot<T>, value: T): void {
    const i = this.slotKeys.indexOf(slot);
    if (i >= 0) this.slotValues[i] = value;
    else {
      this.slotKeys.push(slot);
      this.slotValues.push(value);
    }
  }

  /** `s.release()` runs when the host is discarded (`release`). */
  onRelease(s: HostStorage): void {
    this.storage.push(s);
  }

  /**
   * The host is being discarded (the explorer builds one per schedule, hundreds of thousands of
   * them): the table pool, the frame allocator and the storage registered with `onRelease` give their arrays to the
   * hosts made after it. Nothing may use the host again.
   */
  release(): void {
    this.pool.release();
    this.frames.release();
    for (const s of this.storage) s.release();
    this.storage.length = 0;
  }

  /** A fresh owner id for a VM's frames. */
  newOwnerId(): number {
    return this.nextOwner++;
  }
}
