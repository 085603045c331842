"""yitu's one settings object.

Built by the caller (the CLI, the app factory, a test) and passed down; nothing reads the
environment at import time. Precedence, highest first: keyword arguments, ``YITU_*``
environment variables, the ``.env`` file, the defaults below. Every field is listed in
``.env.example``.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from pathlib import Path
from typing import Literal
from urllib.parse import quote, urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from geodata.deadlines import MAX_ATTEMPTS, MAX_HOURS
from geodata.workflow import DEFAULT_SEVERITY_LEVELS, LEVELS, SEVERITIES
from services.redisconn import parse as parse_redis_url

PROJECT_ROOT = Path(__file__).resolve().parent.parent
EMBEDDED_DB_NAME = "yitu"
EMBEDDED_DB_USER = "yitu"  # the embedded cluster's superuser: the owner role (migrations, imports, seeding)
# The role the app connects as: it may read and write the data, but only append to the audit
# (case_events, admin_events). Its privileges come from the group role RUNTIME_GROUP, which the
# migrations grant to (016_audit.sql); any login role that is a member of it can run the app.
EMBEDDED_RUNTIME_USER = "yitu_app"
RUNTIME_GROUP = "yitu_runtime"
WEBHOOK_URL_MAX = 2000  # characters of YITU_NOTIFY_WEBHOOK_URL


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
        default=None,
        description="PostgreSQL/PostGIS DSN the app connects with: the runtime role (a member of yitu_runtime, "
        "which cannot alter the audit). Unset: the embedded cluster under `home` is used.",
    )
    database_owner_url: SecretStr | None = Field(
        default=None,
        description="DSN of the owner role (owns the tables): `yitu db migrate`, `yitu import`, `yitu seed`. "
        "Unset: YITU_DATABASE_URL (one role for both: the audit is then not tamper-proof).",
    )
    redis_url: SecretStr | None = Field(
        default=None,
        description="Redis URL: redis://[:password@]host:port/db, or a Sentinel set "
        "redis+sentinel://[:password@]host:port[,host:port…]/mastername[/db] (services/redisconn.py). "
        "Unset: the embedded Redis under `home` is used.",
    )
    database_read_url: SecretStr | None = Field(
        default=None,
        description="DSN of a PostgreSQL streaming replica (hot standby) of the database, as the runtime role: "
        "the read-heavy API paths (layers, KPIs, rankings, area lists and CSV, search, the van board) read "
        "there while it keeps up. Unset: every read goes to the primary. `yitu db replica url` prints the "
        "embedded standby's.",
    )
    pg_replica_port: int | None = Field(
        default=None,
        ge=1024,
        le=65535,
        description="Port of the embedded standby (`yitu db replica up`). Unset: YITU_PG_PORT + 10.",
    )
    replica_max_lag_s: float = Field(
        default=5,
        gt=0,
        le=3600,
        description="Seconds the replica may lag behind the primary (checked every second in the background); "
        "beyond it, or when the replica is down, reads go to the primary until it catches up.",
    )
    home: Path = Field(
        default=PROJECT_ROOT / ".yitu",
        description="State folder of the embedded stack (data, logs, generated passwords).",
    )
    blob_dir: Path | None = Field(
        default=None,
        description="Folder of the blob store (attachments: photos, signed agreements), content-addressed. "
        "Unset: <home>/blobs. Back it up with the database (`yitu db backup` does both).",
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
    trusted_proxies: list[str] = Field(
        default_factory=lambda: ["127.0.0.1", "::1"],
        description="Reverse proxies whose X-Forwarded-For / X-Forwarded-Proto the app believes: addresses or CIDR "
        'networks (JSON list, e.g. ["10.0.0.2"]; ["*"] any, [] none). Nginx on the same host: loopback.',
    )
    access_log: bool = Field(
        default=False,
        description="Log one line per request: the client address and scheme as the app sees them (behind a "
        "trusted proxy, the proxy's client and https), method, path without the query, status, milliseconds.",
    )
    public_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/]+(:\d+)?/?$",
        description="The address people open (e.g. https://yitu.example); printed links (screen pairing, "
        "the demo's sign-in) start with it. Unset: http://HOST:PORT.",
    )

    # --- the map ------------------------------------------------------------------
    basemap: Literal["own", "mbtiles", "none", "osm", "tianditu-vec", "tianditu-img", "xyz"] = Field(
        default="own",
        description="Base map: own (drawn by yitu from the deployment's roads, places and water: offline), "
        "mbtiles (the MBTiles of `yitu basemap import`, served by yitu: offline; raster tiles as stored, vector "
        "tiles drawn to PNG in the own map's colours), none (the layers on dark), or from another origin: osm, "
        "tianditu-vec/-img, xyz.",
    )
    basemap_dir: Path | None = Field(
        default=None,
        description="Folder of the base map's imported MBTiles (`yitu basemap import`). Unset: <home>/basemap. "
        "Every server process reads it: behind nginx on several hosts, import on each.",
    )
    basemap_mbtiles_max_bytes: int = Field(
        default=16 * 1024**3,
        ge=1024,
        le=1024**4,
        description="Bytes an MBTiles file may have for `yitu basemap import` "
        "(a whole province at zoom 14 is a few GB).",
    )
    basemap_cache_s: int = Field(
        default=7 * 86400,
        ge=0,
        le=365 * 86400,
        description="Seconds Redis keeps a tile yitu draws, of basemap=own or a vector MBTiles (an import of "
        "roads, areas, water or a new MBTiles draws anew at once whatever is cached); 0: no cache.",
    )
    basemap_font: Path | None = Field(
        default=None,
        description="A TrueType/OpenType font with Chinese for the names yitu draws on its base map (own or a "
        "vector MBTiles). Unset: the "
        "first of Noto Sans CJK, WenQuanYi, Droid Sans Fallback found; none found: no names drawn.",
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

    # --- resource budgets (api/budgets.py, geodata/db.py) ------------------------------
    body_max_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        le=1024**3,
        description="Bytes a request body may have (checked while it streams: 413 before more is read).",
    )
    gps_body_max_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=1024,
        le=1024**3,
        description="Bytes a GPS batch may have (POST /api/v1/vans/positions and the OsmAnd route).",
    )
    statement_timeout_ms: int = Field(
        default=10_000,
        ge=0,
        le=3_600_000,
        description="Milliseconds any statement of the app's pools may run (reads, writes, callbacks); 0: no limit. "
        "Over it the request answers 503 {error: timeout}.",
    )
    export_statement_timeout_ms: int = Field(
        default=300_000,
        ge=0,
        le=86_400_000,
        description="Milliseconds each statement of a CSV export may run (one fetch of its cursor); 0: no limit.",
    )
    idle_in_transaction_timeout_ms: int = Field(
        default=60_000,
        ge=0,
        le=86_400_000,
        description="Milliseconds an app connection may sit idle inside a transaction before PostgreSQL ends it "
        "(a CSV export waiting on a stalled download gets the export timeout instead); 0: no limit.",
    )
    layer_max_features: int = Field(
        default=20_000,
        ge=1,
        le=10_000_000,
        description="Features one layer request may return; more answers 422 asking to zoom in (field bbox).",
    )
    ws_max_per_process: int = Field(
        default=1000, ge=1, le=100_000, description="Live WebSocket connections one server process keeps open."
    )
    ws_max_per_identity: int = Field(
        default=16,
        ge=1,
        le=10_000,
        description="Live WebSocket connections one identity (user, screen, token) keeps open in one process.",
    )

    # --- cases ---------------------------------------------------------------------
    # The deployment's default; a league's or a banner's own rules go over it (`yitu deadlines`,
    # /api/v1/deadlines: geodata/deadlines.py, whose MAX_HOURS the bounds here and there are).
    deadline_grid_hours: float = Field(
        default=0,
        ge=0,
        le=MAX_HOURS["grid"],
        description="Hours a grid cell has to settle a case; 0: by the end of the day it arrived (当天, China time).",
    )
    deadline_village_hours: float = Field(
        default=72, ge=0, le=MAX_HOURS["village"], description="Village level: 3 days."
    )
    deadline_town_hours: float = Field(default=120, ge=0, le=MAX_HOURS["town"], description="Town level: 5 days.")
    deadline_banner_hours: float = Field(default=168, ge=0, le=MAX_HOURS["banner"], description="Banner level: 7 days.")
    max_attempts_per_level: int = Field(
        default=3,
        ge=1,
        le=MAX_ATTEMPTS,
        description="Mediation attempts per level before escalation is proposed (三个三).",
    )
    severity_levels: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_SEVERITY_LEVELS),
        description="Triage: the level a report of each severity starts at (JSON object of simple, ordinary, "
        'complex, major → grid, village, town or banner; e.g. {"simple": "grid", "ordinary": "grid", '
        '"complex": "village", "major": "town"}); it sets the first deadline. A report without one starts at the grid.',
    )
    group_dispute_people: int = Field(
        default=5,
        ge=2,
        le=100_000,
        description="A report involving this many people or more is 群体性 (a group dispute: the flag group).",
    )
    auto_escalate: bool = Field(default=False, description="The scheduler escalates overdue cases by one level.")
    scheduler_interval: float = Field(
        default=60, ge=0, le=86400, description="Seconds between overdue sweeps; 0 turns the scheduler off."
    )
    housekeeping_interval: float = Field(
        default=3600, gt=0, le=86400, description="Seconds between the history partitions' upkeep (also at start)."
    )
    van_positions_keep_months: int = Field(
        default=0,
        ge=0,
        le=1200,
        description="Drop GPS history older than this many whole months (0: keep all; case audit never dropped).",
    )
    idempotency_days: float = Field(
        default=7,
        gt=0,
        le=366,
        description="Days an Idempotency-Key and its answer are kept (a retry later than this is a new request).",
    )
    events_timeout: float = Field(
        default=0.25,
        gt=0,
        le=10,
        description="Seconds one publish of the outbox relay to the live event stream may take (then it tries again).",
    )
    warn_grid_hours: float = Field(
        default=2,
        ge=0,
        le=24,
        description="Hours before a grid-level deadline its warning is raised (inbox, wall, webhook); 0: none.",
    )
    warn_hours: float = Field(
        default=24,
        ge=0,
        le=24 * 30,
        description="Hours before a village, town or banner deadline its warning is raised; 0: none.",
    )

    # --- notifications (services/notify.py) -------------------------------------------
    notify_webhook_url: SecretStr | None = Field(
        default=None,
        description="Deadline warnings are POSTed here as JSON (a WeCom or DingTalk group robot's URL, or any "
        "http(s) receiver), each once. Unset: no webhook. A secret (a robot's URL carries its key).",
    )
    notify_timeout: float = Field(default=5, gt=0, le=60, description="Seconds one webhook POST may take.")
    notify_backoff_seconds: float = Field(
        default=30,
        gt=0,
        le=3600,
        description="Seconds before a failed webhook POST is tried again, doubled after each failure (1 h at most).",
    )
    notify_max_attempts: int = Field(
        default=10, ge=1, le=100, description="Webhook POSTs of one warning before it is given up (logged)."
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
    session_field_idle_minutes: float = Field(
        default=12 * 60,
        gt=0,
        le=24 * 60,
        description="The same for a grid worker (the phone page /m, used where the network comes and goes): by "
        "default a whole shift, so a phone out of signal for hours is still signed in (absolute limit: 12 h).",
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

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_addresses(cls, v: list[str]) -> list[str]:
        """Checked here so a typo fails at start-up instead of silently trusting no one (uvicorn
        would compare the peer with the misspelt text and never match)."""
        items = [item.strip() for item in v]
        for item in items:
            if item == "*":
                continue
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is neither an IP address, a CIDR network nor *") from None
        return items

    @field_validator("notify_webhook_url")
    @classmethod
    def _webhook_url(cls, v: SecretStr | None) -> SecretStr | None:
        """An http(s) URL with a host, of sane length, or nothing. The messages never repeat the value:
        a robot's URL carries its key."""
        if v is None:
            return None
        url = v.get_secret_value().strip()
        if len(url) > WEBHOOK_URL_MAX:
            raise ValueError(f"is {len(url)} characters long; a webhook URL has at most {WEBHOOK_URL_MAX}")
        if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
            raise ValueError("contains spaces or control characters; give the URL exactly as the robot shows it")
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = -1
        if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
            shown = parts.scheme or "no scheme"
            raise ValueError(
                f"must be an http(s) URL with a host, e.g. https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=… "
                f"(got {shown}{'://' if parts.scheme else ''}…)"
            )
        return SecretStr(url)

    @field_validator("severity_levels")
    @classmethod
    def _severity_levels(cls, v: dict[str, str]) -> dict[str, str]:
        """Every severity given a level, and only levels that exist, ordered as the severities are:
        a typo would otherwise surface as a refused report at intake."""
        if set(v) != set(SEVERITIES):
            raise ValueError(f"give a level for each of {', '.join(SEVERITIES)} (got {', '.join(sorted(v)) or 'none'})")
        bad = {k: lv for k, lv in v.items() if lv not in LEVELS}
        if bad:
            raise ValueError(f"levels must be one of {', '.join(LEVELS)}; not {bad}")
        ranks = [LEVELS.index(v[s]) for s in SEVERITIES]
        if ranks != sorted(ranks):
            raise ValueError("a more serious severity may not start at a lower level than a less serious one")
        return {s: v[s] for s in SEVERITIES}

    @field_validator("db_pool_max")
    @classmethod
    def _max_at_least_min(cls, v: int, info: ValidationInfo) -> int:
        low = info.data.get("db_pool_min", 0)
        if v < low:
            raise ValueError(f"db_pool_max ({v}) is smaller than db_pool_min ({low})")
        return v

    @field_validator("database_owner_url")
    @classmethod
    def _owner_needs_runtime(cls, v: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if v is not None and info.data.get("database_url") is None:
            raise ValueError("YITU_DATABASE_OWNER_URL needs YITU_DATABASE_URL (the runtime role's DSN) too")
        return v

    @field_validator("pg_replica_port")
    @classmethod
    def _replica_port_free(cls, v: int | None, info: ValidationInfo) -> int | None:
        if v is not None and v in (info.data.get("pg_port"), info.data.get("redis_port")):
            raise ValueError(f"pg_replica_port ({v}) is the port of the embedded PostgreSQL or Redis")
        return v

    @field_validator("redis_url")
    @classmethod
    def _redis_url_form(cls, v: SecretStr | None) -> SecretStr | None:
        """A Sentinel URL is checked here (its hosts, ports and master name), so a typo fails at
        start-up instead of at the first publish."""
        if v is not None:
            parse_redis_url(v.get_secret_value())
        return v

    @property
    def replica_port(self) -> int:
        """The embedded standby's port: ``pg_replica_port``, or ``pg_port`` + 10."""
        return self.pg_replica_port if self.pg_replica_port is not None else self.pg_port + 10

    def database_read_dsn(self) -> str | None:
        """The replica's DSN the read-heavy paths use (None: they read from the primary)."""
        return self.database_read_url.get_secret_value() if self.database_read_url is not None else None

    @property
    def embedded(self) -> bool:
        """True when yitu runs its own PostgreSQL and Redis (no URL given for either)."""
        return self.database_url is None or self.redis_url is None

    # --- where the servers are ------------------------------------------------------
    # The one place that knows: every process (server, CLI, simulator, tests) resolves the URLs here.
    def database_dsn(self) -> str:
        """The DSN the app connects with (the runtime role): ``database_url``, or the embedded
        cluster's runtime role (``yitu db up`` makes it). It cannot UPDATE or DELETE the audit."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return self._embedded_dsn(EMBEDDED_RUNTIME_USER, "pg_app_password")

    def database_owner_dsn(self) -> str:
        """The owner role's DSN, for what changes the schema or wipes data (migrations, imports,
        seeding, test set-up): ``database_owner_url``, else ``database_url``, else the embedded
        cluster's superuser."""
        if self.database_owner_url is not None:
            return self.database_owner_url.get_secret_value()
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return self._embedded_dsn(EMBEDDED_DB_USER, "pg_password")

    def _embedded_dsn(self, user: str, secret: str, port: int | None = None) -> str:
        pw = quote(self.embedded_secret(secret), safe="")
        return f"postgresql://{user}:{pw}@127.0.0.1:{port or self.pg_port}/{EMBEDDED_DB_NAME}"

    def embedded_dsn_at(self, port: int) -> str:
        """The embedded runtime role's DSN on another server of the cluster's (its standby's port)."""
        return self._embedded_dsn(EMBEDDED_RUNTIME_USER, "pg_app_password", port)

    def redis_dsn(self) -> str:
        """The Redis URL in use: ``redis_url``, or the embedded Redis's."""
        if self.redis_url is not None:
            return self.redis_url.get_secret_value()
        pw = quote(self.embedded_secret("redis_password"), safe="")
        return f"redis://:{pw}@127.0.0.1:{self.redis_port}/0"

    def blob_path(self) -> Path:
        """The blob store's folder: ``blob_dir``, or ``<home>/blobs``."""
        return (self.blob_dir or self.home / "blobs").resolve()

    def basemap_path(self) -> Path:
        """The imported base map's folder: ``basemap_dir``, or ``<home>/basemap``."""
        return (self.basemap_dir or self.home / "basemap").resolve()

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
