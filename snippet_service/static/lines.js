// Line links. A click on a line number selects that line, a shift-click extends the
// selection to a range; the address follows (#L12 or #L12-L20, without a new history
// entry), and an address like that marks its lines and scrolls to the first. The marks
// are a class on the gutter's links, which stay in place when the code is swapped in.
(function () {
  "use strict";
  var view = document.getElementById("code-view");
  var gutter = view && view.querySelector(".gutter");
  if (!gutter) {
    return;
  }
  var LINE = /^#L(\d+)(?:-L(\d+))?$/;
  var numbers = gutter.getElementsByClassName("ln");
  var from = null; // the line a shift-click extends from
  view.classList.add("js-lines"); // the marks are now these, not the CSS :target

  // [first, last] from an address hash, or null when it names no lines.
  function parse(hash) {
    var match = LINE.exec(hash);
    if (!match) {
      return null;
    }
    var first = parseInt(match[1], 10);
    var last = match[2] ? parseInt(match[2], 10) : first;
    if (first < 1 || last < 1) {
      return null; // there is no line 0
    }
    return first <= last ? [first, last] : [last, first];
  }

  function hashOf(range) {
    return range[0] === range[1] ? "#L" + range[0] : "#L" + range[0] + "-L" + range[1];
  }

  function lineOf(link) {
    return parseInt(link.id.slice(1), 10);
  }

  function mark(range) {
    Array.prototype.slice.call(gutter.querySelectorAll(".ln.selected")).forEach(function (link) {
      link.classList.remove("selected");
    });
    if (!range) {
      return null;
    }
    var last = Math.min(range[1], numbers.length);
    for (var n = range[0]; n <= last; n++) {
      numbers[n - 1].classList.add("selected");
    }
    return range[0] <= numbers.length ? numbers[range[0] - 1] : null;
  }

  // Mark what the address names; scroll to its first line.
  function follow() {
    var range = parse(window.location.hash);
    var first = mark(range);
    from = range ? range[0] : null;
    if (first) {
      first.scrollIntoView({block: "start"});
    }
  }

  // Shift-click would also extend the page's text selection: not in the gutter.
  gutter.addEventListener("mousedown", function (event) {
    if (event.shiftKey && event.target.closest(".ln")) {
      event.preventDefault();
    }
  });

  gutter.addEventListener("click", function (event) {
    var link = event.target.closest(".ln");
    if (!link || event.button !== 0 || event.ctrlKey || event.metaKey || event.altKey) {
      return; // a new tab or window: the link's own address
    }
    event.preventDefault();
    var line = lineOf(link);
    var range = [line, line];
    if (event.shiftKey && from !== null) {
      range = [Math.min(from, line), Math.max(from, line)];
    } else {
      from = line;
    }
    mark(range);
    window.history.replaceState(window.history.state, "", hashOf(range));
  });

  window.addEventListener("hashchange", follow);
  follow();
})();
