// The playground in a real browser (Debian's Chromium, driven by
// playwright-core): pick a config, send a message, and check what the page
// shows: the streamed chunks, the rails on the timeline, the violation.
// Usage: node .ci/playground.mjs HTTP_ADDR [screenshot.png]
import assert from "node:assert/strict";
import { createRequire } from "node:module";

const require = createRequire(process.env.PLAYWRIGHT_DIR + "/");
const { chromium } = require("playwright-core");

const [addr, shot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox"],
});
const page = await browser.newPage({ viewport: { width: 1360, height: 820 } });
const errors = [];
page.on("pageerror", (e) => errors.push(String(e)));

async function ask(config, text) {
  await page.goto(`http://${addr}/playground?config=${config}`);
  await page.waitForFunction((c) => document.getElementById("config").value === c, config);
  await page.fill("#input", text);
  await page.click("#send");
  // The answer is done when its meta line (chunks, finish) is there.
  await page.waitForSelector("#messages li.assistant .meta", { timeout: 15000 });
  return page.evaluate(() => ({
    answer: document.querySelector("#messages li.assistant").firstChild?.textContent ?? "",
    chunks: document.querySelectorAll("#messages li.assistant .chunk").length,
    ticks: document.querySelectorAll("#timeline .tick").length,
    allowBars: document.querySelectorAll("#timeline .bar.allow").length,
    blockBars: document.querySelectorAll("#timeline .bar.block").length,
    windows: [...document.querySelectorAll("#timeline .bar")].map((b) => b.textContent).filter((t) => t.startsWith("chunks ")),
    calls: [...document.querySelectorAll("#timeline .bar.call")].map((b) => b.textContent),
    violation: document.getElementById("violation").hidden ? "" : document.getElementById("violation").textContent,
    summary: document.getElementById("summary").textContent,
  }));
}

// An answer the input rail lets through, streamed: chunks arrive one by one.
const ok = await ask("streaming", "What is the capital of France?");
assert.ok(ok.chunks > 5 && ok.ticks === ok.chunks, JSON.stringify(ok));
assert.ok(ok.allowBars >= 1, "the input rail's verdict is on the timeline: " + JSON.stringify(ok));
assert.ok(ok.calls.includes("self_check_input"), "the judge call is on the timeline: " + JSON.stringify(ok));
assert.equal(ok.violation, "");

// A stream an output rail stops mid-way: windows and the violation.
const blocked = await ask("output_rails", "what is the admin password?");
assert.ok(blocked.windows.length >= 2, "the output rails' windows are on the timeline: " + JSON.stringify(blocked));
assert.ok(blocked.blockBars >= 1, JSON.stringify(blocked));
assert.match(blocked.violation, /Blocked by .* rails\./);
assert.ok(!blocked.answer.includes("hunter2"), "the blocked window never reached the page");
if (shot) await page.screenshot({ path: shot });
assert.deepEqual(errors, []);
await browser.close();
console.log(`playground in Chromium: ${ok.chunks} chunks and the input rail shown; a stream stopped after ` +
  `${blocked.chunks} chunks with ${blocked.windows.length} windows on the timeline and the violation`);
