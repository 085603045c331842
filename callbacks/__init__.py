"""Thin Dash callbacks, one module per dashboard feature."""
