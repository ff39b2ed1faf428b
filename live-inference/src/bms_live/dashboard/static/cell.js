/* Cell page: history with anomalies marked, 25-step forecast band, failure risk and remaining life,
   3D view of voltage / temperature / specific gravity (time instead of SG for VRLA cells). */
"use strict";
(function () {
  const B = window.BMS;
  const params = new URLSearchParams(location.search);
  const device = params.get("device_id");
  const number = Number(params.get("cell_number"));
  const HISTORY_DAYS = 7;
  const TARGETS = [
    { key: "CellVoltage", field: "CellVoltage", box: "plot-voltage", label: "Voltage", unit: "V", digits: 3 },
    { key: "CellTemperature", field: "CellTemperature", box: "plot-temperature", label: "Temperature", unit: "°C", digits: 1 },
    { key: "CellSpecificGravity", field: "CellSpecificGravity", box: "plot-sg", label: "Specific gravity", unit: "", digits: 3 },
  ];
  let forecast = null;  // rows of the latest forecast (Target, Timestamp, Forecast, Lower, Upper)
  let lastReading = null;
  let shown = null;  // the readings and anomalies on screen

  function text(id, value) { document.getElementById(id).textContent = value; }
  function hasWebGL() {
    try { const c = document.createElement("canvas"); return !!(c.getContext("webgl") || c.getContext("experimental-webgl")); }
    catch (e) { return false; }
  }

  async function allPages(path) {
    const items = [];
    let offset = 0;
    while (offset !== null && items.length < 50000) {
      const page = await B.api(path + "&limit=10000&offset=" + offset);
      items.push.apply(items, page.items);
      offset = page.next_offset;
    }
    return items;
  }

  function plotHistory(readings, anomalies) {
    if (!window.Plotly) return;
    const flaggedAt = new Set(anomalies.map(function (a) { return a.timestamp; }));
    const times = readings.map(function (r) { return r.timestamp; });
    TARGETS.forEach(function (t) {
      const box = document.getElementById(t.box);
      const values = readings.map(function (r) { return r[t.field]; });
      if (!values.some(function (v) { return v !== null; })) {
        box.replaceChildren(B.el("p", { class: "message", text: t.key === "CellSpecificGravity"
          ? "No specific gravity for this cell: a VRLA/AGM/gel cell (or a BMS that does not measure it)."
          : "No " + t.label.toLowerCase() + " reading stored for this cell." }));
        box.style.minHeight = "0";
        return;
      }
      const marked = readings.filter(function (r) { return flaggedAt.has(r.timestamp); });
      const traces = [
        { type: "scatter", mode: "lines", name: t.label, x: times, y: values, line: { color: "#1f6f50", width: 1.5 } },
        { type: "scatter", mode: "markers", name: "anomaly", x: marked.map(function (r) { return r.timestamp; }),
          y: marked.map(function (r) { return r[t.field]; }), marker: { color: "#b42318", size: 9, symbol: "x" } },
      ];
      const band = (forecast || []).filter(function (f) { return f.Target === t.key; });
      if (band.length) {
        const fx = band.map(function (f) { return f.Timestamp; });
        traces.push(
          { type: "scatter", mode: "lines", name: "lower", x: fx, y: band.map(function (f) { return f.Lower; }), line: { width: 0 }, showlegend: false, hoverinfo: "skip" },
          { type: "scatter", mode: "lines", name: "forecast interval", x: fx, y: band.map(function (f) { return f.Upper; }), fill: "tonexty", fillcolor: "rgba(10,88,202,0.18)", line: { width: 0 } },
          { type: "scatter", mode: "lines", name: "forecast (" + band.length + " steps)", x: fx, y: band.map(function (f) { return f.Forecast; }), line: { color: "#0a58ca", dash: "dash" } },
        );
      }
      const layout = {
        margin: { l: 60, r: 20, t: 30, b: 40 }, height: 300, title: { text: t.label + (t.unit ? " (" + t.unit + ")" : ""), font: { size: 14 } },
        legend: { orientation: "h", y: -0.2 }, xaxis: { type: "date" },
      };
      Plotly.react(box, traces, layout, { displaylogo: false, responsive: true });
    });
  }

  let shown3d = "";  // what the 3D view shows (WebGL drawing is the page's most expensive step)
  function plot3d(readings, anomalies) {
    const box = document.getElementById("plot-3d");
    const signature = readings.length + "|" + (readings.length ? readings[readings.length - 1].timestamp : "") + "|" + anomalies.length;
    if (signature === shown3d) return;
    shown3d = signature;
    const note = document.getElementById("three-d-note");
    const flaggedAt = new Set(anomalies.map(function (a) { return a.timestamp; }));
    const usable = readings.filter(function (r) { return r.CellVoltage !== null && r.CellTemperature !== null; });
    const withSG = usable.some(function (r) { return r.CellSpecificGravity !== null; });
    const t0 = usable.length ? Date.parse(usable[0].timestamp) : 0;
    const z = usable.map(function (r) { return withSG ? r.CellSpecificGravity : (Date.parse(r.timestamp) - t0) / 3600000; });
    note.textContent = withSG
      ? "Voltage, temperature and specific gravity of every reading; anomalies in red."
      : "No specific gravity (a VRLA cell, or not measured): voltage, temperature and time (hours since the first reading shown) instead; anomalies in red.";
    if (!usable.length) { box.replaceChildren(B.el("p", { class: "message", text: "No reading with voltage and temperature to show." })); return; }
    if (!hasWebGL()) {
      box.replaceChildren(B.el("p", { class: "message", text: "The 3D view needs WebGL, which this browser has turned off; the charts above show the same readings." }));
      box.dataset.webgl = "off";
      return;
    }
    if (!window.Plotly) return;
    const colors = usable.map(function (r) { return flaggedAt.has(r.timestamp) ? "#b42318" : "#1f6f50"; });
    const trace = {
      type: "scatter3d", mode: "markers", x: usable.map(function (r) { return r.CellVoltage; }),
      y: usable.map(function (r) { return r.CellTemperature; }), z: z,
      text: usable.map(function (r) { return B.when(r.timestamp); }), marker: { size: 3, color: colors },
    };
    Plotly.react(box, [trace], {
      margin: { l: 0, r: 0, t: 10, b: 0 }, height: 460,
      scene: { xaxis: { title: { text: "voltage (V)" } }, yaxis: { title: { text: "temperature (°C)" } },
        zaxis: { title: { text: withSG ? "specific gravity" : "hours" } } },
    }, { displaylogo: false, responsive: true });
    box.dataset.webgl = "on";
  }

  function renderAnomalies(anomalies) {
    const newest = anomalies.slice(0, 200);
    B.fill(document.querySelector("#anomalies-table tbody"), newest.map(function (a) {
      return B.el("tr", {}, [
        B.el("td", { text: B.when(a.timestamp) }),
        B.el("td", { text: a.label || "–" }),
        B.el("td", { class: "num", text: B.fmt(a.score, 2) }),
        B.el("td", { text: a.reason || "–" }),
        B.el("td", { class: "mono", text: a.model ? a.model.name + " " + a.model.version : "–" }),
      ]);
    }));
    document.getElementById("anomalies-empty").hidden = anomalies.length > 0;
  }

  function renderStory(story) {
    text("cell-state", story.state || "unknown");
    text("cell-last", B.when(story.last_reading));
    const latest = story.latest || {};
    text("cell-voltage", B.fmt(latest.CellVoltage, 3, "V"));
    text("cell-temperature", B.fmt(latest.CellTemperature, 1, "°C"));
    text("cell-sg", latest.CellSpecificGravity === null || latest.CellSpecificGravity === undefined ? "none (VRLA / not measured)" : B.fmt(latest.CellSpecificGravity, 3));
    const risk = story.risk || {};
    const note = document.getElementById("risk-note");
    const mine = (risk.results || [])[0];
    if (!mine) {
      text("cell-risk", "unknown");
      text("cell-rul", "unknown");
      note.textContent = "Failure risk unknown: " + (risk.unknown || "the failure model gave no answer for this cell");
    } else {
      const p = mine.FailureProbability;
      text("cell-risk", mine.RiskBand + (p === null ? "" : " · " + B.fmt(p * 100, 0) + " %"));
      const extra = mine.extra || {};
      const rul = extra.RemainingLifeDays;
      if (rul === null || rul === undefined) {
        text("cell-rul", "unknown");
        note.textContent = "Remaining life unknown: the served failure model (" + (risk.model ? risk.model.version : "?") +
          ") gives no estimate for this cell" + (mine.reasons && mine.reasons.length ? " (" + mine.reasons.join("; ") + ")" : "") + ".";
      } else {
        const lo = extra.RemainingLifeP10, hi = extra.RemainingLifeP90;
        text("cell-rul", B.fmt(rul, 0) + " days" + (lo !== null && hi !== null && lo !== undefined && hi !== undefined ? " (80 % range " + B.fmt(lo, 0) + "–" + B.fmt(hi, 0) + ")" : ""));
        note.textContent = "Within " + (risk.horizon_days || "?") + " days; reasons: " + ((mine.reasons || []).join("; ") || "–") + ".";
      }
    }
    const fc = story.forecast || {};
    if (fc.forecast) {
      forecast = fc.forecast;
      const steps = new Set(fc.forecast.map(function (f) { return f.Step; })).size;
      text("forecast-note", steps + "-step forecast from " + B.when(fc.origin) + " with its " + Math.round((fc.coverage || 0.8) * 100) + " % interval (" + (fc.model ? fc.model.name + " " + fc.model.version : "") + ").");
    } else {
      forecast = null;
      text("forecast-note", "Forecast unknown: " + (fc.unknown || "no forecast"));
    }
  }

  async function loadHistory() {
    if (!lastReading) return;
    const start = new Date(Date.parse(lastReading) - HISTORY_DAYS * 86400000).toISOString();
    const q = "?device_id=" + encodeURIComponent(device) + "&cell_number=" + number + "&start=" + encodeURIComponent(start);
    const [readings, anomalies] = await Promise.all([allPages("/v1/readings" + q), allPages("/v1/anomalies" + q)]);
    anomalies.sort(function (a, b) { return a.timestamp < b.timestamp ? 1 : -1; });
    shown = { readings: readings, anomalies: anomalies };
    plotHistory(readings, anomalies);
    plot3d(readings, anomalies);
    renderAnomalies(anomalies);
    document.body.dataset.readings = String(readings.length);
    document.body.dataset.anomalies = String(anomalies.length);
  }

  async function refreshLast() {
    const cells = await B.api("/v1/cells?device_id=" + encodeURIComponent(device) + "&limit=10000");
    const cell = cells.items.find(function (c) { return c.cell_number === number; });
    if (!cell) throw new B.ApiError(404, "no stored cell " + device + "-" + number + ": ingest data first");
    lastReading = cell.last_reading;
    return cell;
  }

  async function load() {
    if (!device || !Number.isInteger(number)) {
      B.notice("Which cell? Open this page from the fleet overview (it needs ?device_id=...&cell_number=...).");
      return;
    }
    document.title = device + "-" + number + " · BMS-Flux console";
    text("cell-title", "Cell " + device + "-" + number);
    try {
      await refreshLast();
      const story = B.api("/v1/cells/analyze?device_id=" + encodeURIComponent(device) + "&cell_number=" + number);
      await loadHistory();
      renderStory(await story);
      if (shown) plotHistory(shown.readings, shown.anomalies);  // again, with the forecast band
      document.body.dataset.loaded = String(Date.now());
    } catch (error) {
      if (!(error instanceof B.ApiError && error.status === 401)) B.notice("Could not load the cell: " + (error.detail || error));
    }
  }

  const reload = B.debounce(async function () {
    try { await refreshLast(); await loadHistory(); } catch (e) { /* the next update retries */ }
  }, 2000);

  async function rescore() {
    const button = document.getElementById("rescore");
    const status = document.getElementById("rescore-status");
    button.disabled = true;
    status.textContent = "scoring…";
    try {
      await refreshLast();
      renderStory(await B.api("/v1/cells/analyze?device_id=" + encodeURIComponent(device) + "&cell_number=" + number));
      await loadHistory();
      status.textContent = "forecast and risk as of " + B.when(lastReading);
    } catch (error) {
      status.textContent = "could not score: " + (error.detail || error);
    } finally {
      button.disabled = false;
    }
  }
  document.getElementById("rescore").addEventListener("click", rescore);
  load();
  if (device) B.stream({ devices: [device], onMessage: function (m) { if (m.type === "ingest") reload(); }, onPoll: reload });
})();
