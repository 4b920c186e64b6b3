/**
 * The footprint audit: a checking mode (`explore(..., { audit: true })`) that compares the
 * shared state before and after every step the explorer takes and fails the step if a resource
 * changed that the step's footprint does not record as written (or updated). A write the
 * footprint misses makes the reduction take two conflicting steps as independent and skip their
 * other order: the explorer would say "exhausted" over interleavings it never ran, and nothing
 * else would show it.
 *
 * Each piece of shared state is read here under the resource id its accessor records:
 * SPTEs (table slot * 512 + index), the page-table pool (its free list and its counts), the
 * host's frame allocator, memory attributes, memslots and dirty bitmaps, the invalidation
 * sequence and range, the roots, guest backing per host page and per folio, mmu_lock's words,
 * kvm->slots_lock's owner, RCU, kvm->srcu, whether the VM is torn down, each vCPU's root
 * pointers, each task's completion, and the backend's own state as it reports it
 * (`Backend.auditState`; a backend that does not record its own accesses is recorded whole, as
 * R_BACKEND, by the core). Reads are not audited here (a read changes nothing to compare): the
 * commutation audit (`commute-audit.ts`) finds a read left unrecorded where it matters.
 */
import { isLastSpte, isShadowPresent, spteToPfn } from "../arch/spte.js";
import { fewNames, resourceId } from "../exec/footprint.js";
import type { SharedFlag } from "../exec/shared-flag.js";
import { U32_PER_TABLE, MEM_MASK, MEM_SHIFT } from "../mem/pt-pool.js";
import {
  KIND_ADD,
  KIND_WRITE,
  R_ATTR,
  R_BACKING,
  R_DIRTY,
  R_INVALIDATE,
  R_LPAGE,
  R_LPAGE_MIXED,
  R_LOCK_READERS,
  R_LOCK_WAITERS,
  R_LOCK_WRITER,
  R_SLOTS_LOCK,
  R_GMEM_LOCK,
  R_POOL,
  R_POOL_COUNTS,
  R_RCU,
  R_ROOTS,
  R_SLOTS,
  R_SRCU,
  R_TORN_DOWN,
  resourceName,
  taskDoneId,
  type FootprintRecorder,
} from "../exec/footprint.js";
import type { Task } from "../exec/scheduler.js";
import type { Vm } from "../vm/vm.js";
import { rootIds } from "../mmu/roots.js";

type Numbers = Float64Array | Uint32Array | Int32Array;

/** `state`'s name of a table's SPTEs, before its slot (`tableOfStatePart` reads it back). */
const TABLE = "the SPTEs of table slot ";

/** The table slot of a part of `FootprintAudit.state`, or -1 if the part is not a table's. */
export function tableOfStatePart(name: string): number {
  return name.startsWith(TABLE) ? Number(name.slice(TABLE.length)) : -1;
}

/** JSON with every object's keys sorted: counters kept in first-use order compare equal. */
function sortedJson(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) =>
    x !== null && typeof x === "object" && !Array.isArray(x) && !ArrayBuffer.isView(x)
      ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : ArrayBuffer.isView(x)
        ? Array.from(x as unknown as ArrayLike<number>)
        : x,
  );
}

/** A copy of an array of numbers taken before a step, to be compared with it after. */
class Watched {
  copy: Numbers = new Uint32Array(0);
  constructor(
    readonly get: () => Numbers | null,
    /** The resource behind element i (for a bitmap, behind its bit 0). */
    readonly idOf: (i: number) => number,
    readonly what: string,
    /** Each element holds 32 resources, one per bit (a bitmap of folios). */
    readonly bitmap = false,
  ) {}
}

export class FootprintAudit {
  private before = new Map<number, string | number>();
  private tables = new Map<number, Uint32Array>();
  /** Each live table's `kvm_mmu_page` fields before the step, and the SPTE linking it. */
  private fields = new Map<number, string>();
  private parents = new Map<number, number>();
  private readonly watched: Watched[] = [];

