/**
 * RCU in the model: read-side sections and deferred callbacks (`call_rcu`). A callback queued at
 * grace-period number g runs once no reader that entered at or before g is still inside, so a
 * table unlinked while a walker may hold a pointer into it is freed only after that walker has
 * left. Callbacks run in the order they were queued.
 */
import type { Clock } from "./clock.js";
import type { ExecCtx } from "./ctx.js";
import { R_RCU } from "./footprint.js";

export class Rcu {
  private gp = 0;
  private readonly pendingGp: number[] = [];
  private readonly pendingFn: (() => void)[] = [];
  /** Every context that ever entered; few (the vCPUs and the host), so scanning them is cheap. */
  private readonly known: ExecCtx[] = [];
  private inside = 0;

  constructor(private readonly clock: Clock | null = null) {}

  /**
   * Grace periods, readers and queued callbacks, for the footprint audit, with the grace period
   * each reader entered at (which callbacks `reclaim` may run): sorted, as readers that enter in
   * either order commute.
   */
  auditState(): string {
    const entered = this.known
      .map((c) => c.rcuGp)
      .filter((g) => g >= 0)
      .sort((a, b) => a - b);
    return `${this.gp}/${this.inside}/${this.pendingGp.join(",")}/${entered.join(",")}`;
  }

  readLock(ctx: ExecCtx): void {
    if (ctx.rcuNest++ === 0) {
      this.clock?.fp?.add(R_RCU);
      ctx.rcuGp = this.gp;
      this.inside++;
      if (!this.known.includes(ctx)) this.known.push(ctx);
    }
  }

  readUnlock(ctx: ExecCtx): void {
    if (--ctx.rcuNest === 0) {
      this.clock?.fp?.add(R_RCU);
      ctx.rcuGp = -1;
      this.inside--;
      if (this.pendingFn.length > 0) this.reclaim();
    }
  }

  callRcu(fn: () => void): void {
    this.clock?.fp?.write(R_RCU);
    this.pendingGp.push(this.gp++);
    this.pendingFn.push(fn);
    if (this.inside === 0) this.reclaim();
  }

  get pending(): number {
    return this.pendingFn.length;
  }

  /** Oldest grace period a current reader may still observe. */
  private oldestReader(): number {
    let min = Infinity;
    for (const r of this.known) if (r.rcuGp >= 0 && r.rcuGp < min) min = r.rcuGp;
    return min;
  }

  private reclaim(): void {
    const oldest = this.oldestReader();
    let n = 0;
    while (n < this.pendingGp.length && this.pendingGp[n]! < oldest) n++;
    if (n === 0) return;
    this.clock?.fp?.write(R_RCU);
    const fns = this.pendingFn.splice(0, n);
    this.pendingGp.splice(0, n);
    for (const fn of fns) fn();
  }

  /** `rcu_barrier`: runs every callback; only valid with no reader inside. */
  barrier(): void {
    if (this.inside > 0) throw new Error("rcu_barrier with readers inside");
    this.reclaim();
  }
}
