// A websocket that reconnects by itself (back-off up to 10 s). Pushed frames carry a `topic`
// and a per-topic `seq`; a frame that skips a number, or a heartbeat naming a later `seq` than the
// page has seen, means something was missed, and the page asks for a full `refresh`.
"use strict";
window.LiveSocket = class LiveSocket {
  constructor(path, { onMessage, onStatus }) {
    this.path = path;
    this.onMessage = onMessage;
    this.onStatus = onStatus || (() => {});
    this.retry = 0;
    this.nextRequestId = 1;
    this.pending = new Map();
    this.seqs = new Map();
    this.resyncs = 0;
    this.connect();
  }
  connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    this.ws = new WebSocket(`${scheme}://${location.host}${this.path}`);
    this.seqs.clear();
    this.onStatus("connecting");
    this.ws.onopen = () => { this.retry = 0; this.onStatus("live"); };
    this.ws.onmessage = (event) => {
      const msg = JSON.parse(event.data);
      if (msg.type === "result" && this.pending.has(msg.requestId)) {
        this.pending.get(msg.requestId)(msg);
        this.pending.delete(msg.requestId);
      }
      this.track(msg);
      this.onMessage(msg);
    };
    this.ws.onclose = (event) => {
      if (event.code === 4401 || event.code === 4403) { this.onStatus("refused"); return; }
      this.onStatus("offline");
      const delay = Math.min(10000, 500 * 2 ** this.retry++);
      setTimeout(() => this.connect(), delay);
    };
  }
  track(msg) {
    let missed = false;
    if (msg.seqs) {
      for (const [topic, seq] of Object.entries(msg.seqs)) {
        const seen = this.seqs.get(topic);
        if (msg.type === "heartbeat") { if (seen !== undefined ? seq > seen : seq > 0) missed = true; }
        else if (seen === undefined || seq > seen) this.seqs.set(topic, seq);
      }
    }
    if (msg.topic && msg.seq) {
      const seen = this.seqs.get(msg.topic);
      if (seen !== undefined && msg.seq > seen + 1) missed = true;
      if (seen === undefined || msg.seq > seen) this.seqs.set(msg.topic, msg.seq);
    }
    if (missed) { this.resyncs++; this.send({ action: "refresh" }); }
  }
  send(message) {
    if (this.ws.readyState !== WebSocket.OPEN) return Promise.resolve({ ok: false, error: { code: "Offline", message: "Not connected; retrying." } });
    const requestId = this.nextRequestId++;
    return new Promise((resolve) => {
      if (message.action !== "refresh") this.pending.set(requestId, resolve); else resolve({ ok: true });
      this.ws.send(JSON.stringify({ ...message, requestId }));
    });
  }
};

window.fmtDuration = function (seconds) {
  if (seconds == null || isNaN(seconds)) return "–";
  seconds = Math.max(0, Math.floor(seconds));
  const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
  return (h ? `${h}:${String(m).padStart(2, "0")}` : `${m}`) + `:${String(s).padStart(2, "0")}`;
};

window.el = function (tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children.flat()) node.append(child instanceof Node ? child : document.createTextNode(String(child ?? "")));
  return node;
};
