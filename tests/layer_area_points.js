/* The style function of the test layer tests/layer_area_points.py, as a layer's function would sit in
 * dashboard/assets/yitu_map.js: under window.yitu.map, named by the layer's `style`. */
(function () {
  "use strict";
  var yitu = (window.yitu = window.yitu || {});
  yitu.map = Object.assign(yitu.map || {}, {
    areaPoint: function (feature, latlng) {
      var div = document.createElement("div");
      div.textContent = feature.properties.name;
      div.style.cssText = "white-space:nowrap;color:#ffe066;font-size:12px;transform:translate(10px,-4px)";
      var icon = L.divIcon({ className: "yitu-test-area-point", html: div.outerHTML, iconSize: L.point(14, 14) });
      return L.marker(latlng, { icon: icon, title: feature.properties.name });
    }
  });
})();
