/* The wall's clickable rows (issue 14 item 6): a ranking row carries its area page in data-href;
 * a click anywhere on the row opens it (its name is a plain link too, for the keyboard), and a
 * banner's row drills the wall down on the page; a van's row (a button, data-van) focuses the van;
 * a case in the dispatch page's queue (data-code) is picked. One listener on the document, so rows
 * the callbacks (and the live push) draw again need no wiring of their own. */
(function () {
  document.addEventListener("click", function (e) {
    var target = e.target;
    if (!target || !target.closest) { return; }
    var link = target.closest("a");
    var row = target.closest("tr[data-href]");
    if (row) {
      var href = row.getAttribute("data-href");
      var plain = e.button === 0 && !e.ctrlKey && !e.metaKey && !e.shiftKey && !e.altKey;
      // A banner's row (or its name) on the wall drills the wall down where it is, like a click on
      // the banner's polygon: the page is not loaded again (that took 0.7 s of a league's
      // drill-down), and the address follows, for a reload or a link. A new tab goes by the link.
      var banner = /^\/\?area=(\d+)$/.exec(href);
      var onPage = row.closest("#wall-ranking") && window.dash_clientside && window.dash_clientside.set_props;
      if (banner && onPage && plain && (!link || link.getAttribute("href") === href)) {
        e.preventDefault();
        window.dash_clientside.set_props("wall-drill", { data: { code: banner[1], at: Date.now() } });
        window.history.replaceState(null, "", href);
        return;
      }
      if (!link) { window.location.assign(href); }
      return;
    }
    if (link) { return; }  // a link goes by itself
    // A case in the dispatch queue: picked through a store, like a van's row below (the queue is
    // drawn again by the live push; a click on an item being replaced lost its n_clicks).
    var item = target.closest(".yitu-queue-item[data-code]");
    if (item && window.dash_clientside && window.dash_clientside.set_props) {
      window.dash_clientside.set_props("dispatch-pick", { data: { code: item.getAttribute("data-code"), at: Date.now() } });
      return;
    }
    // A van's row on the board: the van is focused through a store, so that a click is not lost
    // when the live push draws the board again under the pointer (a pattern-matching n_clicks
    // was: the new button's n_clicks was read instead of the clicked one's).
    var van = target.closest("#wall-vans [data-van]");
    if (van && window.dash_clientside && window.dash_clientside.set_props) {
      window.dash_clientside.set_props("wall-van-focus", { data: { van: van.getAttribute("data-van"), at: Date.now() } });
    }
  });

  // The dispatch desk on a phone (one column up to 700 px wide, yitu_phone.css): a case picked in
  // the queue or on the map fills the case card below the map; the page scrolls to the card, which the
  // dispatcher otherwise had to look for past the map (callbacks/dispatch.py calls it when a case is
  // picked). Above the card only the queue and the map, so where it starts does not depend on its
  // content; but an empty card is not shown (yitu.css .yitu-card:empty): the first pick waits for the
  // card to be filled (at most 15 s, then lets it be).
  var yitu = (window.yitu = window.yitu || {});
  yitu.dispatch = {
    showCase: function (code) {
      var card = document.getElementById("dispatch-case");
      if (!code || !card || !window.matchMedia || !window.matchMedia("(max-width: 700px)").matches) {
        return window.dash_clientside.no_update;
      }
      if (card.childElementCount) {
        card.scrollIntoView({ block: "start" });
      } else {
        var watch = new MutationObserver(function () {
          if (!card.childElementCount) { return; }
          watch.disconnect();
          card.scrollIntoView({ block: "start" });
        });
        watch.observe(card, { childList: true });
        window.setTimeout(function () { watch.disconnect(); }, 15000);
      }
      return window.dash_clientside.no_update;
    }
  };
})();
