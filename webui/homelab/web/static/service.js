// The service page: while a logs tail runs, wait for its job's end (the job's own SSE stream) and
// reload the page, which then shows the lines (the URL already names the job and the #logs part).
(function () {
  "use strict";
  var wait = document.getElementById("logs-wait");
  if (!wait || !window.EventSource) return;
  var src = new EventSource(wait.dataset.jobStream);
  src.addEventListener("end", function () {
    src.close();
    window.location.reload();
  });
})();
