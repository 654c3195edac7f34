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
  src.addEventListener("output", function (e) {
    var ev = JSON.parse(e.data);
    if (ev.seq <= last) return;
    last = ev.seq;
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
    fetch(out.dataset.summary, { credentials: "same-origin" })
      .then(function (r) { return r.text(); })
      .then(function (html) { document.getElementById("summary").innerHTML = html; });
  });
})();
