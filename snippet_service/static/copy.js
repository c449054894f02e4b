// The copy buttons (hidden until this runs): "Copy" puts the exact code on the clipboard
// (kept verbatim, as JSON, in #raw-code's data-code), "Copy link" the snippet's address, with the selected
// lines (#L12 or #L12-L20) when there are some. #copy-status says how it went.
(function () {
  "use strict";
  var LINES = /^#L\d+(?:-L\d+)?$/;
  var CLEAR_MS = 3000;
  var status = document.getElementById("copy-status");
  var raw = document.getElementById("raw-code");
  var codeButton = document.getElementById("copy-code");
  var linkButton = document.getElementById("copy-link");
  var timer = null;

  function say(text) {
    if (!status) {
      return;
    }
    status.textContent = text;
    window.clearTimeout(timer);
    timer = window.setTimeout(function () {
      status.textContent = "";
    }, CLEAR_MS);
  }

  // Without the Clipboard API (a page served over plain HTTP): the older way, through a
  // selected text area outside the view.
  function copyBySelection(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "offscreen";
    document.body.appendChild(area);
    area.select();
    var done = false;
    try {
      done = document.execCommand("copy");
    } catch (error) {
      done = false;
    }
    document.body.removeChild(area);
    return done ? Promise.resolve() : Promise.reject(new Error("copy refused"));
  }

  function copy(text, done) {
    var copied = navigator.clipboard && window.isSecureContext
      ? navigator.clipboard.writeText(text)
      : copyBySelection(text);
    copied.then(function () {
      say(done);
    }, function () {
      say("Could not copy: the browser refused.");
    });
  }

  function link() {
    var url = new URL(linkButton.getAttribute("data-url"), window.location.href);
    var hash = window.location.hash;
    return url.href.split("#")[0] + (LINES.test(hash) ? hash : "");
  }

  if (codeButton && raw) {
    codeButton.hidden = false;
    codeButton.addEventListener("click", function () {
      copy(JSON.parse(raw.getAttribute("data-code")), "Copied");
    });
  }
  if (linkButton) {
    linkButton.hidden = false;
    linkButton.addEventListener("click", function () {
      copy(link(), "Copied link");
    });
  }
})();
