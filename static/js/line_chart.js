// Charts of the portal, drawn with the vendored Chart.js (static/vendor/chartjs, global `Chart`).
// Every chart has axis titles, readable series names, tooltips, and the numbers behind it as a
// table and a CSV download (added under the chart, so they work for screen readers too).
(function () {
  const COLOURS = ["#2f6fed", "#c0392b", "#1a7f4b", "#b7791f", "#794bc4", "#00a3a8"];

  // A text cell that starts with =, +, -, @, tab or CR is a formula to a spreadsheet (device and
  // class names are user input): it gets a ' in front, as the server's benchmark CSV does
  // (apps/loops/benchmarks.py, _cell). Numbers stay numbers: -0.5 is a value, not a formula.
  const FORMULA_START = /^[=+\-@\t\r]/;

  function csvCell(value) {
    let text = value === null || value === undefined ? "" : String(value);
    if (typeof value === "string" && FORMULA_START.test(text)) text = "'" + text;
    return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
  }

  // A <details> with the table of the numbers and a CSV link, kept in sync with the chart.
  function dataViews(element, filename) {
    let details = element.querySelector(":scope > details.chart-data");
    if (!details) {
      details = document.createElement("details");
      details.className = "chart-data";
      details.innerHTML =
        '<summary>Numbers behind this chart</summary><p><a class="csv" href="#">Download CSV</a></p>' +
        '<div class="table-scroll"><table class="numbers"></table></div>';
      element.appendChild(details);
    }
    return function update(columns, rows) {
      const table = details.querySelector("table");
      const head = "<thead><tr>" + columns.map((c) => `<th scope="col">${escapeHtml(c)}</th>`).join("") + "</tr></thead>";
      const body = rows
        .map((row) => "<tr>" + row.map((v) => `<td>${v === null || v === undefined ? "n/a" : escapeHtml(String(v))}</td>`).join("") + "</tr>")
        .join("");
      table.innerHTML = head + "<tbody>" + body + "</tbody>";
      const csv = [columns, ...rows].map((row) => row.map(csvCell).join(",")).join("\n") + "\n";
      const link = details.querySelector("a.csv");
      link.href = "data:text/csv;charset=utf-8," + encodeURIComponent(csv);
      link.download = filename;
    };
  }

  function escapeHtml(text) {
    return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  }

  function canvasIn(element, label) {
    let canvas = element.querySelector(":scope > .chart-box > canvas");
    if (!canvas) {
      const box = document.createElement("div");
      box.className = "chart-box";
      canvas = document.createElement("canvas");
      canvas.setAttribute("role", "img");
      canvas.setAttribute("aria-label", label);
      box.appendChild(canvas);
      element.insertBefore(box, element.firstChild);
    }
    return canvas;
  }

  // Every value 0 (or none yet): Chart.js would centre the axis on 0 (-1 … 1), but the portal's
  // series (scores, counts, losses) are never negative, so the axis shows 0 … 1 instead.
  function flatAtZero(datasets) {
    return datasets.every((d) => d.data.every((v) => v === null || v === 0));
  }

  function axes(xTitle, yTitle, yRange) {
    return {
      x: { title: { display: true, text: xTitle }, grid: { color: "#eef1f5" } },
      y: { title: { display: true, text: yTitle }, grid: { color: "#e3e7ee" }, ...(yRange || {}) },
    };
  }

  // drawLineChart(element, points, xKey, seriesKeys[, {xTitle, yTitle, names, kind}]): one line
  // (or, with kind "bar", one set of bars) per key. Called again with more points (the live
  // training loss), it updates the same chart.
  window.drawLineChart = function (element, points, xKey, seriesKeys, options) {
    options = options || {};
    const xTitle = options.xTitle || element.dataset.xTitle || xKey;
    const yTitle = options.yTitle || element.dataset.yTitle || seriesKeys.join(", ");
    const names = options.names || JSON.parse(element.dataset.names || "{}");
    if (!window.Chart) {
      element.textContent = "The chart library did not load.";
      return;
    }
    const labels = points.map((p) => p[xKey]);
    const datasets = seriesKeys.map((key, i) => ({
      label: names[key] || key,
      data: points.map((p) => (p[key] === undefined ? null : p[key])),
      borderColor: COLOURS[i % COLOURS.length],
      backgroundColor: COLOURS[i % COLOURS.length],
      pointRadius: points.length > 60 ? 0 : 2,
      borderWidth: 2,
      spanGaps: true,
    }));
    const canvas = canvasIn(element, `${yTitle} over ${xTitle}`);
    const flat = flatAtZero(datasets);
    if (element._chart) {
      element._chart.data.labels = labels;
      element._chart.data.datasets.forEach((d, i) => (d.data = datasets[i].data));
      const y = element._chart.options.scales.y;
      y.min = flat ? 0 : undefined;
      y.max = flat ? 1 : undefined;
      element._chart.update("none");
    } else {
      const bars = options.kind === "bar";
      const yRange = {
        ...(bars ? { beginAtZero: true, ticks: { precision: 0 } } : {}),
        ...(flat ? { min: 0, max: 1 } : {}),
      };
      element._chart = new Chart(canvas, {
        type: bars ? "bar" : "line",
        data: { labels, datasets },
        options: {
          animation: false,
          maintainAspectRatio: false,
          interaction: { mode: "index", intersect: false },
          scales: axes(xTitle, yTitle, yRange),
          plugins: { legend: { position: "bottom" } },
        },
      });
    }
    dataViews(element, options.filename || "chart.csv")(
      [xTitle, ...seriesKeys.map((k) => names[k] || k)],
      points.map((p) => [p[xKey], ...seriesKeys.map((k) => p[k])])
    );
  };

  // A chart described by the page (apps/dashboard/charts.py): {kind, points, x, series, names,
  // xTitle, yTitle, filename}.
  window.drawChart = function (element, spec) {
    if (!spec.points.length || !spec.series.length) {
      element.textContent = "Nothing to chart yet.";
      return;
    }
    window.drawLineChart(element, spec.points, spec.x, spec.series, spec);
  };

  // Every element with data-chart="<id of a json_script>" on the page.
  function drawDescribedCharts() {
    document.querySelectorAll("[data-chart]").forEach((element) => {
      const source = document.getElementById(element.dataset.chart);
      if (source) window.drawChart(element, JSON.parse(source.textContent));
    });
    document.querySelectorAll("[data-version-chart]").forEach((element) => {
      const source = document.getElementById(element.dataset.versionChart);
      if (source) window.drawVersionChart(element, JSON.parse(source.textContent));
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", drawDescribedCharts);
  else drawDescribedCharts();

  // The metrics of every version: a choice of metric (mAP, F1, F1 of one class), the edge and the
  // regression set together (a drop on the regression set is forgetting), the deployed version
  // drawn larger and named on the axis.
  window.drawVersionChart = function (element, data) {
    const measured = data.views.some((view) => Object.values(view.series).some((values) => values.some((v) => v !== null)));
    if (!data.versions.length || !measured) {
      element.textContent = "No evaluated versions yet: evaluate a version to chart its metrics.";
      return;
    }
    if (!window.Chart) {
      element.textContent = "The chart library did not load.";
      return;
    }
    const choose = document.createElement("label");
    choose.className = "chart-choice";
    choose.textContent = "Metric ";
    const select = document.createElement("select");
    data.views.forEach((view, i) => {
      const option = document.createElement("option");
      option.value = String(i);
      option.textContent = view.title;
      select.appendChild(option);
    });
    choose.appendChild(select);
    element.appendChild(choose);
    const deployedIndex = data.versions.indexOf(data.deployed);
    const labels = data.versions.map((v) => (v === data.deployed ? `${v} (deployed)` : v));
    const canvas = canvasIn(element, "Metrics of every version on the edge and regression sets");
    element.insertBefore(choose, element.firstChild); // the choice above the chart
    const setNames = data.set_names;
    const update = dataViews(element, "versions-metrics.csv");
    const pointRadius = (n) => data.versions.map((_, i) => (i === deployedIndex ? 7 : n > 60 ? 0 : 3));

    function datasetsFor(view) {
      return Object.keys(setNames).map((set, i) => ({
        label: setNames[set],
        data: view.series[set] || [],
        borderColor: COLOURS[i],
        backgroundColor: COLOURS[i],
        pointRadius: pointRadius(data.versions.length),
        pointStyle: data.versions.map((_, j) => (j === deployedIndex ? "rectRot" : "circle")),
        borderWidth: 2,
        spanGaps: true,
      }));
    }

    function show(index) {
      const view = data.views[index];
      const datasets = datasetsFor(view);
      if (element._chart) {
        element._chart.data.datasets = datasets;
        element._chart.options.scales.y.title.text = view.axis;
        element._chart.update("none");
      } else {
        element._chart = new Chart(canvas, {
          type: "line",
          data: { labels, datasets },
          options: {
            animation: false,
            maintainAspectRatio: false,
            interaction: { mode: "index", intersect: false },
            scales: axes("model version (oldest → newest)", view.axis, { min: 0, max: 1 }),
            plugins: {
              legend: { position: "bottom" },
              tooltip: {
                callbacks: {
                  label: (ctx) => `${ctx.dataset.label}: ${ctx.parsed.y === null ? "n/a" : ctx.parsed.y.toFixed(3)}`,
                },
              },
            },
          },
        });
      }
      update(
        ["version", ...Object.values(setNames).map((name) => `${view.title}: ${name}`)],
        data.versions.map((v, i) => [v, ...Object.keys(setNames).map((set) => (view.series[set] || [])[i])])
      );
    }
    select.addEventListener("change", () => show(Number(select.value)));
    show(0);
  };
})();
