/* The wall's clickable rows (issue 14 item 6): a ranking row carries its area page in data-href;
 * a click anywhere on the row opens it (its name is a plain link too, for the keyboard); a van's
 * row (a button, data-van) focuses the van. One listener on the document, so rows the callbacks
 * draw again need no wiring of their own. */
(function () {
  document.addEventListener("click", function (e) {
    var target = e.target;
    if (!target || !target.closest || target.closest("a")) { return; }  // a link goes by itself
    var row = target.closest("tr[data-href]");
    if (row) { window.location.assign(row.getAttribute("data-href")); return; }
    // A van's row on the board: the van is focused through a store, so that a click is not lost
    // when the live push draws the board again under the pointer (a pattern-matching n_clicks
    // was: the new button's n_clicks was read instead of the clicked one's).
    var van = target.closest("#wall-vans [data-van]");
    if (van && window.dash_clientside && window.dash_clientside.set_props) {
      window.dash_clientside.set_props("wall-van-focus", { data: { van: van.getAttribute("data-van"), at: Date.now() } });
    }
  });
})();
