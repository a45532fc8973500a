// The explorer page: it asks the server (minirl.examples.explorer) for numbers and displays them.
// Nothing here computes RL quantities; it only formats, colours and lays out what the server sent.
"use strict";

const $ = (id) => document.getElementById(id);
const fmt = (x, d = 4) => (typeof x === "number" && isFinite(x) ? x.toFixed(d) : "—");
const COLORS = ["#2b5fd9", "#d9622b", "#1c9a5a", "#a43bc2", "#c2a23b", "#3bb5c2", "#c23b6a"];

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

async function api(name, body, errorId, button) {
  if (errorId) $(errorId).textContent = "";
  if (button) button.disabled = true;
  try {
    const res = await fetch(`/api/${name}`, {method: "POST", headers: {"Content-Type": "application/json"},
                                             body: JSON.stringify(body || {})});
    const data = await res.json();
    if (data.error) throw new Error(data.error);
    return data;
  } catch (e) {
    if (errorId) $(errorId).textContent = e.message;
    return null;
  } finally {
    if (button) button.disabled = false;
  }
}

// A number input's value as a number, or the raw text so the server can say what is wrong with it.
const numberOf = (id) => { const v = $(id).value.trim(); return v !== "" && isFinite(Number(v)) ? Number(v) : v; };

let overview = null;

// ---- tabs ----
for (const tab of document.querySelectorAll(".tab")) {
  tab.addEventListener("click", () => {
    document.querySelectorAll(".tab").forEach((t) => t.classList.toggle("active", t === tab));
    document.querySelectorAll(".panel").forEach((p) => p.classList.toggle("active", p.id === `panel-${tab.dataset.panel}`));
    if (tab.dataset.panel === "curves" && !$("charts").hasChildNodes()) loadCurves();
    if (tab.dataset.panel === "lab" && !lab) loadLab();
    if (tab.dataset.panel === "frontier" && !frontier) loadFrontier();
  });
}

// ---- Generate ----
function shade(diff) {
  const alpha = Math.min(Math.abs(diff) / 3, 1) * 0.6;
  return diff >= 0 ? `rgba(22, 140, 70, ${alpha})` : `rgba(200, 40, 40, ${alpha})`;
}

$("generate-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const data = await api("generate", {prompt: $("prompt").value, temperature: numberOf("temperature"),
                                      top_k: numberOf("top-k"), max_new_tokens: numberOf("length"),
                                      seed: numberOf("gen-seed")}, "generate-error", $("generate"));
  if (!data) return;
  const box = $("answers");
  box.replaceChildren();
  for (const a of data.answers) {
    const tokens = el("div", {class: "tokens"}, el("span", {class: "prompt-text", text: data.prompt}));
    for (const t of a.tokens) {
      const span = el("span", {class: "tok" + (t.text === "<|endoftext|>" ? " eot" : ""), text: t.text,
        title: `log π = ${fmt(t.logprob)}\nlog π_ref = ${fmt(t.ref_logprob)}\nlog π − log π_ref = ${fmt(t.diff)}`});
      span.style.background = shade(t.diff);
      span.dataset.diff = t.diff;
      tokens.append(span);
    }
    const numbers = el("div", {class: "numbers"});
    numbers.innerHTML = `R(x, y) = <b class="reward">${fmt(a.reward)}</b> · KL to SFT = <b class="kl">${fmt(a.kl_to_sft)}</b> nats · ${a.tokens.length} tokens`;
    box.append(el("div", {class: "answer", "data-model": a.model}, el("h3", {text: a.label}), numbers, tokens));
  }
});

// ---- Ledger ----
const LEDGER_COLS = [["logprob", "log π"], ["ref_logprob", "log π_ref"], ["kl", "k1_t"], ["reward", "r_t"],
                     ["value", "V(s_t)"], ["delta", "δ_t"], ["advantage", "A_t"], ["return", "R_t"]];
