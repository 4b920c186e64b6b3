/**
 * The race report as one self-contained HTML page: the verdict, the command that replays the
 * run, the search's figures, a legend, and the run as swimlanes, one column per task and one row
 * per step in global order, the chain of conflicting steps outlined. Every value goes through
 * `html`, which escapes it.
 */
import { Html, html } from "./html.js";
import { LANE_COLOURS, RACE_CSS, RACE_SCRIPT } from "./race-html-style.js";
import type { RaceReport } from "./race-report.js";
import type { BackendCall, RaceRun, RunStep, SpteChange, SpteValue } from "./race-run.js";

/** Nothing may be fetched: no fonts, scripts, images or connections, only what is inline. */
const CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'";

function decoded(v: SpteValue): string {
  const parts = [v.kind, v.pfn === null ? "" : `pfn ${v.pfn}`, ...v.flags];
  return parts.filter((p) => p !== "").join(" ");
}

function spte(c: SpteChange): Html {
  const mirror = c.mirror ? " mirror" : "";
  return html`<div class="spte" title="${c.text}">
<div class="where"><b>GPA ${c.gpa}</b> gfn ${c.gfn} L${c.level}${mirror} · ${c.by}</div>
<div class="vals"><code class="old">${c.old.hex}</code><span class="arrow">→</span><code
class="new">${c.new.hex}</code></div>
<div class="decoded">${decoded(c.old)}<span class="arrow">→</span>${decoded(c.new)}</div>
</div>`;
}

function call(c: BackendCall): Html {
  return html`<li class="call tone-${c.tone}"><span class="name">${c.name}</span> ${c.detail}:
<span class="status">${c.status}</span>${c.injected ? " (injected)" : ""}</li>`;
}

function card(s: RunStep, run: RaceRun): Html {
  const lane = run.lanes[s.lane] ?? `task ${s.lane}`;
  const total = run.chain.length;
  return html`<div class="card">
<div class="head"><span class="task">${lane}</span>
${s.began === null ? "" : html`<span class="op">${s.began}</span>`}
${s.chain === null ? "" : html`<span class="badge chain">chain ${s.chain}/${total}</span>`}
${s.failing ? html`<span class="badge fail">violation</span>` : ""}</div>
${s.sptes.map(spte)}
${s.calls.length === 0 ? "" : html`<ul class="calls">${s.calls.map(call)}</ul>`}
${
  s.other.length === 0
    ? ""
    : html`<ul class="other">${s.other.map((o) => html`<li>${o}</li>`)}
</ul>`
}
${s.reads === null ? "" : html`<p class="reads">${s.reads}</p>`}
${
  s.failing && run.violation !== null
    ? html`<p class="fail-msg">[${run.violation.check}] ${run.violation.message}</p>`
    : ""
}
</div>`;
}

function row(s: RunStep, run: RaceRun): Html {
  const cls = ["step"];
  if (s.chain !== null) cls.push("on-chain");
  if (s.failing) cls.push("failing");
  if (s.switched) cls.push("switched");
  const cells = run.lanes.map((_, i) =>
    i === s.lane
      ? html`<td class="cell" style="--lane: ${laneColour(i)}">${card(s, run)}</td>`
      : html`<td></td>`,
  );
  const chain = s.chain === null ? "" : html` data-chain="${s.chain}"`;
  return html`<tr class="${cls.join(" ")}" id="step-${s.n}" data-step="${s.n}"
data-lane="${s.lane}"${chain}><th class="stepno">#${s.n}</th>${cells}</tr>
`;
}

const laneColour = (i: number) => LANE_COLOURS[i % LANE_COLOURS.length]!;

