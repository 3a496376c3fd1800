// GateRouter collector dashboard. Signed in through /dashboard/login: the browser holds
// only an HttpOnly session cookie, sent with every same-origin request; this script
// never sees or stores a token. Reads /v1/analytics/* and draws uPlot charts.
// window.dashboard exposes the loaded data, the charts and their axis labels for tests.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const usd = (micros) => {
    const v = Number(micros || 0) / 1e6;
    const digits = v !== 0 && Math.abs(v) < 1 ? 4 : 2;
    return "$" + v.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
  };
  const axisUsd = (u, ticks) => ticks.map((t) => usd(t));
  const fromZero = (u, min, max) => [0, max > 0 ? max * 1.15 : 1];
  const int = (n) => Number(n || 0).toLocaleString("en-US");
  const pct = (v) => (Number(v || 0) * 100).toFixed(1) + "%";
  const state = { data: {}, charts: {}, axisLabels: {}, loads: 0, who: null };
  window.dashboard = state;
  const FILTERS = ["from", "to", "department", "project", "user", "model"];
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";

  function query(extra) {
    const p = new URLSearchParams();
    for (const f of FILTERS) {
      const v = $(f).value.trim();
      if (v) { p.set(f, v); }
    }
    for (const [k, v] of Object.entries(extra || {})) { p.set(k, v); }
    return p.toString();
  }

  async function getJson(url) {
    const r = await fetch(url, { credentials: "same-origin" });
    const body = await r.json().catch(() => ({}));
    if (r.status === 401) { location.assign("/dashboard"); throw new Error("signed out: " + ((body.error && body.error.message) || "")); }
    if (!r.ok) { throw new Error((body.error && body.error.message) || ("HTTP " + r.status)); }
    return body;
  }
  const get = (report, extra) => getJson("/v1/analytics/" + report + "?" + query(extra));

  function table(el, cols, rows) {
    el.innerHTML = "";
    const head = el.createTHead().insertRow();
    for (const c of cols) { const th = document.createElement("th"); th.scope = "col"; th.textContent = c.label; if (c.num) th.className = "num"; head.appendChild(th); }
    const body = el.createTBody();
    for (const r of rows) {
      const tr = body.insertRow();
      for (const c of cols) { const td = tr.insertCell(); td.textContent = c.fmt ? c.fmt(r[c.key], r) : (r[c.key] ?? ""); if (c.num) td.className = "num"; }
    }
    if (!rows.length) { const td = body.insertRow().insertCell(); td.colSpan = cols.length; td.className = "empty"; td.textContent = "None in this range."; }
  }

  function width(el) { return Math.max(320, el.parentElement.clientWidth - 30); }

  function draw(name, el, opts, data) {
    if (state.charts[name]) { state.charts[name].destroy(); }
    el.innerHTML = "";
    state.charts[name] = new uPlot(opts, data, el);
  }

  // Category bars: labels under the bars (rotated when long), legend shows the total
  // until the cursor picks a bar, then that bar's name and value.
  function bars(name, el, noun, labels, values) {
    const xs = labels.map((_, i) => i);
    const total = values.reduce((a, b) => a + b, 0);
    const longest = labels.reduce((m, l) => Math.max(m, String(l).length), 0);
    const rotate = labels.length > 3 || longest > 14;
    const short = (l) => (String(l).length > 28 ? String(l).slice(0, 27) + "…" : String(l));
    state.axisLabels[name] = labels.map(short);
    draw(name, el, {
      width: width(el), height: rotate ? 300 : 240,
      scales: { x: { time: false, range: [-0.5, Math.max(labels.length - 0.5, 0.5)] }, y: { range: fromZero } },
      axes: [
        { values: (u, ticks) => ticks.map((t) => (Number.isInteger(t) && labels[t] != null ? short(labels[t]) : "")), splits: () => xs, rotate: rotate ? -35 : 0, size: rotate ? Math.min(170, 24 + 6 * Math.min(longest, 28)) : 40, gap: 4 },
        { values: axisUsd, size: 80 },
      ],
      series: [
        { label: noun, value: (u, v) => (v == null ? labels.length + " shown" : labels[v] ?? "") },
        { label: "Spend", value: (u, v) => (v == null ? usd(total) + " total" : usd(v)), fill: "rgba(52,103,196,.45)", stroke: "#234c9a", paths: uPlot.paths.bars({ size: [0.6, 80] }), points: { show: false } },
      ],
    }, [xs, values]);
  }

  // Time labels: hour buckets in the viewer's time zone; day and month buckets are UTC
  // calendar days/months (as budgets and bills count them), so they are labelled in UTC.
  function timeLabel(bucket, sec) {
    const d = new Date(sec * 1000);
    if (bucket === "hour") { return d.toLocaleString("en-US", { month: "short", day: "numeric", year: "numeric", hour: "2-digit", minute: "2-digit" }); }
    if (bucket === "month") { return d.toLocaleDateString("en-US", { month: "short", year: "numeric", timeZone: "UTC" }); }
    return d.toLocaleDateString("en-US", { month: "short", day: "numeric", year: "numeric", timeZone: "UTC" });
  }

  function timeChart(series, bucket) {
    const el = $("chart-time");
    const xs = series.rows.map((r) => r.bucket_start_ms / 1000);
    const ys = series.rows.map((r) => r.spend_micros);
    const step = bucket === "hour" ? 3600 : bucket === "month" ? 31 * 86400 : 86400;
    // The x range is the data's own: first bucket to last, half a bucket either side
    // (uPlot would otherwise pad a single point by years).
    const lo = xs.length ? xs[0] - step / 2 : Date.now() / 1000 - 86400;
    const hi = xs.length ? xs[xs.length - 1] + step / 2 : Date.now() / 1000;
    // Ticks on the buckets themselves, at least 110 px apart so labels never overlap.
    const splits = (u) => {
      const out = [];
      let last = -Infinity;
      for (const x of xs) {
        const px = u.valToPos(x, "x");
        if (px - last >= 110) { out.push(x); last = px; }
      }
      state.axisLabels.time = out.map((x) => timeLabel(bucket, x));
      return out;
    };
    const total = ys.reduce((a, b) => a + b, 0);
    draw("time", el, {
      width: width(el), height: 260, padding: [12, 60, 0, 0],
      scales: { x: { time: true, range: [lo, hi] }, y: { range: fromZero } },
      axes: [{ splits, values: (u, ticks) => ticks.map((t) => timeLabel(bucket, t)), size: 50 }, { values: axisUsd, size: 80 }],
      series: [
        { label: bucket === "hour" ? "Hour (" + zone + ")" : bucket === "month" ? "Month (UTC)" : "Day (UTC)", value: (u, v) => (v == null ? xs.length + " " + bucket + "s" : timeLabel(bucket, v)) },
        { label: "Spend", value: (u, v) => (v == null ? usd(total) + " total" : usd(v)), stroke: "#234c9a", fill: "rgba(52,103,196,.45)", paths: uPlot.paths.bars({ size: [0.7, 60, 4] }), points: { show: false } },
      ],
    }, [xs, ys]);
  }

  function budgetGauges(rows) {
    const box = $("budgets");
    box.innerHTML = "";
    if (!rows.length) { box.textContent = "No budgets set for this scope (POST /v1/admin/budgets or the org file)."; return; }
    for (const b of rows) {
      const money = b.metric === "usd";
      const fmt = (v) => (money ? usd(v) : int(v) + " tokens");
      const div = document.createElement("div");
      div.className = "gauge";
      div.dataset.budget = b.id;
      const title = document.createElement("p");
      title.className = "gauge-title";
      title.textContent = b.level_name + " · " + b.period + " · " + b.enforcement;
      const bar = document.createElement("div");
      bar.className = "gauge-bar";
      bar.setAttribute("role", "meter");
      bar.setAttribute("aria-valuemin", "0");
      bar.setAttribute("aria-valuemax", String(b.limit));
      bar.setAttribute("aria-valuenow", String(b.used));
      bar.setAttribute("aria-label", b.level_name + " budget used");
      const clamp = (x) => Math.max(0, Math.min(100, x * 100));
      const used = document.createElement("span"); used.className = "used"; used.style.width = clamp(b.used_share) + "%";
      const res = document.createElement("span"); res.className = "reserved"; res.style.width = clamp(b.limit ? b.reserved / b.limit : 0) + "%";
      const proj = document.createElement("span"); proj.className = "projected"; proj.style.left = clamp(b.projected_share) + "%";
      if (b.projected_share > 1) { div.classList.add("over"); }
      bar.append(used, res, proj);
      const text = document.createElement("p");
      text.className = "gauge-text";
      text.textContent = "Used " + fmt(b.used) + " of " + fmt(b.limit) + " (" + pct(b.used_share) + ") · reserved " + fmt(b.reserved) + " · projected " + fmt(b.projected) + " by " + new Date(b.resets_at_ms).toLocaleDateString("en-US", { month: "short", day: "numeric", year: "numeric", timeZone: "UTC" }) + " (UTC)";
      div.append(title, bar, text);
      box.appendChild(div);
    }
  }

  function fillSelect(id, rows, valueKey, nameKey) {
    const sel = $(id);
    const have = new Set(Array.from(sel.options).map((o) => o.value));
    for (const r of rows) {
      const v = r[valueKey];
      if (v == null || have.has(v)) { continue; }
      const o = document.createElement("option");
      o.value = v;
      o.textContent = nameKey && r[nameKey] && r[nameKey] !== v ? r[nameKey] + " (" + v + ")" : v;
      sel.appendChild(o);
      have.add(v);
    }
  }

  function csvLinks() {
    for (const a of document.querySelectorAll("a.csv")) {
      const extra = Object.fromEntries(new URLSearchParams(a.dataset.extra || ""));
      if (a.dataset.bucket) { extra.bucket = $("bucket").value; }
      extra.format = "csv";
      a.href = "/v1/analytics/" + a.dataset.report + "?" + query(extra);
      a.setAttribute("download", a.dataset.report + ".csv");
    }
  }

  // Routing quality (issue 20): per org, the auto calls' tiers, exploration, scores per
  // tier and savings; the scores per tier and model; each org's weights versions.
  function routingQualityPanel(rq, score) {
    const rated = (key) => (v, r) => (v == null ? "not rated" : score(v) + " (" + int(r[key]) + ")");
    table($("table-routing-quality"), [
      { key: "name", label: "Org", fmt: (v, r) => v ?? r.org },
      { key: "auto_calls", label: "Auto calls", num: 1, fmt: int },
      { key: "strong_share", label: "Strong", num: 1, fmt: pct },
      { key: "explored_share", label: "Explored", num: 1, fmt: (v, r) => (r.learning_calls ? pct(v) : "–") },
      { key: "shadow_calls", label: "Shadow calls", num: 1, fmt: int },
      { key: "light_mean_score", label: "Score light", num: 1, fmt: rated("light_rated_calls") },
      { key: "standard_mean_score", label: "Score standard", num: 1, fmt: rated("standard_rated_calls") },
      { key: "heavy_mean_score", label: "Score heavy", num: 1, fmt: rated("heavy_rated_calls") },
      { key: "mean_score", label: "Score (all)", num: 1, fmt: rated("rated_calls") },
      { key: "savings_micros", label: "Saved vs always-strong", num: 1, fmt: (v, r) => (rq.strongest_model ? usd(v) + " (" + pct(r.savings_share) + ")" : "not measured") },
    ], rq.rows);
    table($("table-routing-tier-model"), [
      { key: "org", label: "Org" }, { key: "tier", label: "Tier" }, { key: "model", label: "Model" },
      { key: "calls", label: "Calls", num: 1, fmt: int }, { key: "rated_calls", label: "Rated", num: 1, fmt: int },
      { key: "mean_score", label: "Mean score", num: 1, fmt: score },
    ], rq.by_tier_model || []);
    const box = $("routing-weights");
    box.innerHTML = "";
    if (!rq.weights) {
      const p = document.createElement("p"); p.className = "note";
      p.textContent = "The weights history is the whole org's: shown to admins and org-wide read tokens.";
      box.appendChild(p);
      return;
    }
    const apgr = (v) => (v == null ? "–" : Number(v).toFixed(3));
    const when = (ms) => new Date(ms).toLocaleString("en-US");
    if (!rq.weights.length) { box.textContent = "No org learns from its outcomes yet (PUT /v1/admin/orgs/{org}/routing)."; return; }
    for (const w of rq.weights) {
      const div = document.createElement("div");
      div.className = "weights-org";
      div.dataset.org = w.org;
      const h = document.createElement("h4"); h.textContent = w.name ?? w.org;
      div.appendChild(h);
      if (w.versions.length) {
        const ol = document.createElement("ol");
        for (const v of w.versions) {
          const li = document.createElement("li");
          li.dataset.version = v.version;
          if (v.active) { li.className = "active"; }
          if (v.project) { li.dataset.project = v.project; }
          li.textContent = v.version + (v.project ? " [project " + v.project + "]" : "") + (v.active ? " (active)" : "") + " · " + when(v.created_ms) + " · estimated gain: new " + apgr(v.new_apgr) + ", current " + apgr(v.current_apgr) + ", length " + apgr(v.length_apgr) + (v.outcomes == null ? "" : " · " + int(v.outcomes) + " rated calls") + (v.success_models && v.success_models.length ? " · ranks " + v.success_models.join(", ") + " inside a tier by predicted success" : "");
          ol.appendChild(li);
        }
        div.appendChild(ol);
      } else {
        const p = document.createElement("p"); p.className = "note"; p.textContent = "No weights promoted yet: the router uses its built-in weights.";
        div.appendChild(p);
      }
      const last = document.createElement("p");
      last.className = "note last-run";
      const r = w.last_run;
      last.textContent = r ? "Last learning run " + when(r.at_ms) + ": " + (r.promoted ? "promoted " + r.version : "not promoted") + (r.reason ? " (" + r.reason + ")" : "") : "No learning run yet.";
      div.appendChild(last);
      box.appendChild(div);
    }
  }

  async function load() {
    $("status").textContent = "Loading...";
    try {
      const bucket = $("bucket").value;
      const [summary, series, dept, proj, users, models, keys, routing, latency, errors, denials, budgets, outcomes, outcomesModel, routingQuality] = await Promise.all([
        get("summary"), get("timeseries", { bucket }), get("breakdown", { by: "department" }), get("breakdown", { by: "project" }),
        get("users", { limit: 20 }), get("models"), get("keys", { limit: 20 }), get("routing"), get("latency"),
        get("errors"), get("denials"), get("budgets"), get("outcomes", { by: "tag:scenario" }), get("outcomes", { by: "model" }),
        get("routing_quality"),
      ]);
      state.data = { summary, series, dept, proj, users, models, keys, routing, latency, errors, denials, budgets, outcomes, outcomesModel, routingQuality };
      const s = summary.rows[0] || {};
      $("total-spend").textContent = usd(s.spend_micros);
      $("total-calls").textContent = int(s.calls);
      $("total-tokens").textContent = int(s.total_tokens);
      $("active-users").textContent = int(s.active_users);
      $("per-user").textContent = s.spend_per_active_user_micros == null ? "-" : usd(s.spend_per_active_user_micros);
      $("total-errors").textContent = int(s.errors);
      $("total-denials").textContent = int(s.denials);
      if (routing.strongest_model) {
        $("savings").textContent = usd(routing.savings_micros) + " saved (" + pct(routing.savings_share) + ")";
        $("savings-hint").textContent = "Compared with sending every routed call to the reference model " + routing.strongest_model + " (collector setting strongest_model).";
      } else {
        $("savings").textContent = "Not measured";
        $("savings-hint").textContent = "Set a reference model to measure savings: strongest_model = \"openai/gpt-4o\" in the collector's TOML config, GATEROUTER_COLLECTOR_STRONGEST_MODEL, or --strongest-model.";
      }

      fillSelect("department", dept.rows, "group", "name");
      fillSelect("project", proj.rows, "group", "name");
      fillSelect("user", users.rows, "user", "name");
      fillSelect("model", models.rows, "model");

      timeChart(series, bucket);
      const nm = (r) => r.name ?? r.group ?? "(none)";
      bars("department", $("chart-department"), "Department", dept.rows.map(nm), dept.rows.map((r) => r.spend_micros));
      bars("project", $("chart-project"), "Project", proj.rows.map(nm), proj.rows.map((r) => r.spend_micros));
      bars("user", $("chart-user"), "Member", users.rows.map((r) => r.name ?? r.user), users.rows.map((r) => r.spend_micros));
      bars("models", $("chart-models"), "Model", models.rows.map((r) => r.provider + "/" + r.model), models.rows.map((r) => r.spend_micros));

      const tiles = $("per-capita-tiles");
      tiles.innerHTML = "";
      for (const r of dept.rows) {
        const t = document.createElement("div");
        t.className = "tile";
        t.dataset.department = r.group ?? "";
        const h = document.createElement("h3"); h.textContent = nm(r);
        const v = document.createElement("p"); v.className = "tile-value"; v.textContent = r.spend_per_active_user_micros == null ? "-" : usd(r.spend_per_active_user_micros);
        const sub = document.createElement("p"); sub.className = "note"; sub.textContent = "per active member (" + int(r.active_users) + " active" + (r.members ? ", " + usd(r.spend_per_member_micros) + " per listed member of " + int(r.members) : "") + ")";
        t.append(h, v, sub);
        tiles.appendChild(t);
      }
      table($("table-per-capita"), [{ key: "name", label: "Department", fmt: (v, r) => nm(r) }, { key: "spend_micros", label: "Spend", num: 1, fmt: usd }, { key: "active_users", label: "Active", num: 1, fmt: int }, { key: "spend_per_active_user_micros", label: "Per active", num: 1, fmt: (v) => (v == null ? "-" : usd(v)) }, { key: "members", label: "Members", num: 1, fmt: (v) => (v == null ? "-" : int(v)) }, { key: "spend_per_member_micros", label: "Per member", num: 1, fmt: (v) => (v == null ? "-" : usd(v)) }], dept.rows);
      budgetGauges(budgets.rows);

      const unit = [{ key: "name", label: "Name", fmt: (v, r) => nm(r) }, { key: "group", label: "Id" }, { key: "calls", label: "Calls", num: 1, fmt: int }, { key: "errors", label: "Errors", num: 1, fmt: int }, { key: "denials", label: "Denials", num: 1, fmt: int }, { key: "total_tokens", label: "Tokens", num: 1, fmt: int }, { key: "spend_micros", label: "Spend", num: 1, fmt: usd }, { key: "spend_share", label: "Share", num: 1, fmt: pct }];
      table($("table-departments"), unit, dept.rows);
      table($("table-projects"), unit, proj.rows);
      table($("table-users"), [{ key: "rank", label: "#", num: 1 }, { key: "name", label: "Member" }, { key: "user", label: "Id" }, { key: "calls", label: "Calls", num: 1, fmt: int }, { key: "total_tokens", label: "Tokens", num: 1, fmt: int }, { key: "spend_micros", label: "Spend", num: 1, fmt: usd }], users.rows);
      table($("table-models"), [{ key: "provider", label: "Provider" }, { key: "model", label: "Model" }, { key: "calls", label: "Calls", num: 1, fmt: int }, { key: "total_tokens", label: "Tokens", num: 1, fmt: int }, { key: "spend_micros", label: "Spend", num: 1, fmt: usd }, { key: "spend_share", label: "Share", num: 1, fmt: pct }], models.rows);
      table($("table-keys"), [{ key: "name", label: "Key" }, { key: "api_key_id", label: "Id" }, { key: "last_seen_ms", label: "Last used", fmt: (v) => (v == null ? "never" : new Date(v).toLocaleString("en-US")) }, { key: "idle", label: "In range", fmt: (v) => (v ? "idle" : "active") }, { key: "calls", label: "Calls", num: 1, fmt: int }, { key: "errors", label: "Errors", num: 1, fmt: int }, { key: "denials", label: "Denials", num: 1, fmt: int }, { key: "spend_micros", label: "Spend", num: 1, fmt: usd }], keys.rows);
      table($("table-routing"), [{ key: "tier", label: "Tier" }, { key: "calls", label: "Calls", num: 1, fmt: int }, { key: "call_share", label: "Share", num: 1, fmt: pct }, { key: "spend_micros", label: "Spend", num: 1, fmt: usd }, { key: "savings_micros", label: "Saved vs reference", num: 1, fmt: usd }], routing.rows);
      const score = (v) => (v == null ? "not rated" : v.toFixed(2));
      const outcomeCols = (label, none) => [{ key: "group", label, fmt: (v) => (v == null ? none : v) }, { key: "calls", label: "Calls", num: 1, fmt: int }, { key: "spend_micros", label: "Spend", num: 1, fmt: usd }, { key: "spend_per_call_micros", label: "Per call", num: 1, fmt: usd }, { key: "rated_calls", label: "Rated", num: 1, fmt: int }, { key: "mean_score", label: "Mean score", num: 1, fmt: score }];
      table($("table-outcomes"), outcomeCols("Scenario", "(no scenario tag)"), outcomes.rows);
      table($("table-outcomes-model"), outcomeCols("Model", "-"), outcomesModel.rows);
      routingQualityPanel(routingQuality, score);
      table($("table-latency"), [{ key: "model", label: "Model" }, { key: "calls", label: "Calls", num: 1, fmt: int }, { key: "error_rate", label: "Errors", num: 1, fmt: pct }, { key: "p50_ms", label: "p50 ms", num: 1 }, { key: "p95_ms", label: "p95 ms", num: 1 }, { key: "p99_ms", label: "p99 ms", num: 1 }, { key: "ttft_p50_ms", label: "First token p50 ms", num: 1, fmt: (v) => (v == null ? "–" : v) }, { key: "ttft_p95_ms", label: "First token p95 ms", num: 1, fmt: (v) => (v == null ? "–" : v) }], latency.rows);
      table($("table-denials"), [{ key: "department_name", label: "Department" }, { key: "user_name", label: "Member" }, { key: "api_key_id", label: "Key" }, { key: "model", label: "Model", fmt: (v, r) => r.provider + "/" + v }, { key: "denials", label: "Denials", num: 1, fmt: int }, { key: "last_seen_ms", label: "Last", fmt: (v) => new Date(v).toLocaleString("en-US") }], denials.rows);
      table($("table-errors"), [{ key: "status", label: "Status" }, { key: "kind", label: "Kind" }, { key: "model", label: "Model", fmt: (v, r) => r.provider + "/" + v }, { key: "calls", label: "Calls", num: 1, fmt: int }, { key: "last_seen_ms", label: "Last", fmt: (v) => new Date(v).toLocaleString("en-US") }], errors.rows);
      table($("table-time"), [{ key: "bucket", label: bucket === "hour" ? "Hour (UTC)" : bucket === "month" ? "Month (UTC)" : "Day (UTC)" }, { key: "calls", label: "Calls", num: 1, fmt: int }, { key: "errors", label: "Errors", num: 1, fmt: int }, { key: "denials", label: "Denials", num: 1, fmt: int }, { key: "total_tokens", label: "Tokens", num: 1, fmt: int }, { key: "spend_micros", label: "Spend", num: 1, fmt: usd }], series.rows);
      csvLinks();
      $("status").textContent = "";
      state.loads += 1;
      document.body.dataset.loaded = String(state.loads);
    } catch (e) {
      $("status").textContent = "Error: " + e.message;
      document.body.dataset.error = e.message;
    }
  }

  async function start() {
    const offset = -new Date().getTimezoneOffset();
    const sign = offset >= 0 ? "+" : "-";
    const hhmm = String(Math.floor(Math.abs(offset) / 60)).padStart(2, "0") + ":" + String(Math.abs(offset) % 60).padStart(2, "0");
    $("tz").textContent = "Hours are shown in your time zone, " + zone + " (UTC" + sign + hhmm + "). Days and months are UTC calendar days and months, as budgets and bills count them; From/To are UTC dates.";
    try {
      const who = await getJson("/dashboard/session");
      state.who = who;
      if (who.role === "admin") {
        $("who").textContent = "Signed in with an admin token (read-only here).";
      } else {
        $("who").textContent = "Signed in with a read token of org " + who.org + (who.department ? ", department " + who.department + " only" : "") + ".";
        if (who.department) {
          const sel = $("department");
          sel.innerHTML = "";
          const o = document.createElement("option"); o.value = who.department; o.textContent = who.department; sel.appendChild(o);
          sel.disabled = true;
        }
      }
    } catch (e) {
      $("status").textContent = "Error: " + e.message;
      return;
    }
    await load();
  }

  $("filters").addEventListener("submit", (e) => { e.preventDefault(); load(); });
  start();
})();
