// The graylens web UI: home (/), comparison (/compare?...), rollout (/rollouts/{id}).
// Reads the JSON API of the same server and refreshes every few seconds.
"use strict";

const { lineChart, cdfChart, verdictChart } = window.graylensCharts;
const REFRESH_MS = 5000;
const COLORS = { baseline: "#2563eb", canary: "#ea580c" };

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
  }
  return e;
}

// With tokens configured, the API answers 401 until the browser sends one:
// asked once, kept for this browser session (sessionStorage), sent as a header.
// Requests made together share one answer: a 401 to a request sent before the
// token was given is retried with it, not asked again. A token without the read
// scope (403) is asked again; a dismissed prompt is not repeated until reload.
const TOKEN_KEY = "graylens.token";
let tokenDeclined = false;
async function api(path) {
  for (let attempt = 0; ; attempt++) {
    const headers = { accept: "application/json" };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.authorization = `Bearer ${token}`;
    const r = await fetch(path, { headers });
    const body = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
    if ((r.status === 401 || r.status === 403) && attempt < 2 && !tokenDeclined) {
      const now = sessionStorage.getItem(TOKEN_KEY);
      if (now && now !== token) continue;
      if (token) sessionStorage.removeItem(TOKEN_KEY);
      const why = r.status === 403 ? `${body.error}. ` : "";
      const given = window.prompt(`${why}graylens needs an API token with the read scope:`, "");
      if (given && given.trim()) { sessionStorage.setItem(TOKEN_KEY, given.trim()); continue; }
      tokenDeclined = true;
    }
    if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
    return body;
  }
}

const num = (v, d = 2) => (v === null || v === undefined ? "–" : Number(v).toFixed(d));
const ms = (v) => (v === null || v === undefined ? "–" : `${num(v, v < 10 ? 2 : 1)} ms`);
const pct = (v, d = 2) => (v === null || v === undefined ? "–" : `${(100 * v).toFixed(d)}%`);
const pval = (v) => (v === null || v === undefined ? "–" : v < 1e-4 ? Number(v).toExponential(1) : Number(v).toFixed(4));
const badge = (s) => el("span", { class: `badge ${s}` }, String(s).replace(/_/g, " "));
const when = (t) => (t ? new Date(t).toISOString().replace("T", " ").slice(0, 19) : "–");

function compareHref(service, baseline, canary, by, from) {
  const q = new URLSearchParams({ service, baseline, canary });
  if (by && by !== "version") q.set("by", by);
  if (from) q.set("from", from);
  return `/compare?${q}`;
}

function table(headers, rows, empty) {
  if (rows.length === 0) return el("div", { class: "empty" }, empty);
  return el("table", {}, el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows.map((r) => el("tr", {}, r.map((c) => (c instanceof Node && c.tagName === "TD" ? c : el("td", {}, c)))))));
}
const tdNum = (v) => el("td", { class: "num" }, v);