let ledger = null, ledgerRow = 0, gaeCursor = null;

function responseSteps() { return ledger.rows[ledgerRow].tokens.filter((c) => c.mask === 1).map((c) => c.t); }

function drawLedger() {
  const row = ledger.rows[ledgerRow];
  const steps = responseSteps();
  const done = gaeCursor === null ? new Set(steps) : new Set(steps.filter((t) => t >= gaeCursor));
  const head = el("tr", {}, el("th", {text: "t"}), el("th", {text: "token"}), el("th", {text: "m_t"}),
                  ...LEDGER_COLS.map(([, label]) => el("th", {text: label})));
  const table = $("ledger-table");
  table.replaceChildren(head);
  for (const c of row.tokens) {
    const tr = el("tr", {class: c.kind + (c.t === gaeCursor ? " cursor" : ""), "data-t": c.t},
                  el("td", {text: c.t}), el("td", {class: "token", text: JSON.stringify(c.text)}), el("td", {text: c.mask}));
    for (const [key] of LEDGER_COLS) {
      const gaeCol = key === "advantage" || key === "return";
      if (c.mask !== 1) tr.append(el("td", {text: c.kind}));
      else if (gaeCol && !done.has(c.t)) tr.append(el("td", {class: "pending", text: "?"}));
      else tr.append(el("td", {class: key, text: fmt(c[key])}));
    }
    table.append(tr);
  }
  const cell = row.tokens.find((c) => c.t === gaeCursor);
  const sub = (name, t) => `${name}<sub>${t}</sub>`;
  $("gae-eq").innerHTML = cell
    ? `${sub("A", cell.t)} = ${sub("δ", cell.t)} + γλ·${sub("A", cell.next_t ?? "T+1")} = ${fmt(cell.delta)} + ` +
      `${fmt(ledger.gamma_lam, 3)} × ${fmt(cell.next_advantage)} = <b>${fmt(cell.advantage)}</b>` +
      (cell.next_t === null ? " (the last token T: nothing after it)" : "")
    : (gaeCursor === null ? "every A<sub>t</sub> filled in" : "press step to start at the last token T");
  const current = table.querySelector("tr.cursor");
  if (current) current.scrollIntoView({block: "nearest"});
}

$("ledger-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const data = await api("ledger", {rows: numberOf("ledger-rows"), seed: numberOf("ledger-seed")}, "ledger-error",
                         $("ledger-run"));
  if (!data) return;
  ledger = data; ledgerRow = 0; gaeCursor = null;
  $("ledger-params").textContent = `β = ${data.kl_coef} (${data.kl_estimator}), γ = ${data.gamma}, λ = ${data.lam}` +
    (data.has_value_model ? "; V(s_t) from the run's value model" : "; this run has no value model, so V(s_t) = 0");
  const pick = $("ledger-pick");
  pick.replaceChildren();
  data.rows.forEach((r, i) => {
    const b = el("button", {type: "button", class: i === 0 ? "active" : "",
                            text: `response ${i + 1}: R = ${fmt(r.score, 3)}${r.ended ? "" : " (no EOT)"}`});
    b.addEventListener("click", () => { ledgerRow = i; gaeCursor = null;
      pick.querySelectorAll("button").forEach((x) => x.classList.toggle("active", x === b)); drawLedger(); });
    pick.append(b);
  });
  $("gae-controls").classList.remove("hidden");
  drawLedger();
});

$("gae-step").addEventListener("click", () => {
  const steps = responseSteps();
  const i = steps.indexOf(gaeCursor);  // -1 when every A_t is shown or none is: start again at T
  gaeCursor = i < 0 ? steps[steps.length - 1] : steps[Math.max(i - 1, 0)];
  drawLedger();
});
$("gae-all").addEventListener("click", () => { gaeCursor = null; drawLedger(); });
$("gae-reset").addEventListener("click", () => { gaeCursor = Infinity; drawLedger(); });

