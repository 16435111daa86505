// Small SVG charts for graylens: time series and overlaid latency CDFs.
// No dependencies; every chart has a title, axes with units and a legend.
(() => {
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";

function svgEl(tag, attrs, children) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children || []) e.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
  return e;
}

// Round tick values: about `count` ticks between lo and hi.
function niceTicks(lo, hi, count) {
  if (!(hi > lo)) { hi = lo + 1; }
  const raw = (hi - lo) / count;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  // From the first tick at or below lo to the first at or above hi, so every value is inside.
  const ticks = [];
  for (let v = Math.floor(lo / step) * step; ; v += step) {
    ticks.push(+v.toPrecision(12));
    if (v >= hi - step * 1e-9) break;
  }
  return ticks;
}

function fmtNum(v) {
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1000) return v.toFixed(0);
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1).replace(/\.0$/, "");
  if (a >= 1) return v.toFixed(2).replace(/\.?0+$/, "");
  return v.toPrecision(2);
}

function fmtClock(ms) {
  const d = new Date(ms);
  return d.toISOString().slice(11, 19);
}

function frame(title, w, h) {
  const svg = svgEl("svg", { class: "chart", viewBox: `0 0 ${w} ${h}`, role: "img", "aria-label": title });
  svg.appendChild(svgEl("text", { class: "title", x: 8, y: 16 }, [title]));
  return svg;
}

function legend(svg, series, x, y) {
  let cx = x;
  for (const s of series) {
    svg.appendChild(svgEl("rect", { x: cx, y: y - 9, width: 10, height: 10, fill: s.color }));
    const t = svgEl("text", { x: cx + 14, y }, [s.name]);
    svg.appendChild(t);
    cx += 24 + 7 * s.name.length;
  }
}

