// The history charts (uPlot, vendored in static/vendor/uplot): a [data-history-group] holds range
// buttons (24 h / 7 d, aria-pressed) and figures [data-chart] whose data-src is an API history URL
// (GET /api/v1/services/<name>/history, /api/v1/hosts/<host>/history). Each figure has its text
// alternative, a table in a <details>, rendered by the server for 24 h; this script draws the chart
// and, on a range change, fetches the range and rewrites the table (textContent only) and the chart.
// Live: static/live.js passes each tiles event (SSE) on as "homelab:tiles"; when it carries a newer
// sample for a group (its service's probe or containers, a host's facts: data-live-key), the group
// fetches its range again and the charts take the new samples in (uPlot setData), no reload.
(function () {
  "use strict";
  if (!window.fetch) return;
  // Colours of the cosmic theme (cosmic.css): lines >= 3:1 and axis text >= 4.5:1 on --panel-solid.
  var AXIS = "#aab3d9", GRID = "rgba(150, 165, 255, 0.14)";
  var COLOURS = ["#2dd4bf", "#f472b6", "#fcd34d", "#9fd3ff", "#6ee7a8", "#c4b5fd"];
  var NO_SAMPLES = "No samples yet.";

  function num(v, digits) {
    return v === null || v === undefined ? "–" : Number(v).toFixed(digits);
  }
  function when(iso) {
    return iso.slice(0, 16).replace("T", " ");
  }
  function secs(iso) {
    return Date.parse(iso) / 1000;
  }

  // What each kind of chart draws and tabulates, from one API answer.
  var KINDS = {
    response: {
      unit: "ms",
      series: function () {
        return [{ label: "mean" }, { label: "slowest" }];
      },
      points: function (d) {
        return d.buckets.map(function (b) {
          return [secs(b.start), [b.response_ms_mean, b.response_ms_max]];
        });
      },
      rows: function (d) {
        return d.buckets.map(function (b) {
          return [when(b.start), String(b.samples), num(b.response_ms_mean, 1), num(b.response_ms_max, 1)];
        });
      },
    },
    up: {
      unit: "%",
      range: [0, 100],
      series: function () {
        return [{ label: "up", bars: true }];
      },
      points: function (d) {
        return d.buckets.map(function (b) {
          return [secs(b.start), [b.up_fraction === null ? null : b.up_fraction * 100]];
        });
      },
      rows: function (d) {
        return d.buckets.map(function (b) {
          return [when(b.start), String(b.samples), num(b.up_fraction === null ? null : b.up_fraction * 100, 0), b.status];
        });
      },
    },
    restarts: {
      unit: "",
      series: function (d) {
        return d.containers.map(function (c) {
          return { label: c.name + " on " + c.host };
        });
      },
      points: function (d) {
        var byTime = {};
        d.containers.forEach(function (c, i) {
          c.buckets.forEach(function (b) {
            var t = secs(b.start);
            if (!byTime[t]) byTime[t] = d.containers.map(function () { return null; });
            byTime[t][i] = b.restart_count;
          });
        });
        return Object.keys(byTime).map(Number).sort(function (a, b) { return a - b; }).map(function (t) {
          return [t, byTime[t]];
        });
      },
      rows: function (d) {
        var out = [];
        d.containers.forEach(function (c) {
          c.buckets.forEach(function (b) {
            out.push([when(b.start), c.name + " on " + c.host, String(b.restart_count)]);
          });
        });
        return out.sort(function (a, b) { return a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0; });
      },
    },
    host: {
      unit: "%",
      range: [0, 100],
      series: function () {
        return [{ label: "CPU" }, { label: "memory" }, { label: "disk" }];
      },
      points: function (d) {
        return d.buckets.map(function (b) {
          return [secs(b.start), [b.cpu_percent, b.mem_percent, b.disk_percent]];
        });
      },
      rows: function (d) {
        return d.buckets.map(function (b) {
          return [when(b.start), num(b.cpu_percent, 1), num(b.mem_percent, 1), num(b.disk_percent, 1)];
        });
      },
    },
  };

  // uPlot's columns, with a null point in every gap longer than a bucket and a half (no line across it).
  function columns(points, width, step) {
    var data = [[]];
    for (var s = 0; s < width; s++) data.push([]);
    var prev = null;
    points.forEach(function (p) {
      if (prev !== null && p[0] - prev > step * 1.5) {
        data[0].push(prev + step);
        for (var g = 0; g < width; g++) data[g + 1].push(null);
      }
      data[0].push(p[0]);
      for (var i = 0; i < width; i++) data[i + 1].push(p[1][i] === undefined ? null : p[1][i]);
      prev = p[0];
    });
    return data;
  }

  // The indices of a series' values with no value next to them (uPlot's points.filter): only those get a dot.
  function isolated(u, i) {
    var ys = u.data[i], out = [];
    for (var j = 0; j < ys.length; j++) {
      if (ys[j] === null || ys[j] === undefined) continue;
      var before = j > 0 ? ys[j - 1] : null, after = j + 1 < ys.length ? ys[j + 1] : null;
      if ((before === null || before === undefined) && (after === null || after === undefined)) out.push(j);
    }
    return out;
  }

  // The y axis as wide as its longest label ("1000 ms" is not cut off), at least 56 px.
  function axisSize(u, values, i, cycle) {
    var axis = u.axes[i];
    if (cycle > 1 && axis._size) return axis._size;
    var longest = (values || []).reduce(function (a, v) { return String(v).length > a.length ? String(v) : a; }, "");
    var size = (axis.ticks.size || 10) + (axis.gap || 5);
    if (longest) {
      u.ctx.font = axis.font[0];
      size += u.ctx.measureText(longest).width / (window.devicePixelRatio || 1);
    }
    return Math.max(56, Math.ceil(size) + 4);
  }

  function fillTable(fig, rows) {
    var body = fig.querySelector("tbody[data-table]");
    if (!body) return;
    var cols = fig.querySelectorAll("thead th").length || 1;
    while (body.firstChild) body.removeChild(body.firstChild);
    if (!rows.length) {
      var tr = document.createElement("tr"), td = document.createElement("td");
      td.colSpan = cols;
      td.className = "muted";
      td.textContent = NO_SAMPLES;
      tr.appendChild(td);
      body.appendChild(tr);
      return;
    }
    rows.forEach(function (r) {
      var tr = document.createElement("tr");
      r.forEach(function (cell) {
        var td = document.createElement("td");
        td.textContent = cell;
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
  }

  function draw(fig, data) {
    var kind = KINDS[fig.dataset.chart];
    var box = fig.querySelector("[data-chart-canvas]");
    var empty = fig.querySelector("[data-chart-empty]");
    if (!kind || !box) return;
    fillTable(fig, kind.rows(data));
    var points = kind.points(data);
    var series = kind.series(data);
    if (empty) empty.hidden = points.length > 0;
    var cols = points.length && series.length ? columns(points, series.length, data.bucket_seconds) : null;
    if (fig._plot && cols && fig._plot.series.length === series.length + 1) {
      fig._plot.setData(cols); // the same series: new samples in place, the legend and size kept
      fig.dataset.points = String(cols[0].length);
      return;
    }
    if (fig._plot) {
      fig._plot.destroy();
      fig._plot = null;
    }
    fig.dataset.points = cols ? String(cols[0].length) : "0";
    if (!cols || !window.uPlot) return;
    var unit = kind.unit;
    var opts = {
      width: Math.max(240, box.clientWidth || 600),
      height: 200,
      legend: { live: true },
      padding: [8, 32, 0, 0], // room on the right for the last time label
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true }, y: kind.range ? { range: kind.range } : { auto: true } },
      axes: [
        { stroke: AXIS, grid: { stroke: GRID }, ticks: { stroke: GRID }, space: 64 }, // time labels apart at 390 px
        {
          stroke: AXIS,
          grid: { stroke: GRID },
          ticks: { stroke: GRID },
          size: axisSize,
          values: function (u, vals) {
            return vals.map(function (v) { return v + (unit ? " " + unit : ""); });
          },
        },
      ],
      series: [{}].concat(
        series.map(function (s, i) {
          var c = COLOURS[i % COLOURS.length];
          // a line needs two points: a sample alone between gaps is drawn as a dot, or it would not show
          var out = { label: s.label, stroke: c, width: 2, spanGaps: false, points: { show: true, size: 7, filter: isolated } };
          out.value = function (u, v) { return v === null || v === undefined ? "–" : v.toFixed(unit === "" ? 0 : 1) + (unit ? " " + unit : ""); };
          if (s.bars) {
            out.fill = "rgba(110, 231, 168, 0.35)";
            out.stroke = "#6ee7a8";
            out.paths = window.uPlot.paths.bars({ size: [0.9, 40] });
            out.points = { show: false }; // a bar shows alone
          }
          return out;
        })
      ),
    };
    fig._plot = new window.uPlot(opts, cols, box);
  }

  function setStatus(group, text) {
    var el = group.querySelector("[data-chart-status]");
    if (el) el.textContent = text;
  }

  function load(group, range, live) {
    var figs = Array.prototype.slice.call(group.querySelectorAll("figure[data-chart][data-src]"));
    var urls = {};
    figs.forEach(function (f) { (urls[f.dataset.src] = urls[f.dataset.src] || []).push(f); });
    var seq = (group._seq = (group._seq || 0) + 1);
    if (!live) group._announce = true; // a range chosen: say so when its (or a later) load ends
    if (!live) setStatus(group, "Loading the last " + (range === "7d" ? "7 days" : "24 hours") + "…");
    var pending = Object.keys(urls).map(function (url) {
      var sep = url.indexOf("?") < 0 ? "?" : "&";
      return fetch(url + sep + "range=" + encodeURIComponent(range), {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      })
        .then(function (r) {
          if (!r.ok) throw new Error("HTTP " + r.status);
          return r.json();
        })
        .then(function (data) {
          if (seq !== group._seq) return; // a newer load (another range, a newer sample) is on its way
          group._to = Math.max(group._to || 0, Date.parse(data.to));
          urls[url].forEach(function (f) { draw(f, data); });
        });
    });
    Promise.all(pending).then(
      function () {
        if (seq !== group._seq) return;
        group.dataset.loaded = String((Number(group.dataset.loaded) || 0) + 1);
        if (!group._announce) return; // live: a screen reader hears nothing each minute (the tables have it)
        group._announce = false;
        var step = range === "7d" ? "1-hour" : "5-minute";
        setStatus(group, "The last " + (range === "7d" ? "7 days" : "24 hours") + ", in " + step + " buckets (UTC).");
      },
      function (err) { setStatus(group, "The history could not be read: " + err.message); }
    );
  }

  function init(group) {
    var buttons = Array.prototype.slice.call(group.querySelectorAll("button[data-range]"));
    var toggle = group.querySelector(".range-toggle");
    if (toggle) toggle.hidden = false; // without JavaScript only the 24 h tables are there
    buttons.forEach(function (b) {
      b.addEventListener("click", function () {
        buttons.forEach(function (o) { o.setAttribute("aria-pressed", o === b ? "true" : "false"); });
        group.dataset.range = b.dataset.range;
        load(group, b.dataset.range);
      });
    });
    load(group, group.dataset.range || "24h");
    var liveKey = null;
    document.addEventListener("homelab:tiles", function (e) {
      var now = stamp(group, e.detail || {});
      // the first event: new only if a sample is newer than what the first load read
      var changed = liveKey === null ? now.newest > (group._to || Infinity) : now.key !== liveKey;
      liveKey = now.key;
      if (changed) load(group, group.dataset.range || "24h", true);
    });
    var timer = null;
    window.addEventListener("resize", function () {
      clearTimeout(timer);
      timer = setTimeout(function () {
        group.querySelectorAll("figure[data-chart]").forEach(function (f) {
          var box = f.querySelector("[data-chart-canvas]");
          if (f._plot && box) f._plot.setSize({ width: Math.max(240, box.clientWidth), height: 200 });
        });
      }, 150);
    });
  }

  // What says a group has new samples: its service's newest probe and containers (a service page),
  // and every host's newest facts (its containers' restarts; a host's charts on the dashboard).
  function stamp(group, data) {
    var times = (data.hosts || []).map(function (h) { return [h.host, h.observed_at]; });
    var name = group.dataset.liveService;
    (data.services || []).forEach(function (s) {
      if (name && s.name === name) times.push([s.name, s.observed_at], [s.name, s.containers_observed_at]);
    });
    var newest = 0;
    times.forEach(function (t) { if (t[1]) newest = Math.max(newest, Date.parse(t[1])); });
    return { key: JSON.stringify(times), newest: newest };
  }

  document.querySelectorAll("[data-history-group]").forEach(init);
})();
