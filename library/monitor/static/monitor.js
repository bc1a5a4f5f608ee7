// The monitor page: polls /api/state every second, draws the charts with uPlot, sends Save now / Stop.
"use strict";
(function () {
  const token = document.querySelector('meta[name="monitor-token"]').content;
  const POLL_MS = 1000;
  const points = [];  // [step, loss, average, lr...] as the server sent them; only new ones are fetched
  let lossChart = null, lrChart = null, lrNames = null, lastSampleIds = "", lastEvents = -1;

  const $ = (id) => document.getElementById(id);
  const fmt = (v, digits) => (v === null || v === undefined ? "-" : Number(v).toFixed(digits));
  function duration(s) {
    if (s === null || s === undefined) return "-";
    s = Math.round(s);
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    return (h ? h + "h " : "") + (h || m ? m + "m " : "") + r + "s";
  }
  function chartWidth(el) { return Math.max(300, el.clientWidth - 2); }
  function makeChart(el, series, tickFormat) {
    const opts = {width: chartWidth(el), height: 240, series: [{label: "step"}].concat(series),
                  scales: {x: {time: false}}, legend: {live: true},
                  axes: [{label: "step", incrs: STEP_TICKS}, {size: 70, values: (u, ticks) => ticks.map(tickFormat)}]};
    return new uPlot(opts, [[]].concat(series.map(() => [])), el);
  }
  const STEP_TICKS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000, 200000];
  const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"];

  function drawCharts() {
    if (!lossChart) {
      lossChart = makeChart($("loss-chart"), [
        {label: "loss", stroke: "#9ab8d8", width: 1, points: {show: false}},
        {label: "moving average", stroke: "#1f4e9c", width: 2, points: {show: false}}], (v) => String(+v.toPrecision(4)));
      lrChart = makeChart($("lr-chart"), lrNames.map((name, i) => (
        {label: name, stroke: COLOURS[i % COLOURS.length], width: 2, points: {show: false}})),
        (v) => (v === 0 ? "0" : v.toExponential(2)));
    }
    const columns = (offset, count) => Array.from({length: count}, (_, i) => points.map((p) => p[offset + i]));
    const xs = points.map((p) => p[0]);
    lossChart.setData([xs].concat(columns(1, 2)));
    lrChart.setData([xs].concat(columns(3, lrNames.length)));
    $("loss-chart").dataset.points = String(points.length);
  }

  function showProgress(state) {
    const p = state.progress;
    $("step").textContent = p.step; $("total").textContent = p.total; $("epoch").textContent = p.epoch;
    $("speed").textContent = fmt(p.s_per_step, 2); $("eta").textContent = duration(p.eta_s);
    $("bar").max = p.total || 1; $("bar").value = p.step;
    const last = points.length ? points[points.length - 1] : null;
    $("loss").textContent = last ? fmt(last[1], 4) + " (avg " + fmt(last[2], 4) + ")" : "-";
    $("run-status").textContent = p.status; $("run-status").className = "status " + p.status;
    const ended = p.status === "finished" || p.status === "stopped" || p.status === "failed";
    $("save-now").disabled = ended; $("stop").disabled = ended;
    if (state.memory) {
      $("memory-box").hidden = false;
      $("memory").textContent = fmt(state.memory.current_gib, 2) + " GiB" +
        (state.memory.peak_gib !== undefined ? " (peak " + fmt(state.memory.peak_gib, 2) + " GiB)" : "");
    }
  }

  function showEvents(events) {
    if (events.length === lastEvents) return;
    lastEvents = events.length;
    const list = $("events");
    list.replaceChildren(...events.slice().reverse().map((e) => {
      const li = document.createElement("li"), when = document.createElement("span");
      li.className = e.kind; when.className = "when";
      when.textContent = new Date(e.time * 1000).toLocaleTimeString() + " " + e.kind;
      li.append(when, document.createTextNode(e.text));
      return li;
    }));
  }

  function showSettings(settings) {
    const table = $("settings");
    if (table.rows.length) return;
    for (const [key, value] of Object.entries(settings)) {
      const row = table.insertRow();
      row.insertCell().textContent = key; row.insertCell().textContent = value;
    }
  }

  function showSamples(samples) {
    const ids = samples.map((s) => s.id).join(",");
    if (ids === lastSampleIds || !samples.length) return;
    lastSampleIds = ids;
    $("samples").replaceChildren(...samples.slice().reverse().map((s) => {
      const figure = document.createElement("figure"), img = document.createElement("img");
      const caption = document.createElement("figcaption");
      img.src = "/sample/" + s.id + "?token=" + encodeURIComponent(token); img.alt = s.prompt || s.name;
      caption.textContent = "step " + s.step + ": " + (s.prompt || s.name);
      figure.append(img, caption);
      return figure;
    }));
  }

  async function poll() {
    try {
      const response = await fetch("/api/state?since=" + points.length, {headers: {"X-Monitor-Token": token},
                                                                          cache: "no-store"});
      if (!response.ok) throw new Error("HTTP " + response.status);
      const state = await response.json();
      lrNames = lrNames || state.lr_names;
      points.splice(state.points_from, points.length - state.points_from, ...state.points);
      showProgress(state); showEvents(state.events); showSettings(state.settings); showSamples(state.samples);
      drawCharts();
    } catch (error) {  // the run has ended (a stopped or finished run keeps saying so) or cannot be reached
      if (!["finished", "stopped", "failed"].includes($("run-status").textContent)) {
        $("run-status").textContent = "offline"; $("run-status").className = "status offline";
      }
      $("save-now").disabled = true; $("stop").disabled = true;
    }
  }

  async function act(name, question) {
    if (!window.confirm(question)) return;
    try {
      const response = await fetch("/api/" + name, {method: "POST", headers: {"X-Monitor-Token": token}});
      const answer = await response.json();
      $("notice").textContent = answer.message;
    } catch (error) {
      $("notice").textContent = "the request failed: " + error;
    }
  }

  $("save-now").addEventListener("click", () => act("save",
    "Save the LoRA and a resumable state after the current step?"));
  $("stop").addEventListener("click", () => act("stop",
    "Stop training after the current step? A resumable state is saved and the resume command shown."));
  window.addEventListener("resize", () => {
    for (const [chart, el] of [[lossChart, $("loss-chart")], [lrChart, $("lr-chart")]]) {
      if (chart) chart.setSize({width: chartWidth(el), height: 240});
    }
  });
  (async function loop() { await poll(); setTimeout(loop, POLL_MS); })();  // one request at a time
})();
