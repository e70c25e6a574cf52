// Browser half of the dashboard test (driven by dashboard_test.py, which owns the processes):
// Debian's chromium through playwright-core against a live gateway. Usage:
//   node dashboard_test.mjs '{"url": ..., "scenario": "open"|"auth", "shots": DIR, ...}'
// It asks the driver to kill a node by printing "KILL <name>" and waits for "OK" on stdin.
// Prints "ok - ..." / "not ok - ..." lines; exits 1 when a check failed.
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

const cfg = JSON.parse(process.argv[2]);
let failed = 0;
function check(cond, what) {
  console.log((cond ? "ok - " : "not ok - ") + what);
  if (!cond) failed++;
}

const stdinLines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function askDriver(line) {
  console.log(line);
  const r = await stdinLines.next();
  return r.value;
}

async function waited(fn, what) {
  try {
    await fn();
    return true;
  } catch (e) {
    console.log("# " + what + ": " + e.message.split("\n")[0]);
    return false;
  }
}

const WIDE = { width: 1440, height: 960 }, NARROW = { width: 390, height: 844 };

async function nodeState(page, name) {
  return page.getAttribute(`.node[data-name="${name}"]`, "data-state");
}

// Types a prompt, waits for the streamed answer and the reasoning block.
async function chatTurn(page, prompt) {
  await page.fill("#temp", "0");
  await page.dispatchEvent("#temp", "input");
  await page.fill("#max-tokens", String(cfg.max_tokens || 120));
  await page.fill("#chat-input", prompt);
  await page.press("#chat-input", "Enter");
  const msg = page.locator(".msg.assistant").last();
  const streamed = await waited(
    () => page.waitForFunction(() => {
      const m = [...document.querySelectorAll(".msg.assistant")].pop();
      return m && m.querySelector(".reasoning .text").textContent.length > 0;
    }, null, { timeout: 30000 }),
    "reasoning streamed");
  check(streamed, "the reasoning streams into its block while the answer is generated");
  const done = await waited(
    () => page.waitForFunction(() => document.querySelector("#chat-send").textContent === "Send" &&
      [...document.querySelectorAll(".msg.assistant .msg-meta .badge")].length > 0, null, { timeout: 60000 }),
    "stream end");
  check(done, "the stream ends");
  const answer = (await msg.locator(".answer").textContent()) || "";
  const reasoning = (await msg.locator(".reasoning .text").textContent()) || "";
  const served = (await msg.locator(".msg-meta").textContent()) || "";
  check(answer.length > 0 && !answer.startsWith("Error") && !answer.startsWith("(no answer"),
    `the answer appears apart from the reasoning (${reasoning.length} + ${answer.length} chars)`);
  check(!answer.includes(reasoning.slice(0, 20)), "the answer does not repeat the reasoning");
  const details = msg.locator("details.reasoning");
  check(await details.isVisible(), "the reasoning block is shown");
  check((await details.getAttribute("open")) === null, "the reasoning block is collapsed once the answer starts");
  await details.locator("summary").click();
  check((await details.getAttribute("open")) !== null, "the reasoning block opens on a click");
  check(/tok\/s/.test(served) && /served by (n0|n1)/.test(served), "tokens/s and the serving node are shown: " + served.trim());
  return served;
}

