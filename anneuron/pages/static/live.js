// anneuron neuron pages: the live half (`make serve`, anneuron/pages/serve.py). On a neuron view served by the anneuron
// server, a text box: the typed text goes through the model, every token is shaded by this neuron's activation
// (the same rendering as the max-activating examples) and shows the model's top-1 next-token prediction on hover.
// A second box compares two texts (the post's clean/corrupted habit). Opened from disk (file://) or from a plain
// static server the page does not load this file at all: anneuron.pages.serve adds it to the index it serves.
(function () {
  "use strict";
  var STATE = window.ANNEURON;
  if (!STATE || !STATE.ui || location.protocol === "file:") return;
  var ui = STATE.ui, h = ui.h;
  var health = null;
  var texts = { a: "The walk ended. Then he picked an apple", b: "The walk ended. Then he walked an apple" };

  fetch("api/health").then(function (r) { return r.ok ? r.json() : null; })
    .then(function (j) { health = j; attach(); }).catch(function () { health = null; });
  // the view renders asynchronously (its data shard loads on demand): look for a finished neuron view now and then
  setInterval(attach, 150);

  function neuronOfHash() {
    var m = /^#(L\d+N\d+)$/.exec(location.hash);
    return m ? m[1] : null;
  }

  function attach() {
    var neuron = neuronOfHash();
    var view = document.getElementById("neuron");
    if (!health || !neuron || !STATE.ready || STATE.view !== "neuron" || !view || view.dataset.neuron !== neuron ||
        view.querySelector(".live")) return;
    var head = view.querySelector(".neuron-head");
    view.insertBefore(liveCard(neuron), head ? head.nextSibling : view.firstChild);
  }

  function liveCard(neuron) {
    var out = h("div", { class: "live-out", id: "live-out" });
    var status = h("p", { class: "muted live-status", id: "live-status" });
    var boxA = h("textarea", { id: "live-text", rows: "2", maxlength: String(health.max_chars), spellcheck: "false" });
    var boxB = h("textarea", { id: "live-text-b", rows: "2", maxlength: String(health.max_chars), spellcheck: "false",
      placeholder: "optional: a second text to compare (e.g. the corrupted prompt)" });
    boxA.value = texts.a;
    boxB.value = "";
    var run = h("button", { id: "live-run", type: "submit" }, "Run");
    var form = h("form", { class: "live-form", id: "live-form" }, boxA, boxB, run);
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      texts.a = boxA.value;
      var asked = [boxA.value, boxB.value].filter(function (t) { return t.trim(); });
      if (!asked.length) { status.textContent = "Type a text first."; return; }
      status.textContent = "Running the model…";
      Promise.all(asked.map(function (t) { return query(neuron, t); })).then(function (results) {
        draw(out, results);
        status.textContent = results.length === 2 ? "Both texts, on one colour scale: compare where it fires." : "";
      }).catch(function (err) { status.textContent = err.message; out.textContent = ""; });
    });
    return ui.section("Try any text (live)", "tokens shaded by " + neuron + "'s activation; hover a token for the " +
      "model's top-1 prediction after it", h("div", { class: "live" }, form, status, out));
  }

  function query(neuron, text) {
    return fetch("api/activations", { method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ neuron: neuron, text: text }) })
      .then(function (r) {
        return r.json().then(function (j) {
          if (!r.ok) throw new Error(j.error || ("the server answered " + r.status));
          return j;
        });
      });
  }

  function draw(out, results) {
    // the API's first token is the BOS the model prepends, marked by its own decoding (health.bos_token)
    results.forEach(function (res) {
      res.bos = health.bos_token !== null && res.tokens[0] === health.bos_token ? 0 : -1;
    });
    var max = 0;
    results.forEach(function (res) {
      res.activations.forEach(function (a, i) { if (i !== res.bos) max = Math.max(max, Math.abs(a)); });
    });
    while (out.firstChild) out.removeChild(out.firstChild);
    results.forEach(function (res, k) {
      var top = -1;
      res.activations.forEach(function (a, i) { if (i !== res.bos && (top < 0 || a > res.activations[top])) top = i; });
      var spans = res.tokens.map(function (t, i) {
        var nl = t.indexOf("\n") >= 0;
        var cls = "ex-tok live-tok" + (i === top ? " max" : "") + (i === res.bos ? " special bos" : "") + (nl ? " nl" : "");
        return h("span", { class: cls, style: i === res.bos ? null : ui.shade(res.activations[i], max),
          "data-a": res.activations[i].toFixed(4), "data-pred": res.predictions[i],
          title: JSON.stringify(t) + (i === res.bos ? " (BOS)" : "") + " · activation " +
            res.activations[i].toFixed(4) + " · predicts next " + JSON.stringify(res.predictions[i]) },
          nl ? t.replace(/\n/g, "↵") : t);
      });
      out.appendChild(h("div", { class: "example live-row", "data-text": String(k) },
        h("div", { class: "ex-meta" }, h("span", { class: "v" }, ui.fmt(res.activations[top] || 0, 4)),
          "text " + (k + 1) + " · max on " + JSON.stringify(res.tokens[top] || "")),
        h("div", { class: "ex-text" }, spans)));
    });
  }
})();
