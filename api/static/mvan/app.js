/* The van crew's phone page (/m/van, api/mobile_van.py). Plain JavaScript and Leaflet, no build step.
 *
 * - Reads GET /api/v1/vans/{van}/dispatch every few seconds (the van, its visit, the route and ETA; the
 *   arrival shows within one read) and the case through GET /api/v1/cases/{code}.
 * - Shares the phone's GPS: watchPosition -> a queue in localStorage -> POST /api/v1/vans/positions in
 *   batches (every batch_ms or batch_fixes fixes). A batch is written to localStorage with its own
 *   Idempotency-Key before it is sent and removed only when the server answered it, so a gap in the
 *   network (or a closed page) loses no fix, and a batch sent twice is stored once.
 * - Ends the visit: the photos first (POST /api/v1/cases/{code}/attachments, while the case is still the
 *   van's to see), then POST /api/v1/dispatches/{id}/end; each with a key kept across retries.
 */
(function () {
  'use strict';

  var body = document.body;
  var cfg = JSON.parse(body.getAttribute('data-config'));
  var T = JSON.parse(body.getAttribute('data-texts'));
  var QUEUE_KEY = 'yitu.mvan.fixes.' + cfg.van; // fixes not yet in a batch
  var BATCH_KEY = 'yitu.mvan.batch.' + cfg.van; // the batch on its way: {key, positions}
  var SHARING_KEY = 'yitu.mvan.sharing.' + cfg.van; // the crew shares GPS (restored on reload)
  var MAX_BATCH = 500;
  var ACTIVE = { en_route: true, on_site: true };

  var hooks = (window.yitu = window.yitu || {}).mvan = { state: null, sent: 0, batches: 0, failures: 0 };

  function fmt(s, o) { return String(s).replace(/\{(\w+)\}/g, function (_, k) { return o[k]; }); }
  function $(id) { return document.getElementById(id); }
  function el(tag, attrs) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === 'text') { node.textContent = attrs[k]; } else { node.setAttribute(k, attrs[k]); }
    });
    for (var i = 2; i < arguments.length; i++) { if (arguments[i]) { node.appendChild(arguments[i]); } }
    return node;
  }
  function newKey() {
    if (window.crypto && crypto.randomUUID) { return 'mvan-' + crypto.randomUUID(); }
    var b = new Uint8Array(16);
    crypto.getRandomValues(b);
    return 'mvan-' + Array.prototype.map.call(b, function (x) { return ('0' + x.toString(16)).slice(-2); }).join('');
  }
  function load(key, fallback) {
    try { var v = localStorage.getItem(key); return v === null ? fallback : JSON.parse(v); } catch (e) { return fallback; }
  }
  function save(key, value) {
    if (value === null) { localStorage.removeItem(key); } else { localStorage.setItem(key, JSON.stringify(value)); }
  }
  function clock(iso) {
    return iso ? new Date(iso).toLocaleTimeString(cfg.lang, { hour12: false, hour: '2-digit', minute: '2-digit' }) : '';
  }
  function toLogin() { window.location.assign('/login?next=' + encodeURIComponent('/m/van' + window.location.search)); }
  async function errorText(r) {
    try { var b = await r.json(); return b.message || b.error || String(r.status); } catch (e) { return String(r.status); }
  }

  // --- the network banner ----------------------------------------------------------------------------
  var netDown = { read: false, gps: false };
  function net(which, down) {
    netDown[which] = down;
    var banner = $('mvan-net');
    banner.hidden = !(netDown.read || netDown.gps);
    banner.textContent = netDown.gps || queued() ? T.offline : T.net_down;
  }

  // --- the map -------------------------------------------------------------------------------------------
  var map = L.map('mvan-map', { zoomControl: true, attributionControl: !!(cfg.tiles && cfg.tiles.attribution) }).setView([42, 112], 5);
  if (cfg.tiles) {  // the server's base map (services/basemap.py): its own tiles unless a setting says otherwise
    L.tileLayer(cfg.tiles.url, Object.assign({ maxZoom: 19 }, cfg.tiles.options || {}, { attribution: cfg.tiles.attribution })).addTo(map);
  }
  // The grid cells around (GET /api/v1/layers/grids, the level the zoom shows): where the line runs.
  var grids = L.geoJSON(null, {
    interactive: false,
    style: function () { return { color: '#2c5494', weight: 1, opacity: 0.8, fillColor: '#0f2347', fillOpacity: 0.35 }; },
  }).addTo(map);
  var gridsAt = '';
  async function loadGrids() {
    var b = map.getBounds().pad(0.3);
    var url = '/api/v1/layers/grids?zoom=' + map.getZoom() + '&bbox=' +
      [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()].map(function (x) { return x.toFixed(4); }).join(',');
    if (url === gridsAt) { return; }
    gridsAt = url;
    try {
      var r = await fetch(url, { credentials: 'same-origin' });
      if (r.ok && gridsAt === url) { var fc = await r.json(); grids.clearLayers(); grids.addData(fc); }
    } catch (e) { gridsAt = ''; } // no network: the next move asks again
  }
  var gridTimer = null;
  map.on('moveend', function () { clearTimeout(gridTimer); gridTimer = setTimeout(loadGrids, 300); });
  var routeLine = L.polyline([], { color: '#3fb6ff', weight: 5, opacity: 0.9 }).addTo(map);
  var circle = L.circle([0, 0], { radius: 1, color: '#ff5a3c', weight: 1, fillOpacity: 0.08 });
  var vanMarker = L.marker([0, 0], { icon: L.divIcon({ className: 'mvan-van-dot', iconSize: [16, 16] }), keyboard: false });
  var caseMarker = L.marker([0, 0], { icon: L.divIcon({ className: 'mvan-case-dot', iconSize: [18, 18] }), keyboard: false });
  var fitted = null; // the visit (or 'van') the view was last fitted to: the crew may pan after that

  function drawMap(s) {
    var v = s.van, d = s.dispatch;
    var points = [];
    if (v.lon !== null && v.lat !== null) {
      vanMarker.setLatLng([v.lat, v.lon]).addTo(map);
      points.push([v.lat, v.lon]);
    } else { vanMarker.remove(); }
    if (d && d.case_lat !== null) {
      caseMarker.setLatLng([d.case_lat, d.case_lon]).addTo(map);
      circle.setLatLng([d.case_lat, d.case_lon]).setRadius(s.arrival_radius_m).addTo(map);
      points.push([d.case_lat, d.case_lon]);
    } else { caseMarker.remove(); circle.remove(); }
    var line = s.route ? s.route.line.map(function (p) { return [p[1], p[0]]; }) : [];
    routeLine.setLatLngs(line);
    var target = d ? 'dispatch:' + d.id : 'van';
    if (fitted !== target && points.length) {
      var bounds = L.latLngBounds(points.concat(line));
      if (points.length > 1 || line.length) { map.fitBounds(bounds, { padding: [28, 28], maxZoom: 16 }); } else { map.setView(points[0], 14); }
      fitted = target;
    }
  }

  // --- the visit --------------------------------------------------------------------------------------------
  var caseData = null; // GET /api/v1/cases/{code} of the current visit
  var caseFor = null;
  var lastEnded = null;

  async function loadCase(code) {
    if (caseFor === code) { return; }
    caseFor = code;
    caseData = null;
    var r = await fetch('/api/v1/cases/' + encodeURIComponent(code), { credentials: 'same-origin' });
    if (r.ok && caseFor === code) { caseData = await r.json(); render(hooks.state); }
  }

  function routeBox(s) {
    if (!s.route) { return el('p', { class: 'mvan-muted', text: T.no_route }); }
    var km = s.route.distance_m === null ? '–' : (s.route.distance_m / 1000).toFixed(1);
    var min = s.route.eta_s === null ? '–' : String(Math.max(1, Math.round(s.route.eta_s / 60)));
    return el('div', { class: 'mvan-route', 'data-method': s.route.method },
      el('div', {}, el('b', { 'data-field': 'distance', text: km }), el('span', { text: T.distance + ' · ' + T.km })),
      el('div', {}, el('b', { 'data-field': 'eta', text: min }), el('span', { text: T.eta + ' · ' + T.min })));
  }

  function render(s) {
    if (!s) { return; }
    var v = s.van, d = s.dispatch;
    $('mvan-van').textContent = T.van + ' ' + v.id + (v.name ? ' · ' + v.name : '');
    var badge = $('mvan-van-status');
    badge.setAttribute('data-status', v.status);
    badge.textContent = T['status_' + v.status] || v.status;
    var card = $('mvan-dispatch');
    card.textContent = '';
    $('mvan-end').hidden = !(d && ACTIVE[d.status]);
    if (!d) {
      card.setAttribute('data-state', 'none');
      card.removeAttribute('data-dispatch');
      card.removeAttribute('data-case');
      if (lastEnded) { card.appendChild(el('p', { class: 'mvan-status', 'data-kind': 'ok', text: T.ended + ' · ' + lastEnded })); }
      card.appendChild(el('p', { class: 'mvan-muted', text: T.none }));
    } else {
      card.setAttribute('data-state', d.status);
      card.setAttribute('data-dispatch', String(d.id));
      card.setAttribute('data-case', d.case);
      card.appendChild(el('h1', { text: d.case_type_name || d.case_type || T.case }));
      card.appendChild(el('p', { class: 'mvan-code', text: T.case + ' ' + d.case }));
      if (d.status === 'on_site') {
        card.appendChild(el('p', { class: 'mvan-arrived', 'data-field': 'arrived', text: T.on_site + ' · ' + T.arrived_at + ' ' + clock(d.arrived_at) }));
      } else {
        card.appendChild(el('p', { class: 'mvan-muted', text: T.en_route + ' · ' + fmt(T.radius, { m: Math.round(s.arrival_radius_m) }) }));
        card.appendChild(routeBox(s));
      }
      var dl = el('dl');
      if (caseData && caseData.code === d.case) {
        dl.appendChild(el('dt', { text: T.description }));
        dl.appendChild(el('dd', { 'data-field': 'description', text: caseData.description || '' }));
        var parties = el('ul', { class: 'mvan-parties', 'data-field': 'parties' });
        (caseData.parties || []).forEach(function (p) {
          parties.appendChild(el('li', { text: [p.name, p.role, p.phone].filter(Boolean).join(' · ') }));
        });
        dl.appendChild(el('dt', { text: T.parties }));
        dl.appendChild(el('dd', {}, parties));
      }
      card.appendChild(dl);
      loadCase(d.case);
    }
    $('mvan-asof').textContent = fmt(T.stale, { t: new Date(s.as_of).toLocaleTimeString(cfg.lang, { hour12: false }) });
    drawMap(s);
  }

  var readTimer = null;
  async function refresh() {
    clearTimeout(readTimer);
    try {
      var r = await fetch('/api/v1/vans/' + encodeURIComponent(cfg.van) + '/dispatch', { credentials: 'same-origin' });
      if (r.status === 401) { toLogin(); return; }
      if (r.ok) {
        hooks.state = await r.json();
        net('read', false);
        render(hooks.state);
      } else { net('read', r.status >= 500); }
    } catch (e) {
      net('read', true);
    } finally {
      readTimer = setTimeout(refresh, cfg.poll_ms);
    }
  }

  // --- sharing the phone's GPS ---------------------------------------------------------------------------------
  var watchId = null;
  var flushing = false;
  var gpsError = '';
  var shareButton = document.querySelector('button[data-action=share-gps]');

  function queued() { return load(QUEUE_KEY, []).length + (load(BATCH_KEY, null) || { positions: [] }).positions.length; }
  hooks.queued = queued;

  function gpsStatus() {
    var parts = [watchId === null ? T.gps_off : T.gps_on];
    var waiting = queued();
    if (waiting) { parts.push(fmt(T.gps_waiting, { n: waiting })); }
    if (hooks.sent) { parts.push(fmt(T.gps_sent, { n: hooks.sent })); }
    if (gpsError) { parts.push(gpsError); }
    $('mvan-gps-status').textContent = parts.join(' · ');
    $('mvan-gps-status').setAttribute('data-waiting', String(waiting));
  }

  function onFix(pos) {
    var c = pos.coords;
    var fix = { van: cfg.van, lon: c.longitude, lat: c.latitude, time: new Date(pos.timestamp || Date.now()).toISOString() };
    if (typeof c.speed === 'number' && isFinite(c.speed) && c.speed >= 0 && c.speed * 3.6 <= 400) { fix.speed = Math.round(c.speed * 36) / 10; }
    if (typeof c.heading === 'number' && isFinite(c.heading) && c.heading >= 0) { fix.heading = c.heading % 360; }
    var q = load(QUEUE_KEY, []);
    var last = q[q.length - 1];
    if (last && last.time === fix.time) { return; } // one fix per instant (the server's key is van + time)
    q.push(fix);
    save(QUEUE_KEY, q);
    gpsError = '';
    gpsStatus();
    if (q.length >= cfg.batch_fixes) { flush(); }
  }

  function onGpsError(err) {
    gpsError = fmt(T.gps_denied, { msg: err.message || err.code });
    gpsStatus();
  }

  function startSharing() {
    if (!navigator.geolocation) { gpsError = T.gps_unsupported; gpsStatus(); return; }
    watchId = navigator.geolocation.watchPosition(onFix, onGpsError, { enableHighAccuracy: true, maximumAge: 0, timeout: 30000 });
    save(SHARING_KEY, true);
    shareButton.setAttribute('aria-pressed', 'true');
    shareButton.textContent = T.gps_stop;
    gpsStatus();
  }

  function stopSharing() {
    if (watchId !== null) { navigator.geolocation.clearWatch(watchId); }
    watchId = null;
    save(SHARING_KEY, null);
    shareButton.setAttribute('aria-pressed', 'false');
    shareButton.textContent = T.gps_share;
    gpsStatus();
    flush();
  }

  // Rows a 422 names (positions.3.lon) are dropped; the others go again under a new key.
  async function withoutBadRows(r, batch) {
    var bad = {};
    try {
      var b = await r.json();
      (b.errors || []).concat(b.field ? [{ field: b.field }] : []).forEach(function (e) {
        var m = /^positions\.(\d+)/.exec(e.field || (e.loc || []).slice(1).join('.'));
        if (m) { bad[m[1]] = true; }
      });
    } catch (e) { /* not JSON: drop the batch */ }
    var kept = batch.positions.filter(function (_, i) { return !bad[i]; });
    return Object.keys(bad).length && kept.length ? { key: newKey(), positions: kept } : null;
  }

  async function flush() {
    if (flushing) { return; }
    flushing = true;
    try {
      for (;;) {
        var batch = load(BATCH_KEY, null);
        if (!batch) {
          var q = load(QUEUE_KEY, []);
          if (!q.length) { break; }
          batch = { key: newKey(), positions: q.slice(0, MAX_BATCH) };
          save(BATCH_KEY, batch); // first the batch, then the queue without it: a fix is never in neither
          save(QUEUE_KEY, q.slice(MAX_BATCH));
        }
        var r;
        try {
          r = await fetch('/api/v1/vans/positions', {
            method: 'POST',
            credentials: 'same-origin',
            headers: { 'Content-Type': 'application/json', 'Idempotency-Key': batch.key },
            body: JSON.stringify({ positions: batch.positions }),
          });
        } catch (e) { // no network: the batch stays, with its key, for the next try
          hooks.failures += 1;
          net('gps', true);
          break;
        }
        if (r.ok) {
          save(BATCH_KEY, null);
          hooks.sent += batch.positions.length;
          hooks.batches += 1;
          net('gps', false);
          if (hooks.state && hooks.state.dispatch) { refresh(); } // the arrival may have come with it
          continue;
        }
        hooks.failures += 1;
        if (r.status === 401) { net('gps', false); break; } // signed out: kept until the crew signs in again
        if (r.status >= 500 || r.status === 408 || r.status === 429) { net('gps', true); break; }
        save(BATCH_KEY, r.status === 422 ? await withoutBadRows(r, batch) : null); // refused: not sent again as is
        gpsError = fmt(T.failed, { msg: r.status });
      }
    } finally {
      flushing = false;
      gpsStatus();
    }
  }
  hooks.flush = flush;

  shareButton.addEventListener('click', function () { if (watchId === null) { startSharing(); } else { stopSharing(); } });
  window.addEventListener('online', flush);
  setInterval(flush, cfg.batch_ms);

  // --- ending the visit ------------------------------------------------------------------------------------------
  var form = $('mvan-end-form');
  var pending = null; // {dispatch, uploadKey, uploaded, endKey}: the keys of one ending, kept across its retries

  function endStatus(kind, text) {
    var p = $('mvan-end-status');
    p.setAttribute('data-kind', kind);
    p.textContent = text;
  }

  form.addEventListener('change', function (e) {
    if (e.target.name === 'photos') {
      var n = e.target.files.length;
      $('mvan-photos-count').textContent = n ? fmt(T.photos_count, { n: n }) : '';
    }
    if (!pending) { return; }
    if (e.target.name === 'photos') { pending.uploadKey = newKey(); pending.uploaded = false; }
    pending.endKey = newKey();
  });

  form.addEventListener('submit', async function (e) {
    e.preventDefault();
    var d = hooks.state && hooks.state.dispatch;
    if (!d) { return; }
    if (!pending || pending.dispatch !== d.id) { pending = { dispatch: d.id, uploadKey: newKey(), uploaded: false, endKey: newKey() }; }
    var button = form.querySelector('button[data-action=end-visit]');
    button.disabled = true;
    try {
      var files = form.elements.photos.files;
      if (files.length && !pending.uploaded) {
        endStatus('', T.uploading);
        var data = new FormData();
        for (var i = 0; i < files.length; i++) { data.append('file', files[i], files[i].name); }
        var up = await fetch('/api/v1/cases/' + encodeURIComponent(d.case) + '/attachments', {
          method: 'POST', credentials: 'same-origin', headers: { 'Idempotency-Key': pending.uploadKey }, body: data,
        });
        if (up.status === 401) { toLogin(); return; }
        if (!up.ok) { throw new Error(await errorText(up)); }
        pending.uploaded = true;
      }
      endStatus('', T.ending);
      var payload = {};
      ['result', 'outcome', 'note'].forEach(function (k) { var v = form.elements[k].value.trim(); if (v) { payload[k] = v; } });
      var r = await fetch('/api/v1/dispatches/' + d.id + '/end', {
        method: 'POST', credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json', 'Idempotency-Key': pending.endKey }, body: JSON.stringify(payload),
      });
      if (r.status === 401) { toLogin(); return; }
      if (!r.ok) { throw new Error(await errorText(r)); }
      pending = null;
      lastEnded = d.case;
      form.reset();
      $('mvan-photos-count').textContent = '';
      endStatus('ok', T.ended);
      refresh();
    } catch (err) {
      endStatus('error', fmt(T.failed, { msg: err.message || String(err) }));
    } finally {
      button.disabled = false;
    }
  });

  // --- start -------------------------------------------------------------------------------------------------------
  if (load(SHARING_KEY, false)) { startSharing(); } else { gpsStatus(); }
  document.addEventListener('visibilitychange', function () { if (!document.hidden) { refresh(); flush(); } });
  refresh();
  flush();
}());