  constructor(
    private readonly vm: Vm,
    private readonly tasks: readonly Task[],
    /** What each op returned (`BuiltRun.results`), for `state`. */
    private readonly results: readonly unknown[] = [],
    /** Flags the tasks share (`BuiltRun.finalized`), each under its resource id. */
    private readonly flags: readonly SharedFlag[] = [],
  ) {
    this.watched.push(
      new Watched(
        () => vm.host.frames.blockOwner,
        () => R_BACKING,
        "the owner of a host block",
      ),
    );
    this.watched.push(
      new Watched(
        () => vm.attributes.auditWords(),
        () => R_ATTR,
        "the memory attributes",
      ),
    );
    for (const m of vm.memslots.peekAll()) {
      this.watched.push(
        new Watched(
          () => (vm.memslots.peekAll().includes(m) ? m.peekDirtyBitmap() : null),
          () => R_DIRTY,
          "a dirty bitmap",
        ),
      );
      for (const b of m.gmem ? [m.shared, m.gmem] : [m.shared]) {
        const v = b.auditView();
        this.watched.push(
          new Watched(
            () => v.chunks,
            (c) => resourceId(v.chunkSpace, c),
            "a host page of guest memory",
          ),
        );
        // A word of prepared bits: 32 folios; the message names the word's first.
        this.watched.push(
          new Watched(
            () => v.prepared,
            (w) => resourceId(v.folioSpace, w * 32),
            "a prepared bit",
            true,
          ),
        );
      }
    }
  }

  /** Notes the state before a step. */
  begin(): void {
    this.before = this.snapshot();
    this.tables = this.copyTables();
    this.fields = this.tableFields();
    this.parents = this.links(this.tables);
    for (const w of this.watched) {
      const a = w.get();
      w.copy = a ? a.slice() : new Uint32Array(0);
    }
  }

  /** The changes of the step just taken that `rec` does not record as writes, as messages. */
  end(rec: FootprintRecorder, task: string): string[] {
    const out: string[] = [];
    const written = (id: number) => (rec.kindOf(id) & (KIND_WRITE | KIND_ADD)) !== 0;
    const miss = (id: number, what: string) => {
      if (!written(id) && out.length < 5)
        out.push(
          `a step of ${task} changed ${what} (${resourceName(id)}) without recording a write of it`,
        );
    };
    const after = this.snapshot();
    for (const [id, v] of after) if (this.before.get(id) !== v) miss(id, "its state");
    for (const [id] of this.before) if (!after.has(id)) miss(id, "its state");
    const tables = this.copyTables();
    for (const [slot, words] of tables) {
      const old = this.tables.get(slot);
      if (!old) continue; // a table allocated by this step: R_POOL or R_POOL_COUNTS covers its birth
      for (let i = 0; i < 512; i++) {
        if (old[2 * i] !== words[2 * i] || old[2 * i + 1] !== words[2 * i + 1])
          miss(slot * 512 + i, "an SPTE");
      }
    }
    this.auditFields(tables, written, miss);
    for (const w of this.watched) {
      const a = w.get() ?? new Uint32Array(0);
      const n = Math.max(a.length, w.copy.length);
      for (let i = 0; i < n; i++) {
        if (a[i] === w.copy[i]) continue;
        const id = w.idOf(i);
        // A word of prepared bits changed: every folio whose bit flipped must be written.
        if (w.bitmap) {
          const flipped = ((a[i] ?? 0) ^ (w.copy[i] ?? 0)) >>> 0;
          for (let b = 0; b < 32; b++) if ((flipped >>> b) & 1) miss(id - b, w.what);
        } else miss(id, w.what);
      }
    }
    return out;
  }

