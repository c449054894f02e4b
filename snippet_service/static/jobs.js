// Live refresh of the jobs dashboard: re-fetches the page every few seconds and swaps its
// content in; the button pauses and resumes it (remembered across pages).
(function () {
  "use strict";
  var region = document.getElementById("live-region");
  var toggle = document.getElementById("live-toggle");
  if (!region || !toggle || !window.fetch) {
    return;
  }
  var INTERVAL = 3000;
  var paused = localStorage.getItem("jobs-live-paused") === "1";
  toggle.hidden = false;
  function render() {
    toggle.textContent = paused ? "Resume live refresh" : "Pause live refresh";
    toggle.setAttribute("aria-pressed", paused ? "true" : "false");
  }
  toggle.addEventListener("click", function () {
    paused = !paused;
    localStorage.setItem("jobs-live-paused", paused ? "1" : "0");
    render();
  });
  render();
  setInterval(function () {
    if (paused || document.hidden || region.contains(document.activeElement) && document.activeElement.tagName === "INPUT") {
      return;
    }
    fetch(window.location.href, {credentials: "same-origin"}).then(function (response) {
      return response.ok ? response.text() : null;
    }).then(function (html) {
      if (!html) {
        return;
      }
      var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("live-region");
      if (fresh) {
        region.replaceChildren.apply(region, Array.from(fresh.childNodes));
        region.dataset.refreshedAt = String(Date.now());
      }
    }).catch(function () {});
  }, INTERVAL);
})();
