/**
 * The real `tdpemu` binary in a real terminal (tmux): keys in, screen out. Needs tmux (.ci/run
 * installs it when the machine lacks it).
 */
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { writeFlushLimitPlugin } from "./outside-plugin.js";

const SESSION = `tdpemu-e2e-${process.pid}`;
const dir = mkdtempSync(join(tmpdir(), "tdpemu-e2e-"));
const CLI = resolve("packages/tui/dist/tdpemu.mjs");
const tmux = (...args: string[]) => execFileSync("tmux", args, { encoding: "utf8" });
const screen = () => tmux("capture-pane", "-t", SESSION, "-p");

/**
 * `tmux new-session -d <args>`. Killing the last session makes the tmux server exit, and a
 * new-session that reaches it while it goes fails with "server exited unexpectedly" (it failed
 * CI so once): then it is tried again, once that server is gone.
 */
function newSession(...args: string[]): void {
  for (let attempt = 1; ; attempt++) {
    try {
      tmux("new-session", "-d", ...args);
      return;
    } catch (e) {
      if (attempt === 20 || !String(e).includes("server exited unexpectedly")) throw e;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
    }
  }
}

async function waitFor(pred: (s: string) => boolean, what: string, ms = 8000): Promise<string> {
  const t0 = Date.now();
  let last = "";
  while (Date.now() - t0 < ms) {
    last = screen();
    if (pred(last)) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}; the screen was:\n${last}`);
}

/**
 * `tdpemu <args>` in a tmux session of its own, `columns` x `rows`: `keys` types, `until` waits
 * (8 s unless told) for the screen to satisfy `pred` and returns it. The session goes at the end.
 */
async function inTerminal(
  name: string,
  columns: number,
  rows: number,
  args: string,
  body: (t: {
    keys: (k: string) => void;
    until: (pred: (s: string) => boolean, ms?: number) => Promise<string>;
  }) => Promise<void>,
): Promise<void> {
  const session = `${SESSION}-${name}`;
  newSession(
    "-s",
    session,
    "-x",
    String(columns),
    "-y",
    String(rows),
    `env CI=0 node ${CLI} ${args}; sleep 30`,
  );
  const shot = () => tmux("capture-pane", "-t", session, "-p");
  const until = async (pred: (s: string) => boolean, ms = 8000) => {
    const t0 = Date.now();
    while (!pred(shot()) && Date.now() - t0 < ms) await new Promise((r) => setTimeout(r, 100));
    return shot();
  };
  try {
    await body({ keys: (k) => tmux("send-keys", "-t", session, k), until });
  } finally {
    try {
      tmux("kill-session", "-t", session);
    } catch {
      /* gone */
    }
  }
}

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  try {
    tmux("kill-session", "-t", SESSION);
  } catch {
    /* already gone */
  }
});

describe("tdpemu in a terminal", () => {
  it("steps, walks, swaps the backend, compares, and quits on the keys it documents", async () => {
    newSession(
      "-s",
      SESSION,
      "-x",
      "160",
      "-y",
      "48",
      // Ink renders only the last frame when it thinks it runs in CI (CI set), as in .ci/run.
      `env CI=0 node ${CLI} tui ${resolve("scenarios/tdx-sequential-2m.yaml")} --paused; echo TDPEMU-EXITED $?; sleep 30`,
    );
    await waitFor((s) => s.includes("tdx-sequential-2m on tdx"), "the UI");
    expect(screen()).toMatch(/ step 0 /);

    tmux("send-keys", "-t", SESSION, "n");
    const afterFault = await waitFor(
      (s) => /L1 \[\s*0\] 0x86000000[0-9a-f]{5}b37/.test(s),
      "the leaf after a fault",
    ); // a TD leaf: WB without IPAT
    expect(afterFault).toContain("PENDING");
    tmux("send-keys", "-t", SESSION, "]");
    await waitFor((s) => s.includes("walk of GPA 0x1000"), "the walk of the next page");

    tmux("send-keys", "-t", SESSION, "b");
    await waitFor((s) => s.includes("tdx-sequential-2m on sev"), "the backend swap");

    tmux("send-keys", "-t", SESSION, "c");
    // It runs in the background: the table comes when every backend has run.
    const cmp = await waitFor((s) => /faults\s+512\s/.test(s), "the comparison", 20_000);
    expect(cmp).toMatch(/tdx\s+sev\s+plain/);
    expect(cmp).toMatch(/faults\s+512\s+512\s+512/);
    tmux("send-keys", "-t", SESSION, "c");
    await waitFor((s) => s.includes("events (latest last)"), "the main view again");

    tmux("send-keys", "-t", SESSION, "q");
    await waitFor((s) => s.includes("TDPEMU-EXITED 0"), "the exit");
  }, 30_000);

  it("n with the run-to kind 'call' stops at each SEAMCALL, not at the end (B1)", async () => {
    await inTerminal(
      "b1",
      160,
      48,
      `tui ${resolve("scenarios/tdx-race-2m-4k.yaml")} --paused`,
      async ({ keys, until }) => {
        await until((s) => s.includes("tdx-race-2m-4k on tdx"));
        keys("k");
        await until((s) => s.includes("run-to spte"));
        keys("k");
        await until((s) => s.includes("run-to call"));
        let step = 0;
        for (let i = 1; i <= 3; i++) {
          keys("n");
          const s = await until((x) => Number(/ step (\d+) /.exec(x)?.[1] ?? 0) > step);
          expect({ n: i, finished: s.includes(" finished ") }).toEqual({ n: i, finished: false });
          step = Number(/ step (\d+) /.exec(s)![1]);
        }
      },
    );
  }, 30_000);

  it("opens the schedule explore wrote and v stops on the failing TDH.MEM.PAGE.AUG, with its vCPU", async () => {
    const sched = join(dir, "2m4k.json");
    // Exit 1: it found the race.
    expect(
      spawnSync(process.execPath, [
        CLI,
        "explore",
        resolve("scenarios/tdx-race-2m-4k.yaml"),
        "--strategy",
        "atomic-then-hook",
        "--out",
        sched,
      ]).status,
    ).toBe(1);
    await inTerminal("sched", 160, 48, `tui ${sched} --paused`, async ({ keys, until }) => {
      expect(await until((s) => s.includes("tdx-race-2m-4k on tdx"))).toContain(
        "strategy atomic-then-hook",
      );
      keys("v");
      const s = await until((x) => x.includes("violations:"));
      expect(s).toMatch(/violations: \[kvm-bug\] .*TDH\.MEM\.PAGE\.AUG failed/);
      // The failing call's row names the vCPU that issued it.
      expect(s).toMatch(/vcpu\d +TDH\.MEM\.PAGE\.AUG gpa 0x1000 L1 \[tdx 0\].*EPT_WALK_FAILED/);
      expect(s).toContain("walk of GPA 0x1000");
    });
  }, 30_000);

  for (const [columns, rows] of [
    [100, 30],
    [300, 80],
  ]) {
    it(`at ${columns}x${rows} every pane's title is on the screen, nothing scrolled off (B4)`, async () => {
      await inTerminal(
        String(columns),
        columns!,
        rows!,
        `tui ${resolve("scenarios/tdx-race-2m-4k.yaml")} --paused`,
        async ({ keys, until }) => {
          await until((s) => s.includes("tdx-race-2m-4k on tdx"));
          // Run to the end: the most the panes will hold.
          keys("v");
          const screenText = await until((s) => / finished /.test(s));
          for (const title of [
            "tdpemu  tdx-race-2m-4k on tdx",
            "vCPUs and host",
            "walk of GPA",
            "events (latest last)",
            "stats",
            "GPA map",
            "space run/pause",
          ]) {
            expect({ title, on: screenText.includes(title) }).toEqual({ title, on: true });
          }
          expect(screenText.split("\n")[0]).toMatch(/^tdpemu {2}tdx-race-2m-4k on tdx/);
        },
      );
    }, 30_000);
  }

  it("g walks the GPA typed, or says why not; ? lists the keys from the table", async () => {
    const args = `tui ${resolve("scenarios/tdx-sequential-2m.yaml")} --paused`;
    await inTerminal("keys", 160, 48, args, async ({ keys, until }) => {
      await until((s) => s.includes("tdx-sequential-2m on tdx"));
      keys("n");
      await until((s) => s.includes("PENDING"));
      // One character at a time: tmux reads "0x800000001000" as a key code.
      for (const k of ["g", ..."0x800000001000", "Enter"]) keys(k);
      const alias = "walk of GPA 0x800000001000 (shared alias of 0x1000)";
      const walked = await until((s) => s.includes(alias));
      expect(walked).toContain("direct root (shared alias)");
      for (const k of ["g", "4G", "Enter"]) keys(k);
      const refused = await until((s) => s.includes("✗"));
      expect(refused).toContain(
        "walk GPA: 4G▏ ✗ 0x100000000 is beyond the guest's 64 MiB: expected 0x0 to 0x3ffffff",
      );
      expect(refused).toContain(alias);
      keys("Escape");
      await until((s) => s.includes("space run/pause"));
      keys("?");
      const list = await until((s) => s.includes("this list of keys"));
      const lines = [
        /│ g +walk a GPA/,
        /│ c +compare/,
        /│ \? +this list of keys/,
        / \? esc +close/,
      ];
      for (const line of lines) expect(list).toMatch(line);
      keys("Escape");
      await until((s) => s.includes("events (latest last)"));
    });
  }, 30_000);

  it("c compares in the background, with progress bars; esc cancels, c starts again", async () => {
    const args = `tui ${resolve("scenarios/sequential-1g.yaml")} --paused`;
    await inTerminal("cmp", 160, 48, args, async ({ keys, until }) => {
      await until((s) => s.includes("sequential-1g on plain"));
      const main = await until((s) => s.includes("space run/pause"));
      keys("c");
      const running = await until((s) => /tdx +█+░* +\d+% {2}running/.test(s), 20_000);
      expect(running).toMatch(/overall +[█░]{30} +\d+%/);
      expect(running).toContain("press esc or c to cancel it");
      keys("Escape");
      expect(await until((s) => s.includes("space run/pause"))).toBe(main);
      keys("c");
      const table = await until((s) => /faults +262144 +262144 +262144 +262144/.test(s), 90_000);
      expect(table).toMatch(/pages 4k\/2m\/1g +262144\/0\/0 +262144\/0\/0/);
      keys("c");
      await until((s) => s.includes("space run/pause"));
    });
  }, 120_000);

  it("a plugin the comparison's thread cannot load stops it in one line; esc leaves", async () => {
    const plugin = writeFlushLimitPlugin(dir, "flush-gone", 1e9);
    const args = `tui ${resolve("scenarios/zap-refault.yaml")} --plugin ${plugin} --paused`;
    await inTerminal("gone", 160, 48, args, async ({ keys, until }) => {
      await until((s) => s.includes("zap-refault on plain"));
      // Gone after the UI loaded it: the comparison's thread, which loads it again, cannot.
      rmSync(plugin);
      keys("c");
      const stopped = await until((s) => s.includes("stopped: "), 20_000);
      expect(stopped).toMatch(/stopped: cannot load backend module '.*flush-gone\.mjs'/);
      expect(stopped).toContain("press c or esc to go back");
      keys("Escape");
      expect(await until((s) => s.includes("space run/pause"))).toContain("events (latest last)");
    });
  }, 60_000);

  it("a plugin from outside the workspace: its walk title, made with the frames the container handed it", async () => {
    const plugin = writeFlushLimitPlugin(dir, "flush-quiet", 1e9);
    try {
      tmux("kill-session", "-t", SESSION);
    } catch {
      /* its sleep ended it already, while the tests before ran */
    }
    newSession(
      "-s",
      SESSION,
      "-x",
      "160",
      "-y",
      "48",
      `env CI=0 node ${CLI} tui ${resolve("scenarios/zap-refault.yaml")} --backend ${plugin} --paused; echo TDPEMU-EXITED $?; sleep 30`,
    );
    await waitFor((s) => s.includes("zap-refault on flush-quiet"), "the UI on the plugin");
    tmux("send-keys", "-t", SESSION, "n");
    // zap-refault's host: 2 × 256 MiB of guest memory + 64 MiB, in 4K frames.
    await waitFor(
      (s) => s.includes("flush-quiet EPT on a host of 147456 frames"),
      "the plugin's walk title",
    );
    tmux("send-keys", "-t", SESSION, "q");
    await waitFor((s) => s.includes("TDPEMU-EXITED 0"), "the exit");
  }, 30_000);
});
