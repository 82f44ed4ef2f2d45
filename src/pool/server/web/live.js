// runner server's web page: the live log (server-sent events) and the job buttons
// without a reload. The page works without this script: the log is rendered in full and
// the buttons are plain forms. Everything inserted here is HTML the server escaped.
(function () {
  "use strict";
  function setState(state) {
    var el = document.getElementById("state");
    if (!el) return;
    el.textContent = state;
    el.className = "state s-" + state;
    el.setAttribute("data-state", state);
  }

  var log = document.getElementById("log");
  var box = document.getElementById("logbox");
  if (box) box.scrollTop = box.scrollHeight;
  if (log && box && log.dataset.live && window.EventSource) {
    var follow = true;
    box.addEventListener("scroll", function () {
      follow = box.scrollTop + box.clientHeight >= box.scrollHeight - 8;
    });
    var es = new EventSource(log.dataset.live);
    es.addEventListener("log", function (e) {
      log.insertAdjacentHTML("beforeend", e.data + "\n");
      if (follow) box.scrollTop = box.scrollHeight;
    });
    es.addEventListener("timeline", function (e) {
      var t = document.getElementById("timeline");
      if (t) t.innerHTML = e.data;
    });
    es.addEventListener("results", function (e) {
      var r = document.getElementById("results");
      if (r) r.innerHTML = e.data;
    });
    es.addEventListener("state", function (e) {
      var d = JSON.parse(e.data);
      setState(d.state);
      if (d.final) {
        var c = document.getElementById("cancel");
        if (c) c.hidden = true;
      }
    });
    es.addEventListener("end", function () {
      es.close();
    });
  }

  // Cancel and retry post the same form in the background; the live log reports the
  // state change (retry reloads: a new attempt has its own log).
  Array.prototype.forEach.call(document.querySelectorAll("form.action"), function (f) {
    f.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var button = f.querySelector("button");
      if (button) button.disabled = true;
      fetch(f.action, {
        method: "POST",
        body: new URLSearchParams(new FormData(f)),
        credentials: "same-origin",
      }).then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        if (f.id === "retry") {
          window.location.reload();
        } else if (button) {
          button.textContent = "Cancelling…";
        }
      }).catch(function () {
        if (button) button.disabled = false;
      });
    });
  });
})();
