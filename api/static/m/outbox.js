/* The phone's outbox: reports kept in IndexedDB until the server has them, photos included.
 *
 * Loaded by the page (/m) and by its service worker (importScripts), so both can send: the page
 * on load, when the network returns (the "online" event) and every RETRY_MS while something
 * waits; the worker on Background Sync where the browser has it (the page may be closed).
 *
 * Exactly once: each report carries two keys made when it was saved — one for the report
 * (POST /api/v1/cases: Idempotency-Key, a retry gets the case the first try made) and one for its
 * photos (POST /api/v1/cases/{code}/attachments: the same key and files replay the first upload) —
 * and its body is fixed before its first try, so every retry is the same request. A try cut off
 * halfway (the page closed, the connection dropped mid-upload) leaves the item as it was, and
 * the next try finishes it. Senders take a Web Lock, so page and worker do not send at once (were
 * they to, the keys would still make the second a replay).
 *
 * The phone's clock: reported_at is the phone's time of the report, sent only when the phone's
 * clock agreed with the server's (GET /m/api/state) within its tolerance at the first try;
 * otherwise the server's time of arrival stands, and the item says so (clockOff, in minutes).
 */
(function (root) {
  "use strict";
  var DB_NAME = "yitu-m";
  var DB_VERSION = 1;
  var LOCK = "yitu-m-outbox";
  var RETRY_MS = 15000;

  function uuid() {
    if (root.crypto && root.crypto.randomUUID) { return root.crypto.randomUUID(); }
    var b = root.crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
    var h = Array.prototype.map.call(b, function (x) { return (x + 0x100).toString(16).slice(1); }).join("");
    return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
  }

  var opened = null;
  function open() {
    if (opened) { return opened; }
    opened = new Promise(function (resolve, reject) {
      var req = root.indexedDB.open(DB_NAME, DB_VERSION);
      req.onupgradeneeded = function () {
        var db = req.result;
        if (!db.objectStoreNames.contains("outbox")) { db.createObjectStore("outbox", { keyPath: "id" }); }
        if (!db.objectStoreNames.contains("kv")) { db.createObjectStore("kv", { keyPath: "k" }); }
      };
      req.onsuccess = function () { resolve(req.result); };
      req.onerror = function () { opened = null; reject(req.error); };
    });
    return opened;
  }

  function tx(store, mode, fn) {
    return open().then(function (db) {
      return new Promise(function (resolve, reject) {
        var t = db.transaction(store, mode);
        var out = fn(t.objectStore(store));
        t.oncomplete = function () { resolve(out && out.result !== undefined ? out.result : out); };
        t.onerror = function () { reject(t.error); };
        t.onabort = function () { reject(t.error); };
      });
    });
  }

  function all() {
    return tx("outbox", "readonly", function (s) { return s.getAll(); }).then(function (items) {
      return (items || []).sort(function (a, b) { return a.created < b.created ? -1 : 1; });
    });
  }
  function put(item) { return tx("outbox", "readwrite", function (s) { s.put(item); }); }
  function del(id) { return tx("outbox", "readwrite", function (s) { s.delete(id); }); }
  function kvGet(k) {
    return tx("kv", "readonly", function (s) { return s.get(k); }).then(function (r) { return r ? r.v : undefined; });
  }
  function kvSet(k, v) { return tx("kv", "readwrite", function (s) { s.put({ k: k, v: v }); }); }

  /* A new report: saved with its keys and photos (Blobs) before any try. */
  function save(user, body, photos) {
    var item = {
      id: uuid(),
      user: user,
      created: new Date().toISOString(),
      body: body,
      caseKey: uuid(),
      uploadKey: uuid(),
      photos: photos,
      sent: null,       // the body as first sent (fixed from then on)
      code: null,       // the case, once the server has it
      uploaded: false,  // the photos, once the server has them (or refused them)
      state: "waiting", // waiting | refused
      error: null,
      photoError: null,
      clockOff: null,
      tries: 0
    };
    return put(item).then(function () { return item; });
  }

  function fail(status, json) {
    var e = new Error((json && json.message) || ("HTTP " + status));
    e.status = status;
    e.field = json && json.field;
    e.code = json && json.error;
    return e;
  }

  function call(url, init) {
    return fetch(url, Object.assign({ credentials: "same-origin", cache: "no-store" }, init)).then(function (r) {
      return r.text().then(function (text) {
        var json = null;
        try { json = text ? JSON.parse(text) : null; } catch (err) { json = null; }
        if (!r.ok) { throw fail(r.status, json); }
        return json;
      });
    });
  }

  // Refusals that a retry cannot cure (the request itself is wrong); anything else waits.
  function permanent(e) {
    return e.status >= 400 && e.status < 500 && [401, 408, 425, 429].indexOf(e.status) < 0;
  }

  function fixBody(item, clock) {
    var body = Object.assign({}, item.body);
    if (clock.ok) {
      body.reported_at = item.created;
    } else {
      item.clockOff = clock.offMinutes;
    }
    item.sent = body;
  }

  function sendCase(item, clock) {
    if (!item.sent) {
      // Fixed and kept before the first try: a page closed mid-request must retry the very same body
      // (the same key with another body is refused), whatever the clock says by then.
      fixBody(item, clock);
      return put(item).then(function () { return sendCase(item, clock); });
    }
    return call("/api/v1/cases", {
      method: "POST",
      headers: { "Content-Type": "application/json", "Idempotency-Key": item.caseKey },
      body: JSON.stringify(item.sent)
    }).then(function (c) { item.code = c.code; });
  }

  function sendPhotos(item) {
    var form = new FormData();
    item.photos.forEach(function (p, i) { form.append("file", p.blob, p.name || ("photo-" + (i + 1) + ".jpg")); });
    return call("/api/v1/cases/" + encodeURIComponent(item.code) + "/attachments", {
      method: "POST",
      headers: { "Idempotency-Key": item.uploadKey },
      body: form
    }).then(function () { item.uploaded = true; });
  }

  function remember(item) {
    return kvGet("sent").then(function (list) {
      list = (list || []).filter(function (s) { return s.id !== item.id; });
      list.unshift({ id: item.id, code: item.code, at: new Date().toISOString(), photoError: item.photoError,
                     clockOff: item.clockOff, photos: item.photos.length });
      return kvSet("sent", list.slice(0, 20));
    });
  }

  /* One item as far as it goes: the case, then its photos; then it leaves the outbox. */
  function sendItem(item, clock) {
    var step = item.code ? Promise.resolve() : sendCase(item, clock);
    return step.then(function () {
      if (item.uploaded || !item.photos.length) { return; }
      return put(item).then(function () { return sendPhotos(item); }).catch(function (e) {
        if (!permanent(e)) { throw e; }
        item.uploaded = true;  // the case stands; the photos were refused (said on the page)
        item.photoError = { status: e.status, field: e.field, message: e.message };
      });
    }).then(function () {
      return remember(item).then(function () { return del(item.id); });
    }, function (e) {
      item.tries += 1;
      if (permanent(e) && !item.code) {
        item.state = "refused";
        item.error = { status: e.status, field: e.field, message: e.message };
      }
      return put(item).then(function () { throw e; });
    });
  }

  function clockOf(state) {
    var off = Date.parse(state.now) - Date.now();
    var ok = Math.abs(off) <= (state.clock_tolerance_seconds || 180) * 1000;
    return { ok: ok, offMinutes: Math.round(off / 60000) };
  }

  /* Send what waits. Resolves {sent, waiting, offline, signedOut, me}; never rejects. */
  function run() {
    var result = { sent: 0, waiting: 0, offline: false, signedOut: false, me: null, clock: null };
    return all().then(function (items) {
      var mine = items.filter(function (i) { return i.state === "waiting"; });
      result.waiting = mine.length;
      if (!mine.length) { return result; }
      return call("/m/api/state?lists=false", {}).then(function (state) {
        result.me = state.me;
        result.clock = clockOf(state);
        var queue = mine.filter(function (i) { return i.user === state.me.ident; });
        var next = function () {
          var item = queue.shift();
          if (!item) { return result; }
          return sendItem(item, result.clock).then(function () {
            result.sent += 1; result.waiting -= 1; return next();
          }, function (e) {
            if (e.status === 401) { result.signedOut = true; return result; }
            if (permanent(e)) { result.waiting -= 1; return next(); }
            result.offline = true;  // the network or the server is away: the rest waits too
            return result;
          });
        };
        return next();
      }, function (e) {
        if (e.status === 401 || e.status === 403) { result.signedOut = true; } else { result.offline = true; }
        return result;
      });
    }).catch(function () { result.offline = true; return result; });
  }

  function flush() {
    if (root.navigator && root.navigator.locks && root.navigator.locks.request) {
      return root.navigator.locks.request(LOCK, run);
    }
    return run();
  }

  root.yituOutbox = {
    uuid: uuid, open: open, all: all, put: put, del: del, save: save, kvGet: kvGet, kvSet: kvSet,
    flush: flush, call: call, permanent: permanent, clockOf: clockOf, RETRY_MS: RETRY_MS
  };
})(typeof self !== "undefined" ? self : this);