// ---------------------------------------------------------------- home
async function home(app) {
  const [svc, ro, cand] = await Promise.all([
    api("/api/v1/services"), api("/api/v1/rollouts"), api("/api/v1/candidates?window_secs=900"),
  ]);
  const services = table(["service", "requests", "versions", "roles", "lanes", ""], svc.services.map((s) => {
    const vs = s.versions.filter((v) => v.value);
    const link = vs.length >= 2 ? el("a", { href: compareHref(s.service, vs[0].value, vs[1].value) }, `compare ${vs[0].value} → ${vs[1].value}`) : "";
    const list = (xs) => xs.map((v) => `${v.value || "(none)"} (${v.requests})`).join(", ");
    return [el("strong", {}, s.service), tdNum(s.requests), list(s.versions), list(s.roles), list(s.lanes), link];
  }), "No telemetry yet. Point OpenTelemetry exporters at graylens: OTLP/gRPC on port 4317, OTLP/HTTP on 4318.");
  const rollouts = table(["rollout", "service", "baseline → canary", "phase", "verdict", "score", "last look", ""], ro.rollouts.map((r) => {
    const e = r.history[r.history.length - 1];
    const sides = e ? [e.service, e.baseline, e.canary] : [r.spec.service, r.spec.baseline, r.spec.canary];
    return [
      el("a", { href: `/rollouts/${r.id}` }, r.spec.name || r.id.slice(0, 8)),
      sides[0] || "–", `${sides[1] || "?"} → ${sides[2] || "?"}`, badge(r.phase),
      e ? badge(e.decision) : "–", tdNum(e ? num(e.score, 1) : "–"), when(e && e.at),
      sides[0] && sides[1] ? el("a", { href: compareHref(sides[0], sides[1], sides[2], r.spec.by, r.judged_since) }, "comparison") : "",
    ];
  }), "No rollouts watched. Register one with POST /api/v1/rollouts, declare [[rollouts]] in the config, or point Flagger's webhooks at /api/v1/flagger/{hook}.");
  const candidates = table(["service", "baseline", "canary", "requests (15 min)", "watched by", ""], cand.candidates.map((c) => [
    c.service, c.baseline, c.canary, `${c.requests.baseline} / ${c.requests.canary}`,
    c.watched_by.length ? c.watched_by.map((id) => el("a", { href: `/rollouts/${id}` }, id.slice(0, 8) + " ")) : el("span", { class: "muted" }, "nobody: not acted on"),
    el("a", { href: compareHref(c.service, c.baseline, c.canary) }, "compare"),
  ]), "No service served two versions in the last 15 minutes.");
  app.replaceChildren(
    el("h1", {}, "Services and rollouts"),
    el("h2", {}, "Rollouts"), rollouts,
    el("h2", {}, "Candidate rollouts"), candidates,
    el("h2", {}, "Services"), services);
}

// ---------------------------------------------------------------- compare
function sideCard(role, s) {
  const l = s.latency_ms;
  return el("div", { class: `card side-${role}` },
    el("h2", { style: "margin-top:0" }, el("span", { class: `chip ${role}` }), `${role}: ${s.version || "(uncolored)"}`),
    el("dl", { class: "kv" },
      el("dt", {}, "requests"), el("dd", {}, s.requests),
      el("dt", {}, "errors"), el("dd", {}, `${s.errors} (${pct(s.error_rate)})`),
      el("dt", {}, "latency p50 / p90 / p99"), el("dd", {}, `${ms(l.p50)} / ${ms(l.p90)} / ${ms(l.p99)}`),
      el("dt", {}, "mean latency"), el("dd", {}, ms(l.mean)),
      el("dt", {}, "log records (errors)"), el("dd", {}, `${s.log_records} (${s.log_errors})`)));
}

function metricsTable(c) {
  const fmt = (m, v) => (v === null || v === undefined ? "–" : m.unit === "ms" ? ms(v) : m.unit.includes("per request") ? pct(v, 3) : num(v, 3));
  return table(["metric", "classification", "baseline", "canary", "delta", "relative", "interval", "test", "p", "adjusted p", "samples"],
    c.metrics.map((m) => [
      el("strong", {}, m.name), badge(m.classification), tdNum(fmt(m, m.baseline)), tdNum(fmt(m, m.canary)),
      tdNum(fmt(m, m.delta)), tdNum(m.relative_delta === null ? "–" : pct(m.relative_delta, 1)),
      m.ci ? `[${m.ci.map((v) => (v === null ? "∞" : fmt(m, v))).join(", ")}]` : "–",
      el("span", { class: "muted" }, m.test), tdNum(pval(m.p_value)), tdNum(pval(m.adjusted_p_value)),
      tdNum(`${m.samples.baseline} / ${m.samples.canary}`),
    ]), "The policy names no metrics.");
}

