/**
 * The commutation audit: the footprint audit's other half. The footprint audit compares the
 * state around each step and so sees every write a step does not record; a read left unrecorded
 * changes nothing and is invisible to it. Where such a read matters, it shows otherwise: two
 * steps whose footprints the reduction calls independent do not commute. The step that read
 * behaves differently when the other goes first (it yields something else, records another
 * footprint, or leaves another state behind), and the explorer, which runs only one of the two
 * orders, never sees the other.
 *
 * From the states of seeded random walks (some keep to one task for long: `STICKINESS`), for
 * every two enabled tasks i and j, the audit runs i then j and j then i, each from a fresh
 * system with the walk's prefix replayed. Where the first
 * steps' footprints are independent (`FootprintStore.dependsOn`, the relation the explorer
 * uses), each step must do the same in either order (yield the same, record the same footprint,
 * leave the other task enabled) and the two orders must end in the same state
 * (`FootprintAudit.state`). Anything else is a finding that names the prefix, the two steps and
 * what differed.
 *
 * It checks the states the walks reach, not every state: a test runs it over scenarios small
 * enough that a few walks pass the races that matter.
 */
import { KIND_ADD, KIND_WRITE, fewNames, resourceName } from "../exec/footprint.js";
import type { ExploreSystem } from "../exec/explorer.js";
import { Prng } from "../exec/prng.js";
import { BLOCKED, RETRY_WAIT } from "../exec/ctx.js";
import { TaskStepper } from "../exec/scheduler.js";
import { stateDiff } from "./footprint-audit.js";

export interface CommuteAuditOptions {
  /** Random walks from the start (default 4). */
  walks?: number;
  /** The walks' seed (default 1): the same seed takes the same walks. */
  seed?: number;
  /** Steps a walk takes at most (default 400). */
  maxDepth?: number;
  /** The audit stops after this many findings (default 5). */
  maxFindings?: number;
  /** Called after each walk with the walks taken so far (for a progress line). */
  onWalk?: (taken: number) => void;
}

export interface CommuteAuditResult {
  /** States at which two or more tasks were enabled. */
  states: number;
  /** Pairs of enabled tasks run in both orders. */
  pairs: number;
  /** Of those, the pairs whose footprints are independent: the ones checked. */
  independent: number;
  /** What did not commute, one line each. */
  findings: string[];
  /** Walks taken: fewer than asked after a finding, or when the first had no choice to make. */
  walks: number;
  /** Walks that stopped at `maxDepth` steps with tasks still to run: the states after it are unchecked. */
  cutWalks: number;
}

/**
 * How likely (in %) a walk keeps running the task it ran last, by walk. Uniform choices keep the
 * tasks abreast, so a state where one task is far ahead of another (a vCPU's late step with the
 * host's first still to come) is rare; sticky walks reach those.
 */
const STICKINESS = [0, 80, 97];

/** The system's audit, with the whole state (`FootprintAudit.state`). */
type StateAudit = NonNullable<ExploreSystem["audit"]> &
  Required<Pick<NonNullable<ExploreSystem["audit"]>, "state">>;

/** One fresh system, its prefix replayed. */
class Run {
  readonly stepper: TaskStepper;
  readonly audit: StateAudit;

  constructor(
    readonly sys: ExploreSystem,
    prefix: readonly number[],
  ) {
    const audit = sys.audit as StateAudit | undefined;
    if (audit?.state === undefined)
      throw new Error("auditCommutation: the system's audit has no state() (a FootprintAudit)");
    this.audit = audit;
    this.stepper = new TaskStepper(sys.tasks, sys.clock);
    for (const c of prefix) this.stepper.step(c);
  }

  /** Task `i`'s step: what it yielded, or the violation it threw (`failed`), and its footprint. */
  step(i: number): Taken {
    try {
      const r = this.stepper.step(i);
      const outcome = this.sys.tasks[i]!.done
        ? "finished"
        : r === BLOCKED
          ? "blocked"
          : r === RETRY_WAIT
            ? "waits to retry"
            : "went on";
      return { outcome, fp: this.stepper.last, failed: false, footprintFailure: "", run: this };
    } catch (e) {
      const v = this.sys.classify(e);
      if (v === null) throw e;
      return {
        outcome: `failed: [${v.check}] ${v.message}`,
        fp: -1,
        failed: true,
        footprintFailure: v.check === "footprint-audit" ? v.message : "",
        run: this,
      };
    }
  }

  /** The accesses of footprint `h`: id to KIND_* bits. */
  accesses(h: number): Map<number, number> {
    const s = this.stepper.footprints;
    const ids = s.idsView;
    const kinds = s.kindsView;
    const m = new Map<number, number>();
    for (let k = s.startOf(h), e = k + s.lengthOf(h); k < e; k++) m.set(ids[k]!, kinds[k]!);
    return m;
  }

  name(i: number): string {
    return this.sys.tasks[i]!.name;
  }

  release(): void {
    this.sys.release?.();
  }
}

