/* Loyalty console: charts from server-embedded JSON, the till screen, small conveniences.
   No inline scripts (the CSP allows only this origin's files). */
(function () {
  "use strict";

  var PALETTE = ["#4f46e5", "#0d9488", "#f59e0b", "#e11d48", "#64748b", "#8b5cf6", "#0ea5e9"];
  var charts = new WeakMap();

  function formatter(kind, currency) {
    if (kind === "percent") return function (v) { return Math.round(v * 100) + "%"; };
    if (kind === "money") {
      var nf = new Intl.NumberFormat(undefined, { style: "currency", currency: currency || "CNY", maximumFractionDigits: 0 });
      return function (v) { return nf.format(v / 100); };
    }
    var n = new Intl.NumberFormat();
    return function (v) { return n.format(v); };
  }

  function buildChart(canvas) {
    if (!window.Chart || charts.has(canvas)) return;
    var source = document.getElementById(canvas.dataset.chart);
    if (!source) return;
    var config = JSON.parse(source.textContent);
    var fmt = config.format || {};
    config.options = config.options || {};
    config.options.responsive = true;
    config.options.maintainAspectRatio = false;
    var scales = config.options.scales || {};
    Object.keys(fmt).forEach(function (axis) {
      if (axis === "currency") return;
      scales[axis] = scales[axis] || {};
      scales[axis].ticks = scales[axis].ticks || {};
      scales[axis].ticks.callback = formatter(fmt[axis], fmt.currency);
    });
    config.options.scales = scales;
    (config.data.datasets || []).forEach(function (ds, i) {
      var color = ds.color || PALETTE[i % PALETTE.length];
      if (!ds.backgroundColor) ds.backgroundColor = ds.fill ? color + "22" : color;
      if (!ds.borderColor) ds.borderColor = color;
      delete ds.color;
    });
    charts.set(canvas, new window.Chart(canvas, { type: config.type, data: config.data, options: config.options }));
  }

  function initCharts(root) {
    if (!window.Chart) return;
    window.Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
    window.Chart.defaults.color = "#64748b";
    window.Chart.defaults.borderColor = "#eef1f6";
    window.Chart.defaults.plugins.legend.labels.boxWidth = 12;
    window.Chart.defaults.plugins.legend.labels.boxHeight = 12;
    root.querySelectorAll("canvas[data-chart]").forEach(buildChart);
  }

  /* ---------- receipt lines on the till ---------- */
  function renumberLines(form) {
    form.querySelectorAll("[data-line]").forEach(function (line, i) {
      line.querySelectorAll("input, select").forEach(function (el) {
        el.name = el.name.replace(/^lines-\d+-/, "lines-" + i + "-");
      });
    });
  }

  function parseAmount(text) {
    var v = parseFloat(String(text || "").replace(/,/g, ""));
    return isNaN(v) ? 0 : v;
  }

  function updateSum(form) {
    var out = form.querySelector("[data-lines-sum]");
    if (!out) return;
    var sum = 0;
    form.querySelectorAll("[data-line] [data-amount]").forEach(function (el) { sum += parseAmount(el.value); });
    out.textContent = sum.toFixed(2);
    var total = form.querySelector("[name=total]");
    if (total && !total.dataset.touched) total.value = sum ? sum.toFixed(2) : "";
  }

  document.addEventListener("click", function (e) {
    var add = e.target.closest("[data-add-line]");
    if (add) {
      var form = add.closest("form");
      var template = document.getElementById(add.dataset.addLine);
      var holder = form.querySelector("[data-lines]");
      holder.insertAdjacentHTML("beforeend", template.innerHTML);
      renumberLines(form);
      var inputs = holder.lastElementChild.querySelectorAll("input, select");
      if (inputs.length) inputs[0].focus();
      return;
    }
    var remove = e.target.closest("[data-remove-line]");
    if (remove) {
      var f = remove.closest("form");
      if (f.querySelectorAll("[data-line]").length > 1) {
        remove.closest("[data-line]").remove();
        renumberLines(f);
        updateSum(f);
        f.dispatchEvent(new Event("change", { bubbles: true }));
      }
      return;
    }
    if (e.target.closest("[data-toggle-nav]")) {
      document.body.classList.toggle("nav-open");
      return;
    }
    if (document.body.classList.contains("nav-open") && !e.target.closest("#sidebar")) {
      document.body.classList.remove("nav-open");
    }
  });

  document.addEventListener("input", function (e) {
    if (e.target.name === "total") e.target.dataset.touched = "1";
    if (e.target.matches("[data-amount]")) updateSum(e.target.closest("form"));
    var preview = e.target.closest("[data-preview-source]");
    if (preview) updatePhonePreview(preview.closest("form"));
  });

  document.addEventListener("submit", function (e) {
    var form = e.target;
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) e.preventDefault();
  }, true);

  /* ---------- the message previewed as a phone notification ---------- */
  function updatePhonePreview(form) {
    if (!form) return;
    var sample = { name: "王小明", points: "1,280", tier: "Gold" };
    function fill(text) { return String(text || "").replace(/\{(\w+)\}/g, function (m, k) { return sample[k] || m; }); }
    var title = form.querySelector("[name='message.title']");
    var body = form.querySelector("[name='message.body']");
    var t = document.querySelector("[data-notification-title]");
    var b = document.querySelector("[data-notification-body]");
    if (t && title) t.textContent = fill(title.value) || "Title";
    if (b && body) b.textContent = fill(body.value) || "Message";
  }

  /* ---------- schedule fields follow the campaign kind ---------- */
  function syncKind(form) {
    var kind = form.querySelector("[name=kind]:checked, select[name=kind]");
    if (!kind) return;
    form.querySelectorAll("[data-kind]").forEach(function (el) {
      var on = el.dataset.kind.split(" ").indexOf(kind.value) >= 0;
      el.hidden = !on;
      el.querySelectorAll("input, select, textarea").forEach(function (i) { i.disabled = !on; });
    });
  }
  document.addEventListener("change", function (e) {
    if (e.target.name === "kind") syncKind(e.target.closest("form"));
  });

  /* ---------- camera scanning (BarcodeDetector + getUserMedia, where the browser has them) ---------- */
  /* Resolves true only where the browser can really read QR codes from a camera: some
     browsers expose BarcodeDetector but support no formats on their platform. */
  function cameraSupported() {
    if (!("BarcodeDetector" in window) || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      return Promise.resolve(false);
    }
    return window.BarcodeDetector.getSupportedFormats()
      .then(function (formats) { return formats.indexOf("qr_code") >= 0; })
      .catch(function () { return false; });
  }

  function setupScanner(root) {
    root.querySelectorAll("[data-scan]").forEach(function (button) {
      if (button.dataset.ready) return;
      button.dataset.ready = "1";
      cameraSupported().then(function (ok) {
        if (!ok) return; /* typing the code stays the way in */
        button.hidden = false;
        button.addEventListener("click", function () { startCamera(button); });
      });
    });
  }

  function startCamera(button) {
    var box = document.getElementById(button.dataset.scan);
    var input = document.getElementById(button.dataset.target);
    var video = box.querySelector("video");
    var detector;
    try { detector = new window.BarcodeDetector({ formats: ["qr_code", "code_128", "ean_13"] }); }
    catch (err) { return; }
    navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } }).then(function (stream) {
      box.hidden = false;
      video.srcObject = stream;
      video.play();
      var stopped = false;
      function stop() { stopped = true; stream.getTracks().forEach(function (t) { t.stop(); }); box.hidden = true; }
      box.querySelector("[data-stop]").onclick = stop;
      function tick() {
        if (stopped) return;
        detector.detect(video).then(function (codes) {
          if (codes.length) {
            input.value = codes[0].rawValue;
            stop();
            input.form.requestSubmit();
          } else { requestAnimationFrame(tick); }
        }).catch(function () { requestAnimationFrame(tick); });
      }
      requestAnimationFrame(tick);
    }).catch(function () {
      button.hidden = true;
      input.focus();
    });
  }

  function init(root) {
    initCharts(root);
    setupScanner(root);
    root.querySelectorAll("form[data-campaign-form]").forEach(function (f) { syncKind(f); updatePhonePreview(f); });
    root.querySelectorAll("form[data-receipt]").forEach(updateSum);
  }

  document.addEventListener("DOMContentLoaded", function () { init(document); });
  document.addEventListener("htmx:afterSwap", function (e) { init(e.target); });
  document.addEventListener("htmx:oobAfterSwap", function (e) { init(e.target); });
})();
