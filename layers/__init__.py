"""One module per map layer (grids, cameras, cases, vans, centres), each declaring one Layer in the registry
(registry.py), found by pkgutil; base.py holds what they share (the box, zoom → level, the wire formats)."""
