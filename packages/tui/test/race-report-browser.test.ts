/**
 * `tdpemu explore --report race.html` on the 2M/4K race (TDX, atomic-then-hook), opened in
 * headless Chromium (Debian's `chromium`, driven by playwright-core): the lanes, the steps, the
 * marked chain (the steps `replay --diagram` draws), the violation and the replay command, as a
 * reader sees them; and not one request leaves the page. A screenshot goes to reports/.
 *
 * Without /usr/bin/chromium the test is skipped, saying so, unless CI is set: there it fails
 * (.ci/run installs the package).
 */
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { chromium } from "playwright-core";
import { afterAll, describe, expect, it } from "vitest";

const run = promisify(execFile);
const CLI = resolve("packages/tui/dist/tdpemu.mjs");
const CHROMIUM = "/usr/bin/chromium";
const SHOTS = resolve("reports/race-report");
const dir = mkdtempSync(join(tmpdir(), "tdpemu-report-browser-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The command's exit code and output (a non-zero exit is an answer, not a failure). */
async function tdpemu(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  try {
    const r = await run(process.execPath, [CLI, ...args], { maxBuffer: 64 << 20 });
    return { code: 0, out: r.stdout, err: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, out: x.stdout, err: x.stderr };
  }
}

/** A fresh profile, and every background service off: the closed network refuses them. */
async function openBrowser() {
  return chromium.launchPersistentContext(mkdtempSync(join(dir, "profile-")), {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1400, height: 900 },
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

/**
 * CI set as CI services set it (ink's rule: "0" and "false" say it is not CI), or
 * TDPEMU_REQUIRE_BROWSER=1, which `.ci/run` sets (it cannot set CI: ink renders differently).
 */
const underCi =
  (process.env.CI !== undefined && !["", "0", "false"].includes(process.env.CI)) ||
  process.env.TDPEMU_REQUIRE_BROWSER === "1";
const skip = !existsSync(CHROMIUM) && !underCi;
if (skip) {
  console.warn(`race-report-browser: skipped: no ${CHROMIUM} (apt-get install -y chromium)`);
}

describe("explore --report in a browser", () => {
  if (skip) {
    it.skip(`needs ${CHROMIUM} (Debian's chromium), not installed; under CI this fails`, () => {});
    return;
  }

  it("shows the 2M/4K race: a lane per task, every step, the chain marked, replay", async () => {
    expect(existsSync(CHROMIUM), `${CHROMIUM} is missing: .ci/run installs chromium`).toBe(true);
    const out = join(dir, "aah.schedule.json");
    const shrunk = join(dir, "aah.shrunk.schedule.json");
    const page = join(dir, "race.html");
    const explore = await tdpemu(
      "explore",
      resolve("scenarios/tdx-race-2m-4k.yaml"),
      "--strategy",
      "atomic-then-hook",
      "--out",
      out,
      "--report",
      page,
    );
    expect(explore.code).toBe(1);
    expect(explore.out).toContain(`report      written to ${page}`);
    const choices = (JSON.parse(readFileSync(shrunk, "utf8")) as { choices: number[] }).choices;
    // The steps the text diagram draws, which the page must mark.
    const diagram = await tdpemu("replay", shrunk, "--diagram");
    const drawn = [...diagram.out.matchAll(/^#(\d+)/gm)].map((m) => Number(m[1]));
    expect(drawn).toEqual([8, 9, 15, 16, 18]);

    const ctx = await openBrowser();
    try {
      const url = pathToFileURL(page).href;
      const requests: string[] = [];
      ctx.on("request", (r) => requests.push(r.url()));
      // Anything but the page itself is refused, and listed.
      await ctx.route(
        (u) => u.href !== url,
        (route) => route.abort(),
      );
      const tab = await ctx.newPage();
      await tab.goto(url, { waitUntil: "load" });

      expect(requests).toContain(url); // the listener sees requests: the page's own
      expect(requests.filter((u) => u !== url)).toEqual([]);
      const fetched = await tab.evaluate(() => ({
        resources: performance.getEntriesByType("resource").length,
        links: [...document.querySelectorAll("[src], [href]")]
          .map((e) => e.getAttribute("src") ?? e.getAttribute("href") ?? "")
          .filter((u) => !u.startsWith("#")),
      }));
      expect(fetched).toEqual({ resources: 0, links: [] });

      expect(await tab.locator("th.lane").allTextContents()).toEqual(["vcpu0", "vcpu1"]);
      const rows = tab.locator("tr.step");
      expect(await rows.count()).toBe(choices.length);
      // Runs in the page: the attribute's name comes as the argument, not from this closure.
      const numbers = (trs: Element[], name: string) =>
        trs.map((tr) => Number(tr.getAttribute(name)));
      expect(await rows.evaluateAll(numbers, "data-lane")).toEqual(choices);
      // Each step sits in its task's column: the cell under its lane's heading holds its card.
      const placed = await rows.evaluateAll((trs) =>
        trs.map((tr) =>
          [...tr.querySelectorAll("td")].findIndex((td) => td.querySelector(".card") !== null),
        ),
      );
      expect(placed).toEqual(choices);

      const chain = tab.locator("tr.on-chain");
      expect(await chain.evaluateAll(numbers, "data-step")).toEqual(drawn);
      expect(await chain.locator(".badge.chain").allTextContents()).toEqual(
        drawn.map((_, i) => `chain ${i + 1}/${drawn.length}`),
      );
      const border = (e: Element) => getComputedStyle(e).borderTopColor;
      const chainBorder = await chain.first().locator(".card").evaluate(border);
      const offBorder = await tab.locator("tr.step:not(.on-chain) .card").first().evaluate(border);
      expect(chainBorder).toBe("rgb(217, 119, 6)");
      expect(offBorder).not.toBe(chainBorder);

      const failing = tab.locator("tr.failing");
      expect(await failing.getAttribute("data-step")).toBe("18");
      expect(await failing.locator(".call").innerText()).toMatch(
        /^TDH.MEM.PAGE.AUG gpa 0x1000 L1 .*: EPT_WALK_FAILED$/,
      );
      const sept = tab.locator("#step-9 .spte");
      expect(await sept.locator(".where").innerText()).toBe("GPA 0x0 gfn 0x0 L2 mirror · cmpxchg");
      expect(await sept.locator("code.old").innerText()).toBe("0x8000000000000000");
      expect(await sept.locator("code.new").innerText()).toBe("0x8000000000804907");
      const font = await sept.locator(".vals").evaluate((e) => getComputedStyle(e).fontFamily);
      expect(font).toMatch(/monospace/);

      const message = await tab.locator("#violation-message").innerText();
      expect(message).toMatch(
        /^KVM_BUG: SEAMCALL TDH.MEM.PAGE.AUG failed: 0x[0-9A-F]+ \(EPT_WALK_FAILED/,
      );
      expect(await tab.locator("#violation-check").innerText()).toBe("kvm-bug");
      const command = await tab.locator("#replay-command").innerText();
      expect(command).toBe(`tdpemu replay ${shrunk}`);
      // The command shown replays the violation shown.
      const replay = await tdpemu(...command.split(" ").slice(1));
      expect(replay.code).toBe(1);
      expect(replay.out).toContain(message);
      expect(await tab.locator("#legend").innerText()).toMatch(/on the chain of conflicting steps/);

      mkdirSync(SHOTS, { recursive: true });
      const shot = join(SHOTS, "tdx-race-2m-4k-atomic-then-hook.png");
      await tab.screenshot({ path: shot, fullPage: true });
      console.log(`race report screenshot: ${shot}`);
      expect(readFileSync(shot).subarray(1, 4).toString()).toBe("PNG");

      // "show only the chain" leaves the marked steps alone on the page.
      await tab.locator("#only-chain").check();
      expect(await tab.locator("tr.step:visible").count()).toBe(drawn.length);
      expect(requests.filter((u) => u !== url)).toEqual([]);
    } finally {
      await ctx.close();
    }
  }, 120_000);
});
