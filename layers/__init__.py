"""One module per map layer (grids, cameras, cases, vans, centres), each with the same small surface."""
