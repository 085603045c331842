"""The HTTP API (FastAPI routers), served by the same process as the dashboard."""
