/**
 * The key table is the key handling: every key it lists reaches its binding, no key outside it
 * changes anything, `?` lists it; and `g` walks the GPA typed, or says why it cannot.
 */
import { render } from "ink-testing-library";
import { describe, expect, it } from "vitest";
import { loadScenario } from "@tdpemu/core";
import { builtinRegistry } from "../src/registry.js";
import { App } from "../src/ui/app.js";
import { KEY_TABLE, SECTIONS, bindingFor, type KeyContext } from "../src/ui/keys.js";

const tick = () => new Promise((r) => setTimeout(r, 20));

async function press(stdin: { write(s: string): void }, keys: string) {
  for (const k of keys) {
    stdin.write(k);
    await tick();
  }
}

const ESC = "\u001B";

/** The frame once it matches `re` (a lone esc may wait for the rest of a sequence first). */
async function frameMatching(
  ui: { lastFrame(): string | undefined },
  re: RegExp,
  ms = 5000,
): Promise<string> {
  const end = Date.now() + ms;
  while (!re.test(ui.lastFrame() ?? "") && Date.now() < end) await tick();
  return ui.lastFrame() ?? "";
}

/** The UI in a wide terminal: no title or line of the list is cut. */
function app(path = "scenarios/tdx-sequential-2m.yaml", backend = "tdx", columns = 160) {
  const ui = render(
    <App
      scenario={loadScenario(path)}
      registry={builtinRegistry()}
      backend={backend}
      frameMs={0}
    />,
  );
  Object.defineProperty(ui.stdout, "columns", { value: columns, configurable: true });
  ui.stdout.emit("resize");
  return ui;
}

/** The characters a test can type: printable ASCII. */
const PRINTABLE = Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i));
const CONTEXTS: KeyContext[] = ["main", "help", "compare", "field"];

describe("the key table and the keys handled agree", () => {
  it("each key of the table reaches its own binding, and no key has two in one place", () => {
    for (const b of KEY_TABLE) {
      for (const c of b.contexts) {
        for (const k of b.keys)
          expect({ k, c, b: bindingFor(c, k, true)?.does }).toEqual({ k, c, b: b.does });
      }
    }
    for (const c of CONTEXTS) {
      const seen = KEY_TABLE.filter((b) => b.contexts.includes(c)).flatMap((b) => b.keys);
      expect(new Set(seen).size).toBe(seen.length);
    }
    // Events-pane keys answer only there.
    expect(bindingFor("main", "up", false)).toBeUndefined();
    expect(bindingFor("main", "enter", false)).toBeUndefined();
  });

  it("a printable key the main view's table lacks changes nothing on the screen", async () => {
    const listed = new Set(
      KEY_TABLE.filter((b) => b.contexts.includes("main")).flatMap((b) => b.keys),
    );
    const unlisted = PRINTABLE.filter((ch) => !listed.has(ch === " " ? "space" : ch));
    expect(unlisted).toContain("x");
    expect(unlisted).not.toContain("g");
    const ui = app();
    await press(ui.stdin, "n");
    const before = ui.lastFrame();
    for (const ch of unlisted) {
      await press(ui.stdin, ch);
      expect({ ch, same: ui.lastFrame() === before }).toEqual({ ch, same: true });
    }
    ui.unmount();
  });

  it("? lists every binding of the table, g, c and ? among them; ? or esc closes it", async () => {
    const ui = app(undefined, undefined, 220);
    await press(ui.stdin, "?");
    const frame = ui.lastFrame()!;
    for (const s of SECTIONS) {
      expect(frame).toContain(s.title);
      for (const b of s.bindings) expect(frame).toContain(b.does);
    }
    expect(SECTIONS.flatMap((s) => s.bindings).length).toBe(KEY_TABLE.length);
    for (const key of ["g", "c", "?"])
      expect(frame).toMatch(new RegExp(`│ ${key === "?" ? "\\?" : key} +\\S`));
    await press(ui.stdin, ESC);
    expect(await frameMatching(ui, /events \(latest last\)/)).toContain("events (latest last)");
    await press(ui.stdin, "??");
    expect(ui.lastFrame()).toContain("events (latest last)");
    ui.unmount();
  });

  it("the list of keys fits the smallest terminal, 100x30", async () => {
    const ui = render(
      <App
        scenario={loadScenario("scenarios/tdx-sequential-2m.yaml")}
        registry={builtinRegistry()}
        backend="tdx"
        frameMs={0}
        columns={100}
        rows={30}
      />,
    );
    await press(ui.stdin, "?");
    expect(ui.lastFrame()).toContain("this list of keys");
    expect(ui.lastFrame()!.split("\n").length).toBeLessThanOrEqual(30);
    ui.unmount();
  });
});

describe("g: walk a GPA", () => {
  it("g, a GPA and enter show that GPA's walk, as ] and } do", async () => {
    const ui = app();
    await press(ui.stdin, "nnn");
    await press(ui.stdin, "g0x1000");
    expect(ui.lastFrame()).toContain("walk GPA: 0x1000");
    await press(ui.stdin, "\r");
    expect(ui.lastFrame()).toContain("walk of GPA 0x1000 · fixed");
    // The same walk as moving there a page at a time.
    const typed = ui.lastFrame()!.split("\n").slice(1, 12).join("\n");
    await press(ui.stdin, "g0\r]");
    expect(ui.lastFrame()!.split("\n").slice(1, 12).join("\n")).toBe(typed);
    await press(ui.stdin, "g6M\r");
    expect(ui.lastFrame()).toContain("walk of GPA 0x600000 · fixed");
    ui.unmount();
  });

  it("a shared alias is walked as its GPA and shown with its shared bit", async () => {
    const ui = app();
    await press(ui.stdin, "nnng800000001000\r");
    expect(ui.lastFrame()).toContain("walk of GPA 0x800000001000 (shared alias of 0x1000)");
    expect(ui.lastFrame()).toContain("direct root (shared alias)");
    await press(ui.stdin, "]");
    expect(ui.lastFrame()).toContain("walk of GPA 0x800000002000 (shared alias of 0x2000)");
    ui.unmount();
  });

  it("a bad GPA shows the error in the field and changes nothing; esc leaves it", async () => {
    const ui = app();
    await press(ui.stdin, "nnng1000\r");
    expect(ui.lastFrame()).toContain("walk of GPA 0x1000 · fixed");
    await press(ui.stdin, "g0xzz\r");
    expect(ui.lastFrame()).toContain("walk GPA: 0xzz▏ ✗ '0xzz' is not a GPA: expected hex");
    expect(ui.lastFrame()).toContain("walk of GPA 0x1000 · fixed");
    // Erase it and type one beyond the guest's 64 MiB.
    await press(ui.stdin, "\u007f\u007f\u007f\u007f1G\r");
    expect(ui.lastFrame()).toContain(
      "✗ 0x40000000 is beyond the guest's 64 MiB: expected 0x0 to 0x3ffffff",
    );
    await press(ui.stdin, ESC);
    expect(await frameMatching(ui, /space run\/pause/)).not.toContain("walk GPA:");
    expect(ui.lastFrame()).toContain("walk of GPA 0x1000 · fixed");
    ui.unmount();
  });

  it("on a VM without a shared bit a shared alias is refused", async () => {
    const ui = app("scenarios/zap-refault.yaml", "plain");
    await press(ui.stdin, "g0x800000000000\r");
    expect(ui.lastFrame()).toContain("this VM has no shared bit");
    ui.unmount();
  });
});