// Where the canary's excess errors or latency live: attribute values, one instance, new error signatures.
function explanationsSection(c) {
  const fig = (x, v) => (v === null || v === undefined ? "–" : x.metric === "error_rate" ? pct(v, 2) : x.metric === "latency_mean_ms" ? ms(v) : num(v, 0));
  const kinds = { concentrated: "concentrated", instance: "one instance", new_in_canary: "new in canary" };
  return el("div", { id: "explanations" },
    el("h2", {}, "What explains it"),
    table(["kind", "attribute", "value", "metric", "baseline", "canary", "share of excess", "share of requests", "adjusted p (BH)"],
      (c.explanations || []).map((x) => [kinds[x.kind] || x.kind, x.attribute, el("strong", {}, x.value), x.metric,
        tdNum(fig(x, x.baseline)), tdNum(fig(x, x.canary)), tdNum(pct(x.share_of_excess, 0)), tdNum(pct(x.share_of_requests, 0)), tdNum(pval(x.p_value))]),
      "No attribute value or error signature holds the canary's excess."));
}

// by=lane: colored against uncolored traces end to end, and the hops that explain the delta.
function lanesSection(l) {
  const side = (x) => [x.lane || "(uncolored)", tdNum(x.traces), tdNum(ms(x.p50_ms)), tdNum(ms(x.p99_ms)), tdNum(ms(x.mean_ms))];
  return el("div", {},
    el("h2", {}, "Whole traces by lane (root spans)"),
    table(["lane", "traces", "p50", "p99", "mean"], [side(l.baseline), side(l.canary)], "No traces in the window."),
    el("h2", {}, "Where the delta comes from (self time per trace)"),
    table(["service", "operation", "baseline ms / trace", "canary ms / trace", "delta ms / trace"],
      l.contributors.map((x) => [x.service, x.operation, tdNum(num(x.baseline_ms_per_trace)), tdNum(num(x.canary_ms_per_trace)), tdNum(num(x.delta_ms_per_trace))]),
      "No hop differs between the lanes."));
}

function actionsTimeline(rollouts) {
  const events = [];
  for (const r of rollouts) {
    const tag = el("a", { href: `/rollouts/${r.id}` }, r.spec.name || r.id.slice(0, 8));
    for (const t of r.transitions) events.push([t.at, tag, "transition", el("span", {}, badge(t.from), " → ", badge(t.to)), t.reason]);
    for (const d of r.deliveries) {
      for (const a of d.attempts) events.push([a.at, tag, `${d.target_type}: ${d.action}`, badge(d.status), `${d.method} ${d.url} → ${a.http_status || "no answer"}: ${a.outcome}`]);
      if (d.attempts.length === 0) events.push([d.created_at, tag, `${d.target_type}: ${d.action}`, badge(d.status), `${d.method} ${d.url} queued`]);
    }
    for (const h of r.hook_calls) events.push([h.at, tag, `Flagger ${h.hook}`, badge(h.status === 200 ? "pass" : "inconclusive"), `${h.status}: ${h.answer}`]);
  }
  events.sort((a, b) => (a[0] < b[0] ? 1 : -1));
  return table(["time (UTC)", "rollout", "what", "status", "detail"], events.slice(0, 100).map((e) => [when(e[0]), ...e.slice(1)]),
    "No actions yet: graylens acts only for a registered rollout, once per state change.");
}

