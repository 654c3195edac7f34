// Live output of a job: Server-Sent Events from /jobs/<id>/stream; the server renders ANSI to HTML.
(function () {
  "use strict";
  var out = document.getElementById("output");
  if (!out || out.dataset.final === "1") return;
  var statusEl = document.getElementById("job-status");
  var reasonEl = document.getElementById("job-reason");
  var cancelForm = document.getElementById("cancel-form");
  var last = 0;
  var src = new EventSource(out.dataset.stream);
  function nearBottom() { return out.scrollHeight - out.scrollTop - out.clientHeight < 60; }
  // A pipeline's Stages panel (in _summary.html) follows the run: once a stage marker's banner was
  // seen, at most every 2 s while output comes, only that panel is replaced (the task results are
  // re-rendered once, at the end).
  var stagesDue = null, ended = false;
  function refreshStages() {
    stagesDue = null;
    fetch(out.dataset.summary, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : ""; })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("stages");
        var summary = document.getElementById("summary");
        var old = document.getElementById("stages");
        if (ended || !fresh || !summary) return;  // the end's whole summary wins
        if (old) old.replaceWith(fresh); else summary.prepend(fresh);
      });
  }
  src.addEventListener("output", function (e) {
    var ev = JSON.parse(e.data);
    if (ev.seq <= last) return;
    last = ev.seq;
    var staged = document.getElementById("stages") || (ev.html && ev.html.indexOf("Stage: ") >= 0);
    if (staged && !stagesDue) stagesDue = setTimeout(refreshStages, 2000);
    if (!ev.html) return;
    var follow = nearBottom();
    var span = document.createElement("span");
    span.className = "line";
    span.dataset.seq = ev.seq;
    span.innerHTML = ev.html + "\n";  // escaped by the server's ANSI renderer
    out.appendChild(span);
    if (follow) out.scrollTop = out.scrollHeight;
  });
  src.addEventListener("status", function (e) {
    var job = JSON.parse(e.data);
    statusEl.innerHTML = "";
    var b = document.createElement("span");
    b.className = "badge st-" + job.status;
    b.textContent = job.status;
    statusEl.appendChild(b);
    reasonEl.textContent = job.reason || "";
    if (cancelForm) cancelForm.hidden = !(job.status === "queued" || job.status === "running");
  });
  src.addEventListener("end", function () {
    src.close();
    ended = true;
    if (stagesDue) { clearTimeout(stagesDue); stagesDue = null; }
    fetch(out.dataset.summary, { credentials: "same-origin" })
      .then(function (r) { return r.text(); })
      .then(function (html) { document.getElementById("summary").innerHTML = html; });
  });
})();