// ---- PPO step ----
$("ppo-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const data = await api("ppo_step", {seed: numberOf("ppo-seed"), steps: numberOf("ppo-steps")}, "ppo-error", $("ppo-run"));
  if (!data) return;
  const stat = (label, value) => el("div", {class: "stat"}, el("b", {text: value}), label);
  const f = data.first_step, a = data.after;
  $("ppo-summary").replaceChildren(
    el("p", {class: "note", text: `First gradient step (π_θ = π_old, so ρ ≡ 1): approx_kl = ${fmt(f.approx_kl)}, clipfrac = ${fmt(f.clipfrac)}. ` +
      `After ${data.steps} step(s) at lr ${data.lr}, on ${data.rows.length} responses (${data.tokens} tokens), ε = ${data.clip_eps}:`}),
    el("div", {class: "stats"}, stat("L_clip", fmt(a.policy_loss)), stat("approx_kl", fmt(a.approx_kl)),
       stat("clipfrac", fmt(a.clipfrac)), stat("mean ρ", fmt(a.ratio_mean))));
  const table = $("ppo-table");
  table.replaceChildren(el("tr", {}, ...["t", "token", "A_t (whitened)", "log π_old", "log π_θ", "ρ_t", "clip",
                                         "share of L_clip", "share of approx_kl"].map((h) => el("th", {text: h}))));
  data.rows.forEach((r, i) => {
    table.append(el("tr", {class: "rowhead"}, el("td", {colspan: 9, text: `response ${i + 1}: ${r.text}`})));
    for (const c of r.tokens) {
      const clip = c.clip_binds ? "binds" : (c.outside_clip ? "outside" : "");
      table.append(el("tr", {}, el("td", {text: c.t}), el("td", {class: "token", text: JSON.stringify(c.text)}),
        el("td", {text: fmt(c.advantage)}), el("td", {text: fmt(c.old_logprob)}), el("td", {text: fmt(c.new_logprob)}),
        el("td", {class: c.outside_clip ? "clipped" : "", text: fmt(c.ratio)}),
        el("td", {class: c.clip_binds ? "clipped" : "", text: clip}),
        el("td", {text: fmt(c.loss_share, 5)}), el("td", {text: fmt(c.kl_share, 5)})));
    }
  });
});

