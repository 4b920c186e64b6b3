/**
 * Wakeup trees, the part of Optimal-DPOR (Abdulla, Aronis, Jonsson and Sagonas, "Source Sets: A
 * Foundation for Optimal Dynamic Partial Order Reduction", JACM 64(4), 2017, section 6) that
 * says how to begin each new branch so that it cannot end with every way on asleep.
 *
 * The wakeup tree of a node of the search is an ordered tree of steps (a task, and the footprint
 * its step had in the run the sequence came from); each path from its root to a leaf is a
 * sequence the search must still run from that node, and the children of a node are run in the
 * order they were added. The tree of a child node is the subtree of the step taken to reach it,
 * so the trees of the nodes on the search path are nested: one forest, kept here in typed arrays
 * (a node is an index; children are linked lists), with the footprints in a store of their own
 * (a tree outlives the run whose steps it holds, and the run's store is cut back as the search
 * backtracks).
 *
 * Insertion (the paper's `insert[E](w, wut)`) walks down from the root: at each node it takes
 * the first child whose task is a *weak initial* of what is left of `w` (its step could come
 * first in some run equivalent to `w`, or commutes with all of `w`), and takes that step out of
 * `w`; reaching a leaf means a run the tree already holds covers `w`. Where no child is a weak
 * initial, the rest of `w` is added as a new last branch.
 */
import { FootprintStore } from "./footprint.js";
import { grown } from "../mem/typed-arrays.js";

/** The first event of `task` among events `[0, len)` not yet `taken`; -1 if it has none. */
function firstOf(task: number, tasks: Int32Array, taken: Uint8Array, len: number): number {
  for (let x = 0; x < len; x++) if (taken[x] === 0 && tasks[x] === task) return x;
  return -1;
}

/**
 * A sequence of steps: per step its task, its footprint (a handle in some store) and the index
 * in the sequence of the step that woke its task from a wait (-1 if none there: it must come
 * after that step, though their footprints may not conflict).
 */
export interface StepSequence {
  tasks: Int32Array;
  fps: Int32Array;
  wakers: Int32Array;
  len: number;
}

/**
 * Whether a step of `task` with footprint `fp` (a handle in `store`) is a weak initial of the
 * steps of `seq` (handles in `seqStore`) not yet `taken`: it is one of them and nothing before
 * it conflicts with it or woke it, or it is none of them and conflicts with none. Returns the
 * index of its step in the sequence (to be taken out), `seq.len` if it is none of them but
 * commutes with all, or -1.
 */
export function weakInitial(
  store: FootprintStore,
  task: number,
  fp: number,
  seq: StepSequence,
  taken: Uint8Array,
  seqStore: FootprintStore = store,
): number {
  const { tasks, fps, len } = seq;
  const x = firstOf(task, tasks, taken, len);
  if (x >= 0) {
    const wk = seq.wakers[x]!;
    if (wk >= 0 && taken[wk] === 0) return -1;
    // The step goes first if it commutes with the steps before it. Either footprint shows it: the
    // sequence's, of the step where it stands there, or `fp`, of the step where it would go
    // first; each is the same step in the other place if nothing in between changes what it
    // reads. One that is not known (-1: a reversed race's last step, which may take another
    // branch once it runs first) shows nothing.
    const mine = fps[x]!;
    for (let y = 0; y < x; y++) {
      if (taken[y] !== 0) continue;
      const theirs = fps[y]!;
      if (
        theirs < 0 ||
        (mine < 0 && fp < 0) ||
        (mine >= 0 && seqStore.dependsOn(theirs, mine)) ||
        (fp >= 0 && seqStore.dependsOnIn(theirs, store, fp))
      )
        return -1;
    }
    return x;
  }
  if (fp < 0) return -1;
  for (let y = 0; y < len; y++) {
    if (taken[y] !== 0) continue;
    if (fps[y]! < 0 || store.dependsOnIn(fp, seqStore, fps[y]!)) return -1;
  }
  return len;
}