async function compare(app) {
  const q = new URLSearchParams(location.search);
  const service = q.get("service"), baseline = q.get("baseline"), canary = q.get("canary");
  const by = q.get("by") || "version";
  if (!service || baseline === null || canary === null) {
    app.replaceChildren(el("div", { class: "error" }, "A comparison needs service, baseline and canary in the address, e.g. /compare?service=checkout&baseline=v1&canary=v2."));
    return;
  }
  const sel = new URLSearchParams({ service, baseline, canary, by });
  if (q.get("from")) sel.set("from", q.get("from"));
  if (q.get("to")) sel.set("to", q.get("to"));
  const charts = new URLSearchParams(sel);
  let c;
  try {
    c = await api(`/api/v1/compare?${sel}`);
  } catch (e) {
    app.replaceChildren(el("h1", {}, `${service}: ${baseline} vs ${canary}`), el("div", { class: "error" }, e.message),
      el("p", { class: "muted" }, "Check the versions on the home page; a version that never sent telemetry cannot be compared."));
    return;
  }
  const [ch, ro] = await Promise.all([api(`/api/v1/charts?${charts}`), api("/api/v1/rollouts")]);
  const mine = ro.rollouts.filter((r) => {
    const e = r.history[r.history.length - 1];
    const s = e ? [e.service, e.baseline, e.canary] : [r.spec.service, r.spec.baseline, r.spec.canary];
    return s[0] === service && s[1] === baseline && s[2] === canary;
  });
  const v = c.verdict;
  const names = { baseline: `baseline ${baseline || "(uncolored)"}`, canary: `canary ${canary}` };
  const series = (key) => ["baseline", "canary"].map((side) => ({
    name: names[side], color: COLORS[side], points: ch[side].points.map((p) => [Date.parse(p.t), p[key]]),
  }));
  const empty = [];
  if (c.canary.requests === 0) empty.push(el("div", { class: "empty" }, `No canary traffic yet for ${canary}: is the canary sending telemetry with ${by === "version" ? "service.version" : by} = ${canary}?`));
  if (c.baseline.requests === 0) empty.push(el("div", { class: "empty" }, `No baseline traffic yet for ${baseline || "(uncolored)"}.`));
  app.replaceChildren(
    el("h1", {}, `${service}: `, el("span", { class: "chip baseline" }), `${baseline || "(uncolored)"} vs `, el("span", { class: "chip canary" }), canary,
      el("span", { class: "muted" }, ` by ${by} · policy ${c.policy}`)),
    ...empty,
    el("div", { class: "card verdict", id: "verdict" },
      el("div", { class: `decision ${v.decision}` }, v.decision),
      el("div", {}, el("div", {}, `score ${num(v.score, 1)} / 100`),
        el("ul", {}, v.reasons.map((r) => el("li", {}, r))))),
    el("div", { class: "sides" }, sideCard("baseline", c.baseline), sideCard("canary", c.canary)),
    el("h2", {}, "Latency"),
    el("div", { class: "grid" },
      el("div", { class: "card" }, cdfChart(["baseline", "canary"].map((side) => ({ name: names[side], color: COLORS[side], buckets: ch[side].distribution })), { title: "Latency distribution (cumulative)" })),
      el("div", { class: "card" }, lineChart(series("p50_ms"), { title: "p50 latency over time", unit: "ms" })),
      el("div", { class: "card" }, lineChart(series("p90_ms"), { title: "p90 latency over time", unit: "ms" })),
      el("div", { class: "card" }, lineChart(series("p99_ms"), { title: "p99 latency over time", unit: "ms" })),
      el("div", { class: "card" }, lineChart(series("error_rate"), { title: "Error rate over time", unit: "errors / request", yFormat: (x) => `${(100 * x).toFixed(1)}%` })),
      el("div", { class: "card" }, lineChart(series("requests"), { title: `Requests per ${ch.step_secs} s`, unit: "requests" }))),
    el("h2", {}, "Metrics judged"), metricsTable(c),
    explanationsSection(c),
    c.lanes ? lanesSection(c.lanes) : "",
    el("h2", {}, "Per operation"),
    table(["operation", "baseline req", "canary req", "baseline p50", "canary p50", "Δ p50", "baseline errors", "canary errors", "p (Mann–Whitney)", "adjusted p (BH)"],
      c.operations.map((o) => [o.name, tdNum(o.baseline.requests), tdNum(o.canary.requests), tdNum(ms(o.baseline.p50_ms)), tdNum(ms(o.canary.p50_ms)),
        tdNum(ms(o.p50_delta_ms)), tdNum(pct(o.baseline.error_rate)), tdNum(pct(o.canary.error_rate)), tdNum(pval(o.mann_whitney_p)), tdNum(pval(o.adjusted_p_value))]),
      "No operations in the window."),
    el("h2", {}, "Actions"), actionsTimeline(mine));
}

