// Strata gateway dashboard: polls /api/dashboard for the cluster state and live series, and
// runs a chat playground against /v1/chat/completions (streamed). No dependencies.
"use strict";

const $ = (id) => document.getElementById(id);
const SVGNS = "http://www.w3.org/2000/svg";
const POLL_MS = 1000;

// ---- keys (sessionStorage, or localStorage when "remember" is ticked) ----
const keys = {
  get(name) { return sessionStorage.getItem("strata." + name) || localStorage.getItem("strata." + name) || ""; },
  set(name, value, remember) {
    for (const s of [sessionStorage, localStorage]) s.removeItem("strata." + name);
    if (value) (remember ? localStorage : sessionStorage).setItem("strata." + name, value);
  },
  remembered() { return !!(localStorage.getItem("strata.api") || localStorage.getItem("strata.admin")); },
};

function openKeys(why, focus) {
  $("keys-why").textContent = why || "Keys stay in this browser only and are sent as Bearer tokens.";
  $("api-key").value = keys.get("api");
  $("admin-key").value = keys.get("admin");
  $("remember").checked = keys.remembered();
  const d = $("keys-dialog");
  if (!d.open) d.showModal();
  (focus === "admin" ? $("admin-key") : $("api-key")).focus();
}

function setupKeys() {
  $("keys-btn").addEventListener("click", () => openKeys());
  $("keys-dialog").addEventListener("close", () => {
    const v = $("keys-dialog").returnValue;
    const remember = $("remember").checked;
    if (v === "save") {
      keys.set("api", $("api-key").value.trim(), remember);
      keys.set("admin", $("admin-key").value.trim(), remember);
      stateAuthAsked = false;
      poll();
    } else if (v === "clear") {
      keys.set("api", "", false);
      keys.set("admin", "", false);
    }
  });
}

function authHeaders(name) {
  const k = keys.get(name);
  return k ? { Authorization: "Bearer " + k } : {};
}

// ---- formatting ----
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = text;
  return e;
}
const fmt = {
  num(v, d = 1) { return v === null || v === undefined ? "–" : Number(v).toFixed(d); },
  ms(v) {
    if (v === null || v === undefined) return "–";
    return v >= 1000 ? (v / 1000).toFixed(v >= 10000 ? 0 : 1) + " s" : Math.round(v) + " ms";
  },
  bytes(v) {
    if (!v) return "–";
    const u = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
    return v.toFixed(i ? 1 : 0) + " " + u[i];
  },
  dur(s) {
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min";
    if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
    return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h";
  },
  time(ms) { return new Date(ms).toLocaleTimeString([], { hour12: false }); },
};
const last = (a) => (a && a.length ? a[a.length - 1] : null);
const stateClass = (s) => ({ healthy: "ok", loading: "warn", unhealthy: "bad" })[s] || "";

// ---- cluster view ----
function meter(label, pct, threshold, extra) {
  const m = el("div", "meter");
  m.append(el("span", "", label));
  const bar = el("div", "bar"), fill = el("div", "fill");
  const p = pct === null || pct === undefined ? 0 : Math.max(0, Math.min(100, pct));
  fill.style.width = p + "%";
  if (threshold && pct >= threshold) fill.classList.add("bad");
  else if (threshold && pct >= threshold * 0.85) fill.classList.add("warn");
  bar.append(fill);
  m.append(bar, el("span", "num", extra !== undefined ? extra : pct === null || pct === undefined ? "–" : fmt.num(pct, 0) + "%"));
  return m;
}

function kv(pairs) {
  const g = el("div", "kv");
  for (const [k, v] of pairs) {
    const d = el("div");
    d.append(el("span", "", k), el("b", "", v));
    g.append(d);
  }
  return g;
}

function chain(stages) {
  const c = el("div", "chain");
  stages.forEach((s, i) => {
    if (i) c.append(el("span", "arrow", "→"));
    const st = el("div", "stage" + (s.state === "down" ? " down" : ""));
    st.title = s.addr || "";
    st.append(el("b", "", "layers " + (s.layers || "?")), el("span", "", (s.addr || "stage " + i) + " · " + (s.state || "unknown")));
    c.append(st);
  });
  return c;
}

