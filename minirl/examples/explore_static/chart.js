// The explorer page's one chart drawer (explore.js has the helpers it uses: el, fmt, COLORS).

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
      const left = x > 0.8 * W;  // near the right edge the tag goes on the point's left, inside the chart
      if (s.tag) add("text", {x: left ? x - 5 : x + 5, y: py(p[1]) - 5, style: `fill: ${s.color}`, class: "point-tag",
                              "text-anchor": left ? "end" : "start"}, s.tag(i));
      if (s.pick) dot.addEventListener("click", () => s.pick(i));
    });
  }
  box.append(svg);
  return box;
}
