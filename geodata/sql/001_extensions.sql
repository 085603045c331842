-- PostGIS for every geometry in yitu. On an external server a superuser may have to run this
-- once; IF NOT EXISTS makes it a no-op when the extension is already there.
CREATE EXTENSION IF NOT EXISTS postgis;
