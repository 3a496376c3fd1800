// GateRouter collector dashboard: reads /v1/analytics/* with the token the user gives
// (or #token=... in the URL) and draws uPlot charts. window.dashboard exposes the
// loaded data and charts for tests.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const usd = (micros) => "$" + (micros / 1e6).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 6 });
  const axisUsd = (u, ticks) => ticks.map((t) => "$" + (t / 1e6).toFixed(t !== 0 && Math.abs(t) < 1e5 ? 4 : 2));
  const fromZero = (u, min, max) => [0, max > 0 ? max * 1.1 : 1];
  const int = (n) => Number(n).toLocaleString("en-US");
  const state = { data: {}, charts: {}, loads: 0 };
  window.dashboard = state;

  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.get("token")) { $("token").value = hash.get("token"); }
  else if (localStorage.getItem("gr_token")) { $("token").value = localStorage.getItem("gr_token"); }
  for (const f of ["from", "to", "department", "project", "user", "model", "bucket"]) {
    if (hash.get(f)) { $(f).value = hash.get(f); }
  }

  function query(extra) {
    const p = new URLSearchParams();
    for (const f of ["from", "to", "department", "project", "user", "model"]) {
      const v = $(f).value.trim();
      if (v) { p.set(f, v); }
    }
    for (const [k, v] of Object.entries(extra || {})) { p.set(k, v); }
    return p.toString();
  }

  async function get(report, extra) {
    const r = await fetch("/v1/analytics/" + report + "?" + query(extra), { headers: { Authorization: "Bearer " + $("token").value.trim() } });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) { throw new Error((body.error && body.error.message) || ("HTTP " + r.status)); }
    return body;
  }

  function table(el, cols, rows) {
    el.innerHTML = "";
    const head = el.insertRow();
    for (const c of cols) { const th = document.createElement("th"); th.textContent = c.label; if (c.num) th.className = "num"; head.appendChild(th); }
    for (const r of rows) {
      const tr = el.insertRow();
      for (const c of cols) { const td = tr.insertCell(); td.textContent = c.fmt ? c.fmt(r[c.key], r) : (r[c.key] ?? ""); if (c.num) td.className = "num"; }
    }
  }

  function width(el) { return Math.max(320, el.parentElement.clientWidth - 30); }

  function draw(name, el, opts, data) {
    if (state.charts[name]) { state.charts[name].destroy(); }
    el.innerHTML = "";
    state.charts[name] = new uPlot(opts, data, el);
  }

  function bars(name, el, labels, values) {
    const xs = labels.map((_, i) => i);
    draw(name, el, {
      width: width(el), height: 220,
      scales: { x: { time: false, range: [-0.5, Math.max(labels.length - 0.5, 0.5)] }, y: { range: fromZero } },
      axes: [{ values: (u, ticks) => ticks.map((t) => labels[t] ?? ""), splits: () => xs }, { values: axisUsd, size: 80 }],
      series: [{ label: "group", value: (u, v) => (v == null ? "" : labels[v]) }, { label: "spend", value: (u, v) => (v == null ? "" : usd(v)), fill: "rgba(52,103,196,.35)", stroke: "#3467c4", paths: uPlot.paths.bars({ size: [0.6, 80] }), points: { show: false } }],
    }, [xs, values]);
  }

  async function load() {
    $("status").textContent = "Loading...";
    localStorage.setItem("gr_token", $("token").value.trim());
    try {
      const bucket = $("bucket").value;
      const [summary, series, dept, proj, users, models, keys, routing, latency] = await Promise.all([
        get("summary"), get("timeseries", { bucket }), get("breakdown", { by: "department" }), get("breakdown", { by: "project" }),
        get("users", { limit: 20 }), get("models"), get("keys", { limit: 20 }), get("routing"), get("latency"),
      ]);
      state.data = { summary, series, dept, proj, users, models, keys, routing, latency };
      const s = summary.rows[0] || {};
      $("total-spend").textContent = usd(s.spend_micros || 0);
      $("total-spend").dataset.micros = s.spend_micros || 0;
      $("total-calls").textContent = int(s.calls || 0);
      $("total-tokens").textContent = int(s.total_tokens || 0);
      $("active-users").textContent = int(s.active_users || 0);
      $("per-user").textContent = s.spend_per_active_user_micros == null ? "-" : usd(s.spend_per_active_user_micros);
      $("savings").textContent = routing.strongest_model ? usd(routing.savings_micros) + " vs " + routing.strongest_model : "set strongest_model";

      const el = $("chart-time");
      draw("time", el, {
        width: width(el), height: 240,
        scales: { x: { time: true }, y: { range: fromZero } },
        axes: [{}, { values: axisUsd, size: 80 }],
        series: [{}, { label: "spend", value: (u, v) => (v == null ? "" : usd(v)), stroke: "#3467c4", fill: "rgba(52,103,196,.12)", width: 2 }],
      }, [series.rows.map((r) => r.bucket_start_ms / 1000), series.rows.map((r) => r.spend_micros)]);
      bars("department", $("chart-department"), dept.rows.map((r) => r.group ?? "(none)"), dept.rows.map((r) => r.spend_micros));
      bars("project", $("chart-project"), proj.rows.map((r) => r.group ?? "(none)"), proj.rows.map((r) => r.spend_micros));
      bars("user", $("chart-user"), users.rows.map((r) => r.user), users.rows.map((r) => r.spend_micros));
      bars("models", $("chart-models"), models.rows.map((r) => r.model), models.rows.map((r) => r.spend_micros));

      const pct = (v) => (v * 100).toFixed(1) + "%";
      table($("table-models"), [{ key: "model", label: "Model" }, { key: "calls", label: "Calls", num: 1 }, { key: "total_tokens", label: "Tokens", num: 1, fmt: int }, { key: "spend_micros", label: "Spend", num: 1, fmt: usd }, { key: "spend_share", label: "Share", num: 1, fmt: pct }], models.rows);
      table($("table-keys"), [{ key: "api_key_id", label: "Key" }, { key: "last_seen", label: "Last seen" }, { key: "calls", label: "Calls", num: 1 }, { key: "errors", label: "Errors", num: 1 }, { key: "spend_micros", label: "Spend", num: 1, fmt: usd }], keys.rows);
      table($("table-routing"), [{ key: "tier", label: "Tier" }, { key: "calls", label: "Calls", num: 1 }, { key: "call_share", label: "Share", num: 1, fmt: pct }, { key: "spend_micros", label: "Spend", num: 1, fmt: usd }, { key: "savings_micros", label: "Saved", num: 1, fmt: usd }], routing.rows);
      table($("table-latency"), [{ key: "model", label: "Model" }, { key: "calls", label: "Calls", num: 1 }, { key: "error_rate", label: "Errors", num: 1, fmt: pct }, { key: "p50_ms", label: "p50 ms", num: 1 }, { key: "p95_ms", label: "p95 ms", num: 1 }, { key: "p99_ms", label: "p99 ms", num: 1 }], latency.rows);
      $("status").textContent = "";
      state.loads += 1;
      document.body.dataset.loaded = String(state.loads);
    } catch (e) {
      $("status").textContent = "Error: " + e.message;
      document.body.dataset.error = e.message;
    }
  }

  $("filters").addEventListener("submit", (e) => { e.preventDefault(); load(); });
  if ($("token").value) { load(); } else { $("status").textContent = "Enter an admin or read token."; }
})();
