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

export class Host {
  readonly frames: FrameAllocator;
  readonly pool: PtPool;
  private nextOwner = OWNER_PT_POOL + 1;

  constructor(opts: HostOptions) {
    this.frames = new FrameAllocator(opts.memory);
    this.pool = new PtPool(this.frames);
  }

  /** A fresh owner id for a VM's frames. */
  newOwnerId(): number {
    return this.nextOwner++;
  }
}
