/* anneuron neuron pages. Vanilla JavaScript, no dependencies, works from file:// and from any static server.
 *
 * Data files (written by anneuron.pages.build) each assign one shard: ANNEURON_DATA[key] = {...}. A shard is loaded
 * by adding a <script> tag (file:// pages cannot fetch() JSON). Every string from the data reaches the DOM as a
 * text node (textContent / createTextNode), never as HTML.
 *
 * Views, by URL fragment: "" index · #L{layer}N{neuron} neuron · #token=<text> token search · #tid=<id> token.
 */
(function () {
  "use strict";

  var DATA = (window.ANNEURON_DATA = window.ANNEURON_DATA || {});
  var STATE = (window.ANNEURON = { renderMs: null, view: null, error: null, ready: false });
  var META = DATA.meta;
  var app = document.getElementById("app");
  var nav = document.getElementById("nav");
  var searchForm = document.getElementById("search-form");
  var searchInput = document.getElementById("search");
  var SVG = "http://www.w3.org/2000/svg";

  // --- small helpers -------------------------------------------------------------------------------------------

  /** h("a", {href: "#x", class: "y"}, "text", child, [more]) -> element; strings become text nodes. */
  function h(tag, attrs) {
    var el = document.createElement(tag);
    setAttrs(el, attrs);
    for (var i = 2; i < arguments.length; i++) append(el, arguments[i]);
    return el;
  }
  function s(tag, attrs) {
    var el = document.createElementNS(SVG, tag);
    setAttrs(el, attrs);
    for (var i = 2; i < arguments.length; i++) append(el, arguments[i]);
    return el;
  }
  function setAttrs(el, attrs) {
    if (!attrs) return;
    Object.keys(attrs).forEach(function (k) {
      var v = attrs[k];
      if (v === null || v === undefined || v === false) return;
      if (k.slice(0, 2) === "on") el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, String(v));
    });
  }
  function append(el, c) {
    if (c === null || c === undefined || c === false) return;
    if (Array.isArray(c)) c.forEach(function (x) { append(el, x); });
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
  function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); }

  function int(n) { return n === null || n === undefined ? "–" : String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ","); }
  function fmt(x, p) {
    if (x === null || x === undefined || !isFinite(x)) return "–";
    var a = Math.abs(x);
    if (a !== 0 && (a < 1e-3 || a >= 1e5)) return x.toExponential(2);
    return Number(x.toPrecision(p || 3)).toString();
  }
  /** Tokens are shown as themselves, spaces kept (CSS white-space: pre); control characters made visible. */
  function tokText(t) {
    if (t === null || t === undefined) return "?";
    if (t === "") return "∅";
    return t.replace(/\n/g, "↵").replace(/\t/g, "⇥").replace(/\r/g, "␍");
  }
  function tok(t, cls) { return h("span", { class: "tok" + (cls ? " " + cls : ""), title: JSON.stringify(t) }, tokText(t)); }
  function name(layer, neuron) { return "L" + layer + "N" + neuron; }
  function flatName(f) { return name(Math.floor(f / META.d_mlp), f % META.d_mlp); }
  function neuronLink(f) { var n = flatName(f); return h("a", { class: "neuron-link", href: "#" + n }, n); }
  function badge(text, cls, title) { return h("span", { class: "badge " + (cls || text), title: title }, text); }
  function section(title, sub) {
    var card = h("section", { class: "card" }, h("h2", null, title, sub ? h("span", { class: "sub" }, sub) : null));
    for (var i = 2; i < arguments.length; i++) append(card, arguments[i]);
    return card;
  }
  function table(headers, rows, numeric) {
    numeric = numeric || [];
    return h("table", { class: "data" },
      h("thead", null, h("tr", null, headers.map(function (x, i) {
        return h("th", { class: numeric.indexOf(i) >= 0 ? "num" : null }, x);
      }))),
      h("tbody", null, rows.map(function (r) {
        return h("tr", null, r.map(function (c, i) { return h("td", { class: numeric.indexOf(i) >= 0 ? "num" : null }, c); }));
      })));
  }

  // --- data loading --------------------------------------------------------------------------------------------

  var pending = {};
  function load(key) {
    if (DATA[key] !== undefined) return Promise.resolve(DATA[key]);
    if (pending[key]) return pending[key];
    var src = "data/" + key + ".js";
    pending[key] = new Promise(function (resolve, reject) {
      var el = document.createElement("script");
      el.src = src;
      el.async = true;
      el.onload = function () {
        el.remove();
        if (DATA[key] !== undefined) resolve(DATA[key]);
        else { delete pending[key]; reject(new Error(src + " holds no data for " + key)); }
      };
      el.onerror = function () { el.remove(); delete pending[key]; reject(new Error("cannot load " + src)); };
      document.head.appendChild(el);
    });
    return pending[key];
  }
  function layerIndex(layer) { return load("index/L" + layer); }
  function neuronShard(layer, neuron) { return load("neurons/L" + layer + "/" + Math.floor(neuron / META.shard_neurons)); }
  function tokenShard(tid) { return load("tokens/" + Math.floor(tid / META.token_shard)); }

  // --- routing -------------------------------------------------------------------------------------------------

  var routeId = 0;
  function route() {
    var id = ++routeId;
    var t0 = performance.now();
    var raw = location.hash.replace(/^#/, "");
    var done = function (view) {
      if (id !== routeId) return;
      STATE.view = view;
      STATE.renderMs = performance.now() - t0;
      STATE.ready = true;
      document.body.setAttribute("data-view", view);
    };
    STATE.ready = false;
    STATE.error = null;
    var m = /^L(\d+)N(\d+)$/.exec(raw);
    var p;
    if (m) p = showNeuron(+m[1], +m[2]).then(function () { done("neuron"); });
    else if (raw.indexOf("token=") === 0) p = showTokenQuery(safeDecode(raw.slice(6))).then(function () { done("token"); });
    else if (/^tid=\d+$/.test(raw)) p = showToken(+raw.slice(4)).then(function () { done("token"); });
    else p = showIndex().then(function () { done("index"); });
    p.catch(function (err) {
      if (id !== routeId) return;
      STATE.error = String(err && err.message || err);
      render(h("p", { class: "error" }, "Could not show this view: " + STATE.error));
      done("error");
    });
  }
  function safeDecode(x) { try { return decodeURIComponent(x); } catch (e) { return x; } }
  function render() {
    clear(app);
    for (var i = 0; i < arguments.length; i++) append(app, arguments[i]);
  }
  function setNav(prev, next) {
    clear(nav);
    if (!prev && !next) { nav.appendChild(h("a", { href: "#", title: "index" }, "index")); return; }
    nav.appendChild(prev ? h("a", { href: "#" + prev, title: "previous neuron ([ or ←)", id: "prev" }, "← " + prev)
      : h("span", { class: "disabled" }, "←"));
    nav.appendChild(h("a", { href: "#", title: "index" }, "index"));
    nav.appendChild(next ? h("a", { href: "#" + next, title: "next neuron (] or →)", id: "next" }, next + " →")
      : h("span", { class: "disabled" }, "→"));
  }

  searchForm.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var q = searchInput.value;
    var m = /^\s*[lL](\d+)[nN](\d+)\s*$/.exec(q);
    if (m) location.hash = name(+m[1], +m[2]);
    else if (/^\s*#?\d+\s*$/.test(q) && q.trim().charAt(0) === "#") location.hash = "tid=" + q.trim().slice(1);
    else if (q === "") location.hash = "";
    else location.hash = "token=" + encodeURIComponent(q);
  });
  document.addEventListener("keydown", function (ev) {
    if (ev.target && /^(INPUT|SELECT|TEXTAREA)$/.test(ev.target.tagName)) return;
    if (ev.key === "/") { ev.preventDefault(); searchInput.focus(); return; }
    if (STATE.view !== "neuron") return;
    var link = null;
    if (ev.key === "ArrowLeft" || ev.key === "[") link = document.getElementById("prev");
    if (ev.key === "ArrowRight" || ev.key === "]") link = document.getElementById("next");
    if (link) location.hash = link.getAttribute("href");
  });

  // --- neuron view ---------------------------------------------------------------------------------------------

  function showNeuron(layer, neuron) {
    if (layer >= META.n_layers || neuron >= META.d_mlp) {
      setNav(null, null);
      render(h("p", { class: "error" }, name(layer, neuron) + " does not exist: " + META.model + " has " +
        META.n_layers + " layers × " + int(META.d_mlp) + " neurons (L0N0 … " + name(META.n_layers - 1, META.d_mlp - 1) + ")."));
      return Promise.resolve();
    }
    return neuronShard(layer, neuron).then(function (shard) {
      var r = shard[String(neuron)];
      if (!r) throw new Error("no record for " + name(layer, neuron));
      var f = layer * META.d_mlp + neuron;
      var prev = f > 0 ? flatName(f - 1) : null;
      var next = f + 1 < META.n_layers * META.d_mlp ? flatName(f + 1) : null;
      setNav(prev, next);
      document.title = name(layer, neuron) + " · " + META.model;
      searchInput.value = name(layer, neuron);
      render(h("div", { id: "neuron", "data-neuron": name(layer, neuron) },
        neuronHead(layer, neuron, r),
        h("div", { class: "grid" }, classCard(r), pairCard(r), watchCard(r)),
        twinsCard(r),
        tokensCard(r),
        experimentsCard(r),
        curveCard(r),
        examplesCard(r)));
    });
  }

  function neuronHead(layer, neuron, r) {
    var tags = [badge(r.c, r.c, "class from the cosine moments (Gurnee et al. 2024)")];
    if (r.w) tags.push(badge("watched", "watched", "watched in the dataset pass (" + r.w[1] + ")"));
    var so = (r.x || []).filter(function (x) { return x[6]; });
    if (so.length) tags.push(badge("stands out in " + so.length + " experiment" + (so.length > 1 ? "s" : ""), "standout"));
    if (r.p) tags.push(badge("pair #" + r.p[0], "watched", "mutually exclusive pair rank"));
    if (r.vr && r.vr[2]) tags.push(badge("universal ϱ " + fmt(r.vr[0], 3), "standout",
      "mean over the other models of its max activation correlation, above the threshold"));
    return h("div", { class: "neuron-head" },
      h("h1", null, name(layer, neuron)), tags,
      h("span", { class: "where" }, "layer " + layer + " of " + META.n_layers + " · neuron " + int(neuron) + " of " + int(META.d_mlp)));
  }

  function classCard(r) {
    var m = {};
    META.moments.forEach(function (k, i) { m[k] = r.m[i]; });
    return section("Class and moments", null,
      h("p", { class: "lead" }, badge(r.c, r.c), " ", classText(r.c)),
      h("div", { class: "moments" }, table(["over all tokens", "mean", "var", "skew", "kurt"], [
        [h("span", { title: "cos(w_out, W_U[:, t])" }, "cosine"), fmt(m.cos_mean), fmt(m.cos_var), fmt(m.cos_skew), fmt(m.cos_kurt)],
        [h("span", { title: "w_out · W_U[:, t]" }, "raw"), fmt(m.wu_mean), fmt(m.wu_var), fmt(m.wu_skew), fmt(m.wu_kurt)],
      ], [1, 2, 3, 4])),
      h("p", { class: "hint" }, "d_neu (top-1 − top-2 congruence): ", h("b", null, fmt(r.d, 3))),
      r.en ? h("p", { class: "hint", title: "share of ‖w_out‖² in the span of the unembedding's bottom singular directions: " +
        "an entropy neuron has a large norm and nearly all of it there" },
        "null-space share of w_out: ", h("b", null, fmt(r.en[0], 3)), " · ‖w_out‖ ", h("b", null, fmt(r.en[1], 3))) : null);
  }
  function classText(c) {
    return {
      prediction: "high kurtosis, positive skew: it writes a few tokens up",
      suppression: "high kurtosis, negative skew: it writes a few tokens down",
      partition: "high variance: it splits the vocabulary",
      other: "no sharp effect on the vocabulary",
    }[c] || "";
  }

  // A neuron's twin in each other model sharing the tokenizer (the universality stage): the neuron of highest
  // activation correlation there, linked to that model's own pages (results/<other>/pages/, beside this site).
  function twinsCard(r) {
    if (!r.tw) return null;
    return section("Twins in other models", r.vr ? "ϱ " + fmt(r.vr[0], 3) + " · excess over baseline " + fmt(r.vr[1], 3) : null,
      r.tw.length ? table(["model", "twin", "ρ", "baseline ρ"], r.tw.map(function (t) {
        var twin = name(t[1], t[2]);
        return [t[0], h("a", { href: "../../" + encodeURIComponent(t[0]) + "/pages/index.html#" + twin, class: "twin" }, twin),
          fmt(t[3], 3), fmt(t[4], 3)];
      }), [2, 3]) : h("p", { class: "muted" }, "No other model."),
      h("p", { class: "hint" }, "ρ: Pearson correlation of the two neurons' activations over the same tokens; baseline: the best ρ " +
        "against the other model's layer mixed by a random rotation. Universal: ϱ (the mean over the other models of ρ) above the threshold."));
  }

  function pairCard(r) {
    if (!r.p) return section("Mutually exclusive pair", null,
      h("p", { class: "muted" }, "None: its most congruent token, ", tok(r.top.length ? r.top[0][1] : ""),
        ", has another neuron as its own most congruent one."));
    var p = r.p;
    return section("Mutually exclusive pair", "rank " + int(p[0]) + " of " + int(META.n_pairs),
      h("p", { class: "lead" }, "This neuron's top token is ", tok(p[2], "big"), " and that token's top neuron is this one."),
      h("dl", { class: "kv" },
        h("dt", null, "score"), h("dd", null, h("b", null, fmt(p[3], 3)), " = d_neu ", fmt(p[5], 3), " × d_tok ", fmt(p[6], 3)),
        h("dt", null, "congruence"), h("dd", null, fmt(p[4], 3)),
        h("dt", null, "token id"), h("dd", null, h("a", { href: "#tid=" + p[1] }, String(p[1])))));
  }

  function watchCard(r) {
    var maxAct = r.e && r.e.length ? [h("dt", null, "max activation"), h("dd", null, fmt(r.e[0][1], 4))] : null;
    if (!r.w) return section("Dataset pass", null, h("p", { class: "muted" },
      META.has_examples ? "Not watched: no proportion curve. Its max-activating examples are below." : "No dataset pass in these pages."),
      maxAct ? h("dl", { class: "kv" }, maxAct) : null);
    var w = r.w;
    var src = { pair: "a top mutually exclusive pair", config: "listed in watch.neurons", standout: "an experiment standout" }[w[1]] || w[1];
    return section("Dataset pass", "watched #" + w[0],
      h("dl", { class: "kv" },
        h("dt", null, "why"), h("dd", null, src),
        h("dt", null, "curve token"), h("dd", null, h("a", { href: "#tid=" + w[2] }, tok(w[3])), " ", h("span", { class: "muted small" }, "(" + w[4] + ")")),
        r.cv && r.cv.pred !== undefined ? [h("dt", null, "predicted / occurred"), h("dd", null, int(r.cv.pred) + " / " + int(r.cv.occ))] : null,
        maxAct));
  }

  function tokList(items, neg) {
    var max = 0;
    items.forEach(function (x) { max = Math.max(max, Math.abs(x[2] || 0)); });
    return h("ol", { class: "toklist" }, items.map(function (x, i) {
      var w = max ? Math.abs(x[2]) / max * 100 : 0;
      return h("li", null, h("span", { class: "rank" }, String(i + 1)),
        h("a", { href: "#tid=" + x[0], title: "token " + x[0] }, tok(x[1])),
        h("span", { class: "bar-wrap" }, h("span", { class: "bar" + (neg ? " neg" : ""), style: "display:block;width:" + w.toFixed(1) + "%" })),
        h("span", { class: "val" }, fmt(x[2], 3)));
    }));
  }
  function tokensCard(r) {
    return section("Congruent tokens", "basis " + (META.basis || "?") + " · w_out · W_U direction, top and bottom " + r.top.length,
      h("div", { class: "tokens-cols" },
        h("div", { class: "top-tokens" }, h("h3", { class: "small muted" }, "Most congruent (it writes them up)"), tokList(r.top, false)),
        h("div", { class: "bottom-tokens" }, h("h3", { class: "small muted" }, "Least congruent (it writes them down)"), tokList(r.bot, true))));
  }

  function experimentsCard(r) {
    var exps = META.experiments;
    if (!exps.length) return null;
    var byExp = {};
    (r.x || []).forEach(function (x) { byExp[x[0]] = x; });
    var anyContrast = exps.some(function (e) { return e.contrast; });
    var headers = ["experiment", "answer / wrong", "patch score", "rank", "robust z", ""];
    if (anyContrast) headers.push("contrast", "contrast rank");
    var rows = exps.map(function (e, i) {
      var x = byExp[i];
      var nm = h("span", null, e.name, !e.counted ? h("span", { class: "muted small", title: "LD gap below 0.5: not counted across experiments" }, " (not counted)") : null,
        e.check && e.check !== "ok" ? [" ", badge("prompt check", "warn", e.check)] : null);
      var aw = h("span", null, tok(e.answer), " / ", tok(e.wrong));
      var score = "–", rank = "–", z = "–", so = null;
      if (x && x[1] !== null) {
        if (x[2] !== null) {
          score = h("b", null, fmt(x[2], 3));
          rank = int(x[3]) + " of " + int(e.n_exact) + " exact";
        } else {
          score = h("span", { title: "attribution patching estimate (no exact score for this neuron)" }, fmt(x[1], 3), h("span", { class: "muted small" }, " attribution"));
          rank = int(x[4]) + " of " + int(META.n_layers * META.d_mlp) + " by attribution";
        }
        z = fmt(x[5], 3);
        if (x[6]) so = badge("standout", "standout");
      } else if (!e.scored) score = h("span", { class: "muted small" }, "not patched");
      var row = [nm, aw, score, rank, z, so];
      if (anyContrast) row.push(x && x[7] !== null ? fmt(x[7], 3) : "–", x && x[8] ? int(x[8]) : "–");
      return row;
    });
    return section("Experiments", "patch score = share of the clean − corrupted logit difference this neuron restores",
      table(headers, rows, anyContrast ? [2, 4, 6] : [2, 4]));
  }

  function curveCard(r) {
    if (!r.cv) return null;
    var cv = r.cv;
    var sub = "top-1 prediction is " + JSON.stringify(cv.tok);
    if (cv.pred !== undefined) sub += " · predicted " + int(cv.pred) + " / occurred " + int(cv.occ);
    return section("Proportion curve", sub, h("div", { class: "curve" }, curveSvg(cv)),
      h("p", { class: "hint" }, "Per activation bin: the share of positions whose top-1 prediction is the token (filled: enough positions; hollow: fewer than curves.min_count). Bars: positions per bin (log scale)."));
  }
  function curveSvg(cv) {
    var W = 720, H = 300, L = 48, R = 14, T = 12, PH = 190, GAP = 26, CH = 50;
    var bins = cv.bins;
    var lo = Math.min.apply(null, bins.map(function (b) { return b[0]; }));
    var hi = Math.max.apply(null, bins.map(function (b) { return b[1]; }));
    if (!(hi > lo)) hi = lo + 1;
    var x = function (v) { return L + (v - lo) / (hi - lo) * (W - L - R); };
    var y = function (p) { return T + (1 - p) * PH; };
    var maxc = Math.max.apply(null, bins.map(function (b) { return b[2]; })) || 1;
    var yc = function (c) { return T + PH + GAP + CH - (c > 0 ? Math.log10(c + 1) / Math.log10(maxc + 1) * CH : 0); };
    var g = [];
    [0, 0.25, 0.5, 0.75, 1].forEach(function (p) {
      g.push(s("line", { class: "grid", x1: L, x2: W - R, y1: y(p), y2: y(p) }));
      g.push(s("text", { x: L - 6, y: y(p) + 4, "text-anchor": "end" }, String(p)));
    });
    var step = niceStep((hi - lo) / 6);
    for (var t = Math.ceil(lo / step) * step; t <= hi + 1e-9; t += step) {
      g.push(s("line", { class: "axis", x1: x(t), x2: x(t), y1: T + PH, y2: T + PH + 4 }));
      g.push(s("text", { x: x(t), y: T + PH + 16, "text-anchor": "middle" }, fmt(t, 3)));
    }
    g.push(s("line", { class: "axis", x1: L, x2: W - R, y1: T + PH, y2: T + PH }));
    g.push(s("line", { class: "axis", x1: L, x2: L, y1: T, y2: T + PH }));
    g.push(s("text", { x: W - R, y: H - 2, "text-anchor": "end" }, "activation (hook_post)"));
    g.push(s("text", { x: 4, y: T + PH + GAP + CH / 2 + 4 }, "count"));
    var pts = [], path = "", joined = false;
    bins.forEach(function (b) {
      var cx = x((b[0] + b[1]) / 2);
      var bw = Math.max(1, x(b[1]) - x(b[0]) - 1);
      if (b[2] > 0) g.push(s("rect", { class: "cnt", x: x(b[0]) + 0.5, y: yc(b[2]), width: bw, height: T + PH + GAP + CH - yc(b[2]) },
        s("title", null, fmt(b[0], 3) + " – " + fmt(b[1], 3) + ": " + int(b[2]) + " positions")));
      if (b[4] !== null) {
        path += (joined ? "L" : "M") + cx.toFixed(1) + "," + y(b[4]).toFixed(1);
        joined = true;
        pts.push(s("circle", { class: "pt", cx: cx, cy: y(b[4]), r: 3.2 },
          s("title", null, fmt(b[0], 3) + " – " + fmt(b[1], 3) + ": " + int(b[3]) + " / " + int(b[2]) + " = " + fmt(b[4], 3))));
      } else {
        joined = false;  // the line skips bins without a proportion
        if (b[2] > 0) pts.push(s("circle", { class: "pt thin", cx: cx, cy: y(b[3] / b[2]), r: 3 },
          s("title", null, fmt(b[0], 3) + " – " + fmt(b[1], 3) + ": " + int(b[3]) + " / " + int(b[2]) + " (too few)")));
      }
    });
    if (path) g.push(s("path", { class: "line", d: path }));
    return s("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": "proportion curve" }, g, pts);
  }
  function niceStep(raw) {
    var p = Math.pow(10, Math.floor(Math.log10(raw || 1)));
    var m = raw / p;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
  }

  function shade(a, max) {
    if (!max || !a) return null;
    var t = Math.max(-1, Math.min(1, a / max));
    if (Math.abs(t) < 0.02) return null;
    return t > 0 ? "background-color: rgba(230, 85, 13, " + (0.85 * t).toFixed(3) + ")"
      : "background-color: rgba(37, 99, 235, " + (0.7 * -t).toFixed(3) + ")";
  }
  function examplesCard(r) {
    if (!r.e || !r.e.length) return META.has_examples ? section("Max-activating examples", null, h("p", { class: "muted" }, "No examples (it never fired on a non-BOS position).")) : null;
    var unit = Math.pow(10, r.u);
    var dec = Math.max(0, -r.u);
    var max = 0;
    r.e.forEach(function (ex) { ex[7].forEach(function (q) { max = Math.max(max, Math.abs(q * unit)); }); });
    var list = r.e.map(function (ex) {
      var focus = ex[4] - ex[5];
      var acts = ex[7].map(function (q) { return q * unit; });
      var top = 0;
      acts.forEach(function (a, i) { if (a > acts[top]) top = i; });
      var spans = ex[6].map(function (t, i) {
        var nl = t.indexOf("\n") >= 0;
        var cls = "ex-tok" + (i === focus ? " focus" : "") + (i === top ? " max" : "") + (nl ? " nl" : "") +
          (/^<\|[^|]*\|>$/.test(t) ? " special" : "");
        return h("span", { class: cls, style: shade(acts[i], max), "data-a": acts[i].toFixed(dec),
          title: JSON.stringify(t) + " · activation " + acts[i].toFixed(dec) + " · position " + (ex[5] + i) },
          nl ? t.replace(/\n/g, "↵") : t);
      });
      return h("div", { class: "example", "data-rank": ex[0] },
        h("div", { class: "ex-meta" }, h("span", { class: "v" }, fmt(ex[1], 4)), "#" + ex[0] + " · doc " + int(ex[2]),
          h("br"), "row " + int(ex[3]) + " · pos " + ex[4]),
        h("div", { class: "ex-text" }, spans));
    });
    return section("Max-activating examples", r.e.length + " windows, one per document, every token shaded by this neuron's activation",
      h("div", { class: "legend" }, h("span", null, "−"), h("span", { class: "scale" }), h("span", null, "+" + fmt(max, 3)),
        h("span", null, "· boxed: the example's token (its maximum in the document) · hover a token for its activation")),
      h("div", { class: "examples" }, list));
  }

  // --- token views ---------------------------------------------------------------------------------------------

  function showTokenQuery(q) {
    setNav(null, null);
    searchInput.value = q;
    return load("vocab").then(function (vocab) {
      var exact = [], loose = [], lq = q.trim().toLowerCase();
      for (var i = 0; i < vocab.length; i++) {
        var v = vocab[i];
        if (v === q) exact.push(i);
        else if (lq && v.trim().toLowerCase() === lq) loose.push(i);
      }
      if (exact.length === 1) return showToken(exact[0], loose);
      var contains = [];
      if (lq) for (var j = 0; j < vocab.length && contains.length < 60; j++) {
        if (vocab[j].toLowerCase().indexOf(lq) >= 0 && exact.indexOf(j) < 0 && loose.indexOf(j) < 0) contains.push(j);
      }
      render(h("div", { id: "token-search" },
        h("h1", null, "Token search ", h("span", { class: "sub" }, JSON.stringify(q))),
        section(exact.length + loose.length ? "Tokens" : "No token is exactly " + JSON.stringify(q), null,
          h("div", { class: "suggest" }, exact.concat(loose).map(tokenChipLink))),
        contains.length ? section("Tokens containing it", contains.length >= 60 ? "first 60" : null,
          h("div", { class: "suggest" }, contains.map(tokenChipLink))) : null));
    });
  }
  function tokenChipLink(i) {
    return h("a", { href: "#tid=" + i, title: "token " + i }, tok(DATA.vocab[i]));
  }

  function showToken(tid, alternatives) {
    setNav(null, null);
    return Promise.all([load("vocab"), tokenShard(tid)]).then(function (res) {
      var vocab = res[0], rec = res[1][String(tid)];
      if (tid >= vocab.length) throw new Error("token id " + tid + " is beyond the vocabulary (" + vocab.length + ")");
      searchInput.value = vocab[tid];
      document.title = JSON.stringify(vocab[tid]) + " · " + META.model;
      rec = rec || { n: [] };
      var pairs = META.pairs.filter(function (p) { return p[2] === tid; });
      var other = (alternatives || []).filter(function (i) { return i !== tid; });
      var both = function (list, cols) {
        return list && list.length ? table(cols, list.map(function (x, i) {
          return x.length === 2 ? [String(i + 1), neuronLink(x[0]), fmt(x[1], 3)] : [String(i + 1), neuronLink(x[0]), "#" + x[1], fmt(x[2], 3)];
        }), cols.length === 3 ? [2] : [3]) : h("p", { class: "muted" }, "none");
      };
      render(h("div", { id: "token" },
        h("div", { class: "neuron-head" }, h("h1", null, tok(vocab[tid], "big")),
          h("span", { class: "where" }, "token id " + tid + (rec.dt !== undefined ? " · d_tok " + fmt(rec.dt, 3) : "") +
            (rec.po ? " · predicted " + int(rec.po[0]) + " / occurred " + int(rec.po[1]) + " times in the dataset" : "")),
          pairs.length ? badge("pair #" + pairs[0][0] + " with " + flatName(pairs[0][1]), "watched") : null),
        other.length ? h("p", { class: "lead" }, "Also: ", other.map(function (i) { return [tokenChipLink(i), " "]; })) : null,
        h("div", { class: "grid" },
          section("Token → neurons", "the neurons most congruent with it (its top " + rec.n.length + ")",
            both(rec.n, ["#", "neuron", "congruence"])),
          section("Neuron → token, up", "neurons with it among their top " + META.top_k + " tokens",
            both(rec.t, ["#", "neuron", "its rank", "congruence"])),
          section("Neuron → token, down", "neurons with it among their bottom " + META.top_k + " tokens",
            both(rec.b, ["#", "neuron", "its rank", "congruence"])))));
    });
  }

  // --- index view ----------------------------------------------------------------------------------------------

  var browse = { layer: "all", cls: "any", exp: "any", paired: false, watched: false, universal: false, sort: "pair", page: 0, per: 50 };

  function showIndex() {
    setNav(null, null);
    document.title = META.model + " · anneuron neuron pages";
    var nExp = META.experiments.length;
    var stats = h("div", { class: "stats" },
      stat(int(META.n_layers) + " × " + int(META.d_mlp), "layers × neurons"),
      stat(int(META.n_pairs), "mutually exclusive pairs"),
      stat(Object.keys(META.class_counts).filter(function (c) { return c !== "other"; })
        .map(function (c) { return int(META.class_counts[c]) + " " + c; }).join(" · ") || "none", "classed neurons"),
      META.has_examples ? stat(int(META.n_examples), "max-activating examples" + (META.dataset ? " (" + META.dataset + ")" : "")) : null,
      stat(String(nExp), "experiments"));
    var browser = h("div", { id: "browser" });
    render(h("div", { id: "index" },
      h("h1", null, META.model, h("span", { class: "sub" }, "every MLP neuron: its tokens, class, pair, experiments and examples")),
      h("p", { class: "lead" }, "Search a neuron by id (", h("code", null, "L2N892"), ") or a token by its exact text, leading space included (",
        h("code", null, " an"), "). Press ", h("code", null, "/"), " to search; on a neuron, ", h("code", null, "←"), " / ", h("code", null, "→"), " step through neurons."),
      stats,
      pairsCard(),
      experimentsIndexCard(),
      h("div", { class: "grid" }, watchedCard(), summaryCard()),
      section("Neurons", "filter and sort; " + int(META.n_layers * META.d_mlp) + " in all", browser)));
    return renderBrowser(browser);
  }
  function stat(n, l) { return h("div", { class: "stat" }, h("div", { class: "n" }, n), h("div", { class: "l" }, l)); }

  function pairsCard() {
    var shown = 15;
    var body = h("div");
    var draw = function () {
      clear(body);
      body.appendChild(table(["rank", "neuron", "token", "score", "congruence", "d_neu", "d_tok"],
        META.pairs.slice(0, shown).map(function (p) {
          return [String(p[0]), neuronLink(p[1]), h("a", { href: "#tid=" + p[2] }, tok(p[3])), h("b", null, fmt(p[4], 3)),
            fmt(p[5], 3), fmt(p[6], 3), fmt(p[7], 3)];
        }), [3, 4, 5, 6]));
      if (META.pairs.length > shown) body.appendChild(h("div", { class: "pager" }, h("button", { onclick: function () { shown = META.pairs.length; draw(); } },
        "show " + META.pairs.length)));
    };
    draw();
    return section("Top mutually exclusive pairs", "a neuron whose most congruent token has it as its most congruent neuron; score = d_neu × d_tok", body);
  }

  function experimentsIndexCard() {
    if (!META.experiments.length) return null;
    return section("Experiments", "clean vs corrupted prompt; the neurons whose exact patching restores most",
      table(["experiment", "clean prompt → answer / wrong", "LD clean / corrupted", "check", "exact", "standouts", "top neurons"],
        META.experiments.map(function (e) {
          return [e.name, h("span", null, h("span", { class: "prompt" }, e.clean), " → ", tok(e.answer), " / ", tok(e.wrong)),
            fmt(e.ld_clean, 3) + " / " + fmt(e.ld_corrupted, 3),
            e.check === "ok" ? "ok" : badge("fails", "warn", e.check),
            int(e.n_exact), int(e.n_standout),
            h("span", null, e.top.map(function (t) { return [neuronLink(t[0]), " ", h("span", { class: "muted small" }, fmt(t[1], 2)), "  "]; }))];
        }), [4, 5]));
  }
  function watchedCard() {
    if (!META.watched.length) return null;
    return section("Watched neurons", "their proportion curves are on their pages",
      table(["#", "neuron", "token", "why"], META.watched.map(function (w) {
        return [String(w[0]), neuronLink(w[1]), tok(w[3]), w[4]];
      })));
  }
  function summaryCard() {
    if (!META.summary.length) return null;
    return section("Standing out across experiments", META.n_summary + (META.n_summary === 1 ? " neuron" : " neurons") + " in two or more",
      table(["neuron", "experiments", "max exact"], META.summary.map(function (x) {
        return [neuronLink(x[0]), x[1].join(", "), fmt(x[3], 3)];
      }), [2]));
  }

  var SORTS = {
    pair: { label: "pair score", key: function (r) { return r.ps; }, desc: true },
    d: { label: "d_neu", key: function (r) { return r.d; }, desc: true },
    a: { label: "max activation", key: function (r) { return r.a; }, desc: true },
    k: { label: "cos kurtosis", key: function (r) { return r.k; }, desc: true },
    s: { label: "cos skew", key: function (r) { return r.s; }, desc: true },
    ns: { label: "experiments stood out in", key: function (r) { return r.so.length; }, desc: true },
    v: { label: "ϱ (universality)", key: function (r) { return r.v; }, desc: true },
    id: { label: "neuron id", key: function (r) { return r.f; }, desc: false },
  };

  function renderBrowser(el) {
    var layers = [];
    for (var l = 0; l < META.n_layers; l++) if (browse.layer === "all" || +browse.layer === l) layers.push(l);
    return Promise.all(layers.map(layerIndex)).then(function (idx) {
      var rows = [];
      idx.forEach(function (ix, j) {
        var layer = layers[j], watched = {}, universal = {};
        ix.w.forEach(function (n) { watched[n] = true; });
        (ix.un || []).forEach(function (n) { universal[n] = true; });
        for (var n = 0; n < ix.c.length; n++) {
          rows.push({ f: layer * META.d_mlp + n, c: META.classes[ix.c[n]], d: ix.d[n], t: ix.t[n], tv: ix.tv[n], k: ix.k[n],
            s: ix.s[n], p: ix.p[n], ps: ix.ps[n], a: ix.a[n], so: ix.so[String(n)] || [], w: !!watched[n],
            u: !!universal[n], v: ix.v ? ix.v[n] : null });
        }
      });
      var rowsF = rows.filter(function (r) {
        if (browse.cls !== "any" && r.c !== browse.cls) return false;
        if (browse.paired && !r.p) return false;
        if (browse.watched && !r.w) return false;
        if (browse.universal && !r.u) return false;
        if (browse.exp === "any-standout" && !r.so.length) return false;
        if (browse.exp !== "any" && browse.exp !== "any-standout" && r.so.indexOf(+browse.exp) < 0) return false;
        return true;
      });
      var sort = SORTS[browse.sort];
      rowsF.sort(function (a, b) {
        var x = sort.key(a), y = sort.key(b);
        x = x === null || x === undefined ? -Infinity : x;
        y = y === null || y === undefined ? -Infinity : y;
        return x === y ? a.f - b.f : (sort.desc ? y - x : x - y);
      });
      var pages = Math.max(1, Math.ceil(rowsF.length / browse.per));
      browse.page = Math.min(browse.page, pages - 1);
      var page = rowsF.slice(browse.page * browse.per, (browse.page + 1) * browse.per);
      clear(el);
      el.appendChild(browserControls(el));
      el.appendChild(table(["neuron", "class", "top token", "d_neu", "cos kurt", "cos skew", "pair", "max act", "stands out in"],
        page.map(function (r) {
          return [neuronLink(r.f), badge(r.c, r.c), h("span", null, tok(r.t), " ", h("span", { class: "muted small" }, fmt(r.tv, 3))),
            fmt(r.d, 3), fmt(r.k, 3), fmt(r.s, 3), r.p ? h("span", null, "#" + r.p + " ", h("span", { class: "muted small" }, fmt(r.ps, 3))) : "",
            fmt(r.a, 3), r.so.map(function (i) { return META.experiments[i].name; }).join(", ")];
        }), [3, 4, 5, 7]));
      el.appendChild(h("div", { class: "pager" },
        h("button", { disabled: browse.page === 0, onclick: function () { browse.page--; renderBrowser(el); } }, "‹ previous"),
        h("span", null, "page " + (browse.page + 1) + " of " + pages + " · " + int(rowsF.length) + " neurons"),
        h("button", { disabled: browse.page + 1 >= pages, onclick: function () { browse.page++; renderBrowser(el); } }, "next ›")));
    });
  }
  function select(label, id, value, options, onchange) {
    return h("label", null, label, h("select", { id: id, onchange: function (ev) { onchange(ev.target.value); } },
      options.map(function (o) { return h("option", { value: o[0], selected: String(o[0]) === String(value) ? "selected" : null }, o[1]); })));
  }
  function check(label, id, value, onchange) {
    return h("label", null, h("input", { type: "checkbox", id: id, checked: value ? "checked" : null, onchange: function (ev) { onchange(ev.target.checked); } }), label);
  }
  function browserControls(el) {
    var again = function (k) { return function (v) { browse[k] = v; browse.page = 0; renderBrowser(el); }; };
    var layerOpts = [["all", "all"]];
    for (var l = 0; l < META.n_layers; l++) layerOpts.push([String(l), String(l)]);
    var expOpts = [["any", "—"], ["any-standout", "any experiment"]].concat(META.experiments.map(function (e, i) { return [String(i), e.name]; }));
    return h("div", { class: "controls" },
      select("layer", "f-layer", browse.layer, layerOpts, again("layer")),
      select("class", "f-class", browse.cls, [["any", "any"]].concat(META.classes.map(function (c) { return [c, c]; })), again("cls")),
      select("stands out in", "f-exp", browse.exp, expOpts, again("exp")),
      check("paired only", "f-paired", browse.paired, again("paired")),
      check("watched only", "f-watched", browse.watched, again("watched")),
      META.universality ? check("universal only (" + int(META.universality.n_universal) + ")", "f-universal", browse.universal, again("universal")) : null,
      select("sort by", "f-sort", browse.sort, Object.keys(SORTS).filter(function (k) { return k !== "v" || META.universality; })
        .map(function (k) { return [k, SORTS[k].label]; }), again("sort")));
  }

  // --- start ---------------------------------------------------------------------------------------------------

  if (!META) {
    render(h("p", { class: "error" }, "The data of these pages did not load (data/meta.js). Open index.html from its own folder, results/<model>/pages/, with its data/ and assets/ folders beside it."));
    STATE.error = "no meta";
    return;
  }
  // the pieces the live text box (assets/live.js, under `make serve`) renders with, so it shades like the examples
  STATE.ui = { h: h, shade: shade, section: section, fmt: fmt };
  window.addEventListener("hashchange", route);
  route();
})();