// ---- Curves ----
// An SVG line chart. Each series has points [[x, y], …] and a color; optionally err (± per point, drawn as
// bars), dots (clickable markers instead of a line), dash, label(i) (a point's tooltip), tag(i) (text written
// beside the point), key(i) (its data-key) and pick(i) (called when point i is clicked). Options: vlines (x
// values drawn as dotted vertical lines, each labelled), sqrtX (place x at sign(x)·√|x|, so small values
// spread out; labels stay in x) and the chart's width and height in SVG units.
function lineChart(title, series, xLabel, {vlines = [], sqrtX = false, width = 420, height = 220} = {}) {
  const W = width, H = height, L = 52, R = 10, T = 10, B = 30;
  const err = (s, i) => (s.err && s.err[i]) || 0;
  const pts = series.flatMap((s) => s.points.flatMap((p, i) => [[p[0], p[1] - err(s, i)], [p[0], p[1] + err(s, i)]]));
  const box = el("div", {class: "chart"}, el("h4", {text: title}));
  if (!pts.length) { box.append(el("p", {class: "note", text: "not logged by these runs"})); return box; }
  const xs = pts.map((p) => p[0]).concat(vlines), ys = pts.map((p) => p[1]);
  let [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  if (x1 === x0) x1 = x0 + 1; if (y1 === y0) { y0 -= 1; y1 += 1; }
  const fx = sqrtX ? (x) => Math.sign(x) * Math.sqrt(Math.abs(x)) : (x) => x;  // a k1 KL can dip below 0
  const fxInverse = sqrtX ? (u) => Math.sign(u) * u * u : (u) => u;
  if (series.some((s) => s.tag)) {  // room for the tags of the rightmost and topmost points
    x1 = fxInverse(fx(x1) + (fx(x1) - fx(x0)) * 0.06); y1 += (y1 - y0) * 0.06;
  }
  const px = (x) => L + (fx(x) - fx(x0)) / (fx(x1) - fx(x0)) * (W - L - R);
  const py = (y) => H - B - (y - y0) / (y1 - y0) * (H - T - B);
  const tick = (v) => (Number.isInteger(v) ? String(v) : v.toPrecision(3));
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const add = (tag, attrs, text, parent = svg) => { const n = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v); if (text !== undefined) n.textContent = text;
    parent.append(n); return n; };
  add("rect", {x: L, y: T, width: W - L - R, height: H - T - B, fill: "none", stroke: "#d9dde5"});
  if (y0 < 0 && y1 > 0) add("line", {x1: L, x2: W - R, y1: py(0), y2: py(0), stroke: "#b7bcc6", "stroke-dasharray": "2 3"});
  for (const [v, y] of [[y0, H - B], [y1, T + 9]]) add("text", {x: L - 4, y, "text-anchor": "end"}, v.toPrecision(3));
  add("text", {x: L, y: H - 12}, tick(x0)); add("text", {x: W - R, y: H - 12, "text-anchor": "end"}, tick(x1));
  add("text", {x: (L + W) / 2, y: H - 4, "text-anchor": "middle"}, xLabel);
  for (const v of vlines) {
    add("line", {x1: px(v), x2: px(v), y1: T, y2: H - B, stroke: "#8a919e", "stroke-dasharray": "2 3", class: "vline"});
    add("text", {x: px(v) + 3, y: T + 11}, tick(v));
  }
  for (const s of series) {
    if (!s.dots) {
      if (s.points.length === 1) add("circle", {cx: px(s.points[0][0]), cy: py(s.points[0][1]), r: 3, fill: s.color});
      add("polyline", {fill: "none", stroke: s.color, "stroke-width": s.dash ? 1.5 : 2, "stroke-dasharray": s.dash || "none",
                       points: s.points.map((p) => `${px(p[0])},${py(p[1])}`).join(" ")});
      continue;
    }
    s.points.forEach((p, i) => {
      const [x, lo, hi] = [px(p[0]), py(p[1] - err(s, i)), py(p[1] + err(s, i))];
      if (err(s, i)) for (const [a, b, c, d] of [[x, lo, x, hi], [x - 3, lo, x + 3, lo], [x - 3, hi, x + 3, hi]])
        add("line", {x1: a, y1: b, x2: c, y2: d, stroke: s.color, "stroke-width": 1.2, class: "err"});
      const dot = add("circle", {cx: x, cy: py(p[1]), r: 4, fill: s.color, class: "point", "data-key": s.key ? s.key(i) : ""});
      if (s.label) add("title", {}, s.label(i), dot);
      if (s.tag) add("text", {x: x + 5, y: py(p[1]) - 5, style: `fill: ${s.color}`, class: "point-tag"}, s.tag(i));
      if (s.pick) dot.addEventListener("click", () => s.pick(i));
    });
  }
  box.append(svg);
  return box;
}

let curves = null;
function drawCurves() {
  const chosen = [...document.querySelectorAll("#curve-runs input:checked")].map((i) => i.value);
  const names = Object.keys(curves.runs);
  $("charts").replaceChildren(...curves.metrics.map((m) => lineChart(m.label,
    chosen.map((run) => ({points: curves.runs[run][m.key], color: COLORS[names.indexOf(run) % COLORS.length]})), "iteration")));
}

