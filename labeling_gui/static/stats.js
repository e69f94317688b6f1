// prefrl stats page: labels per labeler, agreement, and the run's learning curve (drawn as SVG).
"use strict";

const pct = (x) => (x === null || x === undefined ? "–" : `${(100 * x).toFixed(1)} %`);
const num = (x, d = 1) => (x === null || x === undefined ? "–" : Number(x).toFixed(d));

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.appendChild(td);
}

function chart(containerId, xs, ys, yRange) {
  const pts = xs.map((x, i) => [x, ys[i]]).filter((p) => p[1] !== null && p[0] !== null);
  const box = document.getElementById(containerId);
  if (!pts.length) { box.textContent = "no data yet"; return; }
  const W = 360, H = 180, L = 48, B = 22, T = 8, R = 8;
  const x0 = Math.min(...pts.map((p) => p[0])), x1 = Math.max(...pts.map((p) => p[0])) || 1;
  let y0 = yRange ? yRange[0] : Math.min(...pts.map((p) => p[1]));
  let y1 = yRange ? yRange[1] : Math.max(...pts.map((p) => p[1]));
  if (y1 === y0) { y0 -= 1; y1 += 1; }
  const sx = (x) => L + ((x - x0) / (x1 - x0 || 1)) * (W - L - R);
  const sy = (y) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  const path = pts.map((p, i) => `${i ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join("");
  box.innerHTML = `<svg viewBox="0 0 ${W} ${H}" role="img">
    <line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="#999"/>
    <line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="#999"/>
    <text x="${L - 4}" y="${T + 10}" text-anchor="end" font-size="11">${num(y1, 2)}</text>
    <text x="${L - 4}" y="${H - B}" text-anchor="end" font-size="11">${num(y0, 2)}</text>
    <text x="${L}" y="${H - 6}" font-size="11">${x0}</text>
    <text x="${W - R}" y="${H - 6}" text-anchor="end" font-size="11">${x1} steps</text>
    <path d="${path}" fill="none" stroke="#2457c5" stroke-width="2"/></svg>`;
}

async function refresh() {
  let s;
  try {
    const res = await fetch("/api/stats", { credentials: "same-origin" });
    s = await res.json();
    if (!res.ok) throw new Error(s.detail || res.status);
  } catch (e) {
    document.getElementById("summary").textContent = `cannot load stats: ${e.message}`;
    return;
  }
  document.getElementById("summary").textContent =
    `${s.answers} answers to ${s.queries} queries (${s.pending} waiting, ${s.queue} not handed out). ` +
    `Agreement between labelers: ${pct(s.agreement.labelers)} on ${s.agreement.pairs_compared} repeated pairs. ` +
    `Agreement with the oracle: ${pct(s.oracle.agreement)} of ${s.oracle.compared} answers. ` +
    `Reward model accuracy (last fit): ${pct(s.reward_model_accuracy)} on held-out labels, ` +
    `${pct(s.reward_model_fresh_accuracy)} on the newest answers, scored before it learnt them.`;
  const body = document.querySelector("#labelers tbody");
  body.innerHTML = "";
  for (const l of s.labelers) {
    const row = document.createElement("tr");
    cell(row, l.name);
    cell(row, l.labels);
    cell(row, num(l.median_seconds));
    cell(row, l.skipped);
    cell(row, `${pct(l.oracle_agreement)} (${l.oracle_compared})`);
    body.appendChild(row);
  }
  chart("curve-return", s.curve.step, s.curve.true_return);
  chart("curve-accuracy", s.curve.step, s.curve.val_accuracy, [0, 1]);
  chart("curve-labels", s.curve.step, s.curve.labels);
}

refresh();
setInterval(refresh, 10000);
