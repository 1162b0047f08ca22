// The customer's waiting room: live position and time waited over /ws/wait/<token>/.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const token = $("waiting").dataset.token;
  let info = null, skew = 0;
  const socket = new LiveSocket(`/ws/wait/${token}/`, {
    onStatus: (s) => { if (s === "refused") $("status-text").textContent = "This link is no longer valid."; },
    onMessage: (msg) => {
      if (msg.type === "waiting") render(msg);
      else if (msg.type === "result" && !msg.ok) $("status-text").textContent = msg.error.message;
    },
  });
  function render(m) {
    info = m; skew = new Date(m.serverTime) - new Date();
    $("queue-name").textContent = m.queueName ? `Queue: ${m.queueName}` : "";
    const leave = $("leave");
    if (m.status === "queued") {
      $("headline").textContent = m.position === 1 ? "You are next" : "You are in the queue";
      $("position").textContent = m.position;
      $("status-text").textContent = `${m.position - 1} ahead of you, ${m.queueLength} waiting in all.`;
      leave.hidden = false;
    } else if (["assigned", "completed", "closed"].includes(m.status)) {
      $("headline").textContent = "An agent is with you";
      $("position").textContent = "✓";
      $("status-text").textContent = "You have been connected to an agent.";
      leave.hidden = true;
    } else if (m.status === "cancelled" || m.status === "gone") {
      $("headline").textContent = "You left the queue";
      $("position").textContent = "–";
      $("status-text").textContent = "You are no longer waiting.";
      leave.hidden = true;
    } else {
      $("status-text").textContent = "Please wait…";
    }
    tick();
  }
  function tick() {
    if (!info || !info.enqueuedAt || info.status !== "queued") return;
    $("waited").textContent = fmtDuration((Date.now() + skew - new Date(info.enqueuedAt).getTime()) / 1000);
  }
  setInterval(tick, 1000);
  $("leave").addEventListener("click", () => socket.send({ action: "leave" }));
})();
