// The highlighting style a visitor picked ("snippet-style" in localStorage), applied
// before the first paint: loaded without defer right after the two highlight stylesheet
// links (the light style, and the dark one for prefers-color-scheme: dark). "auto" keeps
// those two; another style points both at /highlight.css?style=NAME for every scheme, and
// gives the code box that style's tone (data-tone, light or dark).
// The picker (#style-picker, on snippet pages) is wired once the page is parsed.
(function () {
  "use strict";
  var KEY = "snippet-style";
  var AUTO = "auto";
  var script = document.currentScript;
  function names(attribute) {
    return ((script && script.getAttribute(attribute)) || "").split(" ").filter(Boolean);
  }
  var known = names("data-styles");
  var dark = names("data-dark-styles");
  var links = Array.prototype.slice.call(document.querySelectorAll("link.highlight-css"));
  // The links as the page came, to go back to on "auto".
  var original = links.map(function (link) {
    return {href: link.getAttribute("href"), media: link.getAttribute("media")};
  });

  function isKnown(name) {
    return name !== AUTO && known.indexOf(name) >= 0;
  }

  function stored() {
    var name = null;
    try {
      name = window.localStorage.getItem(KEY);
    } catch (error) { // storage disabled: the default styles
      return AUTO;
    }
    return name && isKnown(name) ? name : AUTO;
  }

  function store(name) {
    try {
      if (name === AUTO) {
        window.localStorage.removeItem(KEY);
      } else {
        window.localStorage.setItem(KEY, name);
      }
    } catch (error) { // storage disabled: the choice lasts for this page only
    }
  }

  function set(link, name, value) {
    if (link.getAttribute(name) !== value) {
      link.setAttribute(name, value);
    }
  }

  function apply(name) {
    links.forEach(function (link, index) {
      if (isKnown(name)) {
        var base = original[index].href.split("?")[0];
        set(link, "href", base + "?style=" + encodeURIComponent(name));
        set(link, "media", "all");
      } else {
        set(link, "href", original[index].href);
        set(link, "media", original[index].media);
      }
    });
    var root = document.documentElement;
    root.setAttribute("data-style", isKnown(name) ? name : AUTO);
    // The code box takes the picked style's tone (site.css); "auto" follows the page's.
    if (isKnown(name)) {
      root.setAttribute("data-tone", dark.indexOf(name) >= 0 ? "dark" : "light");
    } else {
      root.removeAttribute("data-tone");
    }
  }

  apply(stored());

  function wirePicker() {
    var picker = document.getElementById("style-picker");
    if (!picker) {
      return;
    }
    picker.value = stored();
    var box = picker.closest(".style-choice"); // hidden without scripts: it would do nothing
    if (box) {
      box.hidden = false;
    }
    picker.addEventListener("change", function () {
      var name = isKnown(picker.value) ? picker.value : AUTO;
      store(name);
      apply(name);
    });
  }

  // Another tab changed the style: follow it.
  window.addEventListener("storage", function (event) {
    if (event.key === KEY || event.key === null) {
      var name = stored();
      var picker = document.getElementById("style-picker");
      if (picker) {
        picker.value = name;
      }
      apply(name);
    }
  });

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", wirePicker);
  } else {
    wirePicker();
  }
})();
