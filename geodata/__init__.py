"""Everything PostGIS: the connection pool, migrations, named queries."""