async function loadCurves() {
  const data = await api("curves", {}, "curves-error");
  if (!data) return;
  curves = data;
  const names = Object.keys(data.runs);
  $("curve-runs").replaceChildren(...names.map((name, i) => {
    const box = el("input", {type: "checkbox", value: name}); box.checked = true;
    box.addEventListener("change", drawCurves);
    const label = el("label", {class: "legend"}, box, ` ${name}`);
    label.style.color = COLORS[i % COLORS.length];
    return label;
  }));
  if (!names.length) $("curves-error").textContent = "no finished RL run with a metrics.jsonl in this folder.";
  drawCurves();
  if (data.reward_vs_kl.length) {
    const table = el("table", {class: "ledger"}, el("tr", {}, el("th", {text: "algorithm"}), el("th", {text: "KL to SFT"}),
                                                    el("th", {text: "reward"})));
    for (const p of data.reward_vs_kl) table.append(el("tr", {}, el("td", {class: "token", text: p.algo}),
                                                     el("td", {text: fmt(p.kl_to_sft, 2)}), el("td", {text: fmt(p.reward, 3)})));
    const scatter = lineChart("compare: reward against KL to SFT", data.reward_vs_kl.map((p, i) =>
      ({points: [[p.kl_to_sft, p.reward]], color: COLORS[i % COLORS.length]})), "KL to SFT (nats / response)");
    $("compare-chart").replaceChildren(el("h3", {text: "Every algorithm on one budget"}), scatter, table);
  }
}

// ---- Reward model ----
$("reward-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const data = await api("reward_model", {text: $("reward-text").value}, "reward-error", $("reward-run"));
  if (!data) return;
  const h = data.health;
  const table = el("table", {class: "ledger"}, el("tr", {}, ...["label", "count", "mean r_φ", "std r_φ"].map((t) => el("th", {text: t}))));
  for (const [name, s] of Object.entries(h.per_label)) table.append(el("tr", {}, el("td", {class: "token", text: name}),
    el("td", {text: s.count}), el("td", {text: fmt(s.mean)}), el("td", {text: fmt(s.std)})));
  $("reward-out").replaceChildren(el("div", {class: "stats"},
    el("div", {class: "stat"}, el("b", {class: "score", text: fmt(data.reward)}), "r_φ(x, y) of this text"),
    el("div", {class: "stat"}, el("b", {text: fmt(h.pair_accuracy, 3)}), `pairwise accuracy (${h.positive} > ${h.negative}, ${h.n_pairs} pairs)`),
    el("div", {class: "stat"}, el("b", {text: fmt(h.length_correlation, 3)}), "corr(reward, length): near 0 is healthy")),
    el("p", {class: "note", text: `Health report on ${h.n_texts} held-out texts of the run's corpus.`}), table);
});

// ---- Goodhart lab ----
let lab = null;
const D_LABEL = "d = √KL(π ‖ π_sft)";
const pm = (x, e) => `${fmt(x, 3)} ± ${fmt(e, 3)}`;

// One PPO evaluation: its numbers and the samples the lab kept (as text, never as HTML).
function evaluationBlock(size, q) {
  return el("div", {class: "sample"},
    el("div", {text: `${size}-pair proxy, iteration ${q.iteration}: KL ${fmt(q.kl, 2)} nats (d ${fmt(q.d, 2)}), ` +
                     `gold ${pm(q.gold, q.gold_stderr)}, proxy ${fmt(q.proxy, 3)}, length ${fmt(q.length, 1)}, ` +
                     `distinct-2 ${fmt(q.distinct_2, 2)}`}),
    el("div", {class: "texts", text: q.samples.join("\n")}));
}

