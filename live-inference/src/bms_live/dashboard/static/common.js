/* BMS-Flux console: shared helpers (REST with the API key, the live stream with reconnect and
   polling fallback, small DOM helpers). Plain JavaScript, no build step, nothing from another host. */
"use strict";
(function () {
  const TOKEN_KEY = "bms-api-key";
  const POLL_MS = 3000;

  function token() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ""; } catch (e) { return ""; }
  }

  function notice(message) {
    const box = document.getElementById("notice");
    if (!box) return;
    if (!message) { box.hidden = true; box.textContent = ""; return; }
    box.textContent = message;
    box.hidden = false;
  }

  class ApiError extends Error {
    constructor(status, detail) { super(detail); this.status = status; this.detail = detail; }
  }

  async function api(path, options) {
    const opts = Object.assign({ method: "GET" }, options || {});
    const headers = Object.assign({ "Accept": "application/json" }, opts.headers || {});
    const key = token();
    if (key) headers["X-API-Key"] = key;
    if (opts.json !== undefined) {
      headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(opts.json);
      delete opts.json;
    }
    opts.headers = headers;
    const response = await fetch(path, opts);
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (response.status === 401) {
      notice("This service needs an API key: type it in the API key field at the top and press Save key.");
      const input = document.getElementById("token-input");
      if (input && document.activeElement !== input) input.focus();
      throw new ApiError(401, (body && body.detail) || "missing or wrong API key");
    }
    if (!response.ok) {
      throw new ApiError(response.status, (body && body.detail) || ("HTTP " + response.status));
    }
    return body;
  }

  function post(path, json) { return api(path, { method: "POST", json: json === undefined ? {} : json }); }

  /** Live updates: WS /v1/stream (device_id filters, ?token= when a key is set), reconnecting
      with backoff; while it is down, ``onPoll`` runs every few seconds instead. */
  function stream(options) {
    const onMessage = options.onMessage || function () {};
    const onPoll = options.onPoll || function () {};
    const devices = options.devices || [];
    const status = document.getElementById("live-status");
    let socket = null, delay = 500, pollTimer = null, stopped = false, everOpen = false;

    function setMode(mode, text) {
      if (!status) return;
      status.dataset.mode = mode;
      status.textContent = text;
    }
    function startPolling() {
      if (pollTimer !== null) return;
      setMode("polling", "polling every " + (POLL_MS / 1000) + " s (stream unavailable)");
      pollTimer = setInterval(function () { onPoll("poll"); }, POLL_MS);
    }
    function stopPolling() {
      if (pollTimer !== null) { clearInterval(pollTimer); pollTimer = null; }
    }
    function url() {
      const params = new URLSearchParams();
      devices.forEach(function (d) { params.append("device_id", d); });
      const key = token();
      if (key) params.set("token", key);
      const scheme = location.protocol === "https:" ? "wss:" : "ws:";
      const query = params.toString();
      return scheme + "//" + location.host + "/v1/stream" + (query ? "?" + query : "");
    }
    function connect() {
      if (stopped || !("WebSocket" in window)) { startPolling(); return; }
      try { socket = new WebSocket(url()); } catch (e) { startPolling(); schedule(); return; }
      socket.onopen = function () {
        delay = 500;
        const again = everOpen || pollTimer !== null;
        everOpen = true;
        stopPolling();
        setMode("live", "live");
        if (again) onPoll("reconnected");  // catch up on what happened while disconnected
      };
      socket.onmessage = function (event) {
        let message;
        try { message = JSON.parse(event.data); } catch (e) { return; }
        if (message.type === "dropped") { onPoll("dropped"); return; }
        onMessage(message);
      };
      socket.onclose = function () {
        socket = null;
        if (stopped) return;
        startPolling();
        schedule();
      };
      socket.onerror = function () { /* onclose follows */ };
    }
    function schedule() {
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, everOpen ? 10000 : 30000);
    }
    connect();
    return {
      stop: function () { stopped = true; stopPolling(); if (socket) socket.close(); },
      isLive: function () { return socket !== null && socket.readyState === 1; },
    };
  }

  /** Run ``fn`` at most once per ``ms``, trailing call included. */
  function debounce(fn, ms) {
    let timer = null, pending = false, running = false;
    async function run() {
      timer = null;
      if (running) { pending = true; return; }
      running = true;
      try { await fn(); } finally {
        running = false;
        if (pending) { pending = false; timer = setTimeout(run, ms); }
      }
    }
    return function () { if (timer === null) timer = setTimeout(run, ms); };
  }

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(function ([k, v]) {
      if (v === null || v === undefined || v === false) return;
      if (k === "text") node.textContent = v;
      else if (k === "class") node.className = v;
      else if (k === "dataset") Object.assign(node.dataset, v);
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    });
    (children || []).forEach(function (c) {
      if (c === null || c === undefined) return;
      node.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    });
    return node;
  }

  function fmt(value, digits, unit) {
    if (value === null || value === undefined || Number.isNaN(value)) return "–";
    const text = Number(value).toFixed(digits === undefined ? 2 : digits);
    return unit ? text + " " + unit : text;
  }
  function signed(value, digits, unit) {
    if (value === null || value === undefined || Number.isNaN(value)) return "–";
    const text = (value > 0 ? "+" : "") + Number(value).toFixed(digits === undefined ? 2 : digits);
    return unit ? text + " " + unit : text;
  }
  function when(iso) {
    if (!iso) return "–";
    const ms = Date.parse(iso);
    if (Number.isNaN(ms)) return String(iso);
    return new Date(ms).toISOString().slice(0, 19).replace("T", " ") + " UTC";
  }
  function badge(text, kind) { return el("span", { class: "badge " + (kind || text), text: String(text).replace("_", " ") }); }
  function cellHref(deviceId, cellNumber) {
    return "/dashboard/cell?device_id=" + encodeURIComponent(deviceId) + "&cell_number=" + encodeURIComponent(cellNumber);
  }
  function splitCellId(cellId) {
    const i = cellId.lastIndexOf("-");
    return { device: cellId.slice(0, i), number: Number(cellId.slice(i + 1)) };
  }
  /** Replace a table body's rows; ``empty`` is said in one row when there is none. */
  function fill(tbody, rows, empty) {
    if (!rows.length && empty) {
      const columns = tbody.parentNode.querySelectorAll("thead th").length || 1;
      rows = [el("tr", { class: "empty" }, [el("td", { colspan: String(columns), class: "hint", text: empty })])];
    }
    tbody.replaceChildren.apply(tbody, rows);
  }

  function initToken() {
    const form = document.getElementById("token-form");
    const input = document.getElementById("token-input");
    const clear = document.getElementById("token-clear");
    if (!form) return;
    if (token()) input.placeholder = "key saved for this tab";
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      try { sessionStorage.setItem(TOKEN_KEY, input.value.trim()); } catch (e) { /* storage refused */ }
      location.reload();
    });
    clear.addEventListener("click", function () {
      try { sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* storage refused */ }
      location.reload();
    });
  }

  function showError(container, error) {
    const text = error && error.detail ? error.detail : String(error);
    if (container) container.replaceChildren(el("p", { class: "message", text: text }));
    else notice(text);
  }

  initToken();
  window.BMS = { api, post, stream, debounce, el, fmt, signed, when, badge, cellHref, splitCellId, fill, notice, showError, token, ApiError };
})();