export class WakeupTrees {
  /** Per node: the task of its step, its footprint in `store` (-1 if not known), links. */
  private task = new Int32Array(256);
  private fp = new Int32Array(256);
  private first = new Int32Array(256);
  private last = new Int32Array(256);
  private next = new Int32Array(256);
  private free = -1;
  private used = 0;
  /** Footprints held after the last compaction of the store. */
  private liveFps = 0;
  /** The footprints of the trees' steps. */
  store = new FootprintStore();
  /** Scratch for `insert`: which events of the sequence are taken out. */
  private taken = new Uint8Array(64);

  /** A new node for a step of `task` with footprint `fp`, with no children. */
  private alloc(task: number, fp: number): number {
    let n = this.free;
    if (n >= 0) this.free = this.next[n]!;
    else {
      if (this.used === this.task.length) {
        const cap = this.used * 2;
        this.task = grown(this.task, new Int32Array(cap));
        this.fp = grown(this.fp, new Int32Array(cap));
        this.first = grown(this.first, new Int32Array(cap));
        this.last = grown(this.last, new Int32Array(cap));
        this.next = grown(this.next, new Int32Array(cap));
      }
      n = this.used++;
    }
    this.task[n] = task;
    this.fp[n] = fp;
    this.first[n] = -1;
    this.last[n] = -1;
    this.next[n] = -1;
    return n;
  }

  /** A root: the tree of a node that has no tree above it (the start of the search). */
  root(): number {
    return this.alloc(-1, -1);
  }

  taskOf(n: number): number {
    return this.task[n]!;
  }

  firstChild(n: number): number {
    return this.first[n]!;
  }

  /** Sets the footprint (a handle in `store`) of node `n`'s step, once it has run. */
  setFootprint(n: number, fp: number): void {
    this.fp[n] = fp;
  }

  /** Whether `n` has a child for `task`. */
  hasChild(n: number, task: number): boolean {
    for (let c = this.first[n]!; c >= 0; c = this.next[c]!) if (this.task[c] === task) return true;
    return false;
  }

  /** Adds a step of `task` (footprint unknown: a choice of the search's own) as the last child of `n`. */
  addChild(n: number, task: number): number {
    return this.append(n, task, -1);
  }

  private append(n: number, task: number, fp: number): number {
    const c = this.alloc(task, fp);
    if (this.last[n]! < 0) this.first[n] = c;
    else this.next[this.last[n]!] = c;
    this.last[n] = c;
    return c;
  }

  /** Drops the first child of `n` and its subtree (explored, or not to be explored). */
  removeFirstChild(n: number): void {
    const c = this.first[n]!;
    this.first[n] = this.next[c]!;
    if (this.first[n] < 0) this.last[n] = -1;
    this.freeSubtree(c);
  }

  /**
   * Drops the first child of `n`, a step the search may not take there (its task is asleep,
   * explored there already, or cannot run), but not what was merged under it: each sequence
   * below it goes back into the tree below `n` without the child's step.
   *
   * In the paper's model no tree step is ever a sleeping task's (a reversal a sleeper could begin
   * is not inserted) and every task can always run. Here one can be, and the sequences that begin
   * with its step are covered by its earlier branch. But `insert` also merges below a child a
   * sequence that does not hold its step at all, because the step commutes with every step of it (a
   * weak initial that is none of the sequence's): the run goes the child's way and takes the
   * sequence after it. That the earlier branch covers such a sequence too rests on the footprints
   * compared, which a step that branches (`weakInitial`) or a task that waits can make wrong;
   * programs of four tasks with a retry reach it (`optimal-dpor.test.ts` names two), and no trace
   * was found that needs the sequences put back; they cost a few runs, and where the model fails, a
   * run too many replaces a trace lost. The sequences go back with footprints unknown (-1): moved
   * in front of the child's step they may branch otherwise, so each merges only with a branch that
   * takes the same tasks in the same order.
   */
  dropFirstChild(n: number): void {
    const c = this.first[n]!;
    this.first[n] = this.next[c]!;
    if (this.first[n] < 0) this.last[n] = -1;
    this.next[c] = -1;
    // Depth first below `c`, without recursion: `path` is the nodes from c's child down.
    const path: number[] = [];
    for (let u = this.first[c]!; u >= 0;) {
      path.push(u);
      if (this.first[u]! >= 0) {
        u = this.first[u]!;
        continue;
      }
      this.insert(n, {
        tasks: Int32Array.from(path, (m) => this.task[m]!),
        fps: new Int32Array(path.length).fill(-1),
        wakers: new Int32Array(path.length).fill(-1),
        len: path.length,
      });
      u = -1;
      while (path.length > 0) {
        const m = path.pop()!;
        if (this.next[m]! >= 0) {
          u = this.next[m]!;
          break;
        }
      }
    }
    this.freeSubtree(c);
  }

