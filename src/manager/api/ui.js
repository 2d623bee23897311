// The Poseidon dashboard's script (GET /ui/app.js): loads tasks, services and nodes, then keeps
// them current from GET /events, read as a stream of newline-delimited JSON through fetch. When
// the stream ends or breaks it reloads everything and follows again, after a second.
"use strict";

const tasks = new Map(); // id -> task as GET /tasks shows it (kept current by events)
const nodes = new Map(); // name -> node as GET /nodes shows it
let services = null; // null: the manager has no /services; otherwise an array
let lastIndex = null; // the last event index seen

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return e;
}

function say(text) {
  document.getElementById("message").textContent = text || "";
}

async function api(method, path, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const resp = await fetch(path, init);
  const text = await resp.text();
  let value = null;
  try { value = text ? JSON.parse(text) : null; } catch (_) { value = text; }
  if (!resp.ok) {
    const why = value && value.error ? value.error : `HTTP ${resp.status}`;
    const err = new Error(why);
    err.status = resp.status;
    throw err;
  }
  return value;
}

function bytes(n) {
  if (!n) return "0";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(n < 10 && i > 0 ? 1 : 0)} ${units[i]}`;
}

function stateBadge(state) {
  return el("span", { class: `state ${state}` }, state);
}

function renderTasks() {
  const body = document.querySelector("#tasks tbody");
  const rows = [...tasks.values()].sort((a, b) => (b.created_ms || 0) - (a.created_ms || 0));
  body.replaceChildren(...rows.map((t) => {
    const name = t.spec ? t.spec.name : t.name;
    const live = t.desired === "run" && (t.state === "pending" || t.state === "scheduled" || t.state === "running");
    const stop = el("button", { class: "stop", "data-id": t.id, onclick: () => stopTask(t.id) }, "Stop");
    if (!live) stop.disabled = true;
    return el("tr", { "data-id": t.id, "data-state": t.state },
      el("td", { class: "name" }, name),
      el("td", { class: "id", title: t.id }, t.id.slice(0, 8)),
      el("td", {}, stateBadge(t.state)),
      el("td", {}, t.node || "-"),
      el("td", {}, String(t.restart_count || 0)),
      el("td", { class: "reason", title: t.reason || "" }, t.reason || ""),
      el("td", {}, stop));
  }));
  document.getElementById("tasks-empty").style.display = rows.length ? "none" : "";
  const running = rows.filter((t) => t.state === "running").length;
  document.getElementById("task-count").textContent = `${rows.length} total, ${running} running`;
}

function renderNodes() {
  const body = document.querySelector("#nodes tbody");
  const rows = [...nodes.values()].sort((a, b) => a.name.localeCompare(b.name));
  body.replaceChildren(...rows.map((n) => el("tr", { "data-name": n.name },
    el("td", {}, n.name),
    el("td", { title: n.problem || "" }, stateBadge(n.state)),
    el("td", {}, n.address || ""),
    el("td", {}, `${(n.reserved_cpus || 0).toFixed(2)} / ${n.capacity ? n.capacity.cpus : "?"}`),
    el("td", {}, `${bytes(n.reserved_memory)} / ${bytes(n.capacity ? n.capacity.memory : 0)}`),
    el("td", {}, String(n.tasks ?? "")),
    el("td", {}, n.draining ? "draining" : n.eligible === false ? "no" : "yes"),
    el("td", {}, Object.entries(n.labels || {}).map(([k, v]) => `${k}=${v}`).join(", ")))));
  const up = rows.filter((n) => n.state === "up").length;
  document.getElementById("node-count").textContent = `${rows.length} total, ${up} up`;
}

function renderServices() {
  const box = document.getElementById("services");
  if (services === null || services.length === 0) {
    box.replaceChildren(el("div", { class: "empty", id: "no-services" }, "no services"));
    document.getElementById("service-count").textContent = "";
    return;
  }
  const head = el("tr", {}, ...["Name", "Version", "State", "Healthy", "Count", ""].map((h) => el("th", {}, h)));
  const rows = services.map((s) => {
    const input = el("input", { type: "number", min: "0", value: String(s.count ?? ""), size: "4", class: "scale-count" });
    const button = el("button", { class: "scale", onclick: () => scaleService(s.name, Number(input.value)) }, "Scale");
    return el("tr", { "data-name": s.name },
      el("td", {}, s.name), el("td", {}, String(s.version ?? "")), el("td", {}, stateBadge(s.state || "")),
      el("td", {}, String(s.healthy ?? "")), el("td", {}, input), el("td", {}, button));
  });
  box.replaceChildren(el("table", {}, el("thead", {}, head), el("tbody", {}, ...rows)));
  document.getElementById("service-count").textContent = `${services.length} total`;
}

async function loadServices() {
  try {
    services = await api("GET", "/services");
  } catch (e) {
    if (e.status !== 404) say(`services: ${e.message}`);
    services = null; // a manager without services answers 404
  }
  renderServices();
}

async function loadAll() {
  const [ts, ns, health] = await Promise.all([api("GET", "/tasks"), api("GET", "/nodes"), api("GET", "/health")]);
  tasks.clear();
  for (const t of ts) tasks.set(t.id, t);
  nodes.clear();
  for (const n of ns) nodes.set(n.name, n);
  document.getElementById("meta").textContent = `manager ${health.version}, scheduler ${health.scheduler}`;
  renderTasks();
  renderNodes();
  await loadServices();
}

// Applies one event line; events older than what a snapshot already shows are skipped.
function apply(ev) {
  if (typeof ev.index !== "number") return; // the stream's final {"error"} line
  lastIndex = ev.index;
  if (ev.kind === "task") {
    if (ev.removed) { tasks.delete(ev.id); renderTasks(); return; }
    const t = tasks.get(ev.id) || { id: ev.id, name: ev.name, created_ms: ev.at_ms, spec: { name: ev.name } };
    if (t.updated_ms && ev.at_ms < t.updated_ms) return;
    Object.assign(t, { state: ev.state, desired: ev.desired, node: ev.node, reason: ev.reason,
      exit_code: ev.exit_code, restart_count: ev.restart_count, generation: ev.generation, updated_ms: ev.at_ms });
    tasks.set(ev.id, t);
    renderTasks();
    refreshNodesSoon(); // their reservations and task counts follow task changes
  } else if (ev.kind === "node") {
    const n = nodes.get(ev.name);
    if (n) { n.state = ev.state; n.problem = ev.problem; renderNodes(); }
    else { api("GET", "/nodes").then((ns) => { for (const x of ns) nodes.set(x.name, x); renderNodes(); }).catch(() => {}); }
  } else if (ev.kind === "service") {
    loadServices();
  }
}

// Reloads the nodes at most once a second while task events arrive.
let nodesTimer = null;
function refreshNodesSoon() {
  if (nodesTimer) return;
  nodesTimer = setTimeout(async () => {
    try {
      for (const n of await api("GET", "/nodes")) nodes.set(n.name, n);
      renderNodes();
    } catch (e) {
      say(`nodes: ${e.message}`);
    }
    nodesTimer = null;
  }, 1000);
}

function setLive(on, text) {
  const b = document.getElementById("live");
  b.classList.toggle("on", on);
  b.textContent = text;
}

// Follows /events until it ends; `onOpen` runs (and is awaited) once the stream is open and
// before any event is applied.
async function follow(onOpen) {
  const path = lastIndex === null ? "/events" : `/events?index=${lastIndex}`;
  const resp = await fetch(path);
  if (resp.status === 410) {
    lastIndex = null; // the history no longer holds our place: start from a fresh snapshot
    throw new Error("the event history moved on; reloading");
  }
  if (!resp.ok || !resp.body) throw new Error(`events: HTTP ${resp.status}`);
  await onOpen();
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buffered = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffered += decoder.decode(value, { stream: true });
    let nl;
    while ((nl = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, nl).trim();
      buffered = buffered.slice(nl + 1);
      if (line) apply(JSON.parse(line));
    }
  }
}

// Loads everything and follows the events, again a second after the stream ends or breaks.
async function live() {
  for (;;) {
    try {
      // Follow first, then load: an event that lands during the load waits in the stream, and
      // one the snapshot already shows is skipped by its time.
      await follow(async () => {
        await loadAll();
        setLive(true, "live");
      });
      setLive(false, "reconnecting");
    } catch (e) {
      setLive(false, "offline");
      say(e.message);
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

async function stopTask(id) {
  say("");
  try {
    const t = await api("DELETE", `/tasks/${id}`);
    // The answer may be older than events that already arrived: keep the newer of the two.
    const seen = tasks.get(id);
    if (t && t.id && (!seen || !seen.updated_ms || t.updated_ms >= seen.updated_ms)) {
      tasks.set(t.id, Object.assign(seen || {}, t));
      renderTasks();
    }
  } catch (e) {
    say(`stop: ${e.message}`);
  }
}

async function scaleService(name, count) {
  say("");
  try {
    const s = await api("GET", `/services/${encodeURIComponent(name)}`);
    const body = { name, count, task: s.task || (s.spec && s.spec.task), update: s.update || (s.spec && s.spec.update),
      constraints: s.constraints || (s.spec && s.spec.constraints), publish: s.publish || (s.spec && s.spec.publish) };
    for (const k of Object.keys(body)) if (body[k] === undefined) delete body[k];
    await api("PUT", `/services/${encodeURIComponent(name)}`, body);
    await loadServices();
  } catch (e) {
    say(`scale: ${e.message}`);
  }
}

document.getElementById("run-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  say("");
  const name = document.getElementById("run-name").value.trim();
  const image = document.getElementById("run-image").value.trim();
  const cmd = document.getElementById("run-cmd").value.trim();
  const spec = { name, image };
  if (cmd) spec.cmd = cmd.split(/\s+/);
  try {
    const t = await api("POST", "/tasks", spec);
    if (!tasks.has(t.id)) { tasks.set(t.id, t); renderTasks(); }
    document.getElementById("run-name").value = "";
  } catch (e) {
    say(`run: ${e.message}`);
  }
});

live();
