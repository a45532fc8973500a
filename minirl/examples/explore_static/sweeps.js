// The explorer page's panels over sweeps run in the folder: the over-optimisation lab and the frontier
// (the server's minirl.examples.explorer_sweeps). Like explore.js it only formats and lays out numbers.

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
