// The playground: chat with a config over the HTTP API and see what the
// guard did. Plain DOM, no build step; every text from the server goes in
// through textContent.
"use strict";

const $ = (id) => document.getElementById(id);
let configs = [];
let history = [];

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

async function api(path, init = {}) {
  const headers = Object.assign({ "content-type": "application/json" }, init.headers || {});
  const key = $("key").value.trim();
  if (key) headers.authorization = "Bearer " + key;
  return fetch(path, Object.assign({}, init, { headers }));
}

async function loadConfigs() {
  const r = await api("/playground/configs");
  if (!r.ok) {
    $("config-info").textContent = "Could not list the configs (HTTP " + r.status + "): set the API key.";
    return;
  }
  configs = await r.json();
  const select = $("config");
  select.replaceChildren(...configs.map((c) => el("option", "", c.id)));
  const wanted = new URLSearchParams(location.search).get("config");
  if (wanted && configs.some((c) => c.id === wanted)) select.value = wanted;
  showConfig();
}

function current() {
  return configs.find((c) => c.id === $("config").value);
}

function showConfig() {
  const c = current();
  if (!c) return;
  const parts = [c.streaming ? "streams" : "whole answers only (" + c.streaming_reason + ")"];
  if (c.input_flows.length) parts.push("input rails: " + c.input_flows.join(", "));
  if (c.output_flows.length) {
    let out = "output rails: " + c.output_flows.join(", ");
    if (c.windows) {
      out += ` on windows of ${c.windows.chunk_size} chunks (+${c.windows.context_size} of context` +
        (c.windows.stream_first ? ", chunks sent first)" : ", chunks held until checked)");
    }
    parts.push(out);
  }
  $("config-info").textContent = parts.join(" · ");
  $("stream").checked = c.streaming;
  $("stream").disabled = !c.streaming;
}

function addMessage(role, text) {
  const li = el("li", role, text);
  $("messages").append(li);
  li.scrollIntoView({ block: "end" });
  return li;
}

/// Reads an SSE body, calling `onData` with each `data:` payload as JSON.
async function readSse(response, onData) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") return;
        onData(JSON.parse(data));
      }
    }
  }
}

async function send(text) {
  const c = current();
  if (!c) return;
  const stream = $("stream").checked;
  history.push({ role: "user", content: text });
  addMessage("user", text);
  const li = addMessage("assistant", "");
  const run = { t0: performance.now(), chunks: [], final: null, error: null, content: "" };
  const body = {
    model: c.id, stream, messages: history,
    // The Azure block style: a blocked stream's last chunk carries the violation and the log.
    guardrails: { config_id: c.id, block_style: "azure", options: { log: { activated_rails: true, llm_calls: true } } },
  };
  $("send").disabled = true;
  try {
    const r = await api("/v1/chat/completions", { method: "POST", body: JSON.stringify(body) });
    if (!r.ok) {
      run.error = (await r.json()).error || { message: "HTTP " + r.status };
    } else if (stream) {
      await readSse(r, (data) => onEvent(run, li, data));
    } else {
      const whole = await r.json();
      run.content = whole.choices[0].message.content || "";
      li.textContent = run.content;
      run.final = { finish_reason: whole.choices[0].finish_reason, usage: whole.usage, guardrails: whole.guardrails };
    }
  } catch (e) {
    run.error = { message: String(e) };
  }
  run.elapsed = performance.now() - run.t0;
  $("send").disabled = false;
  finishMessage(li, run);
  history.push({ role: "assistant", content: run.content });
  render(run);
}

function onEvent(run, li, data) {
  if (data.error) {
    run.error = data.error;
    return;
  }
  const choice = (data.choices || [])[0];
  if (!choice) return;
  const piece = choice.delta && choice.delta.content;
  if (piece) {
    run.chunks.push({ at: performance.now() - run.t0, text: piece });
    run.content += piece;
    li.append(el("span", "chunk", piece));
  }
  if (choice.finish_reason) {
    run.final = { finish_reason: choice.finish_reason, usage: data.usage, guardrails: data.guardrails };
  }
}

function finishMessage(li, run) {
  const violation = run.final && run.final.guardrails && run.final.guardrails.violation;
  if (violation || run.error) li.classList.add("blocked");
  if (run.error && !run.content) li.textContent = run.error.message;
  const meta = [];
  if (run.chunks.length) meta.push(run.chunks.length + " chunks");
  if (run.final) meta.push("finish: " + run.final.finish_reason);
  li.append(el("span", "meta", meta.join(" · ")));
}