  /**
   * The whole state, each part under a name that says what it is: the resources above with
   * their values, every live table's SPTEs, the watched arrays, and what is no resource but
   * shows what the steps saw (the ops' results, guest exceptions, the VM's death, the vCPUs'
   * roots, the MMU's and the backend's counters). Two runs that took the same steps in orders
   * the footprints call equivalent must end in equal states (`auditCommutation`).
   */
  state(): Map<string, string> {
    const out = new Map<string, string>();
    for (const [id, v] of this.snapshot()) out.set(resourceName(id), String(v));
    for (const [slot, words] of this.copyTables()) out.set(`${TABLE}${slot}`, words.join(","));
    for (const [slot, f] of this.tableFields())
      out.set(`the kvm_mmu_page fields of table slot ${slot}`, f);
    for (const w of this.watched) {
      const a = w.get();
      out.set(`${w.what} (${resourceName(w.idOf(0))}...)`, a === null ? "none" : a.join(","));
    }
    const vm = this.vm;
    // In the order the ops ended, which is the schedule's: sorted, they are what each op found.
    out.set(
      "the ops' results",
      this.results
        .map((r) => sortedJson(r))
        .sort()
        .join("; "),
    );
    out.set("the VM is torn down", String(vm.peekDead()));
    out.set(
      "the vCPUs' roots and guest exceptions",
      vm.vcpus.map((v) => `${v.peekRoots()}/${v.exceptions}`).join(" "),
    );
    out.set("the MMU's counters", sortedJson(vm.mmu.stats));
    out.set("the backend's counters", sortedJson(vm.backend.stats()));
    return out;
  }

  /**
   * A table's `kvm_mmu_page` fields (level, role, GFN, owner, `external_spt`) have no resource of
   * their own: the kernel changes them only where it holds the SPTE that links the table (a
   * promotion drops `external_spt` as it replaces that SPTE), so a change of a linked table's
   * fields must come with a write of the SPTE linking it, before or after the step. A table off
   * the tree (allocated and not yet linked, or unlinked and waiting for its free) is its
   * holder's alone, as `handle_removed_pt` owns a removed table; a root's fields go with its own
   * resources. A table born or freed in the step is the pool's (R_POOL, R_POOL_COUNTS).
   */
  private auditFields(
    tables: Map<number, Uint32Array>,
    written: (id: number) => boolean,
    miss: (id: number, what: string) => void,
  ): void {
    const parents = this.links(tables);
    const roots = new Set(this.vm.mmu.peekRoots().map((r) => r.slot));
    for (const [slot, now] of this.tableFields()) {
      const was = this.fields.get(slot);
      if (was === undefined || was === now) continue;
      const p = this.parents.get(slot);
      const q = parents.get(slot);
      if ((p !== undefined && written(p)) || (q !== undefined && written(q))) continue;
      if (p !== undefined || q !== undefined) {
        miss(p ?? q!, "the kvm_mmu_page fields of the table it links");
      } else if (roots.has(slot)) {
        const ids = [R_ROOTS, ...rootIds(this.vm.mmu.rootSpace, slot)];
        if (!ids.some(written)) miss(ids[1]!, "a root's kvm_mmu_page fields");
      }
    }
  }

  /** Each live table's `kvm_mmu_page` fields, by slot. */
  private tableFields(): Map<number, string> {
    const pool = this.vm.host.pool;
    const out = new Map<number, string>();
    for (let slot = 0; slot < pool.slotsUsed; slot++) {
      if (pool.spLive[slot] !== 1) continue;
      out.set(
        slot,
        `${pool.spLevel[slot]}/${pool.spRole[slot]}/${pool.spGfn[slot]}/${pool.spOwner[slot]}/${pool.spExternal[slot]}`,
      );
    }
    return out;
  }

  /** The SPTE (its resource) linking each table that some live table links, by the child's slot. */
  private links(tables: Map<number, Uint32Array>): Map<number, number> {
    const pool = this.vm.host.pool;
    const out = new Map<number, number>();
    for (const [slot, words] of tables) {
      const level = pool.spLevel[slot]!;
      for (let i = 0; i < 512; i++) {
        const lo = words[2 * i]!;
        const hi = words[2 * i + 1]!;
        if (!isShadowPresent(lo) || isLastSpte(lo, level)) continue;
        const child = pool.pfnToSlot(spteToPfn(lo, hi));
        if (child >= 0) out.set(child, slot * 512 + i);
      }
    }
    return out;
  }

  private copyTables(): Map<number, Uint32Array> {
    const pool = this.vm.host.pool;
    const out = new Map<number, Uint32Array>();
    for (let slot = 0; slot < pool.slotsUsed; slot++) {
      if (pool.spLive[slot] !== 1) continue;
      const mem = pool.mem[slot >>> MEM_SHIFT]!;
      const off = (slot & MEM_MASK) * U32_PER_TABLE;
      out.set(slot, mem.slice(off, off + U32_PER_TABLE));
    }
    return out;
  }