// series: [{name, color, points: [[x, y], ...]}]; x in epoch ms.
// opts: {title, unit, yFormat, width, height, yMin}
function lineChart(series, opts) {
  const w = opts.width || 620, h = opts.height || 230;
  const m = { l: 56, r: 12, t: 30, b: 44 };
  const svg = frame(opts.title, w, h);
  const all = series.flatMap((s) => s.points.filter((p) => p[1] !== null && p[1] !== undefined));
  if (all.length === 0) {
    svg.appendChild(svgEl("text", { x: w / 2, y: h / 2, "text-anchor": "middle" }, [opts.empty || "no data in the window yet"]));
    return svg;
  }
  const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
  let x0 = Math.min(...xs), x1 = Math.max(...xs);
  if (x1 === x0) { x0 -= 30000; x1 += 30000; }
  const yHi = opts.yMax !== undefined ? opts.yMax : Math.max(...ys) * 1.05 || 1;
  const yTicks = niceTicks(opts.yMin !== undefined ? opts.yMin : Math.min(0, ...ys), yHi, 4);
  const y0 = yTicks[0], y1 = yTicks[yTicks.length - 1];
  const X = (v) => m.l + ((v - x0) / (x1 - x0)) * (w - m.l - m.r);
  const Y = (v) => h - m.b - ((v - y0) / (y1 - y0 || 1)) * (h - m.t - m.b);
  const fmt = opts.yFormat || fmtNum;
  const grid = svgEl("g", { class: "grid" });
  const axis = svgEl("g", { class: "axis" });
  for (const t of yTicks) {
    grid.appendChild(svgEl("line", { x1: m.l, x2: w - m.r, y1: Y(t), y2: Y(t) }));
    axis.appendChild(svgEl("text", { x: m.l - 6, y: Y(t) + 4, "text-anchor": "end" }, [fmt(t)]));
  }
  const xTicks = niceTicks(x0, x1, 5).filter((t) => t >= x0 && X(t) <= w - m.r - 24);
  for (const t of xTicks) {
    axis.appendChild(svgEl("text", { x: X(t), y: h - m.b + 15, "text-anchor": "middle" }, [fmtClock(t)]));
  }
  axis.appendChild(svgEl("line", { x1: m.l, x2: w - m.r, y1: h - m.b, y2: h - m.b }));
  axis.appendChild(svgEl("line", { x1: m.l, x2: m.l, y1: m.t, y2: h - m.b }));
  axis.appendChild(svgEl("text", { x: 12, y: m.t + (h - m.t - m.b) / 2, transform: `rotate(-90 12 ${m.t + (h - m.t - m.b) / 2})`, "text-anchor": "middle" }, [opts.unit]));
  axis.appendChild(svgEl("text", { x: w - m.r, y: h - 4, "text-anchor": "end" }, ["time (UTC)"]));
  svg.appendChild(grid);
  svg.appendChild(axis);
  for (const s of series) {
    const pts = s.points.filter((p) => p[1] !== null && p[1] !== undefined);
    if (pts.length === 0) continue;
    const d = pts.map((p, i) => `${i ? "L" : "M"}${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join("");
    svg.appendChild(svgEl("path", { d, fill: "none", stroke: s.color, "stroke-width": 2, class: "series", "data-name": s.name }));
    if (pts.length === 1) svg.appendChild(svgEl("circle", { cx: X(pts[0][0]), cy: Y(pts[0][1]), r: 3, fill: s.color }));
  }
  legend(svg, series, m.l, h - 4);
  return svg;
}

// Overlaid cumulative distributions of latency; buckets: [[value_ms, count], ...].
function cdfChart(series, opts) {
  const w = opts.width || 620, h = opts.height || 260;
  const m = { l: 56, r: 12, t: 30, b: 44 };
  const svg = frame(opts.title, w, h);
  const live = series.filter((s) => s.buckets.some((b) => b[1] > 0 && b[0] > 0));
  if (live.length === 0) {
    svg.appendChild(svgEl("text", { x: w / 2, y: h / 2, "text-anchor": "middle" }, [opts.empty || "no requests in the window yet"]));
    return svg;
  }
  const vals = live.flatMap((s) => s.buckets.filter((b) => b[0] > 0).map((b) => b[0]));
  const lx0 = Math.log10(Math.min(...vals)), lx1 = Math.log10(Math.max(...vals)) + 0.02;
  const X = (v) => m.l + ((Math.log10(v) - lx0) / (lx1 - lx0 || 1)) * (w - m.l - m.r);
  const Y = (f) => h - m.b - f * (h - m.t - m.b);
  const grid = svgEl("g", { class: "grid" }), axis = svgEl("g", { class: "axis" });
  for (const f of [0, 0.25, 0.5, 0.75, 0.9, 0.99, 1]) {
    grid.appendChild(svgEl("line", { x1: m.l, x2: w - m.r, y1: Y(f), y2: Y(f) }));
    if (f !== 0.9 && f !== 0.99) axis.appendChild(svgEl("text", { x: m.l - 6, y: Y(f) + 4, "text-anchor": "end" }, [`${f * 100}%`]));
  }
  for (let e = Math.floor(lx0); e <= Math.ceil(lx1); e++) {
    for (const k of [1, 2, 5]) {
      const v = k * Math.pow(10, e);
      if (Math.log10(v) < lx0 || Math.log10(v) > lx1) continue;
      axis.appendChild(svgEl("text", { x: X(v), y: h - m.b + 16, "text-anchor": "middle" }, [fmtNum(v)]));
      grid.appendChild(svgEl("line", { x1: X(v), x2: X(v), y1: m.t, y2: h - m.b }));
    }
  }
  axis.appendChild(svgEl("line", { x1: m.l, x2: w - m.r, y1: h - m.b, y2: h - m.b }));
  axis.appendChild(svgEl("line", { x1: m.l, x2: m.l, y1: m.t, y2: h - m.b }));
  axis.appendChild(svgEl("text", { x: w - m.r, y: h - 4, "text-anchor": "end" }, ["latency (ms, log scale)"]));
  axis.appendChild(svgEl("text", { x: 12, y: m.t + (h - m.t - m.b) / 2, transform: `rotate(-90 12 ${m.t + (h - m.t - m.b) / 2})`, "text-anchor": "middle" }, ["requests ≤ latency"]));
  svg.appendChild(grid);
  svg.appendChild(axis);
  for (const s of live) {
    const total = s.buckets.reduce((a, b) => a + b[1], 0);
    let acc = 0, d = "";
    for (const [v, n] of s.buckets) {
      acc += n;
      if (v <= 0) continue;
      const x = X(v).toFixed(1);
      d += d ? `H${x}V${Y(acc / total).toFixed(1)}` : `M${x},${Y(0).toFixed(1)}V${Y(acc / total).toFixed(1)}`;
    }
    svg.appendChild(svgEl("path", { d, fill: "none", stroke: s.color, "stroke-width": 2, class: "series", "data-name": s.name }));
  }
  legend(svg, live, m.l, h - 4);
  return svg;
}

// Score over time with one dot per evaluation, colored by decision.
function verdictChart(history, opts) {
  const colors = { pass: "#15803d", fail: "#b91c1c", inconclusive: "#a16207" };
  const svg = lineChart([{ name: "score", color: "#334155", points: history.map((e) => [Date.parse(e.at), e.score]) }],
    { title: opts.title, unit: "score (0–100)", yMin: 0, yMax: 100, width: opts.width, height: opts.height });
  const pts = svg.querySelectorAll("path.series");
  if (pts.length && history.length) {
    // Re-derive positions from the path to place decision dots.
    const coords = pts[0].getAttribute("d").split(/[ML]/).filter(Boolean).map((p) => p.split(",").map(Number));
    coords.forEach(([x, y], i) => {
      const e = history[i];
      if (e) svg.appendChild(svgEl("circle", { cx: x, cy: y, r: 3, fill: colors[e.decision] || "#6b7280" }, [svgEl("title", {}, [`${e.at}: ${e.decision}`])]));
    });
  }
  return svg;
}

window.graylensCharts = { lineChart, cdfChart, verdictChart };
})();