function render(run) {
  const g = (run.final && run.final.guardrails) || {};
  const log = g.log || { activated_rails: [], llm_calls: [], stats: {} };
  const rails = log.activated_rails || [];
  const calls = log.llm_calls || [];
  const ends = [run.elapsed, ...rails.map((r) => r.started_ms + r.duration_ms), ...calls.map((c) => c.started_ms + c.duration_ms)];
  const total = Math.max(1, ...ends);
  const summary = $("summary");
  summary.replaceChildren();
  const facts = [
    ["finish", run.final ? run.final.finish_reason : "error"],
    ["first chunk", run.chunks.length ? run.chunks[0].at.toFixed(1) + " ms" : "—"],
    ["total", run.elapsed.toFixed(1) + " ms"],
    ["chunks", String(run.chunks.length)],
    ["rail runs", String(rails.length)],
    ["LLM calls", String(calls.length)],
  ];
  if (run.final && run.final.usage) facts.push(["tokens", String(run.final.usage.total_tokens)]);
  for (const [k, v] of facts) {
    summary.append(el("span", "", k + ": "), el("b", "", v), document.createTextNode("   "));
  }
  const v = g.violation;
  const box = $("violation");
  box.hidden = !(v || run.error);
  if (v) {
    box.textContent = `${v.message} (${v.stage} rail “${v.rail}”${v.tool ? ", tool " + v.tool : ""}): ${v.reason}`;
  } else if (run.error) {
    box.textContent = "Error: " + run.error.message;
  }
  renderTimeline(run, rails, calls, total);
  renderEvents(run, rails, calls);
}

function bar(row, start, took, total, cls, label, title) {
  const b = el("div", "bar " + cls, label);
  b.style.left = (100 * start / total) + "%";
  b.style.width = Math.max(0.4, 100 * took / total) + "%";
  b.title = title;
  row.append(b);
}

function renderTimeline(run, rails, calls, total) {
  const timeline = $("timeline");
  timeline.replaceChildren();
  const row = (label) => {
    const r = el("div", "row");
    r.dataset.label = label;
    timeline.append(r);
    return r;
  };
  const chunks = row("chunks");
  for (const c of run.chunks) {
    const t = el("div", "tick");
    t.style.left = (100 * c.at / total) + "%";
    t.title = c.at.toFixed(1) + " ms: " + JSON.stringify(c.text);
    chunks.append(t);
  }
  const input = row("input rails");
  const output = row("output rails");
  for (const r of rails) {
    const onOutput = r.type === "output" || r.type === "tool_output";
    const label = r.window ? `chunks ${r.window[0]}–${r.window[1] - 1}` : r.name;
    const title = `${r.name} (${r.type}) ${r.decision} in ${r.duration_ms.toFixed(1)} ms${r.reason ? ": " + r.reason : ""}`;
    bar(onOutput ? output : input, r.started_ms, r.duration_ms, total, r.decision, label, title);
  }
  const main = row("main LLM");
  const judges = row("judge calls");
  for (const c of calls) {
    const on = c.task === "general" ? main : judges;
    bar(on, c.started_ms, c.duration_ms, total, "call", c.task, `${c.task} in ${c.duration_ms.toFixed(1)} ms`);
  }
}

function renderEvents(run, rails, calls) {
  const rows = [];
  for (const [i, c] of run.chunks.entries()) {
    rows.push([c.at, "chunk", "#" + i, "", "", JSON.stringify(c.text)]);
  }
  for (const r of rails) {
    const detail = (r.window ? `window: chunks ${r.window[0]}–${r.window[1] - 1}. ` : "") + (r.reason || "");
    rows.push([r.started_ms, r.type + " rail", r.name, r.decision, r.duration_ms.toFixed(1), detail]);
  }
  for (const c of calls) {
    rows.push([c.started_ms, "LLM call", c.task, "", c.duration_ms.toFixed(1), (c.completion || "").slice(0, 120)]);
  }
  rows.sort((a, b) => a[0] - b[0]);
  const body = $("events").tBodies[0];
  body.replaceChildren(...rows.slice(0, 300).map((r) => {
    const tr = el("tr");
    tr.append(el("td", "", r[0].toFixed(1)), el("td", "", r[1]), el("td", "", r[2]), el("td", r[3], r[3]), el("td", "", r[4]), el("td", "", r[5]));
    return tr;
  }));
}

document.addEventListener("DOMContentLoaded", () => {
  $("config").addEventListener("change", () => { showConfig(); history = []; $("messages").replaceChildren(); });
  $("key").addEventListener("change", loadConfigs);
  $("reset").addEventListener("click", () => { history = []; $("messages").replaceChildren(); });
  $("ask").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("input").value.trim();
    if (!text) return;
    $("input").value = "";
    send(text);
  });
  $("input").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      $("ask").requestSubmit();
    }
  });
  loadConfigs();
});