function lanes(run: RaceRun, note: string | null): Html {
  const heads = run.lanes.map(
    (name, i) => html`<th class="lane" scope="col" data-lane="${i}"
style="--lane: ${laneColour(i)}">${name}</th>`,
  );
  const path = run.chain.map((n, i) => html`${i === 0 ? "" : " → "}<a href="#step-${n}">#${n}</a>`);
  return html`<section id="run" class="${run.chain.length > 0 ? "has-chain" : ""}">
<h2>The run: ${run.steps.length} steps, one lane per task</h2>
${note === null ? "" : html`<p>Shown: ${note}.</p>`}
${
  run.chain.length === 0
    ? ""
    : html`<p class="chain-path">The chain of conflicting steps that leads
to the violation (${run.chain.length} of ${run.steps.length} steps): ${path}</p>
<p class="controls"><label><input type="checkbox" id="only-chain"> show only the chain</label></p>`
}
<table class="lanes"><thead><tr><th class="stepno">step</th>${heads}</tr></thead>
<tbody>
${run.steps.map((s) => row(s, run))}</tbody></table>
</section>`;
}

/** The marks of the chain are explained only on a page that has one. */
function legend(chain: boolean): Html {
  return html`<section id="legend"><h2>Legend</h2><div class="legend">
${
  chain
    ? html`<span><i class="swatch chain"></i>on the chain of conflicting steps
(as <code>replay --diagram</code> draws it)</span>
<span><i class="swatch fail"></i>the step the violation shows in</span>
<span><i class="swatch off"></i>off the chain</span>`
    : ""
}
<span>a grey rule: another task takes the next step</span>
<span><code>old → new</code>: an SPTE, 64 bits in hex, decoded below (kind, pfn, flags)</span>
<span>call status: <b style="color: var(--ok)">success</b> <b style="color: var(--busy)">busy</b>
<b style="color: var(--err)">error</b></span>
</div></section>`;
}

function verdict(r: RaceReport): Html {
  const v = r.violation;
  return html`<section id="verdict" class="verdict v-${r.verdict}" data-verdict="${r.verdict}">
<h2>${r.headline}</h2>
${
  v === null
    ? ""
    : html`<p class="message" id="violation-message">${v.message}</p>
<p>check <code id="violation-check">${v.check}</code>, at step ${v.step}</p>`
}
<p>${r.detail}</p>
</section>`;
}

function replay(r: RaceReport): Html {
  if (r.replay !== null) {
    return html`<section id="replay"><h2>Replay it</h2>
<pre class="command" id="replay-command">${r.replay}</pre>
<p>add <code>--steps</code> for every step as text, <code>--diagram</code> for the chain alone,
or open it in the terminal UI with <code>tdpemu tui</code> and the same file</p></section>`;
  }
  if (r.unsavedSchedule === null) return html``;
  return html`<section id="replay"><h2>Replay it</h2>
<p>The schedule could not be written; save this as a <code>.json</code> file and run
<code>tdpemu replay</code> on it:</p>
<pre class="command" id="unsaved-schedule">${r.unsavedSchedule}</pre></section>`;
}

function figures(r: RaceReport): Html {
  if (r.figures.length === 0) return html``;
  const rows = r.figures.map(([k, v]) => html`<tr><td>${k}</td><td class="num">${v}</td></tr>`);
  return html`<section id="figures"><h2>The search</h2>
<table class="figures">${rows}</table></section>`;
}

function noRun(r: RaceReport): string {
  return r.verdict === "violation"
    ? "the schedule, run again, did not end in the violation (replay it to see where it goes)"
    : "no schedule ended in a violation";
}

export function renderRaceReport(r: RaceReport): string {
  const setup = r.setup.map(([k, v]) => html`<span>${k} <b>${v}</b></span>`);
  const page = html`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tdpemu ${r.command} ${r.scenario}: ${r.headline}</title>
<style>${new Html(RACE_CSS)}</style></head>
<body>
<h1>tdpemu ${r.command} · <span class="mono">${r.scenario}</span></h1>
<p class="setup">${setup}</p>
${verdict(r)}
${replay(r)}
${figures(r)}
${r.run === null ? "" : legend(r.run.chain.length > 0)}
${r.run !== null ? lanes(r.run, r.runNote) : html`<p id="no-run">No run to show: ${noRun(r)}.</p>`}
<footer>Written by tdpemu. Self-contained: no request leaves this page.</footer>
<script>${new Html(RACE_SCRIPT)}</script>
</body></html>
`;
  return page.text;
}
