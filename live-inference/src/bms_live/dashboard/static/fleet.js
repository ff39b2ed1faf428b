/* Fleet overview: every string, every cell's deviation from its peers, dead and at-risk cells first. */
"use strict";
(function () {
  const B = window.BMS;
  const METRICS = {
    CellVoltage: { label: "Voltage", unit: "mV", scale: 1000, digits: 0 },
    CellTemperature: { label: "Temperature", unit: "°C", scale: 1, digits: 1 },
    CellSpecificGravity: { label: "Specific gravity", unit: "points", scale: 1000, digits: 0 },
  };
  const URGENT = new Set(["dead", "at_risk", "watch", "alerting"]);
  let metric = "CellVoltage";
  let latest = null;

  function devText(row, name) {
    const m = METRICS[name];
    const v = row.deviation[name];
    return v === null ? "–" : B.signed(v * m.scale, m.digits, m.unit);
  }
  function riskText(row) {
    if (row.failure_probability === null || row.failure_probability === undefined) return row.risk_band || "not scored";
    return (row.risk_band || "") + " " + B.fmt(row.failure_probability * 100, 0) + " %";
  }
  function cellLink(row) {
    return B.el("a", { href: B.cellHref(row.device_id, row.cell_number), text: row.cell_id });
  }

  function renderSummary(fleet, data) {
    const count = function (status) { return data.cells.filter(function (c) { return c.status === status; }).length; };
    document.getElementById("count-devices").textContent = fleet.devices;
    document.getElementById("count-cells").textContent = fleet.cells;
    document.getElementById("count-dead").textContent = count("dead");
    document.getElementById("count-at-risk").textContent = count("at_risk");
    document.getElementById("count-open-alerts").textContent = fleet.open_alerts;
    document.getElementById("count-anomalies").textContent = fleet.anomalies_last_24h;
    document.getElementById("last-reading").textContent = B.when(fleet.last_reading);
  }

  const ATTENTION_ROWS = 20;
  let showAll = false;
  function renderAttention(data) {
    const all = data.cells.filter(function (c) { return URGENT.has(c.status) || c.open_alerts > 0; });
    const rows = showAll ? all : all.slice(0, ATTENTION_ROWS);
    const more = document.getElementById("attention-more");
    more.hidden = all.length <= ATTENTION_ROWS;
    more.textContent = showAll ? "Show the first " + ATTENTION_ROWS + " only" : "Show all " + all.length + " cells needing attention";
    more.setAttribute("aria-expanded", String(showAll));
    B.fill(document.querySelector("#attention-table tbody"), rows.map(function (row) {
      return B.el("tr", { dataset: { cellId: row.cell_id, status: row.status } }, [
        B.el("th", { scope: "row" }, [cellLink(row)]),
        B.el("td", {}, [B.badge(row.status)]),
        B.el("td", { title: row.risk_reason || "" , text: riskText(row) }),
        B.el("td", { class: "num", text: row.open_alerts }),
        B.el("td", { class: "num", text: row.anomalies_24h }),
        B.el("td", { class: "num", text: devText(row, "CellVoltage") }),
        B.el("td", { class: "num", text: devText(row, "CellTemperature") }),
        B.el("td", { class: "num", text: devText(row, "CellSpecificGravity") }),
      ]);
    }));
    document.getElementById("attention-empty").hidden = all.length > 0;
  }

  function renderDevices(data) {
    B.fill(document.querySelector("#devices-table tbody"), data.devices.map(function (d) {
      const s = d.status_counts;
      return B.el("tr", { dataset: { deviceId: d.device_id } }, [
        B.el("th", { scope: "row", text: d.device_id }),
        B.el("td", { class: "num", text: d.cells }),
        B.el("td", { class: "num", text: s.dead }),
        B.el("td", { class: "num", text: s.at_risk }),
        B.el("td", { class: "num", text: s.watch }),
        B.el("td", { class: "num", text: d.open_alerts }),
        B.el("td", { class: "num", text: d.anomalies_24h }),
        B.el("td", { text: d.has_specific_gravity ? "yes" : "no (VRLA)" }),
        B.el("td", { text: B.when(d.last_reading) }),
      ]);
    }));
  }

  function renderCells(data) {
    const filter = document.getElementById("cell-filter").value.trim().toLowerCase();
    const rows = data.cells.filter(function (c) { return !filter || c.cell_id.toLowerCase().includes(filter); });
    B.fill(document.querySelector("#cells-table tbody"), rows.map(function (row) {
      return B.el("tr", { dataset: { cellId: row.cell_id } }, [
        B.el("th", { scope: "row" }, [cellLink(row)]),
        B.el("td", {}, [B.badge(row.status)]),
        B.el("td", { class: "num", text: B.fmt(row.last.CellVoltage, 3) }),
        B.el("td", { class: "num", text: B.fmt(row.last.CellTemperature, 1) }),
        B.el("td", { class: "num", text: B.fmt(row.last.CellSpecificGravity, 3) }),
        B.el("td", { text: B.when(row.last_reading) }),
      ]);
    }));
  }

  function renderHeatmap(data) {
    const box = document.getElementById("heatmap");
    const m = METRICS[metric];
    document.querySelectorAll("#metric-buttons button").forEach(function (b) {
      b.setAttribute("aria-pressed", String(b.dataset.metric === metric));
      const info = data.metrics[b.dataset.metric];
      b.disabled = !!info && !info.available;
      if (b.disabled) b.title = "no cell of the fleet measures it (VRLA cells have no specific gravity)";
    });
    if (!data.cells.length) { box.replaceChildren(B.el("p", { class: "message", text: "No cell stored yet: ingest data first." })); return; }
    if (!window.Plotly) { box.replaceChildren(B.el("p", { class: "message", text: "plotly.js did not load." })); return; }
    const devices = data.devices.map(function (d) { return d.device_id; });
    const numbers = Array.from(new Set(data.cells.map(function (c) { return c.cell_number; }))).sort(function (a, b) { return a - b; });
    const col = new Map(numbers.map(function (n, i) { return [n, i]; }));
    const row = new Map(devices.map(function (d, i) { return [d, i]; }));
    const z = devices.map(function () { return numbers.map(function () { return null; }); });
    const text = devices.map(function () { return numbers.map(function () { return ""; }); });
    data.cells.forEach(function (c) {
      const v = c.deviation[metric];
      const i = row.get(c.device_id), j = col.get(c.cell_number);
      z[i][j] = v === null ? null : v * m.scale;
      text[i][j] = c.cell_id + " · " + c.status.replace("_", " ") + " · " + devText(c, metric);
    });
    const flat = z.flat().filter(function (v) { return v !== null; });
    const span = flat.length ? Math.max.apply(null, flat.map(Math.abs)) || 1 : 1;
    const trace = {
      type: "heatmap", x: numbers.map(String), y: devices, z: z, text: text, hoverinfo: "text",
      colorscale: "RdBu", reversescale: true, zmin: -span, zmax: span, zmid: 0, xgap: 2, ygap: 2,
      colorbar: { title: { text: m.unit } },
    };
    const layout = {
      margin: { l: 90, r: 20, t: 10, b: 40 },
      height: Math.max(220, 60 + Math.max(12, Math.min(34, 2400 / devices.length)) * devices.length),
      xaxis: { title: { text: "cell number" }, type: "category" }, yaxis: { type: "category", automargin: true },
    };
    document.getElementById("heatmap-note").textContent =
      METRICS[metric].label + ": each cell's latest value minus its string's median (" + m.unit +
      "). Select a cell to open it; the tables below list the same cells for the keyboard.";
    box.style.minHeight = layout.height + "px";
    Plotly.react(box, [trace], layout, { displaylogo: false, responsive: true });
    if (!box.dataset.clickBound) {
      box.dataset.clickBound = "1";
      box.on("plotly_click", function (event) {
        const p = event.points && event.points[0];
        if (p) location.href = B.cellHref(p.y, p.x);
      });
    }
  }

  async function load() {
    try {
      const [fleet, data] = await Promise.all([B.api("/v1/fleet"), B.api("/v1/fleet/cells")]);
      latest = data;
      B.notice(null);
      renderSummary(fleet, data);
      renderAttention(data);
      renderDevices(data);
      renderCells(data);
      renderHeatmap(data);
      document.body.dataset.loaded = String(Date.now());
    } catch (error) {
      if (!(error instanceof B.ApiError && error.status === 401)) B.notice("Could not load the fleet: " + (error.detail || error));
    }
  }

  async function refreshRisk() {
    const status = document.getElementById("refresh-risk-status");
    const button = document.getElementById("refresh-risk");
    if (!latest || !latest.devices.length) { status.textContent = "no string stored yet"; return; }
    button.disabled = true;
    status.textContent = "scoring…";
    let cells = 0;
    const errors = [];
    for (const d of latest.devices) {
      try {
        const answer = await B.post("/v1/risk/refresh?device_id=" + encodeURIComponent(d.device_id));
        cells += (answer.results || []).length;
      } catch (error) { errors.push(d.device_id + ": " + (error.detail || error)); }
    }
    button.disabled = false;
    status.textContent = "scored " + cells + " cells" + (errors.length ? "; not scored: " + errors.join("; ") : "");
    await load();
  }

  document.querySelectorAll("#metric-buttons button").forEach(function (b) {
    b.addEventListener("click", function () { metric = b.dataset.metric; if (latest) renderHeatmap(latest); });
  });
  document.getElementById("cell-filter").addEventListener("input", function () { if (latest) renderCells(latest); });
  document.getElementById("refresh-risk").addEventListener("click", refreshRisk);
  document.getElementById("attention-more").addEventListener("click", function () {
    showAll = !showAll;
    if (latest) renderAttention(latest);
  });
  const reload = B.debounce(load, 1500);  // a fast feed refreshes the whole fleet at most every 1.5 s
  load();
  B.stream({
    onMessage: function (message) { if (message.type === "ingest" || message.type === "alert") reload(); },
    onPoll: reload,
  });
})();
