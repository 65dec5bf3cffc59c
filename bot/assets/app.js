// ccrm dashboard: the only script. Pages are rendered by the server; this adds live
// updates (one EventSource per page, resumed from the last row id seen), background
// form posts, history on scroll, and small conveniences. Every piece of HTML it inserts
// was rendered and escaped (or sanitised) by the server; text from users and the model
// never goes through innerHTML here.
"use strict";
(() => {
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";
  const body = document.body;
  const log = document.getElementById("log");
  const conn = document.getElementById("conn");
  // The newest event row id this page holds: the live stream's cursor.
  let lastSeen = log ? Number(log.dataset.last || 0) : 0;

  // ---- times in local time ----
  function localTimes(root) {
    for (const t of root.querySelectorAll("time[data-ts]")) {
      const d = new Date(Number(t.dataset.ts));
      if (!isNaN(d)) { t.textContent = d.toLocaleTimeString(); t.title = d.toLocaleString(); }
    }
  }

  // ---- background form posts ----
  function statusOf(form) { return form.querySelector(".status"); }
  async function submitAsync(form, submitter) {
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) return;
    // A form with file inputs goes as multipart (the browser sets the boundary).
    const fd = new FormData(form, submitter);
    const data = form.enctype === "multipart/form-data" ? fd : new URLSearchParams(fd);
    const status = statusOf(form);
    const buttons = form.querySelectorAll("button");
    buttons.forEach((b) => { b.disabled = true; });
    if (status) { status.textContent = "sending…"; status.classList.remove("bad"); }
    try {
      const res = await fetch(form.action, {
        method: "POST", body: data, credentials: "same-origin",
        headers: { "X-CSRF-Token": csrf, "X-Requested-With": "fetch", "Accept": "application/json" },
      });
      if (res.status === 401) { window.location.assign("/login?next=" + encodeURIComponent(location.pathname)); return; }
      const out = await res.json().catch(() => ({}));
      if (!res.ok || out.error) {
        const msg = (out.error && out.error.message) || ("failed: HTTP " + res.status);
        if (status) { status.textContent = msg; status.classList.add("bad"); }
        return;
      }
      if (out.location) { window.location.assign(out.location); return; }
      if (status) status.textContent = out.message || "done";
      if (form.hasAttribute("data-reset")) {
        const t = form.querySelector("textarea"); if (t) t.value = "";
        for (const f of form.querySelectorAll("input[type=file]")) f.value = "";
      }
      refreshSoon();
    } catch (e) {
      if (status) { status.textContent = "not sent: the bot cannot be reached"; status.classList.add("bad"); }
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  }
  document.addEventListener("submit", (e) => {
    const form = e.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-async")) return;
    e.preventDefault();
    submitAsync(form, e.submitter);
  });
  // Enter sends the prompt; Shift+Enter adds a line.
  document.addEventListener("keydown", (e) => {
    const t = e.target;
    if (t instanceof HTMLTextAreaElement && t.form && t.form.id === "prompt" &&
        e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      if (t.value.trim()) t.form.requestSubmit();
    }
  });
  // Filters apply on change.
  for (const f of document.querySelectorAll("form[data-autosubmit]")) {
    f.addEventListener("change", () => f.requestSubmit());
  }
  // Copy buttons.
  document.addEventListener("click", async (e) => {
    const b = e.target.closest && e.target.closest("button[data-copy]");
    if (!b) return;
    const src = document.getElementById(b.dataset.copy);
    if (!src) return;
    try { await navigator.clipboard.writeText(src.textContent); b.textContent = "Copied"; }
    catch (_) { const r = document.createRange(); r.selectNodeContents(src); const s = getSelection(); s.removeAllRanges(); s.addRange(r); b.textContent = "Selected"; }
    setTimeout(() => { b.textContent = "Copy"; }, 1500);
  });

  // ---- partial refreshes (lists, session head, title count) ----
  let refreshTimer = 0;
  function refreshSoon() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(refreshPartials, 120);
  }
  async function refreshPartials() {
    for (const el of document.querySelectorAll("[data-partial]")) {
      // Never replace a form someone is typing in.
      if (el.contains(document.activeElement) && document.activeElement.matches("input[type=text], textarea")) continue;
      try {
        const res = await fetch(el.dataset.partial, { credentials: "same-origin", headers: { "Accept": "text/html" } });
        if (res.status === 401) { window.location.assign("/login"); return; }
        if (!res.ok) continue;
        el.innerHTML = await res.text();
        localTimes(el);
      } catch (_) { /* offline: the next event tries again */ }
    }
    updatePending();
  }
  function updatePending(n) {
    if (n === undefined) {
      const holder = document.querySelector("[data-pending]");
      if (!holder) { fetchPending(); return; }
      n = Number(holder.dataset.pending || 0);
    }
    const base = body.dataset.title || document.title;
    document.title = (n > 0 ? "(" + n + ") " : "") + base;
    const nav = document.getElementById("nav-pending");
    if (nav) { nav.textContent = String(n); nav.dataset.n = String(n); }
  }
  async function fetchPending() {
    try {
      const res = await fetch("/partials/pending", { credentials: "same-origin" });
      if (res.status === 401) { window.location.assign("/login"); return; }
      if (res.ok) updatePending((await res.json()).pending);
    } catch (_) { /* offline */ }
  }

  // ---- the conversation ----
  const BLOCK_END = new Set(["assistant_text", "tool_use", "turn_result"]);
  const HEAD_KINDS = new Set(["state", "prompt", "turn_started", "turn_result", "permission_request",
    "permission_decision", "question", "answer", "interrupted", "attached", "detached"]);
  function nearBottom() { return window.innerHeight + window.scrollY >= document.body.scrollHeight - 160; }
  function scrollToEnd() { window.scrollTo(0, document.body.scrollHeight); }
  function streamBlock() {
    let s = document.getElementById("stream");
    if (!s) { s = document.createElement("div"); s.id = "stream"; s.className = "stream"; log.append(s); }
    return s;
  }
  function endStream() { document.getElementById("stream")?.remove(); }
  function markDecided(approval, text) {
    for (const card of log.querySelectorAll(".card[data-approval]")) {
      if (card.dataset.approval !== approval) continue;
      card.classList.add("decided");
      const actions = card.querySelector(".actions");
      if (actions) { const p = document.createElement("p"); p.className = "outcome"; p.textContent = text; actions.replaceChildren(p); }
    }
  }
  function fragment(html) {
    const t = document.createElement("template");
    t.innerHTML = html;
    return t.content.firstElementChild;
  }
  function addEvent(id, html) {
    if (!log || !(id > lastSeen)) return;
    lastSeen = id;
    const node = fragment(html);
    if (!node || document.getElementById(node.id)) return;
    const stick = nearBottom();
    const kind = node.dataset.kind;
    if (kind === "assistant_delta") {
      streamBlock().append(node);
    } else {
      if (BLOCK_END.has(kind)) endStream();
      let placed = false;
      if (kind === "tool_result") {
        for (const tool of log.querySelectorAll(".ev-tool_use")) {
          if (tool.dataset.toolUseId === node.dataset.for) {
            tool.querySelector(".result-slot")?.replaceChildren(node);
            placed = true;
          }
        }
      }
      if ((kind === "permission_decision" || kind === "answer") && node.dataset.approval) {
        markDecided(node.dataset.approval, node.dataset.outcome || "decided");
      }
      if (!placed) {
        const stream = document.getElementById("stream");
        if (stream) stream.before(node); else log.append(node);
      }
      localTimes(node);
      if (HEAD_KINDS.has(kind)) refreshSoon();
    }
    if (stick) scrollToEnd();
  }

  // Older history as the reader scrolls up.
  const older = document.getElementById("older");
  let loadingOlder = false;
  async function loadOlder() {
    const sentinel = document.getElementById("older");
    if (!sentinel || loadingOlder) return;
    loadingOlder = true;
    let loaded = false;
    try {
      const res = await fetch("/sessions/" + log.dataset.session + "/events?before=" + sentinel.dataset.before,
        { credentials: "same-origin", headers: { "Accept": "text/html" } });
      if (!res.ok) return;
      const page = fragment(await res.text());
      if (!page) return;
      const height = document.body.scrollHeight, top = window.scrollY;
      for (const n of page.querySelectorAll(".ev[id]")) { if (document.getElementById(n.id)) n.remove(); }
      localTimes(page);
      sentinel.after(...page.childNodes);
      if (page.dataset.more === "true") {
        sentinel.dataset.before = page.dataset.first;
      } else {
        const start = document.createElement("p");
        start.className = "start muted"; start.id = "start"; start.textContent = "Start of the session";
        sentinel.replaceWith(start);
      }
      window.scrollTo(0, top + document.body.scrollHeight - height);
      loaded = true;
    } catch (_) {
      /* offline: scrolling again retries */
    } finally {
      loadingOlder = false;
    }
    // Still in view (a page of mostly hidden events): the observer will not fire again.
    const again = document.getElementById("older");
    if (loaded && again && again.getBoundingClientRect().bottom > -400) setTimeout(loadOlder, 0);
  }
  if (log) {
    localTimes(log);
    // A reply still streaming when the page was rendered continues in the stream block.
    const loose = log.querySelectorAll(":scope > .ev-assistant_delta");
    if (loose.length) streamBlock().append(...loose);
    scrollToEnd();
    if (older) {
      older.querySelector("button")?.addEventListener("click", loadOlder);
      // Watch only after the first paint at the bottom, so opening a page loads nothing more.
      requestAnimationFrame(() => {
        new IntersectionObserver((entries) => {
          if (entries.some((e) => e.isIntersecting)) loadOlder();
        }, { rootMargin: "400px 0px 0px 0px" }).observe(older);
      });
    }
    // The frame after the first one at the bottom has been painted: "newest events shown".
    requestAnimationFrame(() => requestAnimationFrame(() => { window.ccrmReady = performance.now(); }));
  } else {
    localTimes(document);
  }

  // ---- the live stream, with reconnect ----
  let es = null, retryMs = 500, retryTimer = 0;
  function setConn(up) {
    if (!conn) return;
    conn.textContent = up ? "live" : "reconnecting…";
    conn.classList.toggle("down", !up);
  }
  function liveUrl() {
    const url = new URL(body.dataset.live, location.href);
    if (log) url.searchParams.set("after", String(lastSeen));
    return url.pathname + url.search;
  }
  function connect() {
    if (!body.dataset.live) return;
    es = new EventSource(liveUrl());
    es.addEventListener("open", () => {
      retryMs = 500;
      setConn(true);
      refreshSoon();
    });
    es.addEventListener("ev", (e) => addEvent(Number(e.lastEventId), e.data));
    es.addEventListener("note", () => refreshSoon());
    es.addEventListener("error", () => {
      setConn(false);
      // The browser retries by itself while the stream is CONNECTING; once it gives up
      // (CLOSED), start a new one from our own cursor, checking the login first.
      if (es.readyState === EventSource.CLOSED) {
        es.close();
        clearTimeout(retryTimer);
        retryTimer = setTimeout(async () => {
          try {
            const res = await fetch("/partials/pending", { credentials: "same-origin" });
            if (res.status === 401) { window.location.assign("/login?next=" + encodeURIComponent(location.pathname)); return; }
          } catch (_) { /* still down */ }
          connect();
        }, retryMs);
        retryMs = Math.min(retryMs * 2, 5000);
      }
    });
  }
  connect();
  // Lists also refresh now and then (daemon last-seen times, offline daemons).
  if (document.querySelector("[data-partial]")) setInterval(refreshPartials, 15000);
  window.ccrmLastSeen = () => lastSeen;
})();