function showPoint(method, proxy, i) {
  document.querySelectorAll("#lab-charts .point.picked").forEach((c) => c.classList.remove("picked"));
  document.querySelectorAll(`#lab-charts .point[data-key="${method}-${proxy.size}-${i}"]`)
    .forEach((c) => c.classList.add("picked"));
  const q = proxy[method].points[i];
  if (method === "ppo") {
    $("lab-samples-title").textContent = `PPO against the ${proxy.size}-pair proxy, iteration ${q.iteration}`;
    $("lab-samples").replaceChildren(evaluationBlock(proxy.size, q));
    return;
  }
  $("lab-samples-title").textContent = `Best-of-${q.n} against the ${proxy.size}-pair proxy`;
  $("lab-samples").replaceChildren(el("div", {class: "sample", text: `KL ${fmt(q.kl, 3)} nats (d ${fmt(q.d, 3)}), ` +
    `gold ${pm(q.gold, q.gold_stderr)} (Δgold ${fmt(q.delta_gold, 3)}), proxy ${pm(q.proxy, q.proxy_stderr)}`}),
    el("p", {class: "note", text: "The lab keeps no best-of-n samples (each n is read off a scored pool); click a PPO point to read its samples."}));
}

function drawLab() {
  const chosen = new Set([...document.querySelectorAll("#lab-sizes input:checked")].map((b) => b.value));
  const shown = lab.proxies.map((p, k) => ({p, color: COLORS[k % COLORS.length]})).filter(({p}) => chosen.has(p.size));
  const chart = (title, method, key, errKey, fitted) => lineChart(title, shown.flatMap(({p, color}) => {
    const m = p[method];
    const points = m.points.map((q) => [q.d, q[key]]);
    const label = (i) => { const q = m.points[i]; return `${p.size}-pair proxy, ` +
      (method === "ppo" ? `iteration ${q.iteration}` : `n = ${q.n}`) + `\nKL ${fmt(q.kl, 3)}, ${key} ${fmt(q[key], 4)}`; };
    const dots = {points, color, dots: true, err: errKey ? m.points.map((q) => q[errKey]) : null, label,
                  key: (i) => `${method}-${p.size}-${i}`, pick: (i) => showPoint(method, p, i)};
    const line = fitted ? {points: m.fit_curve, color} : {points, color, dash: "4 3"};
    return line.points.length ? [line, dots] : [dots];
  }), D_LABEL);
  $("lab-charts").replaceChildren(
    chart("best-of-n: Δgold (VADER), fit d(α − βd)", "best_of_n", "delta_gold", "gold_stderr", true),
    chart("best-of-n: proxy reward model", "best_of_n", "proxy", "proxy_stderr", false),
    chart(`PPO (KL penalty ${lab.kl_coef}): Δgold (VADER), fit d(α − β log d)`, "ppo", "delta_gold", "gold_stderr", true),
    chart(`PPO (KL penalty ${lab.kl_coef}): proxy reward model`, "ppo", "proxy", null, false));
}

async function loadLab() {
  const data = await api("lab", {}, "lab-error");
  if (!data) return;
  lab = data;
  if (!data.available) {
    $("lab-command").textContent = data.command;
    $("lab-missing").classList.remove("hidden");
    return;
  }
  $("lab-body").classList.remove("hidden");
  $("lab-sizes").replaceChildren(...data.proxies.map((p, i) => {
    const box = el("input", {type: "checkbox", value: p.size}); box.checked = true;
    box.addEventListener("change", drawLab);
    const label = el("label", {class: "legend"}, box, ` ${p.size}-pair proxy (${p.train_pairs} pairs kept, ` +
                     `val acc ${fmt(p.val_accuracy, 2)})`);
    label.style.color = COLORS[i % COLORS.length];
    return label;
  }));
  drawLab();
  const table = $("lab-fits");
  table.replaceChildren(el("tr", {}, ...["proxy", "method", "α", "β", "R²", "peak d", "gold fell"].map((h) => el("th", {text: h}))));
  for (const p of data.proxies) {
    for (const [method, name] of [["best_of_n", "best-of-n"], ["ppo", "PPO"]]) {
      const f = p[method].fit;
      table.append(el("tr", {}, el("td", {class: "token", text: `${p.size} pairs`}), el("td", {class: "token", text: name}),
        ...(f ? [fmt(f.alpha), fmt(f.beta), fmt(f.r2, 3), f.peak_d === null ? "none" : fmt(f.peak_d, 2)]
              : ["—", "—", "—", "—"]).map((t) => el("td", {text: t})),
        el("td", {text: p[method].gold_falls ? "yes" : "no"})));
    }
  }
  $("lab-verdicts").replaceChildren(...data.verdicts.map((v) => el("li", {text: v})));
  const proxy = data.proxies.find((p) => p.size === data.samples_at.size);
  $("lab-samples-title").textContent = `Samples of PPO against the ${proxy.size}-pair proxy at three KLs (click a point for others)`;
  $("lab-samples").replaceChildren(...data.samples_at.points.map((i) => evaluationBlock(proxy.size, proxy.ppo.points[i])));
}

