// cliffguard console: everything comes from the admin API (the same one the CLI uses). No framework, no
// build step, no CDN. Data goes into the page as text only (no innerHTML with data).
"use strict";
const $ = (sel) => document.querySelector(sel);
const POLL_MS = 2000;
let token = sessionStorage.getItem("cliffguard-token");
let role = null;

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c ?? "")));
  return e;
}

async function api(method, path, body) {
  const r = await fetch(path, {
    method, headers: { "authorization": `Bearer ${token}`, "content-type": "application/json" },
    body: body ? JSON.stringify(body) : undefined, credentials: "omit", cache: "no-store",
  });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(data?.error?.message || `${r.status}`);
  return data;
}

// a report (monitoring/report.py, every text escaped by the server) in a new tab of this origin: it links
// /console/report.css and has no script, so it renders under this page's Content-Security-Policy
async function openReport(path) {
  const w = window.open("", "_blank");
  const r = await fetch(path, { headers: { "authorization": `Bearer ${token}` }, credentials: "omit", cache: "no-store" });
  const html = await r.text();
  if (!r.ok) { w.close(); toast(`report: ${r.status}`, true); return; }
  w.document.open(); w.document.write(html); w.document.close();
}

function reportLinks(a, versions) {
  const p = el("p", { class: "reports" });
  const enc = encodeURIComponent;
  // links, not buttons: reading a report changes nothing (read-only tokens get them too)
  const link = (action, path, text) => el("a", { href: "#", class: "link", "data-action": action, onclick: (e) => { e.preventDefault(); openReport(path); } }, text);
  if (a.rollout_id) p.append(link("rollout-report", `/admin/reports/rollout/${enc(a.rollout_id)}?format=html`, "Rollout report"));
  const cand = versions.find((v) => v.name === a.candidate);
  if (cand?.preflight) p.append(" · ", link("preflight-report", `/admin/reports/preflight/${enc(cand.preflight.run_id)}?format=html`,
    `Preflight report (${cand.preflight.passed ? "passed" : "failed: " + cand.preflight.failed.join(", ")})`));
  return p;
}

function toast(text, bad) {
  const t = $("#toast"); t.textContent = text; t.className = "show"; t.style.borderColor = bad ? "#a33" : "";
  setTimeout(() => { t.className = ""; }, 5000);
}

function ciBar(s) {
  // the interval on the whole scale [-1, 1]: band, estimate, tolerance line, zero line
  const W = 260, H = 18, x = (v) => Math.max(0, Math.min(W, (v + 1) / 2 * W));
  const ns = "http://www.w3.org/2000/svg", svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "ci"); svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const add = (tag, a) => { const n = document.createElementNS(ns, tag); for (const k in a) n.setAttribute(k, a[k]); svg.append(n); };
  add("line", { class: "zero", x1: x(0), x2: x(0), y1: 0, y2: H });
  add("rect", { class: "band", x: x(s.lower), y: 4, width: Math.max(1, x(s.upper) - x(s.lower)), height: H - 8 });
  add("circle", { class: "est", cx: x(s.estimate), cy: H / 2, r: 3 });
  add("line", { class: "tol", x1: x(-s.tolerance), x2: x(-s.tolerance), y1: 0, y2: H });
  add("line", { class: "gate", x1: x(-s.gate_margin), x2: x(-s.gate_margin), y1: 0, y2: H });
  const title = document.createElementNS(ns, "title");
  title.textContent = `estimate ${s.estimate.toFixed(3)} in [${s.lower.toFixed(3)}, ${s.upper.toFixed(3)}], next gate: lower above -${s.gate_margin.toFixed(3)}, rollback: upper below -${s.tolerance}`;
  svg.append(title);
  return svg;
}

function confirmAction(title, text, run) {
  const d = $("#confirm");
  $("#confirm-title").textContent = title; $("#confirm-text").textContent = text; $("#confirm-reason").value = "";
  d.onclose = async () => {
    if (d.returnValue !== "ok") return;
    try { await run($("#confirm-reason").value); toast(`${title}: done`); refresh(); }
    catch (e) { toast(`${title}: ${e.message}`, true); }
  };
  d.showModal();
}

