"""Write a vector MBTiles of a yitu database's own roads, water, outlines and places (PostGIS ST_AsMVT).

A cross-check of the vector base map (geodata/vector_basemap.py): the tiles carry the data the own
map draws, under OpenMapTiles' layer names and classes (trunk roads as ``trunk``, county roads as
``secondary``, village roads as ``minor``; towns and villages as ``place``; the banner as land in
Protomaps' ``earth``), so a wall served from
this file (YITU_BASEMAP=mbtiles) should look as it does with YITU_BASEMAP=own, plus the borders.
It is also a way to carry a deployment's map to a machine without its database.

    .venv/bin/python scripts/vector_mbtiles.py --dsn "$(.venv/bin/yitu db url)" --out /tmp/demo.mbtiles
    .venv/bin/yitu basemap import /tmp/demo.mbtiles
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import sqlite3
import sys
from pathlib import Path

import psycopg

# One tile: each layer an ST_AsMVT of its rows in the tile's grid, the layers' bytes concatenated
# (a vector tile is the concatenation of its layers); the CTEs are l_<layer>, clear of the tables'
# names. Zoom rules as the own map's (basemap_tile.sql).
TILE_SQL = """
WITH t AS (
    SELECT ST_TileEnvelope(%(z)s, %(x)s, %(y)s) AS env,
           ST_Transform(ST_TileEnvelope(%(z)s, %(x)s, %(y)s, margin => 0.02), 4326) AS box
),
places AS (
    SELECT a.level, a.name,
           CASE WHEN jsonb_typeof(a.props -> 'seat' -> 0) = 'number'
                THEN (a.props -> 'seat' ->> 0)::float8 ELSE ST_X(ST_PointOnSurface(a.geom)) END AS lon,
           CASE WHEN jsonb_typeof(a.props -> 'seat' -> 1) = 'number'
                THEN (a.props -> 'seat' ->> 1)::float8 ELSE ST_Y(ST_PointOnSurface(a.geom)) END AS lat
    FROM areas a WHERE a.level IN (2, 3)
),
l_water AS (
    SELECT w.kind AS class, w.name, ST_AsMVTGeom(ST_Transform(w.geom, 3857), t.env, 4096, 64) AS geom
    FROM water w, t
    WHERE w.geom && t.box AND GeometryType(w.geom) LIKE '%%POLYGON'
),
l_waterway AS (
    SELECT w.kind AS class, w.name, ST_AsMVTGeom(ST_Transform(w.geom, 3857), t.env, 4096, 64) AS geom
    FROM water w, t
    WHERE w.geom && t.box AND GeometryType(w.geom) NOT LIKE '%%POLYGON'
      AND (w.kind IN ('river', 'canal') OR %(z)s >= 11)
),
l_transportation AS (
    SELECT CASE r.kind WHEN 'trunk' THEN 'trunk' WHEN 'county' THEN 'secondary' ELSE 'minor' END AS class,
           ST_AsMVTGeom(ST_Transform(r.geom, 3857), t.env, 4096, 64) AS geom
    FROM roads r, t
    WHERE r.geom && t.box
      AND (r.kind = 'trunk' OR (r.kind = 'county' AND %(z)s >= 8) OR (r.kind = 'village' AND %(z)s >= 10))
),
l_transportation_name AS (
    SELECT r.name, ST_AsMVTGeom(ST_Transform(r.geom, 3857), t.env, 4096, 64) AS geom
    FROM roads r, t
    WHERE r.geom && t.box AND r.name IS NOT NULL AND %(z)s >= 12
),
l_earth AS (  -- the banner as land (Protomaps' name for land polygons), as the own map draws it
    SELECT a.code, ST_AsMVTGeom(ST_Transform(a.geom, 3857), t.env, 4096, 64) AS geom
    FROM areas a, t
    WHERE a.level = 1 AND a.geom && t.box
),
l_boundary AS (
    SELECT CASE a.level WHEN 1 THEN 6 ELSE 8 END AS admin_level,
           ST_AsMVTGeom(ST_Transform(ST_Boundary(a.geom), 3857), t.env, 4096, 64) AS geom
    FROM areas a, t
    WHERE a.geom && t.box AND (a.level = 1 OR (a.level = 2 AND %(z)s >= 9))
),
l_place AS (
    SELECT CASE p.level WHEN 2 THEN 'town' ELSE 'village' END AS class, p.name,
           ST_AsMVTGeom(ST_Transform(ST_SetSRID(ST_MakePoint(p.lon, p.lat), 4326), 3857), t.env, 4096, 64) AS geom
    FROM places p, t
    WHERE ST_Intersects(ST_SetSRID(ST_MakePoint(p.lon, p.lat), 4326), t.box) AND %(z)s >= 8
)
SELECT coalesce((SELECT ST_AsMVT(q, 'earth', 4096, 'geom') FROM l_earth q WHERE geom IS NOT NULL), '')
    || coalesce((SELECT ST_AsMVT(q, 'water', 4096, 'geom') FROM l_water q WHERE geom IS NOT NULL), '')
    || coalesce((SELECT ST_AsMVT(q, 'waterway', 4096, 'geom') FROM l_waterway q WHERE geom IS NOT NULL), '')
    || coalesce((SELECT ST_AsMVT(q, 'boundary', 4096, 'geom') FROM l_boundary q WHERE geom IS NOT NULL), '')
    || coalesce((SELECT ST_AsMVT(q, 'transportation', 4096, 'geom') FROM l_transportation q WHERE geom IS NOT NULL), '')
    || coalesce((SELECT ST_AsMVT(q, 'transportation_name', 4096, 'geom')
                 FROM l_transportation_name q WHERE geom IS NOT NULL), '')
    || coalesce((SELECT ST_AsMVT(q, 'place', 4096, 'geom') FROM l_place q WHERE geom IS NOT NULL), '')
"""
LAYERS = ("earth", "water", "waterway", "boundary", "transportation", "transportation_name", "place")


def _tile_range(west: float, south: float, east: float, north: float, z: int) -> tuple[range, range]:
    n = 1 << z

    def col(lon: float) -> int:
        return min(n - 1, int((lon + 180) / 360 * n))

    def row(lat: float) -> int:
        la = math.radians(lat)
        return min(n - 1, int((1 - math.log(math.tan(la) + 1 / math.cos(la)) / math.pi) / 2 * n))

    return range(col(west), col(east) + 1), range(row(north), row(south) + 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dsn", required=True, help="the yitu database (e.g. $(yitu db url))")
    parser.add_argument("--out", required=True, type=Path, help="the MBTiles file to write (replaced)")
    parser.add_argument("--minzoom", type=int, default=5)
    parser.add_argument("--maxzoom", type=int, default=13)
    parser.add_argument("--plain", action="store_true", help="store the tiles uncompressed (default: gzip)")
    args = parser.parse_args()
    args.out.unlink(missing_ok=True)
    with psycopg.connect(args.dsn) as pg, sqlite3.connect(args.out) as out:
        extent = pg.execute(
            "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT ST_Extent(geom) e "
            "FROM areas WHERE level = 1) s"
        ).fetchone()
        if extent is None or extent[0] is None:
            print("no banner (areas of level 1) in that database", file=sys.stderr)
            return 1
        west, south, east, north = (float(v) for v in extent)
        out.execute("CREATE TABLE metadata (name text, value text)")
        out.execute("CREATE TABLE tiles (zoom_level integer, tile_column integer, tile_row integer, tile_data blob)")
        out.execute("CREATE UNIQUE INDEX tile_index ON tiles (zoom_level, tile_column, tile_row)")
        meta = {
            "name": "yitu demo (ST_AsMVT)",
            "format": "pbf",
            "minzoom": str(args.minzoom),
            "maxzoom": str(args.maxzoom),
            "bounds": f"{west:.5f},{south:.5f},{east:.5f},{north:.5f}",
            "json": json.dumps({"vector_layers": [{"id": name, "fields": {}} for name in LAYERS]}),
        }
        out.executemany("INSERT INTO metadata VALUES (?, ?)", list(meta.items()))
        count = 0
        for z in range(args.minzoom, args.maxzoom + 1):
            cols, rows = _tile_range(west, south, east, north, z)
            for x in cols:
                for y in rows:
                    row = pg.execute(TILE_SQL, {"z": z, "x": x, "y": y}).fetchone()
                    data = bytes(row[0]) if row else b""
                    if not data:
                        continue
                    stored = data if args.plain else gzip.compress(data)
                    out.execute("INSERT INTO tiles VALUES (?, ?, ?, ?)", (z, x, (1 << z) - 1 - y, stored))
                    count += 1
            print(f"zoom {z}: {count} tiles so far", file=sys.stderr)
    out.close()
    print(f"{args.out}: {count} tiles, zoom {args.minzoom}-{args.maxzoom}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
