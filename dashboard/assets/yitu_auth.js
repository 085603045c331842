/* Signed out while a page is open: go to the sign-in page.
 * An ended session (signed out elsewhere, idle too long, a disabled user, a revoked wall screen)
 * makes the server answer the page's own calls — callbacks, layer URLs — with 401; the live push
 * tells an open page at once (callbacks/live.py sets the live-leave store). Either way the page
 * goes to /login?next=<where it was>, and comes back there after signing in.
 */
(function () {
  "use strict";
  var yitu = (window.yitu = window.yitu || {});
  if (yitu.auth) { return; }

  function here() {
    return window.location.pathname + window.location.search;
  }

  var leaving = false;
  function leave(url) {
    if (leaving) { return; }
    leaving = true;
    window.location.assign(url || "/login?next=" + encodeURIComponent(here()));
  }

  function sameOrigin(url) {
    try {
      return new URL(url, window.location.href).origin === window.location.origin;
    } catch (e) {
      return false;
    }
  }

  var fetch0 = window.fetch;
  if (fetch0) {
    window.fetch = function (input, init) {
      var url = typeof input === "string" ? input : (input && input.url) || "";
      return fetch0.apply(this, arguments).then(function (response) {
        if (response.status === 401 && sameOrigin(url)) {
          leave();
          return new Promise(function () {});  // the page is leaving: nothing else handles this answer
        }
        return response;
      });
    };
  }
  var open0 = XMLHttpRequest.prototype.open;
  XMLHttpRequest.prototype.open = function (method, url) {
    this.addEventListener("load", function () {
      if (this.status === 401 && sameOrigin(url)) { leave(); }
    });
    return open0.apply(this, arguments);
  };

  yitu.auth = { leave: leave, here: here };
})();
