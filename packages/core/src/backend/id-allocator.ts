/**
 * Numbers a platform hands out one per guest and never reuses within a host: TDX's HKIDs, SEV's
 * ASIDs. A host-wide part (`registerHost`), so every VM on the host draws from the same one.
 */
export class IdAllocator {
  constructor(private next: number) {}

  alloc(): number {
    return this.next++;
  }
}
