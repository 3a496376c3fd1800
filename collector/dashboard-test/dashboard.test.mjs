// Run by collector/tests/dashboard.rs against a collector seeded there: org "Acme Corp",
// departments eng "Engineering" (alice, bob) and sales "Sales and Marketing" (carol,
// dave); 6 calls (Jan/Feb 2026, plus one this month), one policy denial (bob, eng), a
// monthly $1.00 budget on eng with $0.035 used; the two Jan 15 eng calls tagged
// scenario=support-reply and rated 1.0 (gpt-4o-mini) and 0.5 (gpt-4o). Asserts what a
// person sees on the page.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const url = process.env.COLLECTOR_URL;
const adminToken = process.env.COLLECTOR_TOKEN;
const readToken = process.env.COLLECTOR_READ_TOKEN;
const shots = process.env.SCREENSHOT_DIR;

async function withBrowser(fn) {
  const profile = mkdtempSync(join(tmpdir(), "gr-chromium-"));
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run", "--disable-sync"],
    viewport: { width: 1280, height: 900 },
    timezoneId: "America/New_York",
  });
  try {
    const page = browser.pages()[0] || (await browser.newPage());
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
    await fn(page, errors, browser);
  } finally {
    await browser.close();
    rmSync(profile, { recursive: true, force: true });
  }
}

