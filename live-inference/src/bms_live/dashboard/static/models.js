/* Models: served versions, every registered version with champion / challenger, drift, feedback. */
"use strict";
(function () {
  const B = window.BMS;

  function metrics(m) {
    const entries = Object.entries(m || {}).filter(function ([, v]) { return typeof v === "number" || typeof v === "string"; });
    if (!entries.length) return "–";
    return entries.slice(0, 8).map(function ([k, v]) { return k + " " + (typeof v === "number" ? B.fmt(v, 3) : v); }).join(", ");
  }

  function renderServed(models) {
    B.fill(document.querySelector("#served-table tbody"), Object.entries(models.served || {}).map(function ([key, s]) {
      return B.el("tr", { dataset: { model: s.name } }, [
        B.el("th", { scope: "row", text: s.name + " (" + s.endpoint + ")" }),
        B.el("td", { class: "mono", text: s.loaded ? s.version : "not loaded" }),
        B.el("td", { text: s.serving }),
        B.el("td", { text: s.loaded_at ? B.when(s.loaded_at) : "–" }),
        B.el("td", { text: metrics(s.metrics) }),
        B.el("td", { text: s.last_error || "–" }),
      ]);
    }));
  }

  function renderVersions(data) {
    const box = document.getElementById("versions");
    if (!data.models.length) { box.replaceChildren(B.el("p", { class: "hint", text: "No model registered yet: run bms setup or the pipeline." })); return; }
    box.className = "versions";
    box.replaceChildren.apply(box, data.models.map(function (model) {
      const aliases = model.aliases || {};
      const rows = model.versions.slice().reverse().map(function (v) {
        return B.el("tr", { dataset: { version: v.version } }, [
          B.el("th", { scope: "row", class: "mono", text: v.version }),
          B.el("td", {}, (v.aliases || []).map(function (a) { return B.badge(a, a === "champion" ? "ok" : a === "challenger" ? "watch" : "info"); })),
          B.el("td", { text: B.when(v.created) }),
          B.el("td", { text: metrics(v.metrics) }),
        ]);
      });
      const decisions = (model.decisions || []).slice(-5).reverse().map(function (d) {
        return B.el("li", { text: B.when(d.time) + " " + (d.version || d.candidate || "") + ": " + (d.decision || "") + (d.reason ? " – " + d.reason : "") });
      });
      return B.el("section", { "aria-label": model.name, dataset: { model: model.name } }, [
        B.el("h3", { text: model.name }),
        B.el("p", { class: "hint", text: "champion " + (aliases.champion || "none") + " · challenger " + (aliases.challenger || "none") + " · " + model.versions.length + " version(s)" }),
        B.el("div", { class: "table-wrap" }, [B.el("table", {}, [
          B.el("caption", { class: "visually-hidden", text: "Versions of " + model.name }),
          B.el("thead", {}, [B.el("tr", {}, ["Version", "Aliases", "Created", "Metrics"].map(function (h) { return B.el("th", { scope: "col", text: h }); }))]),
          B.el("tbody", {}, rows),
        ])]),
        decisions.length ? B.el("h4", { text: "Latest decisions" }) : null,
        decisions.length ? B.el("ul", {}, decisions) : null,
      ]);
    }));
  }

  function renderDrift(drift) {
    const rows = [];
    let flagged = 0;
    Object.entries(drift.models || {}).forEach(function ([key, report]) {
      const features = Object.entries(report.features || {});
      flagged += (report.flagged || []).length;
      if (!features.length) {
        rows.push(B.el("tr", {}, [B.el("th", { scope: "row", text: key }), B.el("td", { colspan: "5", text: report.status + (report.message ? ": " + report.message : "") })]));
      }
      features.forEach(function ([name, f]) {
        rows.push(B.el("tr", { dataset: { model: key, feature: name } }, [
          B.el("th", { scope: "row", text: key }),
          B.el("td", { class: "mono", text: name }),
          B.el("td", { text: f.method || f.status }),
          B.el("td", { class: "num", text: f.statistic === undefined ? "–" : B.fmt(f.statistic, 3) }),
          B.el("td", { class: "num", text: f.window === undefined ? "–" : f.window }),
          B.el("td", {}, [B.badge(f.flagged ? "drift" : f.status, f.flagged ? "at_risk" : "ok")]),
        ]));
      });
    });
    B.fill(document.querySelector("#drift-table tbody"), rows);
    document.getElementById("drift-summary").textContent = flagged + " drifted feature(s); KS for windows up to 500 values, PSI above.";
  }

  function renderFeedback(feedback, items) {
    B.fill(document.querySelector("#feedback-table tbody"), Object.entries(feedback.metrics || {}).map(function ([model, m]) {
      return B.el("tr", { dataset: { model: model } }, [
        B.el("th", { scope: "row", text: model }),
        B.el("td", { class: "num", text: m.n }),
        B.el("td", { class: "num", text: B.fmt(m.precision, 3) }),
        B.el("td", { class: "num", text: B.fmt(m.recall, 3) }),
        B.el("td", { class: "num", text: B.fmt(m.f1, 3) }),
        B.el("td", { class: "num", text: [m.tp, m.fp, m.fn, m.tn].join(" / ") }),
      ]);
    }), "No feedback yet: POST /v1/feedback with the ground truth of earlier predictions.");
    B.fill(document.querySelector("#feedback-items tbody"), items.items.map(function (f) {
      return B.el("tr", {}, [
        B.el("td", { class: "mono", text: f.prediction_id }),
        B.el("td", { text: f.model + " " + (f.model_version || "") }),
        B.el("td", { text: String(f.predicted) }),
        B.el("td", { text: String(f.actual) }),
        B.el("td", { text: B.when(f.created) }),
      ]);
    }), "No stored feedback.");
  }

  async function load() {
    try {
      const [models, versions, drift, feedback, items] = await Promise.all([
        B.api("/models"), B.api("/v1/models/versions"), B.api("/v1/monitoring/drift"),
        B.api("/v1/feedback"), B.api("/v1/feedback/items?limit=20"),
      ]);
      renderServed(models);
      renderVersions(versions);
      renderDrift(drift);
      renderFeedback(feedback, items);
      document.body.dataset.loaded = String(Date.now());
    } catch (error) {
      if (!(error instanceof B.ApiError && error.status === 401)) B.notice("Could not load the models: " + (error.detail || error));
    }
  }

  const reload = B.debounce(load, 2000);
  load();
  B.stream({ onMessage: function (m) { if (m.type === "ingest" && m.model) reload(); }, onPoll: function () {} });
})();
