/* The phone page's service worker (scope /m): the shell opens without network, and reports
 * waiting in the outbox are sent by Background Sync where the browser has it.
 *
 * - The shell (the page, its script, style, icons, Leaflet) is kept in a cache named by the
 *   shell's version (api/mobile.py shell_version): a new version installs a new cache and the old
 *   one is dropped. The page itself is fetched network first (a signed-out phone gets the sign-in
 *   page), the kept copy only when the network fails.
 * - The grid polygons (/api/v1/layers/grids) are kept as last fetched: the map and the offline
 *   "which grid cell" answer need them without network.
 * - Nothing else is touched: every other request (the API, /m/van, Dash) goes to the network.
 */
"use strict";
importScripts("/m/outbox.js");

var VERSION = "__VERSION__";
var SHELL = "yitu-m-shell-" + VERSION;
var DATA = "yitu-m-data";
var PAGE = "/m";
var GRIDS = "/api/v1/layers/grids?level=4&zoom=12";  // the map's one request (app.js)
var FILES = [
  "/m/app.js", "/m/outbox.js", "/m/app.css", "/m/manifest.webmanifest", "/m/icon-192.png", "/m/icon-512.png",
  "/static/vendor/leaflet/leaflet.js", "/static/vendor/leaflet/leaflet.css"
];

self.addEventListener("install", function (event) {
  event.waitUntil(caches.open(SHELL).then(function (cache) {
    return cache.addAll(FILES).then(function () {
      // The page only as itself: a signed-out fetch ends at /login, which is not the page.
      return fetch(PAGE, { credentials: "same-origin" }).then(function (r) {
        if (r.ok && !r.redirected) { return cache.put(PAGE, r); }
      }).catch(function () { /* kept on the page's next visit */ });
    }).then(function () {
      // The grid polygons too: the page's first visit fetched them before this worker was there.
      return fetch(GRIDS, { credentials: "same-origin" }).then(function (r) {
        if (r.ok && !r.redirected) { return caches.open(DATA).then(function (c) { return c.put(GRIDS, r); }); }
      }).catch(function () { /* kept when the map next fetches them */ });
    });
  }).then(function () { return self.skipWaiting(); }));
});

self.addEventListener("activate", function (event) {
  event.waitUntil(caches.keys().then(function (names) {
    return Promise.all(names.filter(function (n) { return n.indexOf("yitu-m-shell-") === 0 && n !== SHELL; })
      .map(function (n) { return caches.delete(n); }));
  }).then(function () { return self.clients.claim(); }));
});

function isPage(url) { return url.pathname === PAGE || url.pathname === PAGE + "/"; }

function pageFirst(request) {
  return fetch(request).then(function (r) {
    if (r.ok && !r.redirected) {
      var copy = r.clone();
      caches.open(SHELL).then(function (c) { return c.put(PAGE, copy); });
    }
    return r;
  }, function () {
    return caches.open(SHELL).then(function (c) { return c.match(PAGE); }).then(function (hit) {
      return hit || new Response("<!DOCTYPE html><meta charset=utf-8><p>离线：页面尚未保存到手机，请联网后打开一次</p>",
        { status: 503, headers: { "Content-Type": "text/html; charset=utf-8" } });
    });
  });
}

function shellFirst(request) {
  return caches.open(SHELL).then(function (c) {
    return c.match(request, { ignoreSearch: true }).then(function (hit) {
      return hit || fetch(request).then(function (r) {
        if (r.ok) { c.put(request, r.clone()); }
        return r;
      });
    });
  });
}

function networkThenKept(request) {
  return fetch(request).then(function (r) {
    if (r.ok) {
      var copy = r.clone();
      caches.open(DATA).then(function (c) { return c.put(request, copy); });
    }
    return r;
  }, function (err) {
    return caches.open(DATA).then(function (c) { return c.match(request); }).then(function (hit) {
      if (hit) { return hit; }
      throw err;
    });
  });
}

self.addEventListener("fetch", function (event) {
  var request = event.request;
  if (request.method !== "GET") { return; }
  var url = new URL(request.url);
  if (url.origin !== self.location.origin) { return; }
  if (request.mode === "navigate" && isPage(url)) {
    event.respondWith(pageFirst(request));
  } else if (FILES.indexOf(url.pathname) >= 0) {
    event.respondWith(shellFirst(request));
  } else if (url.pathname === "/api/v1/layers/grids") {
    event.respondWith(networkThenKept(request));
  }
});

// Background Sync (where the browser has it): the outbox is sent even with the page closed.
self.addEventListener("sync", function (event) {
  if (event.tag === "yitu-outbox") {
    event.waitUntil(self.yituOutbox.flush().then(function (r) {
      if (r.offline) { throw new Error("still offline"); }  // the browser tries again later
    }));
  }
});

// The page asks the worker to send (a page about to close hands the work over).
self.addEventListener("message", function (event) {
  if (event.data === "flush") { event.waitUntil(self.yituOutbox.flush()); }
});
