/**
 * The UI's comparison (`c`) on a worker thread: one backend after the other, as `tdpemu compare`
 * runs them, while the UI's thread stays free for keys and frames. A run that does not
 * interleave takes a whole op in one step (1 GiB of faults: half a second on TDX), so slicing
 * the work on the UI's thread could not keep it responsive; a thread can, and is cancelled
 * whole (`terminate`), leaving nothing half-done behind.
 *
 * The thread starts where the command starts (the bundle, or the unbundled cli.js beside this
 * module); from the TypeScript sources (the tests) it starts the built dist/cli.js.
 */
import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads";
import type { BackendRegistry, MmuOptions, Scenario } from "@tdpemu/core";
import { commandEntry } from "./command-entry.js";
import { compareOne, type CompareRow } from "./compare-rows.js";
import { builtinRegistry, pluginMode } from "./registry.js";
import { RunProgress } from "./run-progress.js";

interface JobData {
  kind: "tdpemu-compare-job";
  scenario: Scenario;
  backends: string[];
  /** The module of each plugin backend among them, loaded again in the thread. */
  plugins: string[];
  strictPlugins: boolean;
  mmu?: MmuOptions;
}

type JobMessage =
  | { progress: { index: number; fraction: number } }
  | { row: { index: number; row: CompareRow } }
  | { failed: string };

/** Where the comparison is: each backend's fraction done, its row once it has one. */
export interface CompareState {
  backends: string[];
  fractions: number[];
  rows: (CompareRow | undefined)[];
  /** Why the thread could not finish (it could not start, or broke), or null. */
  error: string | null;
}

/** How often the thread reports a backend's progress, at most. */
const REPORT_MS = 50;

export class CompareJob {
  readonly state: CompareState;
  private readonly worker: Worker | null = null;
  private ended = false;

  /** Starts the thread; `onChange` hears of each change of `state` until the job ends. */
  constructor(
    scn: Scenario,
    registry: BackendRegistry,
    mmu: MmuOptions | undefined,
    private readonly onChange: (s: CompareState) => void,
  ) {
    const backends = registry.list().map((b) => b.name);
    this.state = {
      backends,
      fractions: backends.map(() => 0),
      rows: backends.map(() => undefined),
      error: null,
    };
    const path = commandEntry();
    if (path === null) {
      this.state.error = "the comparison runs on the built command: npm run build, then try again";
      this.ended = true;
      return;
    }
    const plugins = backends
      .map((b) => registry.moduleOf(b))
      .filter((m): m is string => m !== null);
    const data: JobData = {
      kind: "tdpemu-compare-job",
      scenario: scn,
      backends,
      plugins,
      strictPlugins: pluginMode.strict,
      ...(mmu ? { mmu } : {}),
    };
    this.worker = new Worker(path, { workerData: data });
    this.worker.on("message", (m: JobMessage) => this.onMessage(m));
    this.worker.on("error", (e) => this.fail(e.message));
    this.worker.on("exit", (code) => {
      if (!this.done)
        this.fail(`the comparison's thread ended (exit code ${code}) before its last row`);
    });
  }

  /** Every backend has its row. */
  get done(): boolean {
    return this.state.rows.every((r) => r !== undefined);
  }

  /** Stops the thread where it is; nothing of it is reported after. */
  cancel(): void {
    this.ended = true;
    void this.worker?.terminate();
  }

  private onMessage(m: JobMessage): void {
    if (this.ended) return;
    if ("progress" in m) this.state.fractions[m.progress.index] = m.progress.fraction;
    else if ("row" in m) {
      this.state.fractions[m.row.index] = 1;
      this.state.rows[m.row.index] = m.row.row;
      if (this.done) this.ended = true;
    } else {
      // The thread's own word on what broke, not the exit that follows it.
      this.ended = true;
      this.state.error = m.failed;
    }
    this.onChange(this.state);
  }

  private fail(why: string): void {
    if (this.ended) return;
    this.ended = true;
    this.state.error = why;
    this.onChange(this.state);
  }
}

/** Whether this thread is the comparison's (then `runCompareJob` is its whole work). */
export function isCompareJob(): boolean {
  return !isMainThread && (workerData as JobData | null)?.kind === "tdpemu-compare-job";
}

/** The comparison's thread: each backend's row, with its progress on the way. */
export async function runCompareJob(): Promise<void> {
  const data = workerData as JobData;
  const post = (m: JobMessage) => parentPort!.postMessage(m);
  try {
    pluginMode.strict = data.strictPlugins;
    const registry = builtinRegistry();
    for (const m of data.plugins) await registry.load(m);
    data.backends.forEach((name, index) => {
      const progress = new RunProgress(data.scenario);
      let events = 0;
      let last = performance.now();
      const onEvent: typeof progress.onEvent = (e) => {
        progress.onEvent(e);
        // The clock is read once in 1,024 events: reading it at each would cost more than the rest.
        if ((++events & 1023) !== 0) return;
        const now = performance.now();
        if (now - last < REPORT_MS) return;
        last = now;
        post({ progress: { index, fraction: progress.fraction() } });
      };
      post({ row: { index, row: compareOne(data.scenario, registry, name, data.mmu, onEvent) } });
    });
  } catch (e) {
    post({ failed: e instanceof Error ? e.message : String(e) });
  }
}