export function auditCommutation(
  make: () => ExploreSystem,
  opts: CommuteAuditOptions = {},
): CommuteAuditResult {
  const walks = opts.walks ?? 4;
  const maxDepth = opts.maxDepth ?? 400;
  const maxFindings = opts.maxFindings ?? 5;
  const prng = new Prng(opts.seed ?? 1);
  const result: CommuteAuditResult = {
    states: 0,
    pairs: 0,
    independent: 0,
    findings: [],
    walks: 0,
    cutWalks: 0,
  };
  const enabled: number[] = [];
  for (let w = 0; w < walks && result.findings.length < maxFindings; w++) {
    // A first walk that never had two tasks to choose from is every walk.
    if (w === 1 && result.states === 0) break;
    const prefix: number[] = [];
    const walker = new Run(make(), prefix);
    result.walks++;
    try {
      for (let d = 0; result.findings.length < maxFindings; d++) {
        walker.stepper.enabled(enabled);
        if (enabled.length === 0) break;
        if (d === maxDepth) {
          result.cutWalks++;
          break;
        }
        if (enabled.length > 1) {
          result.states++;
          for (let x = 0; x < enabled.length; x++)
            for (let y = x + 1; y < enabled.length; y++)
              comparePair(make, prefix, enabled[x]!, enabled[y]!, result);
        }
        // Stay with the last task with the walk's stickiness, else any enabled task.
        const last = prefix.length > 0 ? prefix[prefix.length - 1]! : -1;
        const stay = enabled.includes(last) && prng.below(100) < STICKINESS[w % STICKINESS.length]!;
        const c = stay ? last : enabled[prng.below(enabled.length)]!;
        const taken = walker.step(c);
        if (taken.failed) {
          reportFootprintFailure(prefix, taken, result);
          break;
        }
        prefix.push(c);
      }
    } finally {
      walker.release();
    }
    opts.onWalk?.(result.walks);
  }
  return result;
}

/** Runs `i` then `j` and `j` then `i` after `prefix`; a finding if independent steps do not commute. */
function comparePair(
  make: () => ExploreSystem,
  prefix: readonly number[],
  i: number,
  j: number,
  result: CommuteAuditResult,
): void {
  const a = new Run(make(), prefix);
  const b = new Run(make(), prefix);
  try {
    const ai = a.step(i);
    const bj = b.step(j);
    // A step that fails is a violation the explorer reports in any order it runs; one that
    // reached shared state around its accessors is this audit's own business too.
    if (ai.failed || bj.failed) {
      reportFootprintFailure(prefix, ai, result);
      reportFootprintFailure(prefix, bj, result);
      return;
    }
    result.pairs++;
    if (a.stepper.footprints.dependsOnIn(ai.fp, b.stepper.footprints, bj.fp)) return;
    result.independent++;
    const ti = a.name(i);
    const tj = a.name(j);
    const found: string[] = [];
    const jEnabled = a.stepper.enabled().includes(j);
    const iEnabled = b.stepper.enabled().includes(i);
    if (!jEnabled) found.push(`${tj} is no longer enabled after ${ti}'s step`);
    if (!iEnabled) found.push(`${ti} is no longer enabled after ${tj}'s step`);
    if (jEnabled && iEnabled) {
      const aj = a.step(j);
      const bi = b.step(i);
      const same = (who: string, other: string, first: Taken, second: Taken): void => {
        if (first.outcome !== second.outcome)
          found.push(`${who}'s step ${first.outcome} first but ${second.outcome} after ${other}'s`);
        else if (!second.failed) {
          const diff = footprintDiff(first, second);
          if (diff !== "")
            found.push(`${who}'s step records another footprint after ${other}'s: ${diff}`);
        }
      };
      same(tj, ti, bj, aj);
      same(ti, tj, ai, bi);
      if (found.length === 0) {
        const diff = stateDiff(a.audit.state(), b.audit.state());
        if (diff !== "") found.push(`the two orders end in different states: ${diff}`);
      }
    }
    if (found.length > 0) {
      // The read left unrecorded is of something the other step changed: say what it changed.
      const writes = `${ti}'s step writes ${written(ai)}, ${tj}'s ${written(bj)}`;
      result.findings.push(
        `after the schedule [${prefix.join(", ")}], the steps of ${ti} and ${tj} record independent footprints but do not commute: ${found.join("; ")} (${writes})`,
      );
    }
  } finally {
    a.release();
    b.release();
  }
}

/**
 * A step that failed because it reached shared state around the accessors that record it
 * (`UnrecordedAccess`, a `footprint-audit` violation) is a finding: its footprint says less than
 * it did, which is what this audit looks for. Once per message.
 */
function reportFootprintFailure(
  prefix: readonly number[],
  taken: Taken,
  result: CommuteAuditResult,
): void {
  if (taken.footprintFailure === "") return;
  const finding = `after the schedule [${prefix.join(", ")}], a step failed the footprint audit: ${taken.footprintFailure}`;
  if (!result.findings.some((f) => f.endsWith(taken.footprintFailure)))
    result.findings.push(finding);
}

/** A step taken in `run`. */
interface Taken {
  outcome: string;
  fp: number;
  failed: boolean;
  /** The message of a `footprint-audit` violation the step threw, else "". */
  footprintFailure: string;
  run: Run;
}

/** The KIND_* bits of an access, named. */
const KINDS = [
  "",
  "read",
  "update",
  "read+update",
  "write",
  "read+write",
  "update+write",
  "read+update+write",
];

/** What step `t` writes or updates, named. */
function written(t: Taken): string {
  const out: string[] = [];
  for (const [id, k] of t.run.accesses(t.fp))
    if ((k & (KIND_WRITE | KIND_ADD)) !== 0) out.push(resourceName(id));
  return out.length === 0 ? "nothing" : fewNames(out, 4);
}

/** How the footprint of step `y` differs from that of `x`: "+read X, -write Y", or "". */
function footprintDiff(x: Taken, y: Taken): string {
  const a = x.run.accesses(x.fp);
  const b = y.run.accesses(y.fp);
  const out: string[] = [];
  for (const [id, k] of b) if (a.get(id) !== k) out.push(`+${KINDS[k]} ${resourceName(id)}`);
  for (const [id, k] of a) if (b.get(id) !== k) out.push(`-${KINDS[k]} ${resourceName(id)}`);
  return fewNames(out, 4);
}
