// Swaps in the highlighted code as soon as the worker is done: the stream says when, and
// the code itself comes from the snippet's code URL (one cached copy for every reader).
(function () {
  "use strict";
  var body = document.getElementById("snippet-body");
  if (!body || !body.dataset.eventsUrl || !body.dataset.codeUrl) {
    return;
  }
  var POLL_MS = 5000;
  var POLLS = 120;

  // Fetch the code fragment and show it; true once the snippet is no longer pending.
  function swapIn() {
    return fetch(body.dataset.codeUrl, {credentials: "same-origin"}).then(function (response) {
      if (!response.ok) {
        window.location.reload(); // gone or failing: the page itself says why
        return true;
      }
      return response.text().then(function (html) {
        var holder = document.createElement("div");
        holder.innerHTML = html;
        if (holder.querySelector(".status-pending")) {
          return false;
        }
        body.innerHTML = html;
        var status = holder.querySelector(".status");
        body.dataset.status = status ? status.className.replace(/^.*status-/, "") : "";
        return true;
      });
    });
  }

  // Without a stream (refused, or no EventSource), ask every few seconds for a while.
  function poll(left) {
    if (left <= 0) {
      return;
    }
    window.setTimeout(function () {
      swapIn().then(function (done) {
        if (!done) {
          poll(left - 1);
        }
      }, function () {
        poll(left - 1);
      });
    }, POLL_MS);
  }

  if (!window.EventSource) {
    poll(POLLS);
    return;
  }
  var source = new EventSource(body.dataset.eventsUrl);
  source.addEventListener("done", function () {
    source.close();
    swapIn().then(function (done) {
      if (!done) {
        poll(POLLS);
      }
    }, function () {
      poll(POLLS);
    });
  });
  // The highlighter's circuit breaker opened or closed: show the pending fragment as it
  // reads now ("delayed" or not); a finished one comes with the "done" event.
  source.addEventListener("delayed", function () {
    fetch(body.dataset.codeUrl, {credentials: "same-origin"}).then(function (response) {
      return response.ok ? response.text() : "";
    }).then(function (html) {
      var holder = document.createElement("div");
      holder.innerHTML = html;
      if (holder.querySelector(".status-pending") && body.dataset.status === "pending") {
        body.innerHTML = html;
      }
    }, function () {});
  });
  source.addEventListener("error", function () {
    if (source.readyState === EventSource.CLOSED) { // refused (429): no reconnecting
      poll(POLLS);
    }
  });
})();
