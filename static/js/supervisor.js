// Supervisor live view over /ws/supervisor/: a `supervisor` snapshot of every queue and worker,
// then `queue` frames (one queue's status) and `workers` frames (the rows that changed). Longest
// waits count up locally between frames.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const queues = new Map();
  const workers = new Map();
  let skew = 0;
  const byPriority = (a, b) => (b.priority - a.priority) || a.id.localeCompare(b.id);
  function renderQueues() {
    $("sv-queues").querySelector("tbody").replaceChildren(...[...queues.values()].sort(byPriority).map((q) => el("tr", { "data-queue": q.id },
      el("td", {}, q.name), el("td", { class: "num" }, q.priority), el("td", { class: "num waiting-count" }, q.length),
      el("td", { class: "num longest-wait", "data-oldest": q.oldestEnqueuedAt || "" }, fmtDuration(q.longestWaitSeconds)),
      el("td", { class: "num" }, q.assignedJobs), el("td", { class: "num" }, q.servingWorkers), el("td", { class: "num" }, q.availableWorkers))));
    tick();
  }
  function renderWorkers() {
    const rows = [...workers.values()].sort((a, b) => a.id.localeCompare(b.id));
    $("sv-workers").querySelector("tbody").replaceChildren(...rows.map((w) => el("tr", { "data-worker": w.id },
      el("td", {}, w.id), el("td", {}, w.user || "–"), el("td", {}, el("span", { class: `pill ${w.state}` }, w.state)),
      el("td", { class: "num" }, `${Math.round(w.loadRatio * 100)}%`), el("td", { class: "num" }, w.offers),
      el("td", { class: "num" }, w.assignments), el("td", {}, w.queues.join(", ")))));
  }
  function stamp(m) {
    skew = new Date(m.serverTime) - new Date();
    $("updated").textContent = `updated ${new Date(m.serverTime).toLocaleTimeString()}`;
  }
  function tick() {
    const now = Date.now() + skew;
    for (const node of document.querySelectorAll(".longest-wait[data-oldest]")) {
      node.textContent = node.dataset.oldest ? fmtDuration((now - new Date(node.dataset.oldest).getTime()) / 1000) : "–";
    }
  }
  setInterval(tick, 1000);
  new LiveSocket("/ws/supervisor/", {
    onStatus: (s) => { $("connection").textContent = s; $("connection").className = `connection ${s}`; },
    onMessage: (m) => {
      if (m.type === "supervisor") {
        stamp(m);
        queues.clear(); workers.clear();
        for (const q of m.queues) queues.set(q.id, q);
        for (const w of m.workers) workers.set(w.id, w);
        renderQueues(); renderWorkers();
      } else if (m.type === "queue") {
        stamp(m);
        if (m.queue.deleted) queues.delete(m.queue.id); else queues.set(m.queue.id, m.queue);
        renderQueues();
      } else if (m.type === "workers") {
        stamp(m);
        for (const w of m.workers) { if (w.deleted) workers.delete(w.id); else workers.set(w.id, w); }
        renderWorkers();
      }
    },
  });
})();
