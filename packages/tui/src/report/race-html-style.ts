/**
 * The race report's stylesheet and script, inlined in the page: the file must open anywhere,
 * offline, so nothing is fetched (no fonts, no scripts; the page's Content-Security-Policy
 * forbids it too). Values a kernel developer compares digit by digit (SPTEs, GPAs, calls) are
 * monospace; the chain of conflicting steps is outlined in amber, the failing step in red.
 */
export const RACE_CSS = `
:root { --chain: #d97706; --chain-bg: #fff7e6; --fail: #dc2626; --fail-bg: #fdecec;
  --muted: #6b7280; --line: #d1d5db; --ok: #15803d; --busy: #b45309; --err: #b91c1c;
  --mono: ui-monospace, "DejaVu Sans Mono", "Liberation Mono", Menlo, Consolas, monospace; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1500px; padding: 16px 24px 40px; color: #111827;
  font: 14px/1.45 system-ui, "DejaVu Sans", "Liberation Sans", sans-serif; background: #fafafa; }
h1 { font-size: 20px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 22px 0 8px; }
code, pre, .mono { font-family: var(--mono); font-size: 12.5px; }
.setup { color: var(--muted); margin: 0 0 12px; }
.setup span { margin-right: 14px; }
.setup b { color: #111827; font-weight: 600; }
.verdict { border-radius: 6px; padding: 10px 14px; border: 2px solid; }
.verdict h2 { margin: 0 0 4px; font-size: 18px; }
.verdict p { margin: 2px 0; }
.v-violation { border-color: var(--fail); background: var(--fail-bg); }
.v-exhausted, .v-no-violation { border-color: var(--ok); background: #ecfdf3; }
.v-bounded, .v-stopped { border-color: var(--busy); background: var(--chain-bg); }
.message { font-family: var(--mono); font-size: 13px; white-space: pre-wrap;
  word-break: break-word; }
pre.command { background: #111827; color: #f9fafb; padding: 8px 12px; border-radius: 4px;
  white-space: pre-wrap; word-break: break-all; }
table.figures { border-collapse: collapse; }
table.figures td { padding: 2px 14px 2px 0; }
table.figures td.num { font-family: var(--mono); text-align: right; }
.legend { display: flex; flex-wrap: wrap; gap: 8px 22px; padding: 8px 12px; background: #fff;
  border: 1px solid var(--line); border-radius: 4px; }
.legend span { display: inline-flex; align-items: center; gap: 6px; }
.swatch { display: inline-block; width: 26px; height: 16px; border-radius: 3px;
  border: 1px solid var(--line); }
.swatch.chain { border: 3px solid var(--chain); background: var(--chain-bg); }
.swatch.fail { border: 3px solid var(--fail); background: var(--fail-bg); }
.swatch.off { background: #fff; opacity: .5; }
.chain-path a { font-family: var(--mono); color: var(--chain); font-weight: 700;
  text-decoration: none; }
table.lanes { border-collapse: separate; border-spacing: 0; width: 100%; table-layout: fixed; }
table.lanes th.stepno { width: 58px; text-align: right; padding: 6px 8px 6px 0; vertical-align: top;
  font-family: var(--mono); font-weight: 400; color: var(--muted); }
table.lanes thead th { position: sticky; top: 0; background: #fafafa; z-index: 1;
  border-bottom: 2px solid var(--line); padding: 6px 8px; text-align: left;
  font-family: var(--mono); }
table.lanes thead th.lane { border-top: 4px solid var(--lane); }
table.lanes td { vertical-align: top; padding: 3px 6px; border-left: 1px dashed var(--line); }
tr.switched > * { border-top: 1px solid #9ca3af; }
tr.on-chain th.stepno { color: var(--chain); font-weight: 700; }
tr.failing th.stepno { color: var(--fail); }
.card { background: #fff; border: 1px solid var(--line); border-left: 4px solid var(--lane);
  border-radius: 4px; padding: 4px 8px; }
.has-chain tr.step:not(.on-chain) .card { opacity: .55; }
tr.on-chain .card { border: 3px solid var(--chain); background: var(--chain-bg); }
tr.failing .card { border: 3px solid var(--fail); background: var(--fail-bg); }
body.chain-only tr.step:not(.on-chain) { display: none; }
.head { display: flex; flex-wrap: wrap; gap: 4px 8px; align-items: baseline; }
.task { font-family: var(--mono); font-weight: 700; color: var(--lane); }
.op { font-family: var(--mono); color: var(--muted); }
.badge { font-size: 11px; font-weight: 700; border-radius: 9px; padding: 0 7px; color: #fff; }
.badge.chain { background: var(--chain); }
.badge.fail { background: var(--fail); }
.spte { margin: 4px 0; padding-left: 6px; border-left: 2px solid var(--line); }
.spte .where { font-family: var(--mono); }
.spte .vals { font-family: var(--mono); white-space: nowrap; overflow-x: auto; }
.spte .decoded { font-family: var(--mono); font-size: 11.5px; color: var(--muted); }
.arrow { color: var(--muted); padding: 0 4px; }
ul.calls, ul.other { list-style: none; margin: 4px 0; padding: 0; }
ul.calls li { font-family: var(--mono); }
.call .name { font-weight: 700; }
.call .status { font-weight: 700; }
.tone-ok .status { color: var(--ok); }
.tone-busy .status { color: var(--busy); }
.tone-error .status, .tone-exception .status { color: var(--err); }
ul.other li, .reads { font-family: var(--mono); font-size: 12px; color: #374151; margin: 1px 0; }
.reads { color: var(--muted); font-style: italic; }
.fail-msg { font-family: var(--mono); font-size: 12px; color: var(--err); margin: 4px 0 0;
  word-break: break-word; }
.controls { margin: 8px 0; }
footer { margin-top: 24px; color: var(--muted); font-size: 12px; }
`;

/** "only the chain" hides the other steps; everything else is static. */
export const RACE_SCRIPT = `
const only = document.getElementById("only-chain");
if (only) {
  only.addEventListener("change", () => document.body.classList.toggle("chain-only", only.checked));
}
`;

/** The lanes' colours, as the terminal UI gives each task its own. */
export const LANE_COLOURS = [
  "#2563eb",
  "#7c3aed",
  "#0d9488",
  "#c026d3",
  "#4d7c0f",
  "#0369a1",
  "#9f1239",
];
