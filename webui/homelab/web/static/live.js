// Live tiles: the dashboard's status and platform tiles and a service page's status tiles follow
// the server's `tiles` events (Server-Sent Events from /services/stream) without a reload. Every
// text is set with textContent: what the server sends is data, never markup. The dashboard's tiles
// ([data-live-sort]) take the order the server sends them in (homelab.status.problems_first, the
// first render's order): no second ordering here. A tile that has the focus keeps it when it moves.
// Each event is passed on as a "homelab:tiles" event on the document (static/charts.js reads it).
(function () {
  "use strict";
  var root = document.querySelector("[data-live-stream]");
  if (!root || !window.EventSource) return;
  var SYMBOL = { up: "\u25cf", degraded: "\u25b2", down: "\u2715", unknown: "?" };
  function field(el, name) { return el.querySelector('[data-field="' + name + '"]'); }
  function setText(el, text) { if (el && el.textContent !== text) el.textContent = text; }
  function badge(el, status) {
    if (!el) return;
    el.className = "badge sv-" + status;
    el.textContent = "";
    var sym = document.createElement("span");
    sym.setAttribute("aria-hidden", "true");
    sym.textContent = SYMBOL[status] || "?";
    el.appendChild(sym);
    el.appendChild(document.createTextNode(" " + status));
  }
  function response(s) {
    if (s.response_ms === null || s.response_ms === undefined) return "\u2013";
    return Math.round(s.response_ms) + " ms" + (s.http_status ? " (HTTP " + s.http_status + ")" : "");
  }
  function tls(s) {
    return s.tls_days_left === null || s.tls_days_left === undefined ? "\u2013" : Math.round(s.tls_days_left) + " days left";
  }
  function age(s) {
    if (s.observed_at) return s.age + " ago";
    return s.probed === false ? "no container facts yet" : "never probed";
  }
  var announce = document.querySelector("[data-live-announce]");
  function service(s) {
    document.querySelectorAll('[data-status-service="' + CSS.escape(s.name) + '"]').forEach(function (tile) {
      // a dashboard tile is the <li>; a service page's group holds its status tile
      var box = tile.matches("li") ? tile : tile.querySelector('[data-tile="status"]');
      if (tile.dataset.status !== s.status) {
        if (announce && tile.matches("li")) {
          announce.textContent = (s.title || s.name) + " is now " + s.status + (s.status !== "up" && s.error ? ": " + s.error : "");
        }
        tile.dataset.status = s.status;
        if (box) { box.dataset.status = s.status; box.className = "tile tile-" + s.status; }
        badge(field(tile, "status"), s.status);
      }
      setText(field(tile, "age"), age(s));
      setText(field(tile, "response"), response(s));
      setText(field(tile, "tls"), tls(s));
      setText(field(tile, "containers"), s.containers_text || "\u2013");
      setText(field(tile, "error"), s.status !== "up" && s.error ? s.error : "");
    });
  }
  // Put the list's tiles in the order of `names` (tiles the server did not send stay last, as they
  // were), moving as few as need to; the focused element is focused again if a move took it away.
  function reorder(list, names) {
    var tiles = Array.prototype.filter.call(list.children, function (el) { return el.dataset.statusService; });
    var byName = {};
    tiles.forEach(function (el) { byName[el.dataset.statusService] = el; });
    var wanted = names.filter(function (n) { return byName[n]; }).map(function (n) { return byName[n]; });
    tiles.forEach(function (el) { if (wanted.indexOf(el) < 0) wanted.push(el); });
    if (wanted.every(function (el, i) { return tiles[i] === el; })) return false;
    var focused = document.activeElement;
    var inside = focused && focused !== document.body && list.contains(focused);
    var move = list.moveBefore ? list.moveBefore.bind(list) : list.insertBefore.bind(list);
    wanted.forEach(function (el, i) {
      var at = list.children[i];
      if (at !== el) move(el, at || null);
    });
    if (inside && document.activeElement !== focused) focused.focus({ preventScroll: true });
    return true;
  }
  function pct(v) { return v === null || v === undefined ? "\u2013" : Math.round(v) + " %"; }
  function host(f) {
    document.querySelectorAll('[data-host-facts="' + CSS.escape(f.host) + '"]').forEach(function (tile) {
      setText(field(tile, "cpu-value"), pct(f.cpu_percent));
      setText(field(tile, "mem-value"), pct(f.mem_percent));
      setText(field(tile, "disk-value"), pct(f.disk_percent));
      if (f.load1 !== null && f.load1 !== undefined) {
        setText(field(tile, "load"), [f.load1, f.load5, f.load15].map(function (x) { return x.toFixed(2); }).join(" "));
      }
      setText(field(tile, "facts-age"), f.age + " ago");
    });
  }
  var src = new EventSource(root.dataset.liveStream);
  src.addEventListener("tiles", function (e) {
    var data = JSON.parse(e.data);
    (data.services || []).forEach(service);
    (data.hosts || []).forEach(host);
    var names = (data.services || []).map(function (s) { return s.name; });
    document.querySelectorAll("[data-live-sort]").forEach(function (list) {
      if (reorder(list, names)) list.dataset.liveSorted = String(Date.now());
    });
    root.dataset.liveUpdated = String(Date.now());
    document.dispatchEvent(new CustomEvent("homelab:tiles", { detail: data }));
  });
})();