async function openScenario(page) {
  await page.goto(cfg.url + "/");
  const both = await waited(() => page.waitForFunction(() =>
    document.querySelectorAll('.node[data-state="healthy"]').length === 2, null, { timeout: 20000 }), "both healthy");
  check(both, "the dashboard shows both nodes healthy");
  check((await page.textContent("#health-text")).includes("2 / 2"), "the header says 2 / 2 nodes healthy");
  const res = await page.locator('.node[data-name="n0"] .meter').count();
  check(res >= 4, "a node card shows slots, CPU, memory and disk meters");
  await chatTurn(page, "Tell me a story");
  await page.waitForTimeout(2200);  // a few chart points with the request in them
  const tps = await page.locator("#ch-tps path.line").first().getAttribute("d");
  check(tps && tps.length > 10, "the tokens/s chart draws a series");
  await page.screenshot({ path: join(cfg.shots, "dashboard-wide.png"), fullPage: true });
  await page.setViewportSize(NARROW);
  await page.waitForTimeout(400);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 1, `no horizontal overflow in a narrow window (${overflow}px)`);
  await page.screenshot({ path: join(cfg.shots, "dashboard-narrow.png"), fullPage: true });
  await page.setViewportSize(WIDE);

  // Kill one node: it turns unhealthy within the gateway's health interval (plus a poll).
  const reply = await askDriver("KILL n1");
  check(reply === "OK", "the driver killed n1");
  const t0 = Date.now();
  const down = await waited(() => page.waitForFunction(() => {
    const n = document.querySelector('.node[data-name="n1"]');
    return n && n.dataset.state === "unhealthy";
  }, null, { timeout: cfg.unhealthy_within_ms }), "n1 unhealthy");
  check(down, `n1 is shown unhealthy ${Date.now() - t0} ms after the kill (limit ${cfg.unhealthy_within_ms} ms)`);
  check(await nodeState(page, "n0") === "healthy", "n0 stays healthy");
  const ev = await waited(() => page.waitForSelector(".events li.backend_down", { timeout: 5000 }), "event");
  check(ev, "the node's failure is listed among the recent events");
  await page.screenshot({ path: join(cfg.shots, "dashboard-node-down.png"), fullPage: true });
}

async function authScenario(page) {
  await page.goto(cfg.url + "/");
  const asked = await waited(() => page.waitForSelector("#keys-dialog[open]", { timeout: 10000 }), "keys dialog");
  check(asked, "without keys the page asks for them (the state needs the admin key)");
  check(await page.locator(".node").count() === 0, "no cluster state is shown without the admin key");
  await page.fill("#admin-key", cfg.admin_key);
  await page.click("#keys-save");
  const shown = await waited(() => page.waitForSelector('.node[data-state="healthy"]', { timeout: 15000 }), "nodes");
  check(shown, "with the admin key the nodes are shown");
  // The playground without an API key: 401, the dialog asks for it.
  await page.fill("#chat-input", "Hello");
  await page.press("#chat-input", "Enter");
  const askedApi = await waited(() => page.waitForSelector("#keys-dialog[open]", { timeout: 10000 }), "api dialog");
  check(askedApi, "a chat without an API key makes the page ask for one");
  const err = await page.locator(".msg.assistant .answer").last().textContent();
  check(/key/i.test(err || ""), "the failed turn says why: " + (err || "").slice(0, 80));
  await page.fill("#api-key", cfg.api_key);
  await page.click("#keys-save");
  const stored = await page.evaluate(() => sessionStorage.getItem("strata.api"));
  check(stored === cfg.api_key, "the key is kept in sessionStorage (not remembered by default)");
  await chatTurn(page, "Tell me a story");
  const html = await (await page.request.get(cfg.url + "/")).text();
  check(!html.includes(cfg.api_key) && !html.includes(cfg.admin_key), "no key is embedded in the page");
  await page.screenshot({ path: join(cfg.shots, "dashboard-auth.png"), fullPage: true });
}

const profile = mkdtempSync(join(tmpdir(), "strata-dash-chromium-"));
// A new, empty profile (user-data-dir) per run.
const context = await chromium.launchPersistentContext(profile, {
  executablePath: cfg.chromium || "/usr/bin/chromium",
  headless: true,
  viewport: WIDE,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = context.pages()[0] || await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("console", (m) => { if (m.type() === "error" && !/401|Failed to load resource/.test(m.text())) errors.push(m.text()); });
  if (cfg.scenario === "auth") await authScenario(page);
  else await openScenario(page);
  check(errors.length === 0, "no script errors on the page" + (errors.length ? ": " + errors.join(" | ") : ""));
} catch (e) {
  check(false, "scenario " + cfg.scenario + " threw: " + e.message);
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
