/* yitu map styling: every function the dash-leaflet layers name lives under window.yitu.map.
 * Each layer in the registry (layers/registry.py) names its style function here; data drives style
 * through the layer's `hideout` (its name, the events that reload it, data read from the database
 * such as the case types' glyphs, and what Python callbacks set); the logic is here.
 * window.yitu.loaded counts features per layer, so tests and the bench can tell the map has settled.
 */
(function () {
  "use strict";
  var yitu = (window.yitu = window.yitu || {});
  yitu.loaded = yitu.loaded || {};
  yitu.maps = yitu.maps || [];

  // Keep a handle on every Leaflet map (tests and the bench drive the map through it).
  if (window.L && window.L.Map && !yitu._hooked) {
    window.L.Map.addInitHook(function () { yitu.maps.push(this); });
    yitu._hooked = true;
  }

  // The server's own base map (services/basemap.py, class yitu-basemap) is drawn for 1080 lines, like
  // the icons: a 4K wall of one device pixel per pixel gets its roads and names twice as large, as
  // 512-pixel tiles of one zoom less drawn at twice the scale ("@2x"). A HiDPI screen already asks
  // for "@2x" tiles through Leaflet's {r}.
  if (window.L && window.L.TileLayer && !yitu._tilesHooked) {
    window.L.TileLayer.addInitHook(function () {
      var big = (window.innerHeight || 1080) / 1080 >= 1.5 && !window.L.Browser.retina;
      if (this.options.className === "yitu-basemap" && big && this._url.indexOf("{r}") >= 0) {
        this._url = this._url.replace("{r}", "@2x");
        this.options.tileSize = 512;
        this.options.zoomOffset = -1;
        this.options.minZoom = Math.max(this.options.minZoom || 0, 1);  // no zoom -1 tile
      }
    });
    yitu._tilesHooked = true;
  }

  var STEP_COLOURS = {
    reported: "#ffb020", accepted: "#ffd84d", dispatched: "#3fb6ff",
    handling: "#a070ff", closed: "#3ddc84", evaluated: "#2fa86a", rejected: "#7a8599"
  };
  var VAN_COLOURS = { available: "#3ddc84", en_route: "#3fb6ff", on_site: "#ffb020", offline: "#7a8599" };
  var LEVEL_LINE = { 1: ["#7fd3ff", 3], 2: ["#4fc3f7", 2.2], 3: ["#2e8bd8", 1.4], 4: ["#1f5fa8", 0.9] };
  var RAMPS = {
    open: ["#0d2a4a", "#124a7a", "#1c6fb0", "#f0a030", "#ff5a3c"],
    overdue: ["#0d2a4a", "#5a2a4a", "#9a2f45", "#d2393a", "#ff3b30"],
    rate: ["#ff5a3c", "#f0a030", "#d9d94a", "#56c271", "#2fa86a"]
  };

  // Icons are drawn for 1080 lines; a 4K wall gets them twice as large.
  function ui(px) {
    return Math.round(px * Math.max(1, (window.innerHeight || 1080) / 1080));
  }

  function count(layer) {
    yitu.loaded[layer] = (yitu.loaded[layer] || 0) + 1;
  }

  function rampColour(mode, value, breaks) {
    var ramp = RAMPS[mode] || RAMPS.open;
    if (value === null || value === undefined) { return "#0b1730"; }
    for (var i = 0; i < breaks.length; i++) { if (value <= breaks[i]) { return ramp[i]; } }
    return ramp[ramp.length - 1];
  }

  // A cluster bubble: its size grows in two steps with the count.
  function cluster(feature, latlng, kind, mid, big) {
    var n = feature.properties.point_count;
    var size = ui(n < mid ? 30 : n < big ? 38 : 46);
    var icon = L.divIcon({
      html: "<div><span>" + feature.properties.point_count_abbreviated + "</span></div>",
      className: "yitu-cluster yitu-cluster-" + kind, iconSize: L.point(size, size)
    });
    return L.marker(latlng, { icon: icon });
  }

  function esc(s) {
    return String(s === null || s === undefined ? "" : s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }

  // An area's name on the map, at its polygon's centre, added and removed with the polygon. A marker
  // with a size-less divIcon centred by CSS, not a permanent tooltip: a tooltip measures itself
  // (offsetWidth) as it opens and at every zoom, one forced layout per label — 1.1 s for the
  // labels of a league village's box (profiled) — where a marker is placed by a transform only.
  function label(layer, p) {
    var marker = null;
    layer.on("add", function () {
      var map = layer._map;
      if (!map.getPane("yitu-labels")) {
        var pane = map.createPane("yitu-labels");
        pane.style.zIndex = 650;
        pane.style.pointerEvents = "none";
      }
      marker = L.marker(layer.getCenter(), {
        pane: "yitu-labels", interactive: false, keyboard: false,
        icon: L.divIcon({
          className: "yitu-label yitu-label-l" + p.level, iconSize: null, iconAnchor: [0, 0],
          html: "<span>" + esc(p.name) + "</span>"
        })
      }).addTo(map);
      marker._icon.setAttribute("data-level", p.level);
      declutter(map);
    });
    layer.on("remove", function () {
      if (marker) { marker.remove(); marker = null; }
    });
  }

  // Names that would overlap on screen: the larger area's (lower level) is shown, the other hidden,
  // once per frame after labels are added and after each zoom or pan. All boxes are read in one pass
  // (one layout), then the visibility written, so the cost is one layout however many labels.
  function declutter(map) {
    if (!map._yituLabelsHooked) {
      map.on("zoomend moveend", function () { declutter(map); });
      map._yituLabelsHooked = true;
    }
    if (map._yituDeclutter) { return; }
    map._yituDeclutter = requestAnimationFrame(function () {
      map._yituDeclutter = null;
      var pane = map.getPane("yitu-labels");
      if (!pane) { return; }
      var items = [];
      for (var i = 0; i < pane.children.length; i++) {
        var el = pane.children[i];
        var r = el.firstChild ? el.firstChild.getBoundingClientRect() : null;
        items.push({ el: el, level: +el.getAttribute("data-level") || 9, r: r, i: i });
      }
      items.sort(function (a, b) { return a.level - b.level || a.i - b.i; });
      var kept = [];
      items.forEach(function (it) {
        var r = it.r;
        it.hide = !r || r.width === 0 ? false : kept.some(function (k) {
          return r.left < k.right && r.right > k.left && r.top < k.bottom && r.bottom > k.top;
        });
        if (!it.hide && r && r.width) { kept.push(r); }
      });
      items.forEach(function (it) { it.el.style.visibility = it.hide ? "hidden" : ""; });
      yitu.labelsShown = kept.length;  // how many names are on screen (tests)
    });
  }

  function vanIcon(p) {
    var colour = VAN_COLOURS[p.status] || "#ffffff";
    var heading = p.heading === null || p.heading === undefined ? 0 : p.heading;
    return L.divIcon({
      className: "yitu-van",
      html: '<div class="yitu-van-body" style="border-color:' + colour + '">' +
            '<div class="yitu-van-arrow" style="transform:rotate(' + heading + 'deg);border-bottom-color:' + colour + '"></div>' +
            '<span>' + esc(p.id) + "</span></div>",
      iconSize: L.point(ui(40), ui(40)), iconAnchor: L.point(ui(20), ui(20))
    });
  }

  // A batch whose only events for the vans layer are van moves: each van's marker goes to its newest
  // fix from the event itself (heading and status with it), no reload. False when a move names a van
  // the page has not drawn (or is not the newest fix it knows), so the layer reloads instead.
  function moveVans(batch, hideout) {
    if (batch.resync || !hideout || hideout.layer !== "vans") { return false; }
    var kinds = hideout.live || [];
    var mine = (batch.events || []).filter(function (e) {
      return kinds.some(function (k) { return String(e.type).indexOf(k) === 0; });
    });
    var markers = yitu.vanMarkers || {};
    var ok = mine.length > 0 && mine.every(function (e) {
      var m = markers[e.van];
      return e.type === "van.moved" && m && m.marker._map && typeof e.lat === "number" && typeof e.lon === "number";
    });
    if (!ok) { return false; }
    mine.forEach(function (e) {
      if (e.latest === false) { return; }  // a late fix: the van stays where it is
      var m = markers[e.van];
      var next = Object.assign({}, m.props, { heading: e.heading, status: e.status || m.props.status });
      m.marker.setLatLng([e.lat, e.lon]);
      if (next.heading !== m.props.heading || next.status !== m.props.status) { m.marker.setIcon(vanIcon(next)); }
      m.props = next;
      yitu.vanAt = yitu.vanAt || {};
      yitu.vanAt[e.van] = [e.lat, e.lon, next.status];
    });
    yitu.live.vanMoves = (yitu.live.vanMoves || 0) + 1;
    return true;
  }

  function hideoutOf(context) { return (context && context.hideout) || {}; }

  // Merged into what is there: a second asset file (or a test) may add a layer's function in any order.
  yitu.map = Object.assign(yitu.map || {}, {
    // The default onEachFeature of every layer: counts its features under the layer's name.
    count: function (feature, layer, context) { count(hideoutOf(context).layer || "?"); },
    gridStyle: function (feature, context) {
      var h = (context && context.hideout) || {};
      var p = feature.properties;
      var line = LEVEL_LINE[p.level] || LEVEL_LINE[4];
      var style = { color: line[0], weight: line[1], opacity: 0.9, fillColor: "#0b1730", fillOpacity: 0.15 };
      if (h.mode && h.mode !== "none" && h.stats) {
        var s = h.stats[p.code] || {};
        var v = h.mode === "rate" ? s.rate : (s[h.mode] || 0);
        style.fillColor = rampColour(h.mode, v, (h.breaks || {})[h.mode] || [0, 1, 3, 6]);
        style.fillOpacity = 0.55;
      }
      if (h.selected && h.selected === p.code) {
        style.color = "#ffe066"; style.weight = line[1] + 2; style.fillOpacity = Math.max(style.fillOpacity, 0.3);
      }
      return style;
    },
    gridHover: function () { return { weight: 4, color: "#ffe066" }; },
    gridEach: function (feature, layer, context) {
      count("grids");
      yitu.gridLevel = feature.properties.level;  // the level on screen (tests wait for it)
      yitu.gridsDrawn = yitu.gridsDrawn || {};   // which areas were drawn (a layer may redraw)
      yitu.gridsDrawn[feature.properties.code] = feature.properties.level;
      var h = (context && context.hideout) || {};
      if (h.labels !== false) { label(layer, feature.properties); }
    },
    vanEach: function (feature, layer, context) {
      count(feature.properties.kind === "trail" ? "trails" : hideoutOf(context).layer || "vans");
    },
    cameraPoint: function (feature, latlng) {
      var on = feature.properties.status === "online";
      return L.circleMarker(latlng, {
        radius: ui(4), weight: 1, color: on ? "#7dffb0" : "#8a93a6", fillColor: on ? "#23c16b" : "#4a5366", fillOpacity: 0.9
      });
    },
    cameraCluster: function (feature, latlng) { return cluster(feature, latlng, "camera", 50, 500); },
    casePoint: function (feature, latlng, context) {
      var p = feature.properties;
      var glyphs = hideoutOf(context).glyphs || {};  // from case_types, one per type
      if (!(p.code in yitu.drawn)) { yitu.drawn[p.code] = performance.now(); }
      yitu.pins = yitu.pins || {};
      yitu.pins[p.code] = p.step;
      var colour = STEP_COLOURS[p.step] || "#ffffff";
      // Triage: a major case wears a red corner mark 重, a group (群体性) one a 群; both: 重.
      var mark = p.severity === "major" ? "major" : p["group"] ? "group" : "";
      var icon = L.divIcon({
        className: "yitu-pin" + (p.overdue ? " yitu-pin-overdue" : "") + (mark ? " yitu-pin-" + mark : ""),
        html: '<div class="yitu-pin-dot" style="background:' + colour + '">' + esc(glyphs[p.type] || "?") + "</div>" +
              (mark ? '<span class="yitu-pin-mark">' + (mark === "major" ? "重" : "群") + "</span>" : ""),
        iconSize: L.point(ui(26), ui(26)), iconAnchor: L.point(ui(13), ui(13))
      });
      return L.marker(latlng, { icon: icon, title: p.code, riseOnHover: true });
    },
    caseCluster: function (feature, latlng) { return cluster(feature, latlng, "case", 10, 100); },
    vanPoint: function (feature, latlng) {
      var p = feature.properties;
      yitu.vanAt = yitu.vanAt || {};
      yitu.vanAt[p.id] = [latlng.lat, latlng.lng, p.status];  // where each van is drawn (tests, bench)
      var marker = L.marker(latlng, { icon: vanIcon(p), title: p.name, zIndexOffset: 1000 });
      yitu.vanMarkers = yitu.vanMarkers || {};
      yitu.vanMarkers[p.id] = { marker: marker, props: Object.assign({}, p) };  // moved by van.moved events
      return marker;
    },
    trailStyle: function (feature) {
      var p = feature.properties;
      return { color: "#3fb6ff", weight: 3, opacity: 0.7, dashArray: "6 6" };
    },
    centerPoint: function (feature, latlng) {
      var p = feature.properties;
      var size = ui(p.level === 1 ? 22 : p.level === 2 ? 16 : 10);
      var icon = L.divIcon({
        className: "yitu-center yitu-center-l" + p.level,
        html: p.level === 1 ? "<div>调</div>" : "<div></div>",
        iconSize: L.point(size, size), iconAnchor: L.point(size / 2, size / 2)
      });
      return L.marker(latlng, { icon: icon, title: p.name });
    }
  });

  // The wall-screen clock: pure UI, so it runs in the browser (no server round trip).
  yitu.clock = function (n, lang) {
    var d = new Date();
    var fmt = new Intl.DateTimeFormat(lang === "en" ? "en-GB" : "zh-CN", {
      timeZone: "Asia/Shanghai", year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit", weekday: "short", hour12: false
    });
    return fmt.format(d);
  };

  // Live push (callbacks/live.py): a batch of stream events arrives in the live-events store;
  // the layers it touches reload from their URL (PostGIS is the record), the numbers refresh.
  // yitu.live.seen[code] / yitu.drawn[code] record when an event and its pin reached the page.
  yitu.drawn = yitu.drawn || {};

  // Whether a batch touches a layer: the event types that reload it come in its hideout (Layer.live).
  function touches(batch, hideout) {
    if (batch.resync) { return true; }
    var kinds = (hideout && hideout.live) || [];
    return (batch.events || []).some(function (e) {
      return kinds.some(function (k) { return String(e.type).indexOf(k) === 0; });
    });
  }

  function withRev(url, rev) {
    var base = String(url).replace(/([?&])rev=[0-9a-z]+(&|$)/, function (m, a, b) { return b ? a : ""; });
    return base + (base.indexOf("?") >= 0 ? "&" : "?") + "rev=" + rev;
  }

  yitu.live = {
    seen: {},
    batches: 0,
    resyncs: 0,
    last: null,
    layerUrls: function (batch, urls, ids, hideouts) {
      var nu = window.dash_clientside.no_update;
      if (!batch) { return (ids || []).map(function () { return nu; }); }
      var live = yitu.live;
      var key = batch.seq + "@" + batch.at;  // one callback per page's layer type: count a batch once
      if (live.lastKey !== key) {
        live.lastKey = key;
        live.batches += 1;
        if (batch.resync) { live.resyncs += 1; }
        live.last = batch;
        var t = performance.now();
        live.lastAt = t;
        (batch.events || []).forEach(function (e) { if (e.code && !(e.code in live.seen)) { live.seen[e.code] = t; } });
      }
      // The event the layers reload for (its outbox id): the server hands every screen asking after
      // it one shared answer (services/layer_answers.py). A resync names no event: a new token.
      var rev = batch.outbox && !batch.resync ? String(batch.outbox)
        : "r" + (Math.round(batch.at * 1000) % 1000000000).toString(36);
      return (ids || []).map(function (id, i) {
        var hideout = (hideouts || [])[i];
        if (!urls[i] || !touches(batch, hideout)) { return nu; }
        if (moveVans(batch, hideout)) {  // moved in place; the trails follow at a slower pace
          return live.reload(id, withRev(urls[i], rev), false, live.TRAIL_MS, true);
        }
        return live.reload(id, withRev(urls[i], rev), !!batch.resync);
      });
    },
    // A layer reloads at most once a RELOAD_MS: the first batch after a quiet spell at once, the
    // batches of a busy one as one trailing reload with the newest event, RELOAD_MS after the last.
    // A screen follows each event within the push window (the event's arrival is what is timed),
    // and a centre taking 50 reports a second does not have every screen fetch its pins ten times a
    // second (docs/scaling.md). A resync reloads at once.
    RELOAD_MS: 1000,
    TRAIL_MS: 30000,  // the vans, moved from their events, reload their layer (for the trails) this often
    layers: {},
    reload: function (id, url, now, every, trailing) {
      var live = yitu.live;
      var gap = every || live.RELOAD_MS;
      var key = JSON.stringify(id);
      var st = live.layers[key] || (live.layers[key] = { at: -Infinity, url: null, timer: null, due: 0 });
      var t = performance.now();
      if (trailing && st.at < t - gap) { st.at = t; }  // only after: the first move waits a whole gap too
      if (now || (!trailing && t - st.at >= gap)) {
        if (st.timer) { clearTimeout(st.timer); st.timer = null; }
        st.at = t;
        return url;
      }
      st.url = url;  // the newest wins
      if (st.timer && st.due > st.at + 2 * gap) { clearTimeout(st.timer); st.timer = null; }  // sooner now
      if (!st.timer) {
        var map = yitu.maps[yitu.maps.length - 1];  // the page's map: not reloaded once it is gone
        // on the gap's boundaries of the wall clock, as the pushes (callbacks/live.py aligned): the
        // screens reload together, after the same event, and share one answer
        var wall = Date.now() + (st.at + gap - t);
        st.due = st.at + gap + (Math.ceil(wall / gap) * gap - wall);
        st.timer = setTimeout(function () {
          st.timer = null;
          st.at = performance.now();
          var here = map && map._container && document.body.contains(map._container);
          if (here && window.dash_clientside && window.dash_clientside.set_props) {
            window.dash_clientside.set_props(id, { url: st.url });
          }
        }, st.due - t);
      }
      return window.dash_clientside.no_update;
    },
    lastAt: performance.now(),
    areasRev: function (batch, ids) {  // a grid import was committed: the grid layers fetch again
      var nu = window.dash_clientside.no_update;
      var changed = batch && (batch.events || []).some(function (e) { return String(e.type).indexOf("areas.") === 0; });
      return (ids || []).map(function () { return changed ? batch.seq : nu; });
    },
    // The wall's numbers come by the push (callbacks/live.py, callbacks/wall.py numbers_push): the
    // view says which numbers the page shows (the area, the period, the language) and the digests of
    // what it shows; a pushed round is applied only while the page still shows the view it was made
    // for (a click meanwhile is answered by the page's own callback), each output it carries replacing
    // the shown one, the others kept with their own digests.
    numbersView: function (selected, period, start, end, shown, lang) {
      var code = selected && typeof selected.code === "string" ? selected.code : null;
      return { key: [code, period || null, start || null, end || null, lang || null], shown: shown || null };
    },
    numbers: function (push, view, shown) {
      var nu = window.dash_clientside.no_update;
      var n = push && Array.isArray(push.parts) ? push.parts.length : 0;
      var none = [];
      for (var i = 0; i < 10; i++) { none.push(nu); }
      if (!n || !view || JSON.stringify(push.key) !== JSON.stringify(view.key)) {
        yitu.live.numbersDropped = (yitu.live.numbersDropped || 0) + (push ? 1 : 0);
        return none;
      }
      var old = Array.isArray(shown) && shown.length === n ? shown : null;
      var out = push.parts.map(function (p) { return p === null ? nu : p; });
      var digests = Array.isArray(push.shown) && push.shown.length === n ? push.shown : null;
      var kept = digests ? digests.map(function (d, i) { return push.parts[i] !== null ? d : (old ? old[i] : null); }) : null;
      out.push(push.warnings === null || push.warnings === undefined ? nu : push.warnings);
      out.push(kept);
      yitu.live.numbersPushed = (yitu.live.numbersPushed || 0) + 1;
      return out;
    },
    ticks: function (batch, ids) {
      var nu = window.dash_clientside.no_update;
      // the newest event the screen was told of (its outbox id): screens told of the same event share
      // one answer of their numbers (callbacks/wall.py); the seq makes every batch a new value
      var tick = batch ? { seq: batch.seq, outbox: batch.resync ? null : batch.upto || null } : null;
      return (ids || []).map(function () { return batch && (batch.numbers || batch.resync) ? tick : nu; });
    }
  };

  // dash-leaflet's GeoJSON (1.1.3) marks itself loading before it fetches its url and clears the
  // mark only when the answer was read: one fetch that fails (the app restarting, a 503 while the
  // database is away) and the layer ignores every later url, so a wall screen's pins freeze while
  // its numbers go on (bench/chaos.py found it). So a layer fetch is tried again, backing off up to
  // 5 s, until an answer the layer can read comes; the newest data is what the server then holds.
  //
  // An answer that comes after the page was left (a Dash link to another page while the wall's
  // layers load) is dropped: the layer that asked is gone with its map, and dash-leaflet would ask
  // that removed map for its bounds ("Cannot read properties of undefined (reading '_leaflet_pos')",
  // tests/test_dashboard.py). A promise that never settles is what an unmounted layer can be given.
  var fetch0 = window.fetch;
  if (fetch0 && !yitu._layerRetry) {
    yitu._layerRetry = true;
    yitu.layerRetries = 0;
    yitu.layerDropped = 0;
    var never = function () { yitu.layerDropped += 1; return new Promise(function () {}); };
    window.fetch = function (input) {
      var url = typeof input === "string" ? input : (input && input.url) || "";
      if (url.indexOf("/api/v1/layers/") < 0) { return fetch0.apply(this, arguments); }
      var self = this, args = arguments, wait = 250, page = window.location.pathname;
      function left() { return window.location.pathname !== page; }
      function attempt() {
        if (left()) { return never(); }
        return fetch0.apply(self, args).then(function (r) {
          if (r.status >= 500 || r.status === 429) { throw new Error("layer answered " + r.status); }
          if (left()) { return never(); }
          ["json", "arrayBuffer", "text"].forEach(function (how) {  // the body read after the page was left
            var read = r[how].bind(r);
            r[how] = function () { return read().then(function (body) { return left() ? never() : body; }); };
          });
          return r;
        }).catch(function () {
          yitu.layerRetries += 1;
          wait = Math.min(wait * 2, 5000);
          return new Promise(function (ok) { setTimeout(ok, wait); }).then(attempt);
        });
      }
      return attempt();
    };
  }

  // A wall screen runs unattended. The push sends at least a heartbeat every 15 s; when it has
  // been silent for a minute (Dash's WebSocket gives up after ten failed reconnects) and the
  // server answers again, reload the page rather than show a frozen picture.
  if (!yitu._watchdog) {
    yitu._watchdog = setInterval(function () {
      if (performance.now() - yitu.live.lastAt < 60000) { return; }
      fetch("/healthz", { cache: "no-store" }).then(function (r) {
        if (r.ok) { window.location.reload(); }
      }, function () { /* still down: try again on the next tick */ });
    }, 10000);
  }
})();