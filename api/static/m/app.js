/* The grid worker's phone page (/m): report a case, my reports, my tasks. See api/mobile.py.
 *
 * Every report goes through the outbox (outbox.js): saved on the phone first, then sent, so a
 * report made without network is the same as one made with it, only later. The page's data
 * (who I am, the case types, my lists) is kept on the phone as last read, for opening offline.
 */
(function () {
  "use strict";
  var T = JSON.parse(document.getElementById("m-texts").textContent);
  var OB = window.yituOutbox;
  var MAX_PHOTOS = T._max_photos;
  var MAX_BYTES = T._max_mb * 1024 * 1024;
  var CHINA = { lon: [72.004, 137.8347], lat: [0.8293, 55.8271] };
  var ACTIONS = ["start", "attempt", "close", "evaluate", "escalate"];
  var $ = function (id) { return document.getElementById(id); };

  var state = null;       // the last /m/api/state (or the kept copy)
  var point = null;       // {lon, lat, how}
  var photos = [];        // [{blob, name, url}]
  var photoErrors = [];
  var grids = null;       // the grid polygons (GeoJSON), for the offline answer
  var map = null, marker = null;
  var online = navigator.onLine;

  function fmt(key, values) {
    var s = T[key] || key;
    Object.keys(values || {}).forEach(function (k) { s = s.split("{" + k + "}").join(String(values[k])); });
    return s;
  }
  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") { e.textContent = attrs[k]; } else if (k === "class") { e.className = attrs[k]; }
      else { e.setAttribute(k, attrs[k]); }
    });
    (children || []).forEach(function (c) { if (c) { e.appendChild(c); } });
    return e;
  }
  function when(iso) {
    if (!iso) { return ""; }
    return new Date(iso).toLocaleString("zh-CN", { timeZone: "Asia/Shanghai", month: "numeric", day: "numeric",
                                                    hour: "2-digit", minute: "2-digit", hour12: false });
  }

  /* The server's refusal, in Chinese. */
  function explain(e) {
    var f = e.field || "";
    if (e.status === 401) { return T.signed_out; }
    if (f === "lon" || f === "lat" || /\.(lon|lat)$/.test(f)) { return T.err_lon; }
    if (f === "type" || /\.type$/.test(f)) { return T.err_type; }
    if (f === "description" || /\.description$/.test(f)) { return T.err_description; }
    if (f.indexOf("parties") >= 0) { return T.err_parties; }
    if (f.indexOf("reported_at") >= 0) { return T.err_reported_at; }
    if (f === "file") { return e.status === 413 ? T.err_file_413 : e.status === 409 ? T.err_file_409 : T.err_file; }
    if (e.status === 403) { return T.err_403; }
    if (e.status === 404) { return T.err_404; }
    if (e.status === 409) { return T.err_409; }
    return fmt("err_other", { message: e.message || ("HTTP " + e.status) });
  }

  function banner(text, kind) {
    var b = $("m-banner");
    if (!text) { b.hidden = true; b.textContent = ""; return; }
    b.hidden = false;
    b.dataset.kind = kind || "info";
    b.textContent = "";
    b.appendChild(document.createTextNode(text));
    if (kind === "signed-out") {
      b.appendChild(document.createTextNode(" "));
      b.appendChild(el("a", { href: "/login?next=/m", text: T.sign_in }));
    }
  }

  function setOnline(value) {
    online = value;
    var n = $("m-net");
    n.dataset.online = value ? "true" : "false";
    n.textContent = value ? T.online : T.offline;
  }

  /* --- tabs ------------------------------------------------------------------------------------ */
  function showTab(name) {
    document.querySelectorAll(".m-tabs [data-tab]").forEach(function (b) {
      b.setAttribute("aria-selected", b.dataset.tab === name ? "true" : "false");
    });
    document.querySelectorAll("main .m-tab").forEach(function (s) { s.hidden = s.dataset.tab !== name; });
    if (name === "report" && map) { setTimeout(function () { map.invalidateSize(); }, 0); }
  }

  /* --- the map and the place ------------------------------------------------------------------- */
  function inChina(lon, lat) {
    return lon >= CHINA.lon[0] && lon <= CHINA.lon[1] && lat >= CHINA.lat[0] && lat <= CHINA.lat[1];
  }

  function ringHas(ring, x, y) {
    var inside = false;
    for (var i = 0, j = ring.length - 1; i < ring.length; j = i++) {
      var xi = ring[i][0], yi = ring[i][1], xj = ring[j][0], yj = ring[j][1];
      if ((yi > y) !== (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi) { inside = !inside; }
    }
    return inside;
  }
  function polygonHas(rings, x, y) {
    if (!ringHas(rings[0], x, y)) { return false; }
    for (var k = 1; k < rings.length; k++) { if (ringHas(rings[k], x, y)) { return false; } }
    return true;
  }
  /* The grid cell from the kept polygons (no network): the server's answer when it can be had. */
  function gridOffline(lon, lat) {
    if (!grids) { return undefined; }
    for (var i = 0; i < grids.features.length; i++) {
      var f = grids.features[i], g = f.geometry;
      var polys = g.type === "Polygon" ? [g.coordinates] : g.type === "MultiPolygon" ? g.coordinates : [];
      for (var p = 0; p < polys.length; p++) {
        if (polygonHas(polys[p], lon, lat)) { return f.properties; }
      }
    }
    return null;
  }

  function where(stateName, text) {
    var w = $("m-where");
    w.dataset.state = stateName;
    w.textContent = text;
  }

  function setPoint(lon, lat, how) {
    point = { lon: lon, lat: lat, how: how, ok: inChina(lon, lat) };
    if (map) {
      var ll = [lat, lon];
      if (!marker) { marker = L.circleMarker(ll, { radius: 9, color: "#fff", weight: 3, fillColor: "#ff7043", fillOpacity: 1 }).addTo(map); }
      marker.setLatLng(ll);
      if (how === "gps" && point.ok) { map.setView(ll, Math.max(map.getZoom(), 13)); }
    }
    if (!point.ok) {
      where("outside-china", fmt("outside_china", { lon: lon.toFixed(4), lat: lat.toFixed(4) }));
      return Promise.resolve();
    }
    var asked = point;
    return OB.call("/api/v1/locate?lon=" + lon + "&lat=" + lat, {}).then(function (r) {
      if (asked !== point) { return; }
      setOnline(true);
      if (!r.inside) { where("outside", T.outside); return; }
      var g = r.grid || r.chain[0];
      if (!r.in_scope) { where("out-of-scope", fmt("in_grid", g) + " · " + T.out_of_scope); return; }
      where("inside", fmt("in_grid", g));
    }, function (e) {
      if (asked !== point) { return; }
      if (e.status === 422) { where("outside-china", fmt("outside_china", { lon: lon.toFixed(4), lat: lat.toFixed(4) })); return; }
      var g = gridOffline(lon, lat);
      if (g === undefined) { where("unknown", T.where_unknown); }
      else if (g === null) { where("outside", T.outside); }
      else { where("inside", fmt("in_grid_offline", g)); }
    });
  }

  function locate() {
    if (!navigator.geolocation) { where("none", fmt("geo_denied", { reason: "—" })); return; }
    where("locating", T.locating);
    navigator.geolocation.getCurrentPosition(function (pos) {
      setPoint(pos.coords.longitude, pos.coords.latitude, "gps");
    }, function (err) {
      where("none", fmt("geo_denied", { reason: err.message || err.code }));
    }, { enableHighAccuracy: true, timeout: 20000, maximumAge: 60000 });
  }

  function drawGrids(fc) {
    grids = fc;
    if (!map || !fc.features.length) { return; }
    var layer = L.geoJSON(fc, { interactive: false, style: { color: "#3d8fd1", weight: 1, fillColor: "#ffffff", fillOpacity: 0.2 } });
    layer.addTo(map);
    layer.bringToBack();  // under the chosen place's marker
    if (!point) { map.fitBounds(layer.getBounds()); }
  }

  // The server's base map (light, drawn by the server from its own roads and places: services/basemap.py),
  // added once the server has named it: never from a kept state, so a page opened offline asks for no tiles.
  var tiles = null;
  function addTiles(t) {
    if (!map || tiles || !t) { return; }
    tiles = L.tileLayer(t.url, Object.assign({ maxZoom: 19 }, t.options || {}, { attribution: t.attribution || "" }));
    tiles.addTo(map);
    tiles.bringToBack();
  }

  function initMap() {
    map = L.map("m-map", { attributionControl: false, zoomSnap: 0.5, preferCanvas: true });
    map.setView([38.5, 108.5], 7);
    map.on("click", function (e) { setPoint(e.latlng.lng, e.latlng.lat, "tap"); });
    // The deployment's own grid polygons (no tiles from anywhere): one request the worker keeps.
    OB.call("/api/v1/layers/grids?level=4&zoom=12", {}).then(drawGrids, function () { /* offline, never kept */ });
  }

  /* --- the form -------------------------------------------------------------------------------- */
  function fillTypes() {
    var select = $("m-type");
    var chosen = select.value;
    while (select.options.length > 1) { select.remove(1); }
    ((state && state.types) || []).forEach(function (t) { select.appendChild(el("option", { value: t.code, text: t.name })); });
    select.value = chosen;
  }

  function addParty() {
    var rows = $("m-party-rows");
    var row = el("div", { class: "m-party" }, [
      el("input", { name: "party_name", placeholder: T.party_name, maxlength: "50", "aria-label": T.party_name }),
      el("input", { name: "party_phone", placeholder: T.party_phone, type: "tel", inputmode: "tel", maxlength: "20",
                    "aria-label": T.party_phone }),
      (function () {
        var s = el("select", { name: "party_role", "aria-label": T.party_role });
        s.appendChild(el("option", { value: T.party_applicant, text: T.party_applicant }));
        s.appendChild(el("option", { value: T.party_respondent, text: T.party_respondent }));
        return s;
      })(),
      el("button", { type: "button", class: "m-link", "data-action": "remove-party", text: T.party_remove })
    ]);
    rows.appendChild(row);
  }

  function magic(bytes) {
    var b = new Uint8Array(bytes);
    var ascii = function (from, to) { return String.fromCharCode.apply(null, b.slice(from, to)); };
    if (b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) { return "jpeg"; }
    if (b[0] === 0x89 && ascii(1, 4) === "PNG") { return "png"; }
    if (ascii(0, 4) === "RIFF" && ascii(8, 12) === "WEBP") { return "webp"; }
    if (ascii(4, 8) === "ftyp" && /^(heic|heix|hevc|heim|heis|mif1|msf1|avif)$/.test(ascii(8, 12))) { return "heic"; }
    return null;
  }

  /* A photo is taken only if it is one: its bytes (not its name) a JPEG, PNG, WebP or HEIC that
     decodes (HEIC, which the browser may not decode, is left to the server). */
  function checkPhoto(file) {
    if (file.size > MAX_BYTES) { return Promise.resolve(fmt("photo_too_big", { name: file.name, mb: T._max_mb })); }
    return file.slice(0, 16).arrayBuffer().then(function (head) {
      var kind = magic(head);
      if (!kind) { return fmt("photo_not_image", { name: file.name }); }
      if (kind === "heic" || !window.createImageBitmap) { return null; }
      return createImageBitmap(file).then(function (bmp) { bmp.close && bmp.close(); return null; },
                                          function () { return fmt("photo_corrupt", { name: file.name }); });
    });
  }

  function renderThumbs() {
    var list = $("m-thumbs");
    list.textContent = "";
    photos.forEach(function (p, i) {
      list.appendChild(el("li", {}, [
        el("img", { src: p.url, alt: p.name }),
        el("button", { type: "button", class: "m-link", "data-action": "remove-photo", "data-index": String(i), text: T.photo_remove })
      ]));
    });
  }

  function formError(lines) {
    var box = $("m-form-error");
    box.textContent = "";
    (lines || []).forEach(function (line) { box.appendChild(el("span", { text: line })); });
  }

  function takePhotos(files) {
    var list = Array.prototype.slice.call(files);
    photoErrors = [];
    var chain = Promise.resolve();
    list.forEach(function (file) {
      chain = chain.then(function () {
        if (photos.length >= MAX_PHOTOS) {
          photoErrors.push(fmt("too_many_photos", { max: MAX_PHOTOS, n: photos.length + 1 }));
          return;
        }
        return checkPhoto(file).then(function (problem) {
          if (problem) { photoErrors.push(problem); return; }
          if (photos.length >= MAX_PHOTOS) {
            photoErrors.push(fmt("too_many_photos", { max: MAX_PHOTOS, n: photos.length + 1 }));
            return;
          }
          photos.push({ blob: file, name: file.name, url: URL.createObjectURL(file) });
        });
      });
    });
    return chain.then(function () { renderThumbs(); formError(photoErrors); });
  }

  function readForm() {
    var form = $("m-report");
    var problems = [];
    if (!point) { problems.push(T.need_place); }
    else if (!point.ok) { problems.push(fmt("outside_china", { lon: point.lon.toFixed(4), lat: point.lat.toFixed(4) })); }
    var type = form.elements.type.value;
    if (!type) { problems.push(T.need_type); }
    var description = form.elements.description.value.trim();
    if (!description) { problems.push(T.need_description); }
    if (problems.length) { return { problems: problems }; }
    var parties = [];
    document.querySelectorAll("#m-party-rows .m-party").forEach(function (row) {
      var name = row.querySelector("[name=party_name]").value.trim();
      var phone = row.querySelector("[name=party_phone]").value.trim();
      if (!name) { return; }
      var p = { name: name, role: row.querySelector("[name=party_role]").value };
      if (phone) { p.phone = phone; }
      parties.push(p);
    });
    var body = { type: type, description: description, lon: point.lon, lat: point.lat, channel: "grid_app", parties: parties };
    var severity = form.elements.severity.value;
    var people = parseInt(form.elements.people_involved.value, 10);
    var triage = (state && state.triage_fields) || [];
    var folded = [];
    if (severity) {
      if (triage.indexOf("severity") >= 0) { body.severity = severity; }
      else { folded.push(T.severity + "：" + T["severity_" + severity]); }
    }
    if (people > 0) {
      if (triage.indexOf("people_involved") >= 0) { body.people_involved = people; }
      else { folded.push(T.people + "：" + people); }
    }
    if (folded.length) { body.description = (description + "\n（" + folded.join("；") + "）").slice(0, 4000); }
    return { body: body };
  }

  function resetForm() {
    var form = $("m-report");
    form.elements.description.value = "";
    form.elements.severity.value = "";
    form.elements.people_involved.value = "";
    form.elements.type.value = "";
    $("m-party-rows").textContent = "";
    photos.forEach(function (p) { URL.revokeObjectURL(p.url); });
    photos = [];
    renderThumbs();
    formError([]);
  }

  function me() { return state && state.me ? state.me.ident : null; }

  function submit(event) {
    event.preventDefault();
    var got = readForm();
    if (got.problems) { formError(got.problems); return; }
    if (!me()) { banner(T.signed_out, "signed-out"); return; }
    var kept = photos.map(function (p) { return { blob: p.blob, name: p.name }; });
    OB.save(me(), got.body, kept).then(function () {
      resetForm();
      banner(T.saved, "info");
      return renderOutbox();
    }).then(function () {
      askSync();
      return flush();
    });
  }

  /* --- the outbox ------------------------------------------------------------------------------ */
  function renderOutbox() {
    return OB.all().then(function (items) {
      var list = $("m-outbox-list");
      list.textContent = "";
      $("m-outbox").hidden = !items.length;
      items.forEach(function (item) {
        var status;
        if (item.state === "refused") { status = fmt("refused", { message: explain(item.error || {}) }); }
        else if (item.user !== me() && me()) { status = fmt("other_user", { user: item.user }); }
        else if (item.tries > 0) { status = T.waiting + " · " + fmt("retry_later", { n: item.tries }); }
        else { status = T.waiting; }
        var li = el("li", { class: "m-pending", "data-id": item.id, "data-state": item.state }, [
          el("strong", { text: typeName(item.body.type) + (item.code ? " · " + item.code : "") }),
          el("span", { class: "m-pending-status", text: status }),
          el("span", { class: "m-meta", text: when(item.created) + " · " + fmt("photos_n", { n: item.photos.length }) })
        ]);
        if (item.state === "refused") {
          li.appendChild(el("button", { type: "button", class: "m-link", "data-action": "delete-pending", "data-id": item.id, text: T.delete }));
        }
        list.appendChild(li);
      });
      return items;
    });
  }

  var flushing = null;
  function flush() {
    if (flushing) { return flushing; }
    flushing = OB.flush().then(function (r) {
      flushing = null;
      if (r.offline) { setOnline(false); }
      else if (r.me) { setOnline(true); }
      if (r.signedOut) { banner(T.signed_out, "signed-out"); }
      return OB.kvGet("sent").then(function (sent) {
        var fresh = (sent || []).filter(function (s) { return Date.now() - Date.parse(s.at) < 60000; });
        if (r.sent && fresh.length) {
          var s = fresh[0];
          var text = fmt("sent", { code: s.code });
          if (s.photoError) { text += " · " + fmt("photos_refused", { message: explain(s.photoError) }); }
          if (s.clockOff) { text += " · " + fmt("clock_off", { minutes: Math.abs(s.clockOff) }); }
          banner(text, s.photoError || s.clockOff ? "warn" : "ok");
        } else if (!r.sent && !r.signedOut && r.waiting && r.offline) {
          banner(fmt("offline_waiting", { n: r.waiting }), "info");
        }
        return renderOutbox();
      }).then(function () {
        if (r.sent) { refresh(); }
        return r;
      });
    }, function () { flushing = null; });
    return flushing;
  }

  function askSync() {
    if (!("serviceWorker" in navigator)) { return; }
    navigator.serviceWorker.ready.then(function (reg) {
      if (reg.sync && reg.sync.register) { return reg.sync.register("yitu-outbox"); }
    }).catch(function () { /* no Background Sync: the page's own retries send it */ });
  }

  /* --- my reports, my tasks -------------------------------------------------------------------- */
  function typeName(code) {
    var t = ((state && state.types) || []).filter(function (x) { return x.code === code; })[0];
    return t ? t.name : code;
  }

  function caseItem(c, withActions) {
    var li = el("li", { class: "m-case", "data-code": c.code, "data-step": c.step }, [
      el("div", { class: "m-case-head" }, [
        el("strong", { text: typeName(c.type) }),
        el("span", { class: "m-step m-step-" + c.step, text: T["step_" + c.step] || c.step })
      ]),
      el("div", { class: "m-meta" }, [
        el("span", { class: "m-code", text: c.code }),
        el("span", { text: " · " + (T["level_" + c.level] || c.level) }),
        c.deadline && ["reported", "accepted", "dispatched", "handling"].indexOf(c.step) >= 0
          ? el("span", { class: c.overdue ? "m-deadline m-overdue" : "m-deadline",
                         text: " · " + T.deadline + " " + when(c.deadline) + (c.overdue ? " " + T.overdue : "") })
          : null
      ]),
      el("p", { class: "m-desc", text: (c.description || "").slice(0, 120) })
    ]);
    if (withActions) {
      var acts = (c.allowed_actions || []).filter(function (a) { return ACTIONS.indexOf(a) >= 0; });
      if (acts.length) {
        li.appendChild(el("div", { class: "m-actions" }, acts.map(function (a) {
          return el("button", { type: "button", "data-action": "task-" + a, "data-code": c.code, text: T["act_" + a] });
        })));
      }
    }
    return li;
  }

  function renderLists() {
    var reports = $("m-reports"), tasks = $("m-tasks");
    reports.textContent = ""; tasks.textContent = "";
    var s = state || {};
    (s.reports || []).forEach(function (c) { reports.appendChild(caseItem(c, false)); });
    if (!(s.reports || []).length) { reports.appendChild(el("li", { class: "m-empty", text: T.no_reports })); }
    (s.tasks || []).forEach(function (c) { tasks.appendChild(caseItem(c, true)); });
    if (!(s.tasks || []).length) {
      tasks.appendChild(el("li", { class: "m-empty", text: s.me && !s.me.mediator ? T.not_mediator : T.no_tasks }));
    }
    $("m-count-reports").textContent = (s.reports || []).length ? String(s.reports.length) : "";
    var open = (s.tasks || []).filter(function (c) { return c.step !== "closed"; }).length;
    $("m-count-tasks").textContent = open ? String(open) : "";
    if (s.me) {
      $("m-who").textContent = [s.me.name, T["role_" + s.me.role] || s.me.role, s.me.area, s.me.mediator ? T.mediator : null]
        .filter(Boolean).join(" · ");
    }
  }

  // A case as the page knows it never goes back to an older version: a read answered before an
  // action of this page (or begun before it) keeps the action's answer for that case, so the next
  // action is sent with the version the server has (else it is refused: "状态已变化").
  function newest(kept, got) {
    if (!kept || !got) { return got; }
    ["tasks", "reports"].forEach(function (list) {
      var had = {};
      (kept[list] || []).forEach(function (c) { had[c.code] = c; });
      got[list] = (got[list] || []).map(function (c) {
        var old = had[c.code];
        return old && old.version > c.version ? old : c;
      });
    });
    return got;
  }

  // An action's answer (the case as it is now) replaces the case in the lists at once.
  function answered(c) {
    if (!state || !c || !c.code || c.version == null) { return; }
    ["tasks", "reports"].forEach(function (list) {
      state[list] = (state[list] || []).map(function (old) {
        return old.code === c.code && !(old.version > c.version) ? Object.assign({}, old, c) : old;
      });
    });
    renderLists();
  }

  // One read of the state at a time. A refresh asked for while one is under way (an action just
  // answered, a push just came) must see what happened after that read began: it runs once more
  // when the read ends, and its callers wait for that second read.
  var refreshing = null, again = false;
  function refresh() {
    if (refreshing) { again = true; return refreshing; }
    refreshing = OB.call("/m/api/state", {}).then(function (s) {
      state = newest(state, s);
      setOnline(true);
      addTiles(s.tiles);
      var clock = OB.clockOf(s);
      var warn = $("m-clock");
      warn.hidden = clock.ok;
      warn.textContent = clock.ok ? "" : fmt("clock_off", { minutes: Math.abs(clock.offMinutes) });
      return OB.kvSet("state", s);
    }, function (e) {
      if (e.status === 401) { banner(T.signed_out, "signed-out"); }
      else if (!e.status) { setOnline(false); }
    }).then(function () {
      refreshing = null;
      fillTypes(); renderLists(); renderOutbox();
      if (again) { again = false; return refresh(); }
    });
    return refreshing;
  }

  var soon = null;
  function refreshSoon() {
    clearTimeout(soon);
    soon = setTimeout(refresh, 300);
  }

  function listen() {
    if (!window.EventSource) { return; }
    var source = new EventSource("/m/events");
    source.addEventListener("case", function (msg) {
      var ev = {};
      try { ev = JSON.parse(msg.data); } catch (err) { return; }
      var mine = [].concat((state && state.reports) || [], (state && state.tasks) || [])
        .some(function (c) { return c.code === ev.code; });
      if (mine || ev.action === "dispatch" || ev.type === "case.created") { refreshSoon(); }
    });
    source.addEventListener("resync", refreshSoon);
    source.onopen = function () { setOnline(true); };
    // Without the push (offline, a proxy that buffers), the lists are read again now and then.
    setInterval(function () { if (source.readyState !== 1 && navigator.onLine) { refresh(); } }, 60000);
  }

  /* --- the task actions ------------------------------------------------------------------------ */
  function findCase(code) { return ((state && state.tasks) || []).filter(function (c) { return c.code === code; })[0]; }

  function field(label, input) { return el("label", { class: "m-field" }, [el("span", { text: label }), input]); }
  function options(name, values, labels) {
    var s = el("select", { name: name });
    values.forEach(function (v, i) { s.appendChild(el("option", { value: v, text: labels[i] })); });
    return s;
  }

  function openTask(action, code) {
    var c = findCase(code);
    if (!c) { return; }
    var dialog = $("m-dialog");
    dialog.textContent = "";
    var form = el("form", { method: "dialog", class: "m-task-form", "data-task": action, "data-code": code });
    form.appendChild(el("h2", { text: T["act_" + action] + " · " + code }));
    if (action === "attempt") {
      form.appendChild(field(T.act_attempt, options("result", ["success", "failed"], [T.attempt_success, T.attempt_failed])));
    }
    if (action === "close") {
      var outs = ["mediated", "judicial_confirmation", "litigation", "arbitration", "withdrawn"];
      form.appendChild(field(T.outcome, options("outcome", outs, outs.map(function (o) { return T["outcome_" + o]; }))));
      form.appendChild(field(T.agreement_photo, el("input", { type: "file", name: "agreement", accept: "image/*", capture: "environment" })));
    }
    if (action === "evaluate") {
      form.appendChild(field(T.satisfaction, options("satisfaction", ["5", "4", "3", "2", "1"], ["5 ★★★★★", "4 ★★★★", "3 ★★★", "2 ★★", "1 ★"])));
      form.appendChild(field(T.followup_note, el("textarea", { name: "followup_note", rows: "3", maxlength: "2000" })));
    } else {
      form.appendChild(field(T.note, el("textarea", { name: "note", rows: "2", maxlength: "2000" })));
    }
    var error = el("p", { class: "m-error", role: "alert" });
    form.appendChild(error);
    form.appendChild(el("div", { class: "m-actions" }, [
      el("button", { type: "button", "data-action": "task-cancel", text: T.cancel }),
      el("button", { type: "submit", "data-action": "task-confirm", text: T.confirm })
    ]));
    // One key per action and one for its photo, kept while the dialog is open: pressing again after
    // a failed try repeats the same request, which the server does once.
    var keys = { action: OB.uuid(), upload: OB.uuid() };
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      runTask(action, c, form, keys, error);
    });
    dialog.appendChild(form);
    if (dialog.showModal) { dialog.showModal(); } else { dialog.setAttribute("open", ""); }
  }

  function runTask(action, c, form, keys, error) {
    var body = { action: action, version: c.version };
    var text = function (name) { var f = form.elements[name]; return f && f.value.trim() ? f.value.trim() : null; };
    if (text("note")) { body.note = text("note"); }
    if (action === "attempt") { body.result = form.elements.result.value; }
    if (action === "close") { body.outcome = form.elements.outcome.value; }
    if (action === "evaluate") {
      body.satisfaction = parseInt(form.elements.satisfaction.value, 10);
      if (text("followup_note")) { body.followup_note = text("followup_note"); }
    }
    var first = Promise.resolve();
    if (action === "close") {
      var file = form.elements.agreement.files[0];
      if (!file && (body.outcome === "mediated" || body.outcome === "judicial_confirmation")) {
        error.textContent = T.need_agreement;
        return;
      }
      if (file) {
        first = checkPhoto(file).then(function (problem) {
          if (problem) { throw { status: 0, message: problem, local: true }; }
          var data = new FormData();
          data.append("file", file, file.name || "agreement.jpg");
          return OB.call("/api/v1/cases/" + encodeURIComponent(c.code) + "/attachments",
                         { method: "POST", headers: { "Idempotency-Key": keys.upload }, body: data });
        });
      }
    }
    error.textContent = T.sending;
    first.then(function () {
      return OB.call("/api/v1/cases/" + encodeURIComponent(c.code) + "/transitions", {
        method: "POST",
        headers: { "Content-Type": "application/json", "Idempotency-Key": keys.action },
        body: JSON.stringify(body)
      });
    }).then(function (c) {
      answered(c);
      error.textContent = T.done;
      $("m-dialog").close ? $("m-dialog").close() : $("m-dialog").removeAttribute("open");
      refresh();
    }, function (e) {
      if (e.local) { error.textContent = e.message; return; }
      error.textContent = e.status ? fmt("action_failed", { message: explain(e) }) : T.action_queued;
    });
  }

  /* --- wiring ---------------------------------------------------------------------------------- */
  function wire() {
    document.querySelector(".m-tabs").addEventListener("click", function (e) {
      var b = e.target.closest("[data-tab]");
      if (b) { showTab(b.dataset.tab); }
    });
    document.body.addEventListener("click", function (e) {
      var b = e.target.closest("[data-action]");
      if (!b) { return; }
      var a = b.dataset.action;
      if (a === "locate") { locate(); }
      else if (a === "add-party") { addParty(); }
      else if (a === "remove-party") { b.closest(".m-party").remove(); }
      else if (a === "remove-photo") {
        var p = photos.splice(parseInt(b.dataset.index, 10), 1)[0];
        if (p) { URL.revokeObjectURL(p.url); }
        renderThumbs();
      } else if (a === "delete-pending") {
        if (window.confirm(T.delete_confirm)) { OB.del(b.dataset.id).then(renderOutbox); }
      } else if (a === "task-cancel") {
        var d = $("m-dialog"); d.close ? d.close() : d.removeAttribute("open");
      } else if (a.indexOf("task-") === 0 && a !== "task-confirm") {
        openTask(a.slice(5), b.dataset.code);
      }
    });
    $("m-photos").addEventListener("change", function (e) {
      takePhotos(e.target.files).then(function () { e.target.value = ""; });
    });
    $("m-report").addEventListener("submit", submit);
    window.addEventListener("online", function () { setOnline(true); flush(); refresh(); });
    window.addEventListener("offline", function () { setOnline(false); });
    setInterval(function () {
      OB.all().then(function (items) {
        if (items.some(function (i) { return i.state === "waiting"; })) { flush(); }
      });
    }, OB.RETRY_MS);
  }

  var settled = false;
  function start() {
    setOnline(navigator.onLine);
    wire();
    addParty();
    if (window.L) { initMap(); }
    if ("serviceWorker" in navigator) {
      navigator.serviceWorker.register("/m/sw.js", { scope: "/m" }).catch(function () { /* http: no worker */ });
    }
    OB.kvGet("state").then(function (kept) {
      if (kept && !state) { state = kept; fillTypes(); renderLists(); }
    }).catch(function () { /* no IndexedDB: nothing kept */ }).then(function () {
      return refresh();
    }).then(function () {
      var drawn = renderOutbox();
      var sent = flush();
      locate();
      listen();
      return Promise.all([drawn, sent]);
    }).then(function () { settled = true; }, function () { settled = true; });
    // settled: the outbox kept on the phone was read, drawn and sent as far as it could go once
    window.yituM = { flush: flush, refresh: refresh, setPoint: setPoint, state: function () { return state; },
                     settled: function () { return settled; },
                     photos: function () { return photos.length; },
                     grids: function () { return grids ? grids.features.length : 0; } };
  }

  start();
})();
