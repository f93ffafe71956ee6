/* vallum console: CSRF header on htmx requests, and uPlot charts drawn from data-chart attributes. */
(function () {
  "use strict";
  function csrfToken() {
    var m = document.querySelector('meta[name="csrf-token"]');
    return m ? m.getAttribute("content") : "";
  }
  // Every htmx request carries the session's CSRF token (forms also carry it as a field).
  document.addEventListener("htmx:config:request", function (evt) {
    var t = csrfToken();
    if (t && evt.detail && evt.detail.ctx && evt.detail.ctx.request) {
      evt.detail.ctx.request.headers["X-CSRF-Token"] = t;
    }
  });
  var palette = ["#0b5cad", "#cf222e", "#1a7f37", "#8250df"];
  function draw(el) {
    if (el.dataset.drawn === "1" || typeof uPlot === "undefined") { return; }
    var spec;
    try { spec = JSON.parse(el.dataset.chart); } catch (e) { return; }
    el.dataset.drawn = "1";
    var width = Math.max(280, el.clientWidth || el.parentElement.clientWidth || 600);
    var series = [{}];
    var data = [spec.x];
    spec.series.forEach(function (s, i) {
      series.push({ label: s.label, stroke: palette[i % palette.length], width: 2,
                    fill: i === 0 ? "rgba(11,92,173,0.08)" : undefined });
      data.push(s.values);
    });
    var xs = { time: true };
    if (spec.x.length < 2) {
      // one point: give the time axis an hour either side instead of uPlot's auto range of years
      var x0 = spec.x.length ? spec.x[0] : Date.now() / 1000;
      xs.range = [x0 - 3600, x0 + 3600];
    }
    var opts = { width: width, height: 200, series: series, legend: { live: false },
                 scales: { x: xs, y: spec.ymax ? { range: [0, spec.ymax] } : {} },
                 cursor: { drag: { x: false, y: false } } };
    el.innerHTML = "";
    // eslint-disable-next-line no-new
    new uPlot(opts, data, el);
  }
  function drawAll(root) {
    (root || document).querySelectorAll("[data-chart]").forEach(draw);
  }
  document.addEventListener("DOMContentLoaded", function () { drawAll(document); });
  document.addEventListener("htmx:after:settle", function () { drawAll(document); });
  document.addEventListener("htmx:after:swap", function () { drawAll(document); });
  window.vallumDrawCharts = drawAll;
})();
