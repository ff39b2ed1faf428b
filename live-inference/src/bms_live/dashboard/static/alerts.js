/* Alerts: list, acknowledge, resolve (POST /v1/alerts/{id}/acknowledge|resolve), live updates. */
"use strict";
(function () {
  const B = window.BMS;
  const BY_KEY = "bms-ack-by";
  const filter = document.getElementById("alert-filter");
  const byInput = document.getElementById("ack-by");
  const announce = document.getElementById("alert-action-status");
  let seen = null;  // alert ids already shown (null before the first load: nothing flashes)

  try { byInput.value = sessionStorage.getItem(BY_KEY) || ""; } catch (e) { /* storage refused */ }
  byInput.addEventListener("change", function () {
    try { sessionStorage.setItem(BY_KEY, byInput.value.trim()); } catch (e) { /* storage refused */ }
  });

  function deliveries(alert) {
    if (!alert.deliveries || !alert.deliveries.length) return "–";
    return alert.deliveries.map(function (d) {
      return d.channel + " " + d.status + (d.attempts > 1 ? " (" + d.attempts + " tries)" : "");
    }).join(", ");
  }
  function action(alert) {
    const text = alert.action || (alert.details && alert.details.action);
    return text ? B.el("div", { class: "hint", text: "Recommended action: " + text }) : null;
  }
  function label(alert) { return "alert " + alert.alert_id + " (" + (alert.cell_id || alert.device_id) + ", " + alert.kind + ")"; }

  async function act(alert, action) {
    const path = "/v1/alerts/" + alert.alert_id + "/" + action;
    try {
      const body = action === "acknowledge" && byInput.value.trim() ? { by: byInput.value.trim() } : {};
      const updated = await B.post(path, body);
      announce.textContent = label(alert) + " " + updated.status;
      await load();
      const row = document.querySelector('tr[data-alert-id="' + alert.alert_id + '"]');
      const next = row && (row.querySelector("button:not([disabled])") || row.querySelector("th"));
      if (next) next.focus();
      else document.getElementById("alert-filter").focus();
    } catch (error) {
      B.notice("Could not " + action + " " + label(alert) + ": " + (error.detail || error));
    }
  }

  function row(alert, fresh) {
    const cell = alert.cell_id
      ? B.el("a", { href: B.cellHref(B.splitCellId(alert.cell_id).device, B.splitCellId(alert.cell_id).number), text: alert.cell_id })
      : document.createTextNode(alert.device_id || "–");
    const ack = B.el("button", {
      type: "button", class: "ack", "aria-label": "Acknowledge " + label(alert),
      disabled: alert.status !== "open", onclick: function () { act(alert, "acknowledge"); },
    }, ["Acknowledge"]);
    const resolve = B.el("button", {
      type: "button", class: "resolve", "aria-label": "Resolve " + label(alert),
      disabled: alert.status === "resolved", onclick: function () { act(alert, "resolve"); },
    }, ["Resolve"]);
    const status = [B.badge(alert.status)];
    if (alert.acknowledged_by) status.push(B.el("div", { class: "hint", text: "by " + alert.acknowledged_by }));
    return labelled(B.el("tr", { class: fresh ? "new-row" : null, dataset: { alertId: alert.alert_id, status: alert.status, kind: alert.kind } }, [
      B.el("th", { scope: "row", tabindex: "-1", text: alert.alert_id }),
      B.el("td", {}, [B.badge(alert.severity)]),
      B.el("td", { class: "mono", text: alert.kind }),
      B.el("td", {}, [cell]),
      B.el("td", {}, [alert.message, action(alert)]),
      B.el("td", { class: "status" }, status),
      B.el("td", { text: B.when(alert.first_seen) + (alert.last_seen !== alert.first_seen ? " → " + B.when(alert.last_seen) : "") }),
      B.el("td", { class: "num", text: alert.occurrences }),
      B.el("td", { class: "deliveries", text: deliveries(alert) }),
      B.el("td", {}, [B.el("div", { class: "actions" }, [ack, resolve])]),
    ]));
  }

  /** Each cell names its column (``data-label``): on a narrow screen a row is shown as a card. */
  const HEADERS = Array.from(document.querySelectorAll("#alerts-table thead th")).map(function (th) { return th.textContent; });
  function labelled(tr) {
    Array.from(tr.children).forEach(function (cell, i) { cell.dataset.label = HEADERS[i] || ""; });
    return tr;
  }

  async function fetchAlerts(choice) {
    if (choice === "all" || choice === "active") {
      const items = [];
      let offset = 0;
      while (offset !== null && items.length < 2000) {
        const page = await B.api("/v1/alerts?limit=500&offset=" + offset);
        items.push.apply(items, page.items);
        offset = page.next_offset;
      }
      return choice === "all" ? items : items.filter(function (a) { return a.status !== "resolved"; });
    }
    return (await B.api("/v1/alerts?limit=500&status=" + choice)).items;
  }

  async function load() {
    try {
      const alerts = await fetchAlerts(filter.value);
      const ids = new Set(alerts.map(function (a) { return a.alert_id; }));
      const previous = seen;
      seen = previous ? new Set([...previous, ...ids]) : ids;
      // a live refresh re-renders the rows: keep the keyboard focus on the same row and button
      const active = document.activeElement;
      const activeRow = active && active.closest ? active.closest("tr[data-alert-id]") : null;
      const focusKey = activeRow ? { id: activeRow.dataset.alertId, cls: active.classList.contains("resolve") ? "resolve" : "ack" } : null;
      B.fill(document.querySelector("#alerts-table tbody"), alerts.map(function (a) {
        return row(a, previous !== null && !previous.has(a.alert_id));
      }));
      if (focusKey) {
        const again = document.querySelector('tr[data-alert-id="' + focusKey.id + '"]');
        const target = again && (again.querySelector("button." + focusKey.cls + ":not([disabled])") || again.querySelector("th"));
        if (target) target.focus();
      }
      document.getElementById("alerts-empty").hidden = alerts.length > 0;
      const open = alerts.filter(function (a) { return a.status === "open"; }).length;
      document.getElementById("alert-counts").textContent = alerts.length + " shown, " + open + " open";
      document.body.dataset.loaded = String(Date.now());
    } catch (error) {
      if (!(error instanceof B.ApiError && error.status === 401)) B.notice("Could not load the alerts: " + (error.detail || error));
    }
  }

  filter.addEventListener("change", load);
  const reload = B.debounce(load, 100);
  load();
  B.stream({
    onMessage: function (message) {
      if (message.type === "alert" || (message.type === "ingest" && message.alerts && message.alerts.length)) reload();
    },
    onPoll: reload,
  });
})();