  /** The small pieces of state, each under its resource id. */
  private snapshot(): Map<number, string | number> {
    const vm = this.vm;
    const mmu = vm.mmu;
    const s = new Map<number, string | number>();
    const pool = mmu.pool;
    // The free list, and the counts every allocation and free updates.
    s.set(R_POOL, `${pool.freeCount}/${pool.capacity}:${pool.auditFreeList()}`);
    s.set(R_POOL_COUNTS, `${pool.generation}/${pool.liveTables}`);
    // The host's frame allocator, which guest memory, control pages and the pool share.
    s.set(R_BACKING, vm.host.frames.auditState());
    s.set(
      R_SLOTS,
      vm.memslots
        .peekAll()
        .map(
          (m) =>
            `${m.id}:${m.baseGfn}+${m.npages}:${JSON.stringify(m.peekFlags())}:${m.peekInvalid()}:${m.peekDirtyBitmap() !== null}`,
        )
        .join(";"),
    );
    const slots = vm.memslots.peekAll();
    s.set(R_LPAGE, slots.map((m) => m.auditLpage()).join(";"));
    s.set(R_LPAGE_MIXED, slots.map((m) => m.auditMixed()).join(";"));
    s.set(R_INVALIDATE, mmu.invalidateAuditState());
    // The list, and each root's refcount, validity and freed flag under their own ids.
    const list: string[] = [];
    for (const r of mmu.peekRoots()) {
      list.push(`${r.slot}:${r.mirror}`);
      const [refs, validity, freed] = rootIds(mmu.rootSpace, r.slot);
      s.set(refs, r.peekRefcount());
      s.set(validity, `${r.peekInvalid()}:${r.peekScheduledZap()}`);
      s.set(freed, r.peekFreed() ? 1 : 0);
    }
    s.set(R_ROOTS, list.join(";"));
    const lock = mmu.lock.peekState();
    s.set(R_LOCK_WRITER, `${lock.writer ?? "-"}/${lock.waitingWriters}`);
    s.set(R_LOCK_READERS, lock.readers);
    s.set(R_LOCK_WAITERS, lock.waitingReaders);
    s.set(R_TORN_DOWN, vm.peekDead() ? 1 : 0);
    s.set(R_SLOTS_LOCK, vm.slotsLock.peekOwner() ?? "-");
    s.set(R_GMEM_LOCK, vm.gmemLock.peekOwner() ?? "-");
    for (const v of [...vm.vcpus, vm.hostVcpu])
      s.set(resourceId(vm.vcpuRootSpace, v.id + 1), v.peekRoots());
    s.set(R_RCU, mmu.rcu.auditState());
    s.set(R_SRCU, vm.srcu.auditState());
    for (let i = 0; i < this.tasks.length; i++) s.set(taskDoneId(i), this.tasks[i]!.done ? 1 : 0);
    vm.backend.auditState?.(vm, s);
    mmu.requests.auditState(s);
    for (const f of this.flags) f.auditState(s);
    for (const m of vm.memslots.peekAll()) {
      for (const b of m.gmem ? [m.shared, m.gmem] : [m.shared]) {
        const v = b.auditView();
        for (const pgoff of v.preparing) s.set(resourceId(v.folioSpace, pgoff), "locked");
      }
    }
    return s;
  }
}

/** The parts of two states that differ, named (a table by its first SPTE that differs). */
export function stateDiff(x: Map<string, string>, y: Map<string, string>): string {
  const out: string[] = [];
  for (const name of new Set([...x.keys(), ...y.keys()])) {
    const u = x.get(name);
    const v = y.get(name);
    if (u === v) continue;
    const slot = tableOfStatePart(name);
    if (slot >= 0 && u !== undefined && v !== undefined) {
      const wu = u.split(",");
      const wv = v.split(",");
      let k = 0;
      while (k < wu.length && wu[k] === wv[k]) k++;
      out.push(resourceName(slot * 512 + (k >> 1)));
    } else out.push(name);
  }
  return fewNames(out, 4);
}
