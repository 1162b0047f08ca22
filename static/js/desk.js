// The agent desk: renders the frames the server pushes over /ws/desk/ — `desk` (this agent's
// worker, offers, customers, served queues), `queue` (one queue's status, shared with every
// desk serving it) and `catalog` (queues one may serve) — and sends actions. Waits and
// countdowns count locally between frames.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  let state = null;
  const queues = new Map();
  let catalog = [];
  let clockSkew = 0; // server time − local time, ms
  const seenOffers = new Set();
  // What the agent is typing survives re-renders (a push arrives every time anything changes).
  const drafts = new Map();
  const draftInput = (key, attrs) => {
    const input = el("input", { type: "text", ...attrs, "data-draft": key, value: drafts.has(key) ? drafts.get(key) : (attrs.value ?? "") });
    input.addEventListener("input", () => drafts.set(key, input.value));
    return input;
  };

  const notice = (text, kind = "info") => {
    const box = $("notice");
    box.textContent = text;
    box.className = `notice ${kind}`;
    if (text) setTimeout(() => { if (box.textContent === text) box.textContent = ""; }, 6000);
  };

  const socket = new LiveSocket("/ws/desk/", {
    onStatus: (status) => {
      const label = { live: "live", connecting: "connecting…", offline: "offline – reconnecting", refused: "not signed in" }[status];
      $("connection").textContent = label;
      $("connection").className = `connection ${status}`;
    },
    onMessage: (msg) => {
      if (msg.type === "desk") { clockSkew = new Date(msg.serverTime) - new Date(); render(msg); }
      else if (msg.type === "queue") {
        if (msg.queue.deleted) queues.delete(msg.queue.id); else queues.set(msg.queue.id, msg.queue);
        renderQueues();
      } else if (msg.type === "catalog") { catalog = msg.queues; renderQueues(); }
      else if (msg.type === "result" && !msg.ok) {
        notice(msg.error.code === "NoJobWaiting" ? "No customer waiting." : msg.error.message, msg.error.code === "NoJobWaiting" ? "info" : "error");
      }
    },
  });

  async function act(action, args = {}, okText = "") {
    const result = await socket.send({ action, ...args });
    if (result.ok && okText) notice(okText, "ok");
    return result;
  }

  function ring() {
    document.title = "🔔 Ringing · Desk";
    try {
      const ctx = new (window.AudioContext || window.webkitAudioContext)();
      const osc = ctx.createOscillator(); const gain = ctx.createGain();
      osc.frequency.value = 660; gain.gain.value = 0.08;
      osc.connect(gain); gain.connect(ctx.destination);
      osc.start(); osc.stop(ctx.currentTime + 0.4);
    } catch (e) { /* audio may be blocked until the page is clicked; the visual ring remains */ }
  }

  function labelList(labels) {
    const entries = Object.entries(labels || {}).filter(([k]) => k !== "Id");
    if (!entries.length) return el("span", { class: "muted" }, "no labels");
    return el("span", { class: "labels" }, entries.map(([k, v]) => el("span", { class: "label" }, `${k}: ${v}`)));
  }

  function render(s) {
    if (!s.worker) { $("load").textContent = "This worker no longer exists."; return; }
    state = s;
    const w = s.worker;
    $("mode-auto").classList.toggle("on", w.availableForOffers);
    $("mode-dnd").classList.toggle("on", !w.availableForOffers);
    $("mode-auto").setAttribute("aria-pressed", w.availableForOffers);
    $("mode-dnd").setAttribute("aria-pressed", !w.availableForOffers);
    $("request-next").hidden = w.availableForOffers;
    // Set by the router, not the agent: say why, until the agent changes their mode.
    const missed = w.dndReason === "missedOffer";
    $("dnd-reason").hidden = !missed;
    $("dnd-reason").textContent = missed
      ? `You missed an offer, so you were set to Do not disturb (at ${new Date(w.missedOfferAt).toLocaleTimeString()}). Press Auto-assign when you are ready for the next customer.`
      : "";
    $("load").textContent = `${w.state} · load ${Math.round(w.loadRatio * 100)}%`;

    const offers = $("offers");
    offers.replaceChildren();
    let fresh = false;
    for (const o of s.offers) {
      if (!seenOffers.has(o.offerId)) { seenOffers.add(o.offerId); fresh = true; }
      offers.append(el("article", { class: "card offer ringing", "data-offer": o.offerId },
        el("header", {}, el("strong", {}, o.channelReference || o.jobId), " ", el("span", { class: "muted" }, `${o.channelId} · ${o.queueId} · priority ${o.priority}`)),
        labelList(o.labels),
        el("p", { class: "countdown", "data-expires": o.expiresAt || "" }, ""),
        el("div", { class: "actions" },
          el("button", { class: "primary", type: "button", onclick: () => act("accept", { offerId: o.offerId }, "Accepted.") }, "Accept"),
          el("button", { type: "button", onclick: () => act("decline", { offerId: o.offerId }, "Declined.") }, "Decline")),
      ));
    }
    if (!s.offers.length) { offers.append(el("p", { class: "empty" }, "No offers right now.")); document.title = "Desk"; }
    $("ringing-count").textContent = s.offers.length ? `(${s.offers.length})` : "";
    if (fresh) ring();

    const list = $("assignments");
    const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.draft : null;
    list.replaceChildren();
    for (const a of s.assignments) {
      const wrapUp = a.status === "completed";
      const note = draftInput(`${a.assignmentId}:${a.status}:note`, { placeholder: wrapUp ? "closing note (optional)" : "note (optional)", "aria-label": "note" });
      const disposition = draftInput(`${a.assignmentId}:disposition`, { placeholder: "disposition code", "aria-label": "disposition code", value: "Resolved" });
      list.append(el("article", { class: `card assignment ${wrapUp ? "wrap-up" : ""}`, "data-job": a.jobId },
        el("header", {}, el("strong", {}, a.channelReference || a.jobId), " ", el("span", { class: "muted" }, `${a.channelId} · ${a.queueId}`),
          el("span", { class: "pill" }, wrapUp ? (a.closeAt ? "closing" : "wrap-up") : "in progress")),
        labelList(a.labels),
        el("p", { class: "muted" }, `waited ${fmtDuration(a.waitedSeconds)} before assignment · assigned `, el("span", { class: "since", "data-since": a.assignedAt }, "")),
        el("div", { class: "actions" },
          note,
          wrapUp ? disposition : "",
          wrapUp
            ? el("button", { class: "primary", type: "button", disabled: !!a.closeAt, onclick: () => act("close", { jobId: a.jobId, assignmentId: a.assignmentId, dispositionCode: disposition.value, note: note.value }, "Closed.") }, "Close")
            : el("button", { class: "primary", type: "button", onclick: () => act("complete", { jobId: a.jobId, assignmentId: a.assignmentId, note: note.value }, "Completed: wrap up, then close.") }, "Complete")),
      ));
    }
    if (!s.assignments.length) list.append(el("p", { class: "empty" }, "Nobody assigned."));
    if (focused) { const again = list.querySelector(`[data-draft="${CSS.escape(focused)}"]`); if (again) { again.focus(); again.setSelectionRange(again.value.length, again.value.length); } }

    renderQueues();
  }

  function renderQueues() {
    const body = $("queues").querySelector("tbody");
    body.replaceChildren();
    const mine = state ? state.myQueues : [];
    for (const { id, myPriority } of mine) {
      const q = queues.get(id);
      if (!q) continue;
      body.append(el("tr", { "data-queue": q.id, title: q.description || "" },
        el("td", {}, q.name, q.priority ? el("span", { class: "muted" }, ` (queue priority ${q.priority})`) : "",
          q.description ? el("div", { class: "muted small" }, q.description) : ""),
        el("td", { class: "num waiting-count" }, q.length),
        el("td", { class: "num longest-wait", "data-oldest": q.oldestEnqueuedAt || "" }, fmtDuration(q.longestWaitSeconds)),
        el("td", { class: "num" }, q.assignedJobs),
        el("td", { class: "num agents-available" }, `${q.servingWorkers} (${q.availableWorkers})`),
        el("td", { class: "num" }, myPriority),
        el("td", {}, el("button", { type: "button", class: "link", onclick: () => act("stopServing", { queueId: q.id }, `Stopped serving ${q.name}.`) }, "Stop serving")),
      ));
    }
    if (!mine.length) body.append(el("tr", {}, el("td", { colspan: 7, class: "empty" }, "You serve no queue.")));
    const select = $("serve-queue");
    const chosen = select.value;
    select.replaceChildren(...catalog.map((q) => el("option", { value: q.id, title: q.description || "" },
      `${q.name} · priority ${q.priority}${q.description ? " · " + q.description : ""}`)));
    if (chosen) select.value = chosen;
    tick();
  }

  function tick() {
    const now = Date.now() + clockSkew;
    for (const node of document.querySelectorAll(".countdown[data-expires]")) {
      const expires = node.dataset.expires ? new Date(node.dataset.expires).getTime() : null;
      node.textContent = expires ? `rings for ${fmtDuration((expires - now) / 1000)}` : "";
    }
    for (const node of document.querySelectorAll(".since[data-since]")) {
      node.textContent = `${fmtDuration((now - new Date(node.dataset.since).getTime()) / 1000)} ago`;
    }
    for (const node of document.querySelectorAll(".longest-wait[data-oldest]")) {
      node.textContent = node.dataset.oldest ? fmtDuration((now - new Date(node.dataset.oldest).getTime()) / 1000) : "–";
    }
  }
  setInterval(tick, 1000);

  $("mode-auto").addEventListener("click", () => act("setAvailability", { available: true }, "Auto-assign: offers will ring here."));
  $("mode-dnd").addEventListener("click", () => act("setAvailability", { available: false }, "Do not disturb."));
  $("request-next").addEventListener("click", () => act("requestJob", {}, "Customer assigned."));
  $("serve-form").addEventListener("submit", (e) => {
    e.preventDefault();
    act("startServing", { queueId: $("serve-queue").value, priority: Number($("serve-priority").value || 0) }, "Serving.");
  });
  document.addEventListener("keydown", (e) => {
    if (e.target.matches("input, textarea, select") || e.ctrlKey || e.metaKey || e.altKey || !state) return;
    const first = state.offers[0];
    if (e.key === "a" && first) act("accept", { offerId: first.offerId }, "Accepted.");
    else if (e.key === "d" && first) act("decline", { offerId: first.offerId }, "Declined.");
    else if (e.key === "n" && !state.worker.availableForOffers) act("requestJob", {}, "Customer assigned.");
    else if (e.key === "m") act("setAvailability", { available: !state.worker.availableForOffers });
  });
})();
