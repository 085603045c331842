"""yitu's one settings object.

Built by the caller (the CLI, the app factory, a test) and passed down; nothing reads the
environment at import time. Precedence, highest first: keyword arguments, ``YITU_*``
environment variables, the ``.env`` file, the defaults below. Every field is listed in
``.env.example``.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
EMBEDDED_DB_NAME = "yitu"
EMBEDDED_DB_USER = "yitu"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="YITU_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
        env_ignore_empty=True,  # "YITU_X=" in .env means "use the default"
    )

    # --- where the data lives -------------------------------------------------
    database_url: SecretStr | None = Field(
        default=None, description="PostgreSQL/PostGIS DSN. Unset: the embedded cluster under `home` is used."
    )
    redis_url: SecretStr | None = Field(
        default=None, description="Redis URL. Unset: the embedded Redis under `home` is used."
    )
    home: Path = Field(
        default=PROJECT_ROOT / ".yitu",
        description="State folder of the embedded stack (data, logs, generated passwords).",
    )
    pg_port: int = Field(default=55432, ge=1024, le=65535, description="Embedded PostgreSQL port.")
    redis_port: int = Field(default=56379, ge=1024, le=65535, description="Embedded Redis port.")
    pg_bindir: Path | None = Field(
        default=None, description="PostgreSQL server binaries; unset: the newest /usr/lib/postgresql/N/bin."
    )
    service_user: str = Field(
        default="yitu",
        pattern=r"^[a-z_][a-z0-9_-]{0,31}$",
        description="Unprivileged system user that runs the embedded PostgreSQL when yitu runs as root.",
    )

    # --- the web server ---------------------------------------------------------
    host: str = Field(default="127.0.0.1", description="Address the dashboard listens on.")
    port: int = Field(default=8050, ge=1, le=65535, description="Port the dashboard listens on.")
    lang: Literal["zh-CN", "en"] = Field(default="zh-CN", description="Language of the UI.")
    public_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/]+(:\d+)?/?$",
        description="The address people open (e.g. https://yitu.example); printed links (screen pairing, "
        "the demo's sign-in) start with it. Unset: http://HOST:PORT.",
    )

    # --- the map ------------------------------------------------------------------
    basemap: Literal["none", "osm", "tianditu-vec", "tianditu-img", "xyz"] = Field(
        default="none",
        description="Base map: none (own layers on dark, works offline), osm, tianditu-vec/-img, or xyz.",
    )
    basemap_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s]+$",
        description="Tile URL template for basemap=xyz, e.g. http://tiles.local/{z}/{x}/{y}.png",
    )
    basemap_gcj02: bool = Field(default=False, description="The xyz tiles are GCJ-02 (AMap): shift overlays to match.")
    tianditu_token: SecretStr | None = Field(default=None, description="Tianditu key for basemap=tianditu-*.")

    # --- pools and timeouts -------------------------------------------------------
    db_pool_min: int = Field(default=1, ge=0, le=100)
    db_pool_max: int = Field(default=10, ge=1, le=200)
    db_connect_timeout: float = Field(default=3.0, gt=0, le=60, description="Seconds.")
    redis_timeout: float = Field(default=2.0, gt=0, le=60, description="Seconds.")

    # --- cases ---------------------------------------------------------------------
    deadline_grid_hours: float = Field(
        default=0,
        ge=0,
        le=24 * 30,
        description="Hours a grid cell has to settle a case; 0: by the end of the day it arrived (当天, China time).",
    )
    deadline_village_hours: float = Field(default=72, ge=0, le=24 * 90, description="Village level: 3 days.")
    deadline_town_hours: float = Field(default=120, ge=0, le=24 * 90, description="Town level: 5 days.")
    deadline_banner_hours: float = Field(default=168, ge=0, le=24 * 90, description="Banner level: 7 days.")
    max_attempts_per_level: int = Field(
        default=3, ge=1, le=20, description="Mediation attempts per level before escalation is proposed (三个三)."
    )
    auto_escalate: bool = Field(default=False, description="The scheduler escalates overdue cases by one level.")
    scheduler_interval: float = Field(
        default=60, ge=0, le=86400, description="Seconds between overdue sweeps; 0 turns the scheduler off."
    )
    events_timeout: float = Field(
        default=0.25, gt=0, le=10, description="Seconds a publish to the live event stream may take."
    )
    auth_cache_seconds: float = Field(
        default=10, ge=0, le=3600, description="How long a process trusts a token it has looked up (revocation lag)."
    )

    # --- sign-in ---------------------------------------------------------------------
    session_idle_minutes: float = Field(
        default=30,
        gt=0,
        le=24 * 60,
        description="A person's session ends after this many minutes without a request (absolute limit: 12 h; "
        "wall screens have no idle timeout).",
    )
    trusted_proxies: list[str] = Field(
        default_factory=lambda: ["127.0.0.1", "::1"],
        description="Addresses whose X-Forwarded-Proto is believed (the session cookie is Secure over HTTPS) "
        '(JSON list, e.g. ["10.0.0.2"]).',
    )

    # --- vans ----------------------------------------------------------------------
    van_offline_seconds: float = Field(
        default=300, gt=0, le=86400, description="A van that has not reported for this many seconds shows offline."
    )
    van_max_speed_kmh: float = Field(
        default=200,
        gt=0,
        le=2000,
        description="A step between two pings faster than this is a GPS glitch: it adds no mileage.",
    )
    van_track_max_days: float = Field(
        default=7, gt=0, le=366, description="The longest span GET /api/v1/vans/{id}/track answers for."
    )

    # --- dispatch -------------------------------------------------------------------
    dispatch_snap_max_m: float = Field(
        default=2000,
        ge=0,
        le=50_000,
        description="A van or case farther than this from every road is routed by great circle (× detour).",
    )
    dispatch_detour_factor: float = Field(
        default=1.3, ge=1, le=5, description="Off-road legs and great-circle routes: straight distance × this."
    )
    dispatch_speed_trunk_kmh: float = Field(default=80, gt=0, le=200, description="ETA speed on trunk roads.")
    dispatch_speed_county_kmh: float = Field(default=60, gt=0, le=200, description="ETA speed on county roads.")
    dispatch_speed_village_kmh: float = Field(default=40, gt=0, le=200, description="ETA speed on village roads.")
    dispatch_speed_offroad_kmh: float = Field(default=30, gt=0, le=200, description="ETA speed off the road network.")
    arrival_radius_m: float = Field(
        default=200,
        gt=0,
        le=5000,
        description="A van on its way that reports a fix this close to its case is on site (the case starts).",
    )

    # --- live push ----------------------------------------------------------------
    websocket_origins: list[str] = Field(
        default_factory=list,
        description="Origins besides the page's own allowed to open the live WebSocket "
        '(JSON list, e.g. ["https://screens.example"]; needed behind a proxy that rewrites Host).',
    )

    # --- simulator ------------------------------------------------------------------
    demo_simulate: bool = Field(
        default=True, description="`yitu demo` runs the simulator (`yitu simulate`) beside the server."
    )
    sim_rate: float = Field(
        default=6, gt=0, le=3600, description="Simulator: new cases per simulated hour, averaged over the day."
    )
    sim_speedup: float = Field(
        default=10, gt=0, le=1000, description="Simulator: simulated time runs this many times faster than real time."
    )

    # --- logs ---------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = Field(
        default="text", description="text: key=value lines for people; json: one object a line."
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, v: object) -> object:
        return v.upper() if isinstance(v, str) else v

    @field_validator("db_pool_max")
    @classmethod
    def _max_at_least_min(cls, v: int, info: ValidationInfo) -> int:
        low = info.data.get("db_pool_min", 0)
        if v < low:
            raise ValueError(f"db_pool_max ({v}) is smaller than db_pool_min ({low})")
        return v

    @property
    def embedded(self) -> bool:
        """True when yitu runs its own PostgreSQL and Redis (no URL given for either)."""
        return self.database_url is None or self.redis_url is None

    # --- where the servers are ------------------------------------------------------
    # The one place that knows: every process (server, CLI, simulator, tests) resolves the URLs here.
    def database_dsn(self) -> str:
        """The PostgreSQL DSN in use: ``database_url``, or the embedded cluster's (``yitu db up``)."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        pw = quote(self.embedded_secret("pg_password"), safe="")
        return f"postgresql://{EMBEDDED_DB_USER}:{pw}@127.0.0.1:{self.pg_port}/{EMBEDDED_DB_NAME}"

    def redis_dsn(self) -> str:
        """The Redis URL in use: ``redis_url``, or the embedded Redis's."""
        if self.redis_url is not None:
            return self.redis_url.get_secret_value()
        pw = quote(self.embedded_secret("redis_password"), safe="")
        return f"redis://:{pw}@127.0.0.1:{self.redis_port}/0"

    def embedded_secret(self, name: str) -> str:
        """A generated password of the embedded stack (``<home>/secrets/<name>``, mode 0600),
        made on first use so the stack and its clients agree without configuration."""
        folder = self.home.resolve() / "secrets"
        path = folder / name
        if not path.exists():
            folder.mkdir(parents=True, exist_ok=True)
            os.chmod(folder, 0o700)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process made it first
                return path.read_text().strip()
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(24))
        return path.read_text().strip()
