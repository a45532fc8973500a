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
    const box = el("input", {type: "checkbox", value: name}); box.checked = data.shown.includes(name);
    box.addEventListener("change", drawCurves);
    const label = el("label", {class: "legend"}, box, ` ${data.labels[name]}`);
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
      ({points: [[p.kl_to_sft, p.reward]], color: COLORS[i % COLORS.length], dots: true, tag: () => p.algo, label: () => p.algo})),
      "KL to SFT (nats / response, placed at √KL)", {sqrtX: true});
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