// ---- Frontier ----
let frontier = null;
const KL_LABEL = "KL(π ‖ π_sft), nats per response (placed at √KL)";
const SFT_COLOR = "#1d2330";

// One model's figures and the samples the sweep kept (as text, never as HTML).
function runBlock(r) {
  const gold = frontier.gold ? `, gold (${frontier.gold}) ${fmt(r.gold, 3)}` : "";
  return el("div", {class: "sample"},
    el("div", {text: `KL to SFT ${fmt(r.kl_to_sft, 2)} nats, reward ${fmt(r.reward, 3)}${gold}, ` +
                     `distinct-2 ${fmt(r.distinct_2, 3)}, length ${fmt(r.response_length, 1)} tokens`}),
    el("div", {class: "texts", text: r.samples.join("\n")}));
}

function showRun(key, title, r, note) {
  document.querySelectorAll("#frontier-charts .point.picked").forEach((c) => c.classList.remove("picked"));
  document.querySelectorAll(`#frontier-charts .point[data-key="${key}"]`).forEach((c) => c.classList.add("picked"));
  $("frontier-samples-title").textContent = title;
  $("frontier-samples").replaceChildren(runBlock(r), el("p", {class: "note", text: note}));
}

const showSft = () => showRun("sft", "The SFT model (π_sft, where every run starts)", frontier.sft,
                              "Click a run's point for its samples.");

function drawFrontier() {
  const chosen = new Set([...document.querySelectorAll("#frontier-algos input:checked")].map((b) => b.value));
  const shown = frontier.algos.map((a, k) => ({a, color: COLORS[k % COLORS.length]})).filter(({a}) => chosen.has(a.algo));
  const chart = (title, key, lineOf) => lineChart(title, [...shown.flatMap(({a, color}) => [
    {points: lineOf(a), color},
    {points: a.runs.map((r) => [r.kl_to_sft, r[key]]), color, dots: true, tag: (i) => a.runs[i].label,
     label: (i) => `${a.algo}, ${a.runs[i].label}\nKL ${fmt(a.runs[i].kl_to_sft, 2)}, ${key} ${fmt(a.runs[i][key], 3)}`,
     key: (i) => `${a.algo}-${i}`,
     pick: (i) => showRun(`${a.algo}-${i}`, `${a.algo}, ${a.runs[i].symbol} = ${a.runs[i].value}`, a.runs[i],
                          `${a.runs[i].sampled_tokens} response tokens sampled in ${a.runs[i].iterations} iterations.`)}]),
    {points: [[frontier.sft.kl_to_sft, frontier.sft[key]]], color: SFT_COLOR, dots: true, tag: () => "SFT",
     label: () => "SFT (start)", key: () => "sft", pick: showSft}], KL_LABEL,
    {vlines: frontier.kls, sqrtX: true, width: frontier.gold ? 480 : 760, height: frontier.gold ? 340 : 440});
  const charts = [chart(`reward (${frontier.reward}): every run, and each algorithm's monotone frontier`, "reward",
                        (a) => a.frontier)];
  if (frontier.gold) charts.push(chart(`gold (${frontier.gold}) on the same samples, through each algorithm's runs`,
                                       "gold", (a) => a.gold_line));
  $("frontier-charts").classList.toggle("two", Boolean(frontier.gold));
  $("frontier-charts").replaceChildren(...charts);
}