// ---------------------------------------------------------------- rollout
async function rollout(app, id) {
  let r;
  try {
    r = await api(`/api/v1/rollouts/${encodeURIComponent(id)}`);
  } catch (e) {
    app.replaceChildren(el("div", { class: "error" }, e.message), el("p", {}, el("a", { href: "/" }, "All rollouts")));
    return;
  }
  const e = r.history[r.history.length - 1];
  const sides = e ? [e.service, e.baseline, e.canary] : [r.spec.service, r.spec.baseline, r.spec.canary];
  app.replaceChildren(
    el("h1", {}, `Rollout ${r.spec.name || r.id}: ${sides[0] || "?"} ${sides[1] || "?"} → ${sides[2] || "?"} `, badge(r.phase)),
    el("div", { class: "card" }, el("dl", { class: "kv" },
      el("dt", {}, "id"), el("dd", {}, r.id),
      el("dt", {}, "declared by"), el("dd", {}, r.origin),
      el("dt", {}, "judged since"), el("dd", {}, when(r.judged_since)),
      el("dt", {}, "phase since"), el("dd", {}, when(r.phase_since)),
      el("dt", {}, "latest verdict"), el("dd", {}, e ? [badge(e.decision), ` score ${num(e.score, 1)} at ${when(e.at)}`] : "not judged yet"),
      el("dt", {}, "requests"), el("dd", {}, e ? `${e.requests.baseline} baseline / ${e.requests.canary} canary` : "–"),
      el("dt", {}, "comparison"), el("dd", {}, sides[0] && sides[1] ? el("a", { href: compareHref(sides[0], sides[1], sides[2], r.spec.by, r.judged_since) }, "open") : "versions not known yet")),
      e && e.reasons.length ? el("ul", {}, e.reasons.map((x) => el("li", {}, x))) : ""),
    el("div", { class: "card", style: "max-width: 760px" }, verdictChart(r.history, { title: "Verdict score at each look (dot colors: pass, inconclusive, fail)" })),
    el("h2", {}, "State history"),
    table(["time (UTC)", "from", "to", "reason"], r.transitions.slice().reverse().map((t) => [when(t.at), badge(t.from), badge(t.to), t.reason]), "No state change yet."),
    el("h2", {}, "Actions and deliveries"),
    table(["created", "action", "target", "request", "status", "attempts"], r.deliveries.slice().reverse().map((d) => [
      when(d.created_at), d.action, d.target_type, el("code", {}, `${d.method} ${d.url}`), badge(d.status),
      el("ol", {}, d.attempts.map((a) => el("li", {}, `${when(a.at)}: ${a.http_status || "no answer"}, ${a.outcome}`))),
    ]), "No action taken: actions fire only when the state changes to rolled back, paused, or back from paused."),
    el("h2", {}, "Flagger calls"),
    table(["time (UTC)", "hook", "phase", "checksum", "answer"], r.hook_calls.slice().reverse().map((h) => [when(h.at), h.hook, h.phase, h.checksum, `${h.status}: ${h.answer}`]), "Flagger has not called for this rollout."),
    el("h2", {}, "Spec"), el("pre", {}, JSON.stringify(r.spec, null, 2)));
}

// ---------------------------------------------------------------- router
async function render() {
  const app = document.getElementById("app");
  const path = location.pathname;
  try {
    if (path === "/" || path === "/index.html") await home(app);
    else if (path === "/compare") await compare(app);
    else if (path.startsWith("/rollouts/")) await rollout(app, decodeURIComponent(path.slice("/rollouts/".length)));
    else app.replaceChildren(el("div", { class: "error" }, `No page at ${path}.`), el("a", { href: "/" }, "Home"));
    document.getElementById("updated").textContent = `updated ${new Date().toISOString().slice(11, 19)} UTC · refreshes every ${REFRESH_MS / 1000} s`;
  } catch (e) {
    app.replaceChildren(el("div", { class: "error" }, `graylens could not be read: ${e.message}`));
  }
}

// A graylens told to listen beyond loopback with no tokens says so on every page.
async function exposureWarning() {
  const h = await fetch("/api/v1/health").then((r) => r.json()).catch(() => ({}));
  const open = h.unauthenticated_listeners || [];
  if (open.length === 0) return;
  document.querySelector("header.top").after(el("div", { class: "error", id: "unauthenticated" },
    `No authentication: ${open.join(", ")} accept telemetry and rollout changes from anyone who reaches them `
    + "(auth.allow_unauthenticated). Configure [[auth.tokens]]: see the README, \u201cSecuring graylens\u201d."));
}

exposureWarning();
render();
setInterval(render, REFRESH_MS);