function duration(s) {
  if (s === null || s === undefined) return "not on track";
  return s >= 3600 ? `${(s / 3600).toFixed(1)} h` : s >= 60 ? `${Math.round(s / 60)} min` : `${Math.round(s)} s`;
}

function aliasCard(a, stats, versions) {
  const card = el("article", { class: "card", "data-alias": a.name, "data-revision": a.revision });
  card.append(el("h2", {}, a.name, " ", el("span", { class: `phase ${a.phase}` }, a.phase)));
  card.append(el("p", {}, "stable ", el("strong", {}, a.stable), " · candidate ", el("strong", {}, a.candidate || "none"),
    ` · stage ${a.stage} · weight ${a.weight_pct}%`, a.pinned_categories.length ? ` · pinned to stable: ${a.pinned_categories.join(", ")}` : ""));
  card.append(reportLinks(a, versions));
  if (role === "admin") {
    const b = el("div", { class: "buttons" });
    // every action carries the revision this card shows: a second click, or a click on a stale page, is refused
    const op = (name, body) => (reason) => api("POST", `/admin/aliases/${encodeURIComponent(a.name)}/${name}`, { ...body, reason, expected_revision: a.revision });
    if (a.candidate || a.phase === "promoted") {
      const what = a.candidate ? `All traffic for ${a.name} goes to ${a.stable}; ${a.candidate} leaves traffic.`
        : `${a.previous_stable} becomes the stable version of ${a.name} again, replacing ${a.stable}.`;
      b.append(el("button", { class: "danger", "data-action": "rollback", onclick: () => confirmAction(`Roll back ${a.name}`, what, op("rollback", {})) }, "Rollback"));
    }
    if (a.candidate && ["shadow", "canary", "inconclusive", "paused"].includes(a.phase)) {
      b.append(el("button", { "data-action": "promote", onclick: () => confirmAction(`Promote ${a.name}`, `${a.candidate} moves to the next stage.`, op("promote", {})) }, "Promote"));
      if (a.phase === "paused") b.append(el("button", { "data-action": "resume", onclick: () => confirmAction(`Resume ${a.name}`, "The controller acts again.", op("resume", {})) }, "Resume"));
      else b.append(el("button", { "data-action": "pause", onclick: () => confirmAction(`Pause ${a.name}`, "The weight holds and the controller waits.", op("pause", {})) }, "Pause"));
    }
    const retained = versions.filter((v) => v.name !== a.stable && v.name !== a.candidate);
    if (retained.length) {
      const sel = el("select", { "data-action": "rollback-to-select" }, ...retained.map((v) => el("option", { value: v.name }, v.name + (v.retired_at ? " (retired)" : ""))));
      b.append(sel, el("button", { "data-action": "rollback-to", onclick: () => confirmAction(`Roll back ${a.name} to ${sel.value}`,
        `${sel.value} becomes the stable version of ${a.name}; ${a.candidate ? a.candidate + " leaves traffic; " : ""}${a.stable} is kept as previous stable.`,
        op("rollback", { to: sel.value })) }, "Rollback to"));
    }
    card.append(b);
  }
  const cats = Object.entries(stats?.categories || {});
  if (stats?.analysed) {
    card.append(el("p", { class: "decision" }, `next gate: lower bound above −${stats.next_gate.toFixed(3)} · time to it: ${duration(stats.eta_s)} · controller: ${stats.decision || "-"}`));
    for (const g of Object.values(stats.guards || {})) card.append(el("p", { class: g.tripped ? "guard tripped" : "guard" }, `guard ${g.detail}`));
    const served = Object.entries(stats.exposure || {});
    if (served.length) card.append(el("p", { class: "muted" }, "candidate served: " + served.map(([k, v]) => `${k} ${v}`).join(", ")));
  }
  if (cats.length) {
    const t = el("table", { class: "categories" }, el("thead", {}, el("tr", {}, ...["category", "pairs", "W/T/L", "estimate", "interval (gate dashed, tolerance red)", "to gate", "status"].map((h) => el("th", {}, h)))));
    const body = el("tbody");
    for (const [name, s] of cats) {
      const cls = s.status === "regressed" ? "status-regressed" : s.status === "gate met" ? "status-within" : "status-collecting";
      body.append(el("tr", { "data-category": name }, el("td", {}, name), el("td", {}, s.n), el("td", {}, `${s.wins}/${s.ties}/${s.losses}`),
        el("td", {}, `${s.estimate >= 0 ? "+" : ""}${s.estimate.toFixed(3)} [${s.lower.toFixed(3)}, ${s.upper.toFixed(3)}]`),
        el("td", {}, ciBar(s)), el("td", {}, s.pairs_to_gate === null ? "-" : `${s.pairs_to_gate} pairs, ${duration(s.eta_s)}`),
        el("td", { class: cls }, s.status + (s.muted ? " (muted)" : "") + (s.pinned ? " (pinned)" : ""))));
    }
    t.append(body); card.append(t);
  } else if (a.candidate) card.append(el("p", { class: "muted" }, stats?.note || "No judged pairs yet."));
  return card;
}