function frontierTable(f) {
  const columns = ["R", "per nat", ...(f.gold ? ["gold"] : [])];
  const top = el("tr", {}, el("th", {rowspan: 2, text: "algorithm"}), el("th", {rowspan: 2, text: "KL range"}),
    ...f.kls.map((k) => el("th", {colspan: columns.length, text: `at KL ${k}`})));
  const head = el("tr", {}, ...f.kls.flatMap(() => columns.map((t) => el("th", {text: t}))));
  const rows = f.algos.map((a) => el("tr", {}, el("td", {class: "token", text: `${a.algo} (${a.symbol})`}),
    el("td", {text: `${fmt(a.kl_range[0], 1)}–${fmt(a.kl_range[1], 1)}`}),
    ...f.kls.flatMap((k, i) => {
      const best = f.best[i] === a.algo;
      return [el("td", {class: best ? "best" : "", text: (best ? "★ " : "") + fmt(a.reward[i], 3)}),
              el("td", {text: fmt(a.reward_per_nat[i], 3)}), ...(f.gold ? [el("td", {text: fmt(a.gold[i], 3)})] : [])];
    })));
  return [top, head, ...rows];
}

async function loadFrontier() {
  const data = await api("frontier", {}, "frontier-error");
  if (!data) return;
  frontier = data;
  if (!data.available) {
    $("frontier-command").textContent = data.command;
    $("frontier-missing").classList.remove("hidden");
    return;
  }
  $("frontier-body").classList.remove("hidden");
  $("frontier-algos").replaceChildren(...data.algos.map((a, i) => {
    const box = el("input", {type: "checkbox", value: a.algo}); box.checked = true;
    box.addEventListener("change", drawFrontier);
    const label = el("label", {class: "legend"}, box, ` ${a.algo} (${a.runs.length} runs, knob ${a.symbol})`);
    label.style.color = COLORS[i % COLORS.length];
    return label;
  }));
  drawFrontier();
  $("frontier-table").replaceChildren(...frontierTable(data));
  $("frontier-verdict").textContent = data.verdict;
  $("frontier-budget").textContent = `Each run sampled about ${data.token_budget.toLocaleString("en")} response tokens. ` +
    `SFT reward R_sft = ${fmt(data.sft.reward, 3)}; per nat = (R − R_sft) / KL. ★ the most reward at that KL; ` +
    "— the frontier does not reach it (a frontier is read only inside its runs' KL range).";
  showSft();
}

// ---- start ----
(async () => {
  overview = await api("overview", {});
  if (!overview) { $("run-info").textContent = "the server did not answer"; return; }
  const names = {pretrained: "pretrained", sft: "SFT", final: overview.algo};
  const parts = Object.keys(names).filter((k) => overview.models[k]).map((k) =>
    `${names[k]}: R ${fmt(overview.models[k].reward, 3)}, KL to SFT ${fmt(overview.models[k].kl_to_sft, 2)}`);
  $("run-info").textContent = overview.missing_policy
    ? `${overview.folder} · a frontier sweep's folder: pretrained and SFT models, no happy_gpt RL policy · reward ${overview.reward}`
    : `${overview.folder} · ${overview.algo} against ${overview.reward} · ${parts.join(" · ")}`;
  $("length").value = Math.min(20, overview.max_new_tokens);
  if (overview.missing_policy) {
    $("generate-missing").textContent = `No RL policy to answer: ${overview.missing_policy}`;
    for (const name of ["ledger", "ppo"]) {
      $(`${name}-form`).classList.add("hidden");
      $(`${name}-error`).textContent = overview.missing_policy;
    }
  }
  if (!overview.has_reward_model) {
    $("reward-form").classList.add("hidden");
    $("reward-error").textContent = `This run's reward is ${overview.reward}, not a learned reward model. ` +
      "Rerun happy_gpt with --reward rm (or rlaif) to have one here.";
  }
})();
