// loopml UI: partial table updates, column chooser, run selection, confirmations, charts.
"use strict";

(function () {
  const layoutBase = { margin: { l: 50, r: 10, t: 10, b: 40 }, height: 260, showlegend: true,
    legend: { orientation: "h", y: -0.25 }, font: { size: 11 } };
  const config = { displaylogo: false, responsive: true };

  function data(el) {
    const src = document.getElementById(el.dataset.src);
    return src ? JSON.parse(src.textContent) : null;
  }

  function xAxis() {
    const checked = document.querySelector('input[name="xaxis"]:checked');
    return checked ? checked.value : "step";
  }

  const renderers = {
    metric(el, series) {
      const x = xAxis();
      const traces = series.map((s) => ({ x: s[x], y: s.value, name: s.name, mode: s.value.length > 1 ? "lines" : "markers" }));
      Plotly.react(el, traces, { ...layoutBase, xaxis: { title: { text: x === "time" ? "seconds" : "step" } } }, config);
    },
    bar(el, d) {
      Plotly.react(el, [{ type: "bar", x: d.x, y: d.y }], { ...layoutBase, showlegend: false }, config);
    },
    pie(el, d) {
      Plotly.react(el, [{ type: "pie", labels: d.labels, values: d.values, sort: false }], { ...layoutBase, height: 220 }, config);
    },
    parcoords(el, d) {
      const dims = d.dimensions.map((dim) => ({ label: dim.label, values: dim.values.map((v) => (v === null ? NaN : v)) }));
      Plotly.react(el, [{ type: "parcoords", dimensions: dims, line: { color: dims.length ? dims[dims.length - 1].values : [] } }],
        { ...layoutBase, height: 360, margin: { l: 60, r: 60, t: 40, b: 20 } }, config);
    },
    timeseries(el, d) {
      const times = d.times.map((t) => new Date(t).toISOString());
      const traces = Object.entries(d.series).map(([name, ys]) => ({ x: times, y: ys, name, mode: "lines+markers" }));
      Plotly.react(el, traces, { ...layoutBase, height: 320 }, config);
    },
    timeline(el, d) {
      const colors = { FINISHED: "#1c7c4a", SUCCEEDED: "#1c7c4a", FAILED: "#b42318", RUNNING: "#2f5bd3" };
      const steps = d.steps;
      Plotly.react(el, [{
        type: "bar", orientation: "h", y: steps.map((s) => s.step), base: steps.map((s) => s.start),
        x: steps.map((s) => Math.max(s.duration, 0.001)),
        marker: { color: steps.map((s) => (s.cached ? "#9aa3b5" : colors[String(s.status).toUpperCase()] || "#a15c00")) },
        text: steps.map((s) => `${s.status}${s.cached ? " (cached)" : ""}`), hoverinfo: "y+x+text",
      }], { ...layoutBase, showlegend: false, height: 80 + 28 * steps.length,
        xaxis: { title: { text: "seconds since the run started" } }, yaxis: { autorange: "reversed" } }, config);
    },
    hist2(el, f) {
      let x;
      if (f.categories && f.categories.length) {
        x = f.categories.map(String);
      } else {
        x = f.edges.slice(0, -1).map((e, i) => (e + f.edges[i + 1]) / 2);
      }
      const share = (h) => { const n = h.reduce((a, b) => a + b, 0) || 1; return h.map((v) => v / n); };
      Plotly.react(el, [
        { type: "bar", x, y: share(f.reference_hist), name: "reference", opacity: 0.6 },
        { type: "bar", x, y: share(f.current_hist), name: "current", opacity: 0.6 },
      ], { ...layoutBase, barmode: "overlay", yaxis: { title: { text: "share" } } }, config);
    },
  };

  function drawCharts(root) {
    if (typeof Plotly === "undefined") return;
    root.querySelectorAll("[data-chart]").forEach((el) => {
      const fn = renderers[el.dataset.chart];
      const d = data(el);
      if (fn && d !== null) fn(el, d);
    });
  }

  // --- partial updates of the runs table --------------------------------------------------
  async function loadPartial(url, target, push) {
    const u = new URL(url, location.href);
    u.searchParams.set("partial", "1");
    const resp = await fetch(u, { headers: { Accept: "text/html" } });
    target.innerHTML = await resp.text();
    u.searchParams.delete("partial");
    if (push) history.pushState({ partial: true }, "", u);
    syncForm(u);
    wireSelection();
  }

  function syncForm(u) {
    const form = document.getElementById("runs-filter");
    if (!form) return;
    for (const name of ["order_by", "cols"]) {
      const input = form.querySelector(`[name="${name}"]`);
      if (input && u.searchParams.has(name)) input.value = u.searchParams.get(name);
    }
  }

  function wirePartialForms() {
    document.querySelectorAll("form[data-partial]").forEach((form) => {
      const target = document.querySelector(form.dataset.partial);
      form.addEventListener("submit", (ev) => {
        ev.preventDefault();
        const params = new URLSearchParams(new FormData(form));
        loadPartial(form.action + "?" + params.toString(), target, true);
      });
      target.addEventListener("click", (ev) => {
        const link = ev.target.closest("a[data-partial-link]");
        if (!link) return;
        ev.preventDefault();
        loadPartial(link.href, target, true);
      });
      window.addEventListener("popstate", () => loadPartial(location.href, target, false));
    });
    const apply = document.getElementById("apply-columns");
    if (apply) {
      apply.addEventListener("click", () => {
        const form = document.getElementById("runs-filter");
        const cols = [...document.querySelectorAll(".col-choice:checked")].map((c) => c.value);
        const extra = document.getElementById("col-extra").value.trim();
        if (extra) cols.push(extra);
        form.querySelector('[name="cols"]').value = cols.join(",");
        form.requestSubmit();
      });
    }
  }

  // --- run selection for comparison ---------------------------------------------------------
  function wireSelection() {
    const button = document.getElementById("compare-runs");
    if (!button) return;
    const update = () => {
      const n = document.querySelectorAll(".run-select:checked").length;
      button.disabled = n < 2 || n > 10;
      button.textContent = n ? `Compare ${n} selected` : "Compare selected";
    };
    document.querySelectorAll(".run-select").forEach((c) => c.addEventListener("change", update));
    update();
  }

  function wireCompare() {
    const button = document.getElementById("compare-runs");
    if (!button) return;
    button.addEventListener("click", () => {
      const ids = [...document.querySelectorAll(".run-select:checked")].map((c) => "run=" + encodeURIComponent(c.value));
      location.href = button.dataset.base + "?" + ids.join("&");
    });
  }

  // --- confirmations -------------------------------------------------------------------------
  function wireConfirm() {
    document.addEventListener("submit", (ev) => {
      const form = ev.target;
      if (form.dataset && form.dataset.confirm && !window.confirm(form.dataset.confirm)) ev.preventDefault();
    }, true);
  }

  // --- live endpoint stats ---------------------------------------------------------------------
  function wireLive() {
    const box = document.querySelector("[data-live-stats]");
    if (!box || typeof Plotly === "undefined") return;
    let last = null;
    const series = {};
    async function tick() {
      let body;
      try {
        const resp = await fetch(box.dataset.liveStats, { headers: { Accept: "application/json" } });
        if (!resp.ok) return;
        body = await resp.json();
      } catch (e) {
        return;
      }
      const now = Date.now();
      const rows = body.variants;
      const tbody = document.querySelector("#live-table tbody");
      tbody.replaceChildren(...rows.map((r) => {
        const tr = document.createElement("tr");
        const mean = r.count ? (1000 * r.latency_sum / r.count).toFixed(2) : "";
        for (const v of [r.variant, r.version, r.requests, r.errors, mean]) {
          const td = document.createElement("td"); td.textContent = String(v); tr.appendChild(td);
        }
        return tr;
      }));
      if (!rows.length) {
        const tr = document.createElement("tr");
        const td = document.createElement("td");
        td.colSpan = 5; td.className = "muted"; td.textContent = "No requests served by this server yet.";
        tr.appendChild(td); tbody.replaceChildren(tr);
      }
      if (!last) {
        const waiting = { ...layoutBase, annotations: [{ text: "waiting for traffic", showarrow: false, xref: "paper", yref: "paper", x: 0.5, y: 0.5 }] };
        for (const id of ["live-rate", "live-latency", "live-errors"]) Plotly.react(id, [], waiting, config);
      } else {
        const dt = (now - last.t) / 1000;
        for (const r of rows) {
          const key = `${r.variant} ${r.version}`;
          const prev = last.rows[key];
          if (!prev) continue;
          const s = series[key] || (series[key] = { t: [], rate: [], lat: [], err: [] });
          const dn = r.count - prev.count;
          s.t.push(new Date(now).toISOString());
          s.rate.push((r.requests - prev.requests) / dt);
          s.err.push((r.errors - prev.errors) / dt);
          s.lat.push(dn > 0 ? (1000 * (r.latency_sum - prev.latency_sum)) / dn : null);
        }
        const plot = (id, field) => Plotly.react(id, Object.entries(series).map(([name, s]) => ({ x: s.t, y: s[field], name, mode: "lines" })), layoutBase, config);
        plot("live-rate", "rate"); plot("live-latency", "lat"); plot("live-errors", "err");
      }
      last = { t: now, rows: Object.fromEntries(rows.map((r) => [`${r.variant} ${r.version}`, r])) };
    }
    tick();
    setInterval(tick, 3000);
  }

  document.addEventListener("DOMContentLoaded", () => {
    wirePartialForms();
    wireSelection();
    wireCompare();
    wireConfirm();
    drawCharts(document);
    document.querySelectorAll('input[name="xaxis"]').forEach((r) => r.addEventListener("change", () => drawCharts(document)));
    wireLive();
  });
})();
