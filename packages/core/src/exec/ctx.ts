/**
 * The execution context of one coroutine (a vCPU or the host thread): whether it yields at
 * atomic points, and its per-thread state in the lock and RCU models.
 *
 * vCPUs do not run on threads; each operation is a generator that yields at every atomic point
 * when `interleave` is set. With it clear, yields are skipped and an operation runs to the end
 * in one go.
 */
/** The capacity of a KVM memory cache (`arch/x86/include/asm/kvm_types.h`). */
export const KVM_ARCH_NR_OBJS_PER_MEMORY_CACHE = 40;

export class ExecCtx {
  /** Holds `mmu_lock`: 0 no, 1 read, 2 write. */
  lockMode = 0;
  /** RCU grace-period number at `rcu_read_lock`, -1 outside a read-side section. */
  rcuGp = -1;
  rcuNest = 0;
  /**
   * The task's `mmu_shadow_page_cache` (a vCPU's, `PtPool.topUp`): free table-page slots its
   * faults set aside before taking `mmu_lock` and take their tables from, the next one last. The
   * task's own: while the task runs, what another task does never changes it, so a fault that
   * finds enough here, and the tables it takes from it, touch nothing another task reads. (The
   * teardown drains every vCPU's caches, `kvm_mmu_destroy`, only once all vCPU tasks have
   * finished; an op that changed a running task's cache would need a resource for it.) A plain
   * array: a typed array of 40 keeps its store outside the V8 heap, and the explorer makes four
   * contexts for every schedule (making them was 1.3 % of the three-vCPU race's time).
   */
  readonly mmuPageSlots: number[] = new Array<number>(KVM_ARCH_NR_OBJS_PER_MEMORY_CACHE).fill(0);
  mmuPageCache = 0;
  /**
   * The task's `mmu_external_spt_cache`: pages for the backend's half of new mirror tables
   * (`Backend.allocExternalSpt`: TDX's S-EPT pages, CCA's RTTs), set aside with the table pages
   * before `mmu_lock` (`TdpMmu.topUpExternalSpts`), the next one last. As the kernel's
   * `kvm_mmu_alloc_external_spt` takes them from the vCPU's own cache, a fault that finds one
   * here touches nothing another task reads.
   */
  readonly externalSpts: number[] = new Array<number>(KVM_ARCH_NR_OBJS_PER_MEMORY_CACHE).fill(0);
  externalSptCache = 0;

  constructor(
    readonly name: string,
    public interleave: boolean,
  ) {}
}

/**
 * What a coroutine yields: nothing at an ordinary atomic point; `BLOCKED` when it cannot go on
 * until another coroutine changes something (a lock it waits for, the vCPUs it waits to
 * finish); `RETRY_WAIT` when it would only repeat what it just did (a fault that returned
 * RETRY) until something changes, so any other coroutine goes first. Neither is picked again
 * before the clock's version has moved on; a `RETRY_WAIT` coroutine is picked anyway when no one
 * else can run.
 */
export const BLOCKED = 1;
export const RETRY_WAIT = 2;
export type Step = void | typeof BLOCKED | typeof RETRY_WAIT;
export type Op<R = void> = Generator<Step, R, void>;

/** Runs an operation to completion without interleaving (tests, benchmarks, bulk setup). */
export function runToEnd<R>(op: Op<R>): R {
  for (;;) {
    const r = op.next();
    if (r.done) return r.value;
  }
}