function numbers(e) {
  const served = Object.values(e.exposure || {}).reduce((x, y) => x + y, 0);
  const exposure = ["rolled_back", "aborted", "category_pinned"].includes(e.type) && served
    ? ` (the candidate had served ${e.category ? `${(e.exposure || {})[e.category] || 0} ${e.category} requests, ` : ""}${served} in all)` : "";
  if (!e.categories) return (e.reason || "") + exposure;
  const r = (v) => Number(v).toFixed(3);
  const parts = Object.entries(e.categories).map(([c, s]) => `${c}: ${r(s.estimate)} [${r(s.lower)}, ${r(s.upper)}] n=${s.n}`);
  return `${e.reason || ""}${exposure} — ${parts.join("; ")}`;
}

async function refresh() {
  if (!token) return;
  try {
    const [state, events, vers] = await Promise.all([api("GET", "/admin/state"), api("GET", "/admin/events?count=15"), api("GET", "/admin/versions")]);
    const stats = {};
    await Promise.all(state.aliases.filter((a) => a.candidate).map(async (a) => { stats[a.name] = await api("GET", `/admin/aliases/${encodeURIComponent(a.name)}/stats`); }));
    $("#aliases").replaceChildren(...state.aliases.map((a) => aliasCard(a, stats[a.name], vers.versions)));
    $("#events tbody").replaceChildren(...events.events.map((e) => el("tr", {}, el("td", {}, new Date(e.ts * 1000).toLocaleTimeString()),
      el("td", {}, e.type + (e.alias ? ` (${e.alias})` : "")), el("td", {}, e.by === "controller" ? "controller" : (e.actor || "")), el("td", {}, numbers(e)))));
    $("#versions tbody").replaceChildren(...vers.versions.map((v) => el("tr", {}, el("td", {}, v.name), el("td", {}, v.model),
      el("td", {}, v.in_use ? "yes" : "no"), el("td", {}, v.retired_at ? `${new Date(v.retired_at * 1000).toLocaleString()} (${v.retired_reason})` : "-"),
      el("td", {}, v.prune_after ? new Date(v.prune_after * 1000).toLocaleDateString() : "-"),
      el("td", {}, Object.entries(v.metadata).map(([k, x]) => `${k}=${x}`).join(", ")))));
    $("#live").textContent = `live · revision ${state.revision}${state.redis_ok ? "" : " · redis unreachable (last known state)"}`;
  } catch (e) {
    $("#live").textContent = `error: ${e.message}`;
  }
}

async function signIn(t) {
  token = t;
  const me = await api("GET", "/admin/whoami");
  role = me.role; sessionStorage.setItem("cliffguard-token", t);
  $("#who").textContent = `${me.name} (${me.role === "admin" ? "admin" : "read-only"})`;
  $("#login").hidden = true; $("#signout").hidden = false;
  refresh();
}

document.addEventListener("DOMContentLoaded", () => {
  $("#login").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try { await signIn($("#token").value.trim()); } catch (e) { token = null; $("#login-error").textContent = e.message; }
  });
  $("#signout").addEventListener("click", () => { sessionStorage.removeItem("cliffguard-token"); location.reload(); });
  if (token) signIn(token).catch(() => { token = null; $("#login").hidden = false; });
  else $("#login").hidden = false;
  setInterval(refresh, POLL_MS);
});
