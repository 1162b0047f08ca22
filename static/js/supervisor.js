// Supervisor live view: every queue and worker, pushed over /ws/supervisor/.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  new LiveSocket("/ws/supervisor/", {
    onStatus: (s) => { $("connection").textContent = s; $("connection").className = `connection ${s}`; },
    onMessage: (m) => {
      if (m.type !== "supervisor") return;
      $("updated").textContent = `updated ${new Date(m.serverTime).toLocaleTimeString()}`;
      $("sv-queues").querySelector("tbody").replaceChildren(...m.queues.map((q) => el("tr", { "data-queue": q.id },
        el("td", {}, q.name), el("td", { class: "num" }, q.priority), el("td", { class: "num waiting-count" }, q.length),
        el("td", { class: "num" }, fmtDuration(q.longestWaitSeconds)), el("td", { class: "num" }, q.assignedJobs),
        el("td", { class: "num" }, q.servingWorkers), el("td", { class: "num" }, q.availableWorkers))));
      $("sv-workers").querySelector("tbody").replaceChildren(...m.workers.map((w) => el("tr", { "data-worker": w.id },
        el("td", {}, w.id), el("td", {}, w.user || "–"), el("td", {}, el("span", { class: `pill ${w.state}` }, w.state)),
        el("td", { class: "num" }, `${Math.round(w.loadRatio * 100)}%`), el("td", { class: "num" }, w.offers),
        el("td", { class: "num" }, w.assignments), el("td", {}, w.queues.join(", ")))));
    },
  });
})();
