// keepstone ui: the page scripts. No inline scripts anywhere (the CSP
// forbids them): pages mark what they need with data- attributes.
//
// - .graph[data-src]: fetch graph JSON ({nodes, edges, note}) from this
//   server and draw it with cytoscape (pan, zoom, click a node to open it).
//   Labels are drawn on a canvas as text; a node's link is followed only
//   when it is a path on this server.
// - input[data-asof]: a slider over event seqs; moving it redraws the graph
//   as of that seq and updates the address bar, so the view stays linkable.
"use strict";

(function () {
  var PALETTE = [
    "#3b5b92", "#58b174", "#e5a630", "#9b59b6", "#d9534f",
    "#16a2b8", "#8d6e63", "#5c6bc0", "#26a69a", "#ef6c00",
  ];
  var KIND_COLOURS = { run: "#3b5b92", artifact: "#58b174" };

  window.keepstoneGraphs = [];

  function safeHref(value) {
    return typeof value === "string" && value.charAt(0) === "/" && value.charAt(1) !== "/"
      ? value : null;
  }

  function colourOf(kind, kinds) {
    if (KIND_COLOURS[kind]) return KIND_COLOURS[kind];
    var i = kinds.indexOf(kind);
    return PALETTE[(i < 0 ? 0 : i) % PALETTE.length];
  }

  function fillList(list, data, kinds) {
    if (!list) return;
    while (list.firstChild) list.removeChild(list.firstChild);
    data.nodes.forEach(function (node) {
      var item = document.createElement("li");
      var href = safeHref(node.href);
      var name = href ? document.createElement("a") : document.createElement("span");
      if (href) name.setAttribute("href", href);
      name.textContent = node.label;
      name.className = "graph-node";
      name.dataset.node = node.id;
      item.appendChild(name);
      var kind = document.createElement("span");
      kind.className = "muted";
      kind.textContent = " " + node.kind + (node.sub ? " · " + node.sub : "");
      item.appendChild(kind);
      list.appendChild(item);
    });
  }

  function draw(container, data) {
    var kinds = data.kinds || [];
    data.nodes.forEach(function (n) { if (kinds.indexOf(n.kind) < 0) kinds.push(n.kind); });
    var elements = [];
    data.nodes.forEach(function (n) {
      elements.push({
        group: "nodes",
        data: {
          id: n.id,
          label: n.sub ? n.label + "\n" + n.sub : n.label,
          kind: n.kind,
          href: n.href,
          colour: colourOf(n.kind, kinds),
          focus: n.focus ? "yes" : "no",
          root: n.root ? "yes" : "no",
        },
      });
    });
    data.edges.forEach(function (e) {
      elements.push({
        group: "edges",
        data: {
          id: e.id, source: e.source, target: e.target, label: e.label,
          merged: e.label === "merged" ? "yes" : "no",
        },
      });
    });
    var old = container.keepstoneCy;
    if (old) {
      window.keepstoneGraphs = window.keepstoneGraphs.filter(function (g) { return g !== old; });
      old.destroy();
    }
    var cy = window.cytoscape({
      container: container,
      elements: elements,
      minZoom: 0.1,
      maxZoom: 4,
      style: [
        {
          selector: "node",
          style: {
            "background-color": "data(colour)",
            label: "data(label)",
            "font-size": 10,
            color: "#1d232b",
            "text-wrap": "wrap",
            "text-max-width": "140px",
            "text-valign": "bottom",
            "text-margin-y": 4,
            width: 22,
            height: 22,
          },
        },
        { selector: "node[kind = 'run']", style: { shape: "round-rectangle", width: 26 } },
        {
          selector: "node[focus = 'yes']",
          style: { "border-width": 4, "border-color": "#e5a630", width: 30, height: 30 },
        },
        {
          selector: "edge",
          style: {
            width: 1.5,
            "line-color": "#aab3c0",
            "target-arrow-color": "#aab3c0",
            "target-arrow-shape": "triangle",
            "curve-style": "bezier",
            label: "data(label)",
            "font-size": 8,
            color: "#6a7380",
            "text-rotation": "autorotate",
          },
        },
        { selector: "edge[merged = 'yes']", style: { "line-style": "dashed" } },
      ],
      layout: { name: "preset" },
    });
    var layout = {
      name: container.dataset.layout || "cose",
      directed: true,
      padding: 24,
      animate: false,
      spacingFactor: 1.1,
    };
    var roots = cy.nodes("[root = 'yes']");
    if (layout.name === "breadthfirst" && roots.length) layout.roots = roots;
    cy.layout(layout).run();
    if (cy.zoom() > 1.5) {
      cy.zoom(1.5);
      cy.center();
    }
    cy.on("tap", "node", function (event) {
      var href = safeHref(event.target.data("href"));
      if (href) window.location.assign(href);
    });
    container.keepstoneCy = cy;
    window.keepstoneGraphs.push(cy);
    container.dataset.nodes = String(cy.nodes().length);
    container.dataset.edges = String(cy.edges().length);
    var note = document.getElementById(container.id + "-note");
    if (note) {
      note.textContent = data.note || (cy.nodes().length === 0 ? "nothing to draw" : "");
    }
    fillList(document.getElementById(container.id + "-list"), data, kinds);
    container.dataset.ready = "yes";
  }

  function load(container, src) {
    container.dataset.ready = "no";
    return fetch(src, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error("the server answered " + response.status);
        return response.json();
      })
      .then(function (data) { draw(container, data); })
      .catch(function (error) {
        var note = document.getElementById(container.id + "-note");
        if (note) note.textContent = "could not load the graph: " + error.message;
        container.dataset.ready = "error";
      });
  }

  function withParam(url, name, value) {
    var parsed = new URL(url, window.location.origin);
    parsed.searchParams.set(name, value);
    return parsed.pathname + parsed.search;
  }

  function setupSlider(slider) {
    var target = document.getElementById(slider.dataset.asof);
    var shown = document.getElementById(slider.id + "-value");
    if (!target) return;
    slider.addEventListener("input", function () {
      if (shown) shown.textContent = slider.value;
    });
    slider.addEventListener("change", function () {
      var seq = slider.value;
      load(target, withParam(target.dataset.src, "as_of", seq));
      window.history.replaceState(null, "", withParam(window.location.href, "as_of", seq));
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll(".graph[data-src]").forEach(function (container) {
      if (typeof window.cytoscape !== "function") {
        container.dataset.ready = "error";
        return;
      }
      load(container, container.dataset.src);
    });
    document.querySelectorAll("input[data-asof]").forEach(setupSlider);
  });
})();