function nodeCard(b) {
  const card = el("div", "node " + (b.state || "unknown"));
  card.dataset.name = b.name;
  card.dataset.state = b.state;
  const head = el("div", "node-head");
  head.append(el("span", "dot " + stateClass(b.state)), el("span", "node-name", b.name), el("span", "node-url", (b.url || "").replace(/^https?:\/\//, "")));
  const badges = el("div", "badges");
  badges.append(el("span", "badge state " + stateClass(b.state), b.state));
  badges.append(el("span", "badge " + (b.circuit === "closed" ? "" : b.circuit === "open" ? "bad" : "warn"), "circuit " + b.circuit));
  badges.append(el("span", "badge", b.mode));
  if (b.layers && b.layers !== "auto") badges.append(el("span", "badge", "layers " + b.layers));
  const r = b.resources;
  if (r && r.memory_pressure) badges.append(el("span", "badge bad mem-pressure", "memory pressure"));
  if (r && r.warnings) for (const w of r.warnings) if (w !== "memory") badges.append(el("span", "badge warn", w + " high"));
  card.append(head, badges);
  const load = b.load || {};
  card.append(kv([
    ["slots", (load.slots_busy ?? 0) + " / " + (load.slots_total ?? 0)],
    ["queue", String(load.waiting ?? 0)],
    ["in flight", String(b.outstanding ?? 0)],
    ["latency", b.latency_ms ? fmt.ms(b.latency_ms) : "–"],
    ["requests", String(b.requests ?? 0)],
    ["errors", String(b.errors ?? 0)],
  ]));
  const meters = el("div", "meters");
  const slotsPct = load.slots_total ? (100 * load.slots_busy) / load.slots_total : 0;
  meters.append(meter("slots", slotsPct, 0, (load.slots_busy ?? 0) + "/" + (load.slots_total ?? 0)));
  if (r) {
    meters.append(meter("CPU", r.cpu_percent, 90), meter("memory", r.memory_percent, r.memory_pressure ? r.memory_percent : 90), meter("disk", r.disk_percent, 90));
  }
  card.append(meters);
  if (b.stages && b.stages.length) card.append(chain(b.stages));
  if (b.state !== "healthy" && b.last_error) card.append(el("div", "err", b.last_error));
  return card;
}

function renderCluster(d) {
  const c = d.cluster, g = d.gateway;
  const n = c.backends.length, h = c.healthy_backends;
  const pill = $("pill-health");
  pill.className = "pill " + (h === n ? "ok" : h > 0 ? "warn" : "bad");
  $("health-text").textContent = h + " / " + n + " nodes healthy";
  $("meta-policy").textContent = "routing: " + c.policy + (g.avoid_memory_pressure ? " · avoids memory pressure" : "");
  $("meta-uptime").textContent = "up " + fmt.dur(g.uptime_s);
  const pipelines = c.backends.filter((b) => b.stages && b.stages.length).length;
  $("topo-hint").textContent = n + " backend" + (n === 1 ? "" : "s") + (pipelines ? ", " + pipelines + " pipeline" + (pipelines === 1 ? "" : "s") : "") + " · health every " + g.health_interval_ms + " ms";
  const nodes = $("nodes");
  nodes.replaceChildren(...c.backends.map(nodeCard));
  $("st-active").textContent = g.requests_active + (g.queue_depth ? " +" + g.queue_depth : "");
  $("st-fo").textContent = g.failovers;
  const r = g.resources;
  const gw = $("gw-res");
  if (r) {
    gw.replaceChildren(meter("CPU", r.cpu_percent, r.thresholds.cpu), meter("memory", r.memory_percent, r.thresholds.memory), meter("disk", r.disk_percent, r.thresholds.disk), meter("RSS", 0, 0, fmt.bytes(r.rss_bytes)));
    gw.lastChild.querySelector(".bar").style.visibility = "hidden";
    $("gw-hint").textContent = r.warnings.length ? "warning: " + r.warnings.join(", ") : "thresholds " + r.thresholds.cpu + " / " + r.thresholds.memory + " / " + r.thresholds.disk + " %";
  }
}

// ---- charts (SVG) ----
function drawChart(id, legendId, t, series, unit) {
  const svg = $(id);
  const W = svg.clientWidth || 400, H = svg.clientHeight || 150, padL = 40, padB = 16, padT = 6;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.replaceChildren();
  const vals = series.flatMap((s) => s.data.filter((v) => v !== null));
  let max = Math.max(0, ...vals);
  if (!(max > 0)) max = unit === "ms" ? 100 : 1;  // nothing yet: a readable empty scale
  const mag = Math.pow(10, Math.floor(Math.log10(max)));
  max = Math.ceil(max / mag) * mag || 1;
  const now = Date.now(), span = 300000;
  const x = (tm) => padL + ((tm - (now - span)) / span) * (W - padL);
  const y = (v) => padT + (1 - v / max) * (H - padT - padB);
  for (let i = 0; i <= 3; i++) {
    const v = (max * i) / 3, yy = y(v);
    const line = document.createElementNS(SVGNS, "line");
    line.setAttribute("class", "grid");
    line.setAttribute("x1", padL); line.setAttribute("x2", W); line.setAttribute("y1", yy); line.setAttribute("y2", yy);
    const txt = document.createElementNS(SVGNS, "text");
    txt.setAttribute("class", "axis"); txt.setAttribute("x", padL - 6); txt.setAttribute("y", yy + 3); txt.setAttribute("text-anchor", "end");
    txt.textContent = unit === "ms" ? fmt.ms(v) : v >= 100 ? Math.round(v) : +v.toFixed(2);
    svg.append(line, txt);
  }
  for (const [label, off] of [["-5 min", 0], ["now", span]]) {
    const txt = document.createElementNS(SVGNS, "text");
    txt.setAttribute("class", "axis"); txt.setAttribute("x", off ? W : padL); txt.setAttribute("y", H - 2);
    txt.setAttribute("text-anchor", off ? "end" : "start");
    txt.textContent = label;
    svg.append(txt);
  }
  series.forEach((s, si) => {
    let d = "", pen = false;
    s.data.forEach((v, i) => {
      if (v === null || t[i] < now - span) { pen = false; return; }
      d += (pen ? "L" : "M") + x(t[i]).toFixed(1) + "," + y(v).toFixed(1);
      pen = true;
      const lone = (i === 0 || s.data[i - 1] === null) && (i === s.data.length - 1 || s.data[i + 1] === null);
      if (lone) {  // a point without neighbours: a dot, since a path of one point draws nothing
        const c = document.createElementNS(SVGNS, "circle");
        c.setAttribute("class", "pt s" + si);
        c.setAttribute("cx", x(t[i]).toFixed(1)); c.setAttribute("cy", y(v).toFixed(1)); c.setAttribute("r", 2.5);
        svg.append(c);
      }
    });
    if (si === 0 && series.length === 1 && d) {
      const area = document.createElementNS(SVGNS, "path");
      area.setAttribute("class", "area");
      const pts = s.data.map((v, i) => [t[i], v]).filter(([tm, v]) => v !== null && tm >= now - span);
      area.setAttribute("d", d + `L${x(last(pts)[0]).toFixed(1)},${y(0)}L${x(pts[0][0]).toFixed(1)},${y(0)}Z`);
      svg.append(area);
    }
    const p = document.createElementNS(SVGNS, "path");
    p.setAttribute("class", "line s" + si);
    p.setAttribute("d", d);
    svg.append(p);
  });
  const lg = $(legendId);
  lg.replaceChildren(...series.map((s, si) => {
    const e = el("span");
    const sw = el("i");
    sw.style.background = getComputedStyle(document.documentElement).getPropertyValue("--c" + (si + 1));
    const v = last(s.data.filter((x) => x !== null));
    e.append(sw, document.createTextNode(s.label + " " + (v === null ? "–" : unit === "ms" ? fmt.ms(v) : fmt.num(v, v >= 100 ? 0 : 1))));
    return e;
  }));
}

function renderSeries(s) {
  drawChart("ch-rps", "lg-rps", s.t, [{ label: "req/s", data: s.rps }], "");
  drawChart("ch-tps", "lg-tps", s.t, [{ label: "tok/s", data: s.tps }], "");
  drawChart("ch-ttft", "lg-ttft", s.t, [{ label: "p50", data: s.ttft_p50 }, { label: "p90", data: s.ttft_p90 }, { label: "p99", data: s.ttft_p99 }], "ms");
  drawChart("ch-lat", "lg-lat", s.t, [{ label: "p50", data: s.latency_p50 }, { label: "p90", data: s.latency_p90 }, { label: "p99", data: s.latency_p99 }], "ms");
  $("st-rps").textContent = fmt.num(last(s.rps), 1);
  $("st-tps").textContent = fmt.num(last(s.tps), 0);
  $("st-ttft").textContent = fmt.ms(last(s.ttft_p50));
  $("st-lat").textContent = fmt.ms(last(s.latency_p90));
}

function renderEvents(events) {
  const ol = $("events");
  if (!events.length) { ol.replaceChildren(el("li", "empty", "No events yet.")); return; }
  ol.replaceChildren(...events.map((e) => {
    const li = el("li", "event " + e.kind);
    const cls = { failover: "warn", retry: "warn", error: "bad", backend_down: "bad", backend_up: "ok", memory_pressure: "bad" }[e.kind] || "";
    const kind = el("span");
    kind.append(el("span", "badge " + cls, e.kind.replace("_", " ")));
    const msg = el("span", "msg", (e.backend ? e.backend + ": " : "") + e.message + (e.request_id ? "  (" + e.request_id + ")" : ""));
    li.append(el("time", "", fmt.time(e.t_ms)), kind, msg);
    return li;
  }));
}

// ---- polling ----
let stateAuthAsked = false;
function banner(text, bad) {
  const b = $("banner");
  b.hidden = !text;
  b.textContent = text || "";
  b.className = "banner" + (bad ? " bad" : "");
}

async function poll() {
  try {
    const r = await fetch("/api/dashboard", { headers: authHeaders("admin"), cache: "no-store" });
    if (r.status === 401) {
      banner("The cluster state needs the gateway's admin key. Enter it under Keys.", false);
      $("health-text").textContent = "admin key needed";
      if (!stateAuthAsked) { stateAuthAsked = true; openKeys("This gateway protects its status endpoints: enter the admin key to see the cluster.", "admin"); }
      return;
    }
    if (!r.ok) throw new Error("HTTP " + r.status);
    const d = await r.json();
    banner("");
    renderCluster(d);
    renderSeries(d.series);
    renderEvents(d.events);
    document.body.dataset.ready = "1";
  } catch (e) {
    banner("Cannot reach the gateway (" + e.message + "). Retrying…", true);
    const pill = $("pill-health");
    pill.className = "pill bad";
    $("health-text").textContent = "gateway unreachable";
  }
}

// ---- playground ----
const chat = { history: [], busy: false, abort: null };

function addUser(text) {
  $("chat-empty").hidden = true;
  $("conversation").append(el("div", "msg user", text));
}

function addAssistant() {
  const m = el("div", "msg assistant");
  const det = el("details", "reasoning");
  det.open = true;
  det.hidden = true;
  const sum = el("summary", "", "Thinking…");
  const rtext = el("div", "text");
  det.append(sum, rtext);
  const ans = el("div", "answer");
  const meta = el("div", "msg-meta");
  m.append(det, ans, meta);
  $("conversation").append(m);
  return { m, det, sum, rtext, ans, meta };
}

// Splits content that carries its own <think>…</think> (a node run with --reasoning-format none).
function splitThink(state, text) {
  state.raw += text;
  const open = state.raw.indexOf("<think>"), close = state.raw.indexOf("</think>");
  if (open === 0 || (state.raw.trimStart().startsWith("<think>"))) {
    const body = state.raw.trimStart().slice(7);
    if (close >= 0) return { reasoning: body.slice(0, body.indexOf("</think>")), content: body.slice(body.indexOf("</think>") + 8).replace(/^\s+/, "") };
    return { reasoning: body, content: "" };
  }
  return { reasoning: "", content: state.raw };
}

function scrollChat() { const c = $("conversation"); c.scrollTop = c.scrollHeight; }

async function send(prompt) {
  if (chat.busy || !prompt.trim()) return;
  chat.busy = true;
  addUser(prompt);
  chat.history.push({ role: "user", content: prompt });
  const ui = addAssistant();
  const btn = $("chat-send");
  btn.textContent = "Stop";
  btn.classList.replace("primary", "stop");
  chat.abort = new AbortController();
  const body = {
    messages: chat.history,
    stream: true,
    stream_options: { include_usage: true },
    temperature: Number($("temp").value),
    max_tokens: Number($("max-tokens").value) || 256,
  };
  const t0 = performance.now();
  let tFirst = 0, events = 0, reasoning = "", content = "", usage = null, node = "", rid = "";
  const inline = { raw: "" };
  try {
    const r = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: Object.assign({ "Content-Type": "application/json" }, authHeaders("api")),
      body: JSON.stringify(body),
      signal: chat.abort.signal,
    });
    node = r.headers.get("X-Strata-Backend") || "";
    rid = r.headers.get("X-Request-Id") || "";
    if (!r.ok) {
      let msg = "HTTP " + r.status;
      try { msg = (await r.json()).error.message || msg; } catch (_) { /* not JSON */ }
      if (r.status === 401) openKeys("The gateway needs an API key for the playground.", "api");
      throw new Error(msg);
    }
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    let buf = "", done = false;
    while (!done) {
      const { value, done: end } = await reader.read();
      if (end) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const ev = buf.slice(0, i);
        buf = buf.slice(i + 2);
        for (const line of ev.split("\n")) {
          if (!line.startsWith("data:")) continue;
          const data = line.slice(5).trim();
          if (data === "[DONE]") { done = true; break; }
          let j;
          try { j = JSON.parse(data); } catch (_) { continue; }
          if (j.error) throw new Error(j.error.message || "stream error");
          if (j.usage) usage = j.usage;
          const d = j.choices && j.choices[0] && j.choices[0].delta;
          if (!d) continue;
          if (d.reasoning_content) reasoning += d.reasoning_content;
          if (d.content) {
            const s = splitThink(inline, d.content);
            if (s.reasoning) { reasoning = s.reasoning; content = s.content; } else content = s.content;
          }
          if (d.reasoning_content || d.content) {
            events++;
            if (!tFirst) tFirst = performance.now();
          }
        }
        if (reasoning) { ui.det.hidden = false; ui.rtext.textContent = reasoning; }
        ui.ans.textContent = content;
        if (content && ui.det.open && ui.sum.textContent === "Thinking…") ui.det.open = false;
        ui.sum.textContent = content ? "Reasoning (" + reasoning.length + " chars)" : "Thinking…";
        scrollChat();
      }
    }
    if (reasoning) ui.sum.textContent = "Reasoning (" + reasoning.length + " chars)";
    if (!content && !reasoning) ui.ans.textContent = "(empty answer)";
    else if (!content) ui.ans.textContent = "(no answer yet: the model was still reasoning when it reached max tokens)";
    chat.history.push({ role: "assistant", content });
  } catch (e) {
    ui.ans.classList.add("failed");
    ui.ans.textContent = e.name === "AbortError" ? (content || "") + " [stopped]" : "Error: " + e.message;
    if (e.name === "AbortError") ui.ans.classList.remove("failed");
    chat.history.pop();
  } finally {
    const tEnd = performance.now();
    const tokens = usage ? usage.completion_tokens : events;
    const genS = tFirst ? (tEnd - tFirst) / 1000 : 0;
    const badges = [];
    if (tokens) badges.push(tokens + " tokens");
    if (tokens > 1 && genS > 0) badges.push((Math.max(tokens - 1, 1) / genS).toFixed(1) + " tok/s");
    if (tFirst) badges.push("TTFT " + fmt.ms(tFirst - t0));
    if (node) badges.push("served by " + node);
    ui.meta.replaceChildren(...badges.map((b) => el("span", "badge" + (b.startsWith("served") ? " served" : ""), b)));
    if (rid) ui.meta.title = "request " + rid;
    chat.busy = false;
    btn.textContent = "Send";
    btn.classList.replace("stop", "primary");
    scrollChat();
  }
}

function setupChat() {
  $("temp").addEventListener("input", () => { $("temp-out").textContent = Number($("temp").value).toFixed(2); });
  $("temp-out").textContent = Number($("temp").value).toFixed(2);
  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    if (chat.busy) { chat.abort.abort(); return; }
    const v = $("chat-input").value;
    $("chat-input").value = "";
    send(v);
  });
  $("chat-input").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("composer").requestSubmit(); }
  });
  $("chat-clear").addEventListener("click", () => {
    if (chat.busy) chat.abort.abort();
    chat.history = [];
    $("conversation").replaceChildren($("chat-empty"));
    $("chat-empty").hidden = false;
  });
}

setupKeys();
setupChat();
poll();
setInterval(poll, POLL_MS);
