/* minigpt inspect pages: the attention widget and the canvas heatmaps.
   The numbers come from the page's JSON blocks; text from the model only ever enters
   the page through textContent or an attribute, never as markup. */
(function () {
  "use strict";

  var SVG = "http://www.w3.org/2000/svg";

  function make(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function svg(tag, attrs) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, String(attrs[k])); });
    return node;
  }

  // A token made only of spaces would read as nothing: show its spaces as U+2423.
  function shown(label) {
    return label.trim() === "" ? label.replace(/ /g, "\u2423") : label;
  }

  function mix(stops, t) {
    t = Math.max(0, Math.min(1, t));
    var x = t * (stops.length - 1), i = Math.min(Math.floor(x), stops.length - 2), f = x - i;
    return [0, 1, 2].map(function (c) {
      return Math.round(stops[i][c] + (stops[i + 1][c] - stops[i][c]) * f);
    });
  }
  var BLUES = [[255, 255, 255], [107, 174, 214], [8, 48, 107]];
  var DIVERGING = [[33, 102, 172], [255, 255, 255], [178, 24, 43]];
  function css(rgb) { return "rgb(" + rgb.join(",") + ")"; }
  function blue(w) { return css(mix(BLUES, w)); }

  // ---------------------------------------------------------------------------------
  // Attention: the heatmap of one head, the token view, every head of the layer.

  function attentionWidget(data) {
    var tokens = data.tokens, att = data.attention;
    var L = att.length, H = att[0].length, T = tokens.length;
    var layerSel = document.getElementById("layer"), headSel = document.getElementById("head");
    var heatmap = document.getElementById("heatmap");
    var tokenview = document.getElementById("tokenview");
    var overview = document.getElementById("overview");
    var readout = document.getElementById("readout");
    var state = { layer: 0, head: 0, focus: null, pinned: null };

    for (var l = 0; l < L; l++) {
      var lo = make("option", null, "layer " + l);
      lo.value = String(l);
      layerSel.appendChild(lo);
    }
    for (var h = 0; h < H; h++) {
      var ho = make("option", null, "head " + h);
      ho.value = String(h);
      headSel.appendChild(ho);
    }

    // The heatmap: a grid of query rows and key columns, the labels around it.
    var size = Math.max(8, Math.min(26, Math.floor(540 / T)));
    heatmap.style.setProperty("--cell", size + "px");
    if (tokens.every(function (t) { return shown(t).length <= 2; })) heatmap.classList.add("short");
    heatmap.style.gridTemplateColumns = "auto repeat(" + T + ", " + size + "px)";
    heatmap.appendChild(make("div", "axis", "query \u2193  key \u2192"));
    var colLabels = [], rowLabels = [], cells = [];
    for (var k = 0; k < T; k++) {
      var cl = make("div", "lab col", shown(tokens[k]));
      cl.title = k + ": " + tokens[k];
      colLabels.push(cl);
      heatmap.appendChild(cl);
    }
    for (var q = 0; q < T; q++) {
      var rl = make("div", "lab row", shown(tokens[q]));
      rl.title = q + ": " + tokens[q];
      rowLabels.push(rl);
      heatmap.appendChild(rl);
      var row = [];
      for (var kk = 0; kk < T; kk++) {
        var cell = make("div", "cell");
        cell.dataset.q = String(q);
        cell.dataset.k = String(kk);
        heatmap.appendChild(cell);
        row.push(cell);
      }
      cells.push(row);
    }
    heatmap.addEventListener("mouseover", function (e) {
      var c = e.target;
      if (!c.classList || !c.classList.contains("cell")) return;
      readout.textContent = "query " + c.dataset.q + " " + JSON.stringify(tokens[+c.dataset.q]) +
        " \u2192 key " + c.dataset.k + " " + JSON.stringify(tokens[+c.dataset.k]) + ": " + c.dataset.w;
      setFocus({ side: "q", index: +c.dataset.q });
    });
    heatmap.addEventListener("mouseleave", function () {
      readout.textContent = "";
      setFocus(state.pinned);
    });

    // The token view: queries on the left, keys on the right, lines between.
    var rowH = 22, lineW = 150;
    var qCol = make("div", "tv-col q"), kCol = make("div", "tv-col k");
    qCol.appendChild(make("div", "tv-head", "from"));
    kCol.appendChild(make("div", "tv-head", "to"));
    var lines = svg("svg", { class: "tv-lines", width: lineW, height: T * rowH + 18 });
    var qToks = [], kToks = [];
    for (var i = 0; i < T; i++) {
      [[qCol, qToks, "q"], [kCol, kToks, "k"]].forEach(function (side) {
        var tok = make("span", "tok", shown(tokens[i]));
        tok.dataset.i = String(i);
        tok.dataset.side = side[2];
        tok.title = i + ": " + tokens[i];
        side[0].appendChild(tok);
        side[1].push(tok);
      });
    }
    tokenview.appendChild(qCol);
    tokenview.appendChild(lines);
    tokenview.appendChild(kCol);
    tokenview.addEventListener("mouseover", function (e) {
      var t = e.target;
      if (t.classList && t.classList.contains("tok")) setFocus({ side: t.dataset.side, index: +t.dataset.i });
    });
    tokenview.addEventListener("mouseleave", function () { setFocus(state.pinned); });
    tokenview.addEventListener("click", function (e) {
      var t = e.target;
      if (!t.classList || !t.classList.contains("tok")) return;
      var f = { side: t.dataset.side, index: +t.dataset.i };
      var same = state.pinned && state.pinned.side === f.side && state.pinned.index === f.index;
      state.pinned = same ? null : f;
      setFocus(state.pinned || f);
    });

    // Every head of the layer, small; a click selects the head.
    var figures = [], canvases = [];
    for (var hh = 0; hh < H; hh++) {
      var fig = make("figure");
      fig.dataset.head = String(hh);
      var canvas = make("canvas");
      canvas.width = T;
      canvas.height = T;
      fig.appendChild(canvas);
      fig.appendChild(make("figcaption", null, "head " + hh));
      fig.addEventListener("click", function () {
        headSel.value = this.dataset.head;
        headSel.dispatchEvent(new Event("change"));
      });
      overview.appendChild(fig);
      figures.push(fig);
      canvases.push(canvas);
    }

    function weights() { return att[state.layer][state.head]; }

    function drawHeatmap() {
      var w = weights();
      for (var q = 0; q < T; q++) {
        for (var k = 0; k < T; k++) {
          var c = cells[q][k], v = w[q][k], text = v.toFixed(4);
          c.dataset.w = text;
          if (k > q) {
            c.className = "cell masked";
            c.style.background = "";
            c.title = "query " + q + " \u2192 key " + k + ": " + text + " (masked: a later key)";
          } else {
            c.className = "cell";
            c.style.background = blue(v);
            c.title = "query " + q + " \u2192 key " + k + ": " + text;
          }
        }
      }
    }

    function drawOverview() {
      var f = state.focus;
      for (var h = 0; h < H; h++) {
        var w = att[state.layer][h], ctx = canvases[h].getContext("2d");
        var img = ctx.createImageData(T, T);
        for (var q = 0; q < T; q++) {
          for (var k = 0; k < T; k++) {
            var rgb = k > q ? [236, 238, 242] : mix(BLUES, w[q][k]);
            var on = !f || (f.side === "q" ? q === f.index : k === f.index);
            var o = 4 * (q * T + k);
            img.data[o] = rgb[0];
            img.data[o + 1] = rgb[1];
            img.data[o + 2] = rgb[2];
            img.data[o + 3] = on ? 255 : 90;
          }
        }
        ctx.putImageData(img, 0, 0);
        figures[h].classList.toggle("selected", h === state.head);
      }
    }

    function drawFocus() {
      var w = weights(), f = state.focus;
      while (lines.firstChild) lines.removeChild(lines.firstChild);
      var y = function (i) { return 18 + i * rowH + rowH / 2; };
      var line = function (q, k, v, strong) {
        lines.appendChild(svg("line", {
          x1: 2, y1: y(q), x2: lineW - 2, y2: y(k),
          stroke: strong ? "#c2410c" : "#2563eb",
          "stroke-opacity": Math.min(1, strong ? 0.15 + v : v * 0.8).toFixed(3),
          "stroke-width": (strong ? 1 + 3 * v : 1).toFixed(2),
          "data-q": q, "data-k": k, "data-w": v.toFixed(4),
        }));
      };
      for (var i = 0; i < T; i++) {
        [qToks[i], kToks[i]].forEach(function (t) {
          t.style.background = "";
          t.classList.remove("focus");
          t.classList.remove("pinned");
          delete t.dataset.weight;
        });
        rowLabels[i].classList.remove("focus");
        colLabels[i].classList.remove("focus");
      }
      for (var q = 0; q < T; q++) {
        for (var k = 0; k < T; k++) {
          var on = f && k <= q && (f.side === "q" ? q === f.index : k === f.index);
          cells[q][k].classList.toggle("focus", !!on);
        }
      }
      if (!f) {
        if (T <= 64) {
          for (var a = 0; a < T; a++) {
            for (var b = 0; b <= a; b++) if (w[a][b] >= 0.02) line(a, b, w[a][b], false);
          }
        }
        return;
      }
      var p = state.pinned;
      if (f.side === "q") {
        var q0 = f.index;
        qToks[q0].classList.add("focus");
        rowLabels[q0].classList.add("focus");
        if (p && p.side === "q" && p.index === q0) qToks[q0].classList.add("pinned");
        for (var k0 = 0; k0 < T; k0++) {
          var v = w[q0][k0];
          kToks[k0].dataset.weight = v.toFixed(4);
          kToks[k0].style.background = k0 > q0 ? "" : blue(v);
          kToks[k0].style.color = v > 0.55 ? "#fff" : "";
          if (k0 <= q0) line(q0, k0, v, true);
        }
      } else {
        var k1 = f.index;
        kToks[k1].classList.add("focus");
        colLabels[k1].classList.add("focus");
        if (p && p.side === "k" && p.index === k1) kToks[k1].classList.add("pinned");
        for (var q1 = 0; q1 < T; q1++) {
          var u = w[q1][k1];
          qToks[q1].dataset.weight = u.toFixed(4);
          qToks[q1].style.background = q1 < k1 ? "" : blue(u);
          qToks[q1].style.color = u > 0.55 ? "#fff" : "";
          if (q1 >= k1) line(q1, k1, u, true);
        }
      }
    }

    function setFocus(f) {
      state.focus = f;
      for (var i = 0; i < T; i++) {
        qToks[i].style.color = "";
        kToks[i].style.color = "";
      }
      drawFocus();
      drawOverview();
    }

    function select() {
      state.layer = +layerSel.value;
      state.head = +headSel.value;
      drawHeatmap();
      setFocus(state.focus);
    }

    layerSel.addEventListener("change", select);
    headSel.addEventListener("change", select);
    layerSel.value = "0";
    headSel.value = "0";
    select();
  }

  // ---------------------------------------------------------------------------------
  // The report's other heatmaps: one canvas pixel per value, scaled up by CSS.

  function heatCanvases(report) {
    var canvases = document.querySelectorAll("canvas.heat");
    for (var n = 0; n < canvases.length; n++) {
      var canvas = canvases[n], m = report.heatmaps[canvas.dataset.key];
      var rows = m.values.length, cols = m.values[0].length;
      canvas.width = cols;
      canvas.height = rows;
      var scale = Math.max(1, Math.floor(360 / Math.max(rows, cols)));
      canvas.style.width = cols * scale + "px";
      canvas.style.height = rows * scale + "px";
      var ctx = canvas.getContext("2d"), img = ctx.createImageData(cols, rows);
      for (var r = 0; r < rows; r++) {
        for (var c = 0; c < cols; c++) {
          var v = m.values[r][c];
          var rgb = m.diverging
            ? mix(DIVERGING, 0.5 + 0.5 * v / (m.hi || 1))
            : mix(BLUES, (v - m.lo) / ((m.hi - m.lo) || 1));
          var o = 4 * (r * cols + c);
          img.data[o] = rgb[0];
          img.data[o + 1] = rgb[1];
          img.data[o + 2] = rgb[2];
          img.data[o + 3] = 255;
        }
      }
      ctx.putImageData(img, 0, 0);
      canvas.addEventListener("mousemove", (function (canvas, m, scale) {
        return function (e) {
          var box = canvas.getBoundingClientRect();
          var c = Math.floor((e.clientX - box.left) / scale), r = Math.floor((e.clientY - box.top) / scale);
          if (r >= 0 && r < m.values.length && c >= 0 && c < m.values[0].length) {
            canvas.title = m.rows + " " + r + ", " + m.cols + " " + c + ": " + m.values[r][c].toFixed(4);
          }
        };
      })(canvas, m, scale));
    }
  }

  var dataNode = document.getElementById("data");
  if (dataNode) attentionWidget(JSON.parse(dataNode.textContent));
  var reportNode = document.getElementById("report");
  if (reportNode) heatCanvases(JSON.parse(reportNode.textContent));
})();
