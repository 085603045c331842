"""yitu's dashboard: the app factory, pages, settings, the CLI and the embedded stack."""
