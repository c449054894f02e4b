// Replaces the plain code with the highlighted code as soon as the worker is done.
(function () {
  "use strict";
  var body = document.getElementById("snippet-body");
  if (!body || !body.dataset.eventsUrl || !window.EventSource) {
    return;
  }
  var source = new EventSource(body.dataset.eventsUrl);
  source.addEventListener("done", function (event) {
    var data = JSON.parse(event.data);
    body.innerHTML = data.html;
    body.dataset.status = data.status;
    source.close();
  });
})();
