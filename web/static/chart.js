// chart.js draws the console's plots as SVG: lines over time and horizontal bars. It is
// small on purpose (no library, nothing inline: colours come from classes in admin.css).
// Every chart's <svg> carries what it plots, data-series (the names, comma separated) and
// data-values (the first series' values, "" where a value is unknown), and each line or
// bar group carries its own pair, so that a test or a person can read the numbers back.

const NS = "http://www.w3.org/2000/svg";

function el(name, attrs = {}, text) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

// isNum reports whether v is a finite number (null and undefined are unknown values).
const isNum = (v) => typeof v === "number" && Number.isFinite(v);

// niceMax rounds a maximum up to 1, 2 or 5 times a power of ten, so that axis labels read
// well; an all-zero or empty plot gets 1.
export function niceMax(max) {
  if (!(max > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(max)));
  for (const m of [1, 2, 5, 10]) if (max <= m * p) return m * p;
  return 10 * p;
}

// fmt renders a plotted number: integers as they are, fractions with up to two decimals;
// an unknown value as "—".
export function fmt(v) {
  if (!isNum(v)) return "—";
  if (Number.isInteger(v)) return String(v);
  return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
}

const valuesAttr = (values) => values.map((v) => (isNum(v) ? String(v) : "")).join(",");

const W = 320, H = 110, L = 34, R = 6, T = 8, B = 16;

// lineChart draws series ([{name, values, cls}], values oldest first, null where unknown)
// as lines over the same x span into svg, with a y axis from 0 to a nice maximum and the
// newest value of each series written at its end. xLabels names the left and right ends.
export function lineChart(svg, series, { xLabels = ["-60s", "now"], unit = "" } = {}) {
  svg.replaceChildren();
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("role", "img");
  svg.dataset.series = series.map((s) => s.name).join(",");
  svg.dataset.values = valuesAttr(series[0] ? series[0].values : []);
  let max = 0, n = 0;
  for (const s of series) {
    n = Math.max(n, s.values.length);
    for (const v of s.values) if (isNum(v) && v > max) max = v;
  }
  const top = niceMax(max);
  const pw = W - L - R, ph = H - T - B;
  const x = (i) => L + (n > 1 ? (i * pw) / (n - 1) : pw);
  const y = (v) => T + ph - (Math.max(0, v) / top) * ph;
  for (const f of [0, 0.5, 1]) {
    const gy = T + ph - f * ph;
    svg.append(el("line", { x1: L, x2: W - R, y1: gy, y2: gy, class: "grid" }));
    svg.append(el("text", { x: L - 3, y: gy + 3, class: "axis", "text-anchor": "end" }, fmt(top * f) + (f === 1 ? unit : "")));
  }
  svg.append(el("text", { x: L, y: H - 3, class: "axis" }, xLabels[0]));
  svg.append(el("text", { x: W - R, y: H - 3, class: "axis", "text-anchor": "end" }, xLabels[1]));
  for (const s of series) {
    const g = el("g", { class: "series " + (s.cls || "") });
    g.dataset.series = s.name;
    g.dataset.values = valuesAttr(s.values);
    // A run of known values is one polyline; an unknown value breaks the line.
    let pts = [];
    const flush = () => {
      if (pts.length === 1) g.append(el("circle", { cx: pts[0][0], cy: pts[0][1], r: 1.5 }));
      else if (pts.length > 1) g.append(el("polyline", { points: pts.map((p) => p.join(",")).join(" "), fill: "none" }));
      pts = [];
    };
    s.values.forEach((v, i) => {
      if (isNum(v)) pts.push([x(i).toFixed(1), y(v).toFixed(1)]);
      else flush();
    });
    flush();
    svg.append(g);
  }
  return svg;
}

// barChart draws bars ([{label, value, total}]) as horizontal bars named name into svg: a
// bar with a total is drawn as value/total of the width (stock left of its total), the
// others against the largest value. An unknown value draws no bar and reads "—".
export function barChart(svg, name, bars, { empty = "" } = {}) {
  svg.replaceChildren();
  const BW = 360, row = 18, h = Math.max(1, bars.length) * row + 4;
  svg.setAttribute("viewBox", `0 0 ${BW} ${h}`);
  svg.setAttribute("role", "img");
  svg.dataset.series = name;
  svg.dataset.values = valuesAttr(bars.map((b) => b.value));
  if (!bars.length) {
    svg.append(el("text", { x: 4, y: 14, class: "axis" }, empty));
    return svg;
  }
  let max = 0;
  for (const b of bars) if (isNum(b.value) && b.value > max) max = b.value;
  const top = niceMax(max);
  const lx = 110, bw = BW - lx - 92;
  bars.forEach((b, i) => {
    const y0 = 2 + i * row;
    const g = el("g", { class: "bar " + (b.cls || "") });
    g.dataset.label = b.label;
    g.dataset.value = isNum(b.value) ? String(b.value) : "";
    const label = b.label.length > 20 ? b.label.slice(0, 19) + "…" : b.label;
    g.append(el("text", { x: lx - 4, y: y0 + 12, class: "label", "text-anchor": "end" }, label));
    g.append(el("rect", { x: lx, y: y0 + 2, width: bw, height: row - 6, class: "track" }));
    if (isNum(b.value)) {
      const of = isNum(b.total) && b.total > 0 ? b.total : top;
      const w = Math.max(0, Math.min(1, b.value / of)) * bw;
      g.append(el("rect", { x: lx, y: y0 + 2, width: w.toFixed(1), height: row - 6, class: "fill" }));
    }
    const txt = fmt(b.value) + (isNum(b.total) ? " / " + fmt(b.total) : "");
    g.append(el("text", { x: lx + bw + 4, y: y0 + 12, class: "value" }, txt));
    svg.append(g);
  });
  return svg;
}
