// The SVG chart: curves of loss against step, with axes (no charting library).
import {fmtNum, svg} from "./util.js";

export const COLORS = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#db2777"];

// Round tick values covering [lo, hi]: the first at or below lo, the last at or above hi.
function niceTicks(lo, hi, count = 5) {
  if (hi <= lo) hi = lo + 1;
  const raw = (hi - lo) / count;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  const ticks = [];
  const last = Math.ceil(hi / step - 1e-9) * step;
  for (let t = Math.floor(lo / step + 1e-9) * step; t <= last + step * 1e-9; t += step) ticks.push(Number(t.toPrecision(12)));
  return ticks;
}

// series: [{label, points: [[step, value], ...], dashed, color, legend}]; legend: false leaves it out of the legend.
export function drawChart(chart, series, {xLabel = "step", yLabel = "loss"} = {}) {
  const W = 640, H = 300, left = 56, right = 16, top = 28, bottom = 40;
  chart.replaceChildren();
  const all = series.flatMap((s) => s.points);
  chart.dataset.points = String(all.length);
  if (!all.length) {
    const t = svg("text", {x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty"});
    t.textContent = "no points yet";
    chart.append(t);
    return;
  }
  const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
  const xTicks = niceTicks(Math.min(0, ...xs), Math.max(...xs));
  const yTicks = niceTicks(Math.min(...ys), Math.max(...ys));
  const [x0, x1] = [xTicks[0], xTicks[xTicks.length - 1]], [y0, y1] = [yTicks[0], yTicks[yTicks.length - 1]];
  const sx = (x) => left + ((x - x0) / (x1 - x0 || 1)) * (W - left - right);
  const sy = (y) => H - bottom - ((y - y0) / (y1 - y0 || 1)) * (H - top - bottom);
  for (const t of yTicks) {
    chart.append(svg("line", {x1: left, x2: W - right, y1: sy(t), y2: sy(t), class: "grid"}));
    const label = svg("text", {x: left - 6, y: sy(t) + 4, "text-anchor": "end", class: "tick"});
    label.textContent = fmtNum(t, 3);
    chart.append(label);
  }
  for (const t of xTicks) {
    const label = svg("text", {x: sx(t), y: H - bottom + 16, "text-anchor": "middle", class: "tick"});
    label.textContent = String(t);
    chart.append(label);
  }
  chart.append(svg("line", {x1: left, x2: W - right, y1: H - bottom, y2: H - bottom, class: "axis"}));
  chart.append(svg("line", {x1: left, x2: left, y1: top, y2: H - bottom, class: "axis"}));
  const xl = svg("text", {x: (left + W - right) / 2, y: H - 6, "text-anchor": "middle", class: "axis-label"});
  xl.textContent = xLabel;
  const yl = svg("text", {x: 14, y: (top + H - bottom) / 2, "text-anchor": "middle", class: "axis-label",
    transform: `rotate(-90 14 ${(top + H - bottom) / 2})`});
  yl.textContent = yLabel;
  chart.append(xl, yl);
  let legendX = left;
  series.forEach((s, i) => {
    const color = s.color || COLORS[i % COLORS.length];
    if (s.points.length) {
      chart.append(svg("polyline", {points: s.points.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(" "),
        fill: "none", stroke: color, "stroke-width": 2, "stroke-dasharray": s.dashed ? "6 4" : "none",
        class: "series", "data-series": s.label, "data-n": s.points.length}));
      if (s.points.length === 1) chart.append(svg("circle", {cx: sx(s.points[0][0]), cy: sy(s.points[0][1]), r: 3, fill: color}));
    }
    if (s.legend === false || !s.points.length) return;
    chart.append(svg("rect", {x: legendX, y: 8, width: 12, height: 4, fill: color}));
    const name = svg("text", {x: legendX + 16, y: 14, class: "legend"});
    name.textContent = s.label;
    chart.append(name);
    legendX += 28 + 7.5 * s.label.length;
  });
}

export const curve = (points, key) => points.filter((p) => typeof p[key] === "number").map((p) => [p.step, p[key]]);

