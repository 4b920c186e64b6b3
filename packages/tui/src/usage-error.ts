import { ErrorOfKind } from "@tdpemu/core";

/** Bad command-line input: printed as one line, exit code 2. */
export class UsageError extends ErrorOfKind("UsageError") {}

export const USAGE = `usage:
  tdpemu                              the terminal UI on the built-in default scenario (TDX)
  tdpemu tui [scenario] [options]     the terminal UI on a scenario, paused or running
      --backend, --plugin, --allow-plugins, --seed, --strategy, --inject, --host-memory, --unsafe-non-atomic-set, --tdx-huge-pages   as for run
      --paused                        start paused (space runs, s steps, n runs to the next event)
  tdpemu tui <schedule.json>          the terminal UI replaying a recorded schedule exactly (what explore writes)
  tdpemu compare <scenario> [--json]  the scenario on every backend, side by side, with the estimated time on each (costs/)
      --strategy, --tdx-huge-pages    as for run
      --plugin <module>               a plugin backend to compare too (repeatable; the scenario's own takes part if given or allowed)
      --backend <name|module>         compare only these backends (repeatable)
  tdpemu run <scenario> [options]     run a scenario headless
      --backend <name|module>         override the scenario's backend (tdx, sev, plain, or a plugin module path)
      --plugin <module>               load this plugin backend (repeatable): a module the scenario names runs only if given here
      --allow-plugins                 load a module the scenario or schedule file names although the command line does not
      --json                          print the JSON report
      --trace <file>                  write every event, one JSON object per line (jsonl)
      --trace-format jsonl|chrome     jsonl (the default) or chrome (Perfetto, chrome://tracing)
      --seed <n>                      override the schedule's seed
      --host-memory <size>            host physical memory (default: 2 x guest memory + 64MiB)
      --check end|op                  check invariants at the end only (default) or after every op
      --schedule-out <file>           record the run's schedule (replay it with tdpemu replay)
      --unsafe-non-atomic-set         debug: cmpxchg under the read lock becomes a read and a later store
      --strategy freeze|atomic-then-hook   how a mirror SPTE becomes present (default: the scenario's)
      --tdx-huge-pages                TDX maps private memory at 2 MiB where it can (default: the scenario's options.tdxHugePages)
      --inject CALL:N:STATUS[:TIMES]  the Nth CALL returns STATUS (repeatable), e.g. TDH.MEM.PAGE.AUG:1:OPERAND_BUSY
      --costs <table.yaml>            price the run by this cost table (default with --json: the backend's own in costs/)
  tdpemu explore <scenario> [options] enumerate interleavings; stop at the first invariant violation
      --max-schedules <n>             stop after n schedules, all threads together (default 1000000; each shard its own)
      --preemption-bound <k|none>     at most k preemptions per schedule (default none)
      --out <file>                    where to write the violating schedule
      --no-reduction                  explore every interleaving, also those that only reorder independent steps
      --algorithm <optimal|sleep>     the reduction: optimal DPOR, one run per trace (default; sleep sets above the split depth), or sleep sets (the default with --preemption-bound)
      --count-traces                  count the distinct Mazurkiewicz traces among the complete schedules
      --every-state                   check the invariants in every state of every trace, also those only other orders of its steps pass through (one thread)
      --jobs <n>                      explore on n threads: the report of one thread, or its first violation (default: every core, joining after 1 s)
      --shard <K/N>                   explore the K-th of N shares of the search (0 <= K < N) and print its JSON report, for explore-merge
      --split-depth <d>               the depth whose nodes the threads or shards share out (default 12); 0: not split, one thread
      --report <file.html>            write the run that found the violation (or the verdict) as one HTML page
      --backend, --plugin, --allow-plugins, --host-memory, --strategy, --inject, --unsafe-non-atomic-set, --tdx-huge-pages, --json   as for run
  tdpemu explore-merge <shard.json>...   the reports of all N shards of one exploration as the one report explore gives
      --json                          print the JSON report
      --out <file>                    where to write the violating schedule
  tdpemu audit <scenario> [options]   check that each step records what it reads and writes (what the explorer's reduction rests on): a sample of schedules under the footprint audit, random walks under the commutation audit, and a search without reduction under the trace-state audit
      --walks <n>                     random walks of the commutation audit (default 8)
      --seed <n>                      their seed (default 1)
      --max-depth <n>                 steps a walk takes at most (default 400)
      --max-schedules <n>             schedules the footprint audit explores (default 200)
      --trace-schedules <n>           schedules the trace-state audit explores (default 1000; 0: none)
      --preemption-bound <k|none>     both searches' preemption bound (default 1)
      --backend, --plugin, --allow-plugins, --host-memory, --strategy, --inject, --unsafe-non-atomic-set, --tdx-huge-pages, --json   as for run
  tdpemu replay <schedule.json>       run a recorded schedule again, exactly
      --steps                         print what each step did
      --diagram                       only the steps that lead to the violation, one column per task
      --report <file.html>            write the run as one HTML page: a lane per task, the chain marked
      --json, --trace <file>, --trace-format, --plugin, --allow-plugins   as for run
  tdpemu bench [--json] [--filter NAME] [--quick] [--plugin m.js]...   the benchmarks (--quick skips the 64 GiB and 1 TiB guests; a plugin gets fault, zap and memory cases)
  tdpemu backends [--plugin <module>]... [--json]   list the registered backends, with the plugins given
  tdpemu fuzz [--budget s] [--seed n] [--corpus dir] [--json]   malformed files, CLI misuse and random workloads on every backend, each answer checked (pnpm fuzz)
      --write-corpus <dir> [--count n]   write n malformed scenario and schedule files (the checked-in corpus is fuzz/corpus)
  tdpemu new-backend <name> [dir]     a new backend's package in dir (default ./<name>-backend), outside the workspace: every hook stubbed with its contract, example scenarios, a test, a README
  tdpemu schema scenario|schedule     a file format as JSON Schema (committed as schemas/*.schema.json), for editors and validators
      --plugin <module>               spell out a plugin backend's host ops too (repeatable; scenario only)
      --markdown [example.yaml]...    the scenario format's reference in Markdown (docs/scenario-format.md), with these examples
  tdpemu help                         this text

options of every command:
      --strict-plugin                 check what each hook of a plugin backend returns, and name the hook on a bad value
      --debug                         with a plugin's error, print the plugin's stack too
      --max-input <size>              the largest scenario or schedule file read (default 4MiB)

exit codes: 0 success, 1 a run that found an invariant violation, 2 bad input`;

/**
 * The usage of one command (`tdpemu <command> --help`): its lines of `USAGE`, the options every
 * command takes, and the exit codes. Null for a command `USAGE` does not name.
 */
export function commandUsage(cmd: string): string | null {
  const lines = USAGE.split("\n");
  const start = lines.findIndex((l) => l.startsWith(`  tdpemu ${cmd} `) || l === `  tdpemu ${cmd}`);
  if (start < 0) return null;
  let end = start + 1;
  while (
    end < lines.length &&
    (lines[end]!.startsWith("      ") || lines[end]!.startsWith(`  tdpemu ${cmd} `))
  )
    end++;
  const common = lines.slice(lines.indexOf("options of every command:"));
  return ["usage:", ...lines.slice(start, end), "", ...common].join("\n");
}
