// The console's one script (no framework, no outside request): live refresh of #live, confirmation
// of destructive forms. Everything works without it; it only saves reloading by hand.
(function () {
  "use strict";
  function confirmForms(root) {
    root.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
      });
    });
  }
  function refresh(live) {
    var seconds = parseInt(live.getAttribute("data-refresh") || "0", 10);
    if (!seconds) { return; }
    window.setTimeout(function tick() {
      if (document.hidden || document.querySelector("#live :focus")) { window.setTimeout(tick, seconds * 1000); return; }
      fetch(window.location.href, { credentials: "same-origin", headers: { "X-Console-Refresh": "1" } })
        .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
        .then(function (html) {
          var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("live");
          var current = document.getElementById("live");
          if (fresh && current) {
            current.replaceWith(fresh);
            confirmForms(fresh);
            refresh(fresh);
          }
        })
        .catch(function () { window.setTimeout(tick, seconds * 3000); });
    }, seconds * 1000);
  }
  document.addEventListener("DOMContentLoaded", function () {
    confirmForms(document);
    var live = document.getElementById("live");
    if (live) { refresh(live); }
  });
})();
