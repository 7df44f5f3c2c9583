// The status page's only script: follow the monitor's server-sent events, swap in the parts
// it re-renders, keep the "data age" figures ticking, and say plainly when the stream is lost.
// No framework and no build step; nothing is fetched from anywhere but this server.
(function () {
  "use strict";
  var body = document.body;
  var streamUrl = body.getAttribute("data-stream");
  var staleAfter = parseFloat(body.getAttribute("data-stale-after") || "600");
  var banner = document.getElementById("stream-status");
  var SILENCE_MS = 15000; // the server speaks at least every 5 s
  var lastHeard = Date.now();
  var seenAt = new WeakMap();

  function setOffline(offline) {
    if (banner) { banner.hidden = !offline; }
    body.classList.toggle("offline", offline);
  }

  function apply(fragment) {
    var holder = document.createElement("template");
    holder.innerHTML = fragment.html.trim();
    var fresh = holder.content.firstElementChild;
    if (!fresh) { return; }
    var current = document.getElementById(fragment.id);
    if (current) {
      current.replaceWith(fresh);
    } else if (fragment.parent) {
      var parent = document.getElementById(fragment.parent);
      if (parent) { parent.appendChild(fresh); }
    }
  }

  function ageText(seconds) {
    var whole = Math.max(0, Math.floor(seconds));
    if (whole < 60) { return whole + " s"; }
    if (whole < 3600) { return Math.floor(whole / 60) + " min"; }
    return Math.floor(whole / 3600) + " h " + Math.floor((whole % 3600) / 60) + " min";
  }

  function tick() {
    var now = Date.now();
    var ages = document.querySelectorAll(".age[data-age]");
    for (var i = 0; i < ages.length; i++) {
      var el = ages[i];
      var base = parseFloat(el.getAttribute("data-age"));
      if (isNaN(base)) { continue; }
      if (!seenAt.has(el)) { seenAt.set(el, now); }
      var age = base + (now - seenAt.get(el)) / 1000;
      el.textContent = ageText(age);
      el.classList.toggle("stale", age > staleAfter);
    }
    if (streamUrl && now - lastHeard > SILENCE_MS) { setOffline(true); }
  }

  if (streamUrl && window.EventSource) {
    var source = new EventSource(streamUrl);
    source.addEventListener("update", function (event) {
      lastHeard = Date.now();
      setOffline(false);
      var data = JSON.parse(event.data);
      data.fragments.forEach(apply);
      body.setAttribute("data-updated", String(lastHeard));
    });
    source.addEventListener("open", function () { lastHeard = Date.now(); });
    source.addEventListener("error", function () { setOffline(true); });
  }
  tick();
  window.setInterval(tick, 1000);
})();
