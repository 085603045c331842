/* The wall's clickable rows (issue 14 item 6): a ranking row carries its area page in data-href;
 * a click anywhere on the row opens it (its name is a plain link too, for the keyboard). One
 * listener on the document, so rows the callbacks draw again need no wiring of their own. */
(function () {
  document.addEventListener("click", function (e) {
    var target = e.target;
    if (!target || !target.closest || target.closest("a")) { return; }  // a link goes by itself
    var row = target.closest("tr[data-href]");
    if (row) { window.location.assign(row.getAttribute("data-href")); }
  });
})();
