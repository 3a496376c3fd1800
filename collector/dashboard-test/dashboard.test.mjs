// Run by collector/tests/dashboard.rs against a collector seeded with
// common::seed_analytics: 5 calls, spend 76 300 micro-USD (eng 39 200, sales 37 100;
// gpt-4o 70 000, gpt-4o-mini 6 300; days 2026-01-15 37 100, 01-16 2 100, 02-03 37 100).
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const url = process.env.COLLECTOR_URL;
const token = process.env.COLLECTOR_TOKEN;

test("dashboard shows the seeded numbers", async () => {
  assert.ok(url && token, "COLLECTOR_URL and COLLECTOR_TOKEN are required");
  const profile = mkdtempSync(join(tmpdir(), "gr-chromium-"));
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run", "--disable-sync"],
    viewport: { width: 1400, height: 1300 },
  });
  try {
    const page = browser.pages()[0] || (await browser.newPage());
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(`${url}/dashboard#token=${encodeURIComponent(token)}`);
    await page.waitForFunction(() => document.body.dataset.loaded === "1" || document.body.dataset.error, null, { timeout: 30000 });
    assert.equal(await page.evaluate(() => document.body.dataset.error || ""), "");
    assert.deepEqual(errors, []);

    assert.equal(await page.textContent("#total-spend"), "$0.0763");
    assert.equal(await page.textContent("#total-calls"), "5");
    assert.equal(await page.textContent("#total-tokens"), "55,000");
    assert.equal(await page.textContent("#active-users"), "3");
    assert.match(await page.textContent("#savings"), /^\$0\.0987 vs openai\/gpt-4o$/);

    // What the charts plot (uPlot's data arrays) and how many charts are drawn.
    const charts = await page.evaluate(() => Object.fromEntries(Object.entries(window.dashboard.charts).map(([k, c]) => [k, c.data.map((s) => Array.from(s))])));
    assert.deepEqual(charts.time[1], [37100, 2100, 37100]);
    assert.deepEqual(charts.time[0], [1768435200, 1768521600, 1770076800]);
    assert.deepEqual(charts.department[1], [39200, 37100]);
    assert.deepEqual(charts.models[1], [70000, 6300]);
    assert.deepEqual(charts.user[1], [37100, 37100, 2100]);
    assert.equal(await page.locator("canvas").count(), 5);

    const models = await page.$$eval("#table-models tr", (rows) => rows.map((r) => Array.from(r.cells).map((c) => c.textContent)));
    assert.deepEqual(models[1], ["gpt-4o", "2", "22,000", "$0.07", "91.7%"]);
    const keys = await page.$$eval("#table-keys tr", (rows) => rows.slice(1).map((r) => [r.cells[0].textContent, r.cells[2].textContent, r.cells[3].textContent]));
    assert.deepEqual(keys, [["k_eng", "3", "1"], ["k_sales", "2", "0"]]);

    // Filters: only sales.
    await page.fill("#department", "sales");
    await page.click("button[type=submit]");
    await page.waitForFunction(() => document.body.dataset.loaded === "2", null, { timeout: 30000 });
    assert.equal(await page.textContent("#total-spend"), "$0.0371");
    assert.equal(await page.textContent("#total-calls"), "2");
    await page.fill("#department", "");
    await page.click("button[type=submit]");
    await page.waitForFunction(() => document.body.dataset.loaded === "3", null, { timeout: 30000 });

    if (process.env.SCREENSHOT) {
      await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });
    }
  } finally {
    await browser.close();
    rmSync(profile, { recursive: true, force: true });
  }
});