async function signIn(page, token, n = 1) {
  await page.goto(`${url}/dashboard`);
  await page.getByLabel("Access token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForFunction((n) => document.body.dataset.loaded === String(n) || document.body.dataset.error, n, { timeout: 30000 });
  assert.equal(await page.evaluate(() => document.body.dataset.error || ""), "");
}

test("login page, then the admin view shows names, the data's dates, per-capita, budget, denials", async () => {
  assert.ok(url && adminToken && readToken, "COLLECTOR_URL, COLLECTOR_TOKEN and COLLECTOR_READ_TOKEN are required");
  await withBrowser(async (page, errors, ctx) => {
    // The login page: a labelled form, a wrong token is refused with a reason.
    await page.goto(`${url}/dashboard`);
    assert.equal(await page.getByRole("heading", { level: 1 }).textContent(), "GateRouter usage");
    await page.getByLabel("Access token").fill("wrong-token-123");
    await page.getByRole("button", { name: "Sign in" }).click();
    assert.match(await page.textContent("#login-error"), /unknown or revoked/);
    errors.length = 0; // the refused login's 401, expected
    if (shots) { await page.screenshot({ path: join(shots, "dashboard-login.png") }); }

    await signIn(page, adminToken);
    // Nothing of the token is reachable from the page: cookie is HttpOnly, no storage, no URL.
    assert.equal(await page.evaluate(() => document.cookie), "");
    assert.equal(await page.evaluate(() => localStorage.length + sessionStorage.length), 0);
    assert.ok(!page.url().includes("token"));
    const cookies = await ctx.cookies();
    assert.equal(cookies.length, 1);
    assert.equal(cookies[0].httpOnly, true);
    assert.equal(cookies[0].sameSite, "Strict");

    assert.equal(await page.textContent("#total-calls"), "7");
    assert.equal(await page.textContent("#total-denials"), "1");
    assert.equal(await page.textContent("#total-errors"), "1");
    assert.match(await page.textContent("#savings-hint"), /reference model openai\/gpt-4o/);

    // The time axis: every label is a date of the data (2026 here), first is Jan 15, 2026.
    const years = await page.evaluate(() => [...new Set(window.dashboard.data.series.rows.map((r) => new Date(r.bucket_start_ms).getUTCFullYear()))]);
    const labels = await page.evaluate(() => window.dashboard.axisLabels.time);
    assert.ok(labels.length >= 2, JSON.stringify(labels));
    assert.equal(labels[0], "Jan 15, 2026");
    for (const l of labels) { assert.ok(years.some((y) => l.endsWith(String(y))), `axis label ${l} is not in ${years}`); }
    // uPlot's own x scale stays within the data's range (no padding by years).
    const [lo, hi] = await page.evaluate(() => { const s = window.dashboard.charts.time.scales.x; return [s.min, s.max]; });
    const xs = await page.evaluate(() => window.dashboard.data.series.rows.map((r) => r.bucket_start_ms / 1000));
    assert.ok(lo >= xs[0] - 86400 && hi <= xs[xs.length - 1] + 86400, `x scale ${lo}..${hi} vs data ${xs[0]}..${xs[xs.length - 1]}`);
    assert.match(await page.textContent("#tz"), /America\/New_York/);

    // Names, not ids: chart labels, tables, filter options.
    assert.deepEqual(await page.evaluate(() => window.dashboard.axisLabels.department), ["Engineering", "Sales and Marketing"]);
    assert.deepEqual(await page.evaluate(() => window.dashboard.axisLabels.models), ["openai/gpt-4o", "openai/gpt-4o-mini"]);
    const depts = await page.$$eval("#table-departments tbody tr", (rows) => rows.map((r) => r.cells[0].textContent));
    assert.deepEqual(depts, ["Engineering", "Sales and Marketing"]);
    const members = await page.$$eval("#table-users tbody tr", (rows) => rows.map((r) => r.cells[1].textContent));
    assert.deepEqual(members.sort(), ["Alice Martin", "Bob Chen", "Carol Diaz"]);
    assert.ok((await page.$$eval("#department option", (o) => o.map((x) => x.textContent))).includes("Engineering (eng)"));
    // Legends carry values (totals until the cursor picks a bar), never an empty "spend:".
    const legend = await page.$$eval("#chart-department .u-legend .u-value", (v) => v.map((x) => x.textContent));
    assert.deepEqual(legend, ["2 shown", "$0.1113 total"]);

    // Per-capita tiles: eng spent $0.0742 over 2 active members of 2 listed.
    const eng = page.locator('.tile[data-department="eng"]');
    assert.equal(await eng.locator("h3").textContent(), "Engineering");
    assert.equal(await eng.locator(".tile-value").textContent(), "$0.0371");
    assert.match(await eng.locator(".note").textContent(), /2 active, \$0\.0371 per listed member of 2/);
    const sales = page.locator('.tile[data-department="sales"]');
    assert.match(await sales.locator(".note").textContent(), /1 active, \$0\.018\d per listed member of 2/);

    // Budget gauge.
    const gauge = page.locator(".gauge").first();
    assert.equal(await gauge.locator(".gauge-title").textContent(), "department Engineering · month · hard");
    assert.match(await gauge.locator(".gauge-text").textContent(), /^Used \$0\.0350 of \$1\.00 \(3\.5%\) · reserved \$0\.00 · projected \$[\d.,]+ by /);
    assert.equal(await gauge.locator("[role=meter]").getAttribute("aria-valuenow"), "35000");

    // Denials and errors panels.
    const denials = await page.$$eval("#table-denials tbody tr", (rows) => rows.map((r) => Array.from(r.cells).slice(0, 5).map((c) => c.textContent)));
    assert.deepEqual(denials, [["Engineering", "Bob Chen", "k_eng", "openai/gpt-4o", "1"]]);
    const errs = await page.$$eval("#table-errors tbody tr", (rows) => rows.map((r) => [r.cells[0].textContent, r.cells[1].textContent, r.cells[3].textContent]).sort());
    assert.deepEqual(errs, [["RATE_LIMITED", "error", "1"], ["denied", "denied", "1"]]);

    // Outcomes: spend beside the apps' ratings, per scenario tag and per model.
    const outcomes = await page.$$eval("#table-outcomes tbody tr", (rows) => rows.map((r) => Array.from(r.cells).map((c) => c.textContent)));
    const support = outcomes.find((r) => r[0] === "support-reply");
    assert.ok(support, JSON.stringify(outcomes));
    assert.deepEqual([support[1], support[4], support[5]], ["2", "2", "0.75"], JSON.stringify(outcomes));
    assert.ok(outcomes.some((r) => r[0] === "(no scenario tag)" && r[5] === "not rated"), JSON.stringify(outcomes));
    const byModel = await page.$$eval("#table-outcomes-model tbody tr", (rows) => rows.map((r) => [r.cells[0].textContent, r.cells[5].textContent]));
    assert.ok(byModel.some(([m, s]) => m === "gpt-4o" && s === "0.50"), JSON.stringify(byModel));
    assert.ok(byModel.some(([m, s]) => m === "gpt-4o-mini" && s === "1.00"), JSON.stringify(byModel));

    // Every table has a CSV link that downloads with the session cookie.
    const links = await page.$$eval("a.csv", (a) => a.map((x) => x.href));
    assert.deepEqual(await page.$$eval(".panel", (ps) => ps.filter((p) => p.querySelector(":scope > table") && !p.querySelector(":scope > a.csv")).map((p) => p.querySelector("h2").textContent)), []);
    for (const l of links) {
      const r = await page.request.get(l);
      assert.equal(r.status(), 200, l);
      assert.match(r.headers()["content-type"], /text\/csv/);
    }
    // Filter by department through the select.
    await page.selectOption("#department", "sales");
    await page.getByRole("button", { name: "Apply" }).click();
    await page.waitForFunction(() => document.body.dataset.loaded === "2", null, { timeout: 30000 });
    assert.equal(await page.textContent("#total-calls"), "2");
    await page.selectOption("#department", "");
    await page.getByRole("button", { name: "Apply" }).click();
    await page.waitForFunction(() => document.body.dataset.loaded === "3", null, { timeout: 30000 });
    assert.equal(await page.locator("canvas").count(), 5);
    assert.deepEqual(errors, []);
    if (shots) { await page.screenshot({ path: join(shots, "dashboard-admin.png"), fullPage: true }); }
  });
});

test("a department read token sees only its department", async () => {
  await withBrowser(async (page, errors) => {
    await signIn(page, readToken);
    assert.match(await page.textContent("#who"), /department eng only/);
    assert.deepEqual(await page.evaluate(() => window.dashboard.axisLabels.department), ["Engineering"]);
    assert.deepEqual(await page.$$eval(".tile h3", (t) => t.map((x) => x.textContent)), ["Engineering"]);
    assert.equal(await page.textContent("#total-calls"), "5");
    assert.equal(await page.textContent("#total-denials"), "1");
    assert.equal(await page.locator("#department").isDisabled(), true);
    const members = await page.$$eval("#table-users tbody tr", (rows) => rows.map((r) => r.cells[1].textContent));
    assert.deepEqual(members.sort(), ["Alice Martin", "Bob Chen"]);
    const body = await page.textContent("body");
    assert.ok(!body.includes("Carol") && !body.includes("Sales and Marketing"), "another department is visible");
    assert.deepEqual(errors, []);
    if (shots) { await page.screenshot({ path: join(shots, "dashboard-eng-read-token.png") }); }
    // Sign out returns to the login page.
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.waitForSelector("#login");
  });
});
