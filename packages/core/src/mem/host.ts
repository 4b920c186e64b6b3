/**
 * The host: physical memory shared by every VM running on it, and the page-table pool.
 * Several VMs on one host is a first-class case (two guests on one host is where confidential
 * computing's guarantees are tested).
 */
import { FrameAllocator, OWNER_PT_POOL } from "./frame-allocator.js";
import { PtPool } from "./pt-pool.js";
import type { DependencyContainer } from "tsyringe";
import { FRAMES, HOST, processContainer } from "../backend/containers.js";

export interface HostOptions {
  /** Bytes of host physical memory; 2 MiB to 16 TiB. */
  memory: number;
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
  /**
   * The host's container (`backend/containers.ts`): the host, its frames, and the platform
   * state the core knows nothing of (a TDX module, an RMP), one per machine. Held by the host
   * itself rather than a WeakMap keyed by it: the explorer makes a host per schedule, and weak
   * entries for hundreds of thousands of short-lived keys kept every host alive through
   * young-generation collections, which cost more than building them.
   */
  readonly container: DependencyContainer;
  /** The backends whose host-wide parts are registered in `container` (`BackendSource.prepareHost`). */
  readonly preparedFor: string[] = [];

  constructor(opts: HostOptions) {
    this.frames = new FrameAllocator(opts.memory);
    this.pool = new PtPool(this.frames);
    this.container = processContainer.createChildContainer();
    this.container.register(HOST, { useValue: this });
    this.container.register(FRAMES, { useValue: this.frames });
  }

  /**
   * Moves with every change of the table pool's pages and of the frames' owners: state the
   * invariant checks read that lives on the host, not on a VM's clock. A check version is a
   * clock's plus this (`BuiltRun.checkVersion`).
   */
  get generation(): number {
    return this.pool.generation + this.frames.generation;
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