  /**
   * Frees `n` and everything below it. Iterative (a branch is as deep as a run is long): each
   * freed node's children join the work list, which is threaded through `next`.
   */
  freeSubtree(n: number): void {
    this.next[n] = -1;
    let work = n;
    while (work >= 0) {
      const m = work;
      work = this.next[m]!;
      if (this.first[m]! >= 0) {
        this.next[this.last[m]!] = work;
        work = this.first[m]!;
      }
      this.next[m] = this.free;
      this.free = m;
    }
  }

  /**
   * Inserts the sequence `seq` (footprints: handles in `seqStore`, by default the trees' own
   * `store`) into the tree below `root`. Returns false if the tree already held a run that
   * covers it. Only the footprints of the steps it appends are copied into `store`: most
   * sequences the explorer offers are covered already (seven in eight on the three-vCPU race),
   * and a copy of each before the comparison cost more than the comparison.
   */
  insert(root: number, seq: StepSequence, seqStore: FootprintStore = this.store): boolean {
    const { tasks, fps, len } = seq;
    if (this.taken.length < len) this.taken = new Uint8Array(2 * len);
    const taken = this.taken;
    taken.fill(0, 0, len);
    let left = len;
    let u = root;
    for (;;) {
      if (left === 0 || (u !== root && this.first[u]! < 0)) return false;
      let c = this.first[u]!;
      for (; c >= 0; c = this.next[c]!) {
        const x = weakInitial(this.store, this.task[c]!, this.fp[c]!, seq, taken, seqStore);
        if (x < 0) continue;
        if (x < len) {
          taken[x] = 1;
          left--;
        }
        break;
      }
      if (c < 0) break;
      u = c;
    }
    for (let x = 0; x < len; x++) {
      if (taken[x] !== 0) continue;
      const fp =
        seqStore === this.store || fps[x]! < 0 ? fps[x]! : this.store.addFrom(seqStore, fps[x]!);
      u = this.append(u, tasks[x]!, fp);
    }
    return true;
  }

  /**
   * Copies the footprints the trees below `root` still refer to into a fresh store, once the
   * store holds many that none does (subtrees explored and freed, footprints replaced by
   * `setFootprint`). Call only when no handle into the store is held elsewhere.
   */
  compact(root: number): void {
    if (this.store.count < 4096 || this.store.count < 2 * this.liveFps) return;
    const old = this.store;
    const fresh = new FootprintStore();
    // Depth first, without recursion: down to the first child, else on to the next sibling of
    // the nearest node that has one.
    const up: number[] = [];
    for (let n = root; n >= 0;) {
      if (this.fp[n]! >= 0) this.fp[n] = fresh.addFrom(old, this.fp[n]!);
      if (this.first[n]! >= 0) {
        if (n !== root) up.push(n);
        n = this.first[n]!;
        continue;
      }
      let m = n;
      while (m !== root && this.next[m]! < 0) m = up.pop() ?? root;
      n = m === root ? -1 : this.next[m]!;
    }
    this.store = fresh;
    this.liveFps = fresh.count;
  }
}
