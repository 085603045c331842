"""The embedded default stack: a private PostgreSQL + PostGIS cluster and a private Redis.

Both run from the system's binaries, on loopback, on their own ports, with generated
passwords kept in ``<home>/secrets`` (mode 0600). ``initdb`` and ``pg_ctl`` refuse to run as
root, so under root both servers run as an unprivileged system user (``settings.service_user``)
and their data lives in ``/var/lib/yitu/<id>`` (a folder that user can reach even when the
checkout sits in a private temporary directory), linked from ``<home>/run``.

With ``YITU_DATABASE_URL`` / ``YITU_REDIS_URL`` set, the matching part is never started.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from services.settings import EMBEDDED_DB_NAME as DB_NAME
from services.settings import EMBEDDED_DB_USER as DB_USER
from services.settings import EMBEDDED_RUNTIME_USER, RUNTIME_GROUP, Settings

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("yitu.stack")


class StackError(RuntimeError):
    """The embedded stack cannot be started or reached; the message says what to do."""


@dataclass
class UpReport:
    started: list[str] = field(default_factory=list)
    already_running: list[str] = field(default_factory=list)
    external: list[str] = field(default_factory=list)


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) == 0


def _find_pg_bindir(explicit: Path | None) -> Path:
    if explicit is not None:
        if not (explicit / "postgres").exists():
            raise StackError(f"YITU_PG_BINDIR={explicit} holds no 'postgres' binary")
        return explicit
    base = Path("/usr/lib/postgresql")
    versions = sorted(
        (p for p in base.glob("*") if p.name.isdigit() and (p / "bin" / "postgres").exists()), key=lambda p: int(p.name)
    )
    if not versions:
        raise StackError(
            "no PostgreSQL server binaries under /usr/lib/postgresql; run scripts/bootstrap.sh or set YITU_PG_BINDIR"
        )
    return versions[-1] / "bin"


class EmbeddedStack:
    """Start, stop and describe the private PostgreSQL and Redis of one ``home`` folder."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = settings.home.resolve()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            ident = hashlib.sha1(str(self.home).encode()).hexdigest()[:12]
            self.run_dir = Path("/var/lib/yitu") / ident
        else:
            self.run_dir = self.home / "run"
        self.pg_data = self.run_dir / "pg"
        self.pg_log = self.run_dir / "postgresql.log"
        self.replica_data = self.run_dir / "pg-replica"
        self.replica_log = self.run_dir / "postgresql-replica.log"
        self.redis_dir = self.run_dir / "redis"
        self.secrets_dir = self.home / "secrets"

    # --- what is wanted ---------------------------------------------------------
    @property
    def wants_pg(self) -> bool:
        return self.settings.database_url is None

    @property
    def wants_redis(self) -> bool:
        return self.settings.redis_url is None

    # --- passwords and URLs (resolved by the settings: every client agrees with the stack) --------
    def _secret(self, name: str) -> str:
        return self.settings.embedded_secret(name)

    def database_url(self) -> str:
        """The owner's DSN (the embedded superuser): migrations, imports, seeding, making databases."""
        return self.settings.database_owner_dsn()

    def runtime_url(self) -> str:
        """The runtime role's DSN: what the app connects with (it cannot alter the audit)."""
        return self.settings.database_dsn()

    def redis_url(self) -> str:
        return self.settings.redis_dsn()

    # --- running commands as the service user ---------------------------------------
    def _service_user(self) -> pwd.struct_passwd:
        name = self.settings.service_user
        try:
            return pwd.getpwnam(name)
        except KeyError:
            log.info("creating system user name=%s (PostgreSQL refuses to run as root)", name)
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True
            )
            return pwd.getpwnam(name)

    def _as_service(self, argv: list[str]) -> list[str]:
        if not self.as_root:
            return argv
        return ["runuser", "-u", self.settings.service_user, "--", *argv]

    def _run(self, argv: list[str], what: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, **env} if env else None
        proc = subprocess.run(  # exit read below
            self._as_service(argv), capture_output=True, text=True, check=False, env=full_env
        )
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            raise StackError(f"{what} failed (exit {proc.returncode}): " + " | ".join(tail))
        return proc

    def _prepare_run_dir(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.as_root:
            user = self._service_user()
            os.chown(self.run_dir, user.pw_uid, user.pw_gid)
            os.chmod(self.run_dir, 0o700)
            Path("/var/lib/yitu").chmod(0o755)
            link = self.home / "run"
            if not link.is_symlink():
                link.symlink_to(self.run_dir)

    def _write_private(self, path: Path, text: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        if self.as_root:
            user = self._service_user()
            os.chown(path, user.pw_uid, user.pw_gid)

    # --- PostgreSQL ---------------------------------------------------------------
    def pg_bindir(self) -> Path:
        return _find_pg_bindir(self.settings.pg_bindir)

    def pg_running(self) -> bool:
        if not (self.pg_data / "PG_VERSION").exists():
            return False
        proc = subprocess.run(
            self._as_service([str(self.pg_bindir() / "pg_ctl"), "status", "-D", str(self.pg_data)]),
            capture_output=True,
            text=True,
            check=False,  # a stopped server is an answer, not an error
        )
        return proc.returncode == 0

    def _check_postgis_installed(self, bindir: Path) -> None:
        major = bindir.parent.name
        control = Path(f"/usr/share/postgresql/{major}/extension/postgis.control")
        if not control.exists():
            raise StackError(
                f"PostGIS for PostgreSQL {major} is not installed ({control} missing): "
                f"run scripts/bootstrap.sh (Debian package postgresql-{major}-postgis-3)"
            )

    def _initdb(self, bindir: Path) -> None:
        log.info("initialising PostgreSQL cluster data=%s", self.pg_data)
        pwfile = self.run_dir / ".pwfile"
        self._write_private(pwfile, self._secret("pg_password") + "\n")
        try:
            self._run(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(self.pg_data),
                    "-U",
                    DB_USER,
                    f"--pwfile={pwfile}",
                    "--auth=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                ],
                "initdb",
            )
        finally:
            pwfile.unlink(missing_ok=True)
        conf = "\n".join(
            [
                "# yitu embedded cluster",
                "listen_addresses = '127.0.0.1'",
                "unix_socket_directories = ''",
                "max_connections = 200",
                "shared_buffers = '512MB'",
                "work_mem = '32MB'",
                "maintenance_work_mem = '512MB'",
                "max_wal_size = '4GB'",
                "checkpoint_timeout = '15min'",
                "random_page_cost = 1.1",
                "",
            ]
        )
        with open(self.pg_data / "postgresql.auto.conf", "a") as f:
            f.write(conf)

    def start_pg(self) -> bool:
        """Start PostgreSQL unless it already runs; return True if this call started it."""
        bindir = self.pg_bindir()
        self._check_postgis_installed(bindir)
        self._prepare_run_dir()
        self._set_aside_orphan()
        if not (self.pg_data / "PG_VERSION").exists():
            self._initdb(bindir)
        if self.pg_running():
            self._ensure_database()  # a cluster made before the runtime role existed gets it now
            return False
        port = self.settings.pg_port
        if _port_open(port):
            raise StackError(f"port {port} is already taken by another program; set YITU_PG_PORT to a free port")
        self._pg_start(bindir, self.pg_data, self.pg_log, port, "PostgreSQL")
        self._ensure_database()
        log.info("PostgreSQL started port=%d data=%s", port, self.pg_data)
        return True

    def _set_aside_orphan(self) -> None:
        """Move aside a cluster whose password is gone, so a new one can be made.

        As root the data lives in ``/var/lib/yitu/<hash of the checkout's path>``: a checkout deleted
        and cloned again at the same path finds the old cluster, but not the password (it was in the
        deleted ``.yitu/secrets``), and nobody could log in. The old data is kept, not deleted.
        """
        if not (self.pg_data / "PG_VERSION").exists() or (self.secrets_dir / "pg_password").exists():
            return
        self.stop_pg()
        aside = self.run_dir / f"pg.orphan-{int(time.time())}"
        self.pg_data.rename(aside)
        log.warning(
            "a PostgreSQL cluster without its password (a deleted checkout at this path?) was set "
            "aside data=%s; a new one is made",
            aside,
        )

    def _ensure_database(self) -> None:
        import psycopg
        from psycopg import sql

        admin = self.database_url().rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB_NAME)))
                log.info("created database name=%s", DB_NAME)
            self._ensure_roles(conn)

    def _ensure_roles(self, conn: psycopg.Connection) -> None:
        """The runtime group (what the migrations grant to) and the app's login role in it.

        The login role's password is the generated ``pg_app_password``; it is set again at every
        start, so the role and the secrets folder always agree. Roles are cluster-wide: every
        database of the cluster (the tests' clones too) is reached by the same runtime role.
        """
        from psycopg import sql

        have = {
            r[0]
            for r in conn.execute(
                "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", ([RUNTIME_GROUP, EMBEDDED_RUNTIME_USER],)
            )
        }
        group, user = sql.Identifier(RUNTIME_GROUP), sql.Identifier(EMBEDDED_RUNTIME_USER)
        if RUNTIME_GROUP not in have:
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(group))
        password = sql.Literal(self._secret("pg_app_password"))  # a utility statement takes no parameters
        if EMBEDDED_RUNTIME_USER not in have:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(user, password))
            log.info("created the runtime role name=%s", EMBEDDED_RUNTIME_USER)
        else:
            conn.execute(sql.SQL("ALTER ROLE {} LOGIN NOSUPERUSER PASSWORD {}").format(user, password))
        conn.execute(sql.SQL("GRANT {} TO {}").format(group, user))

    def stop_pg(self) -> bool:
        if not self.pg_running():
            return False
        self._run(
            [str(self.pg_bindir() / "pg_ctl"), "stop", "-w", "-t", "60", "-m", "fast", "-D", str(self.pg_data)],
            "stopping PostgreSQL",
        )
        log.info("PostgreSQL stopped port=%d", self.settings.pg_port)
        return True

    # --- Redis ----------------------------------------------------------------------
    @property
    def _redis_pidfile(self) -> Path:
        return self.redis_dir / "redis.pid"

    def _redis_pid(self) -> int | None:
        try:
            pid = int(self._redis_pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return pid

    def redis_running(self) -> bool:
        return self._redis_pid() is not None

    def start_redis(self) -> bool:
        if self.redis_running():
            return False
        server = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(server).exists():
            raise StackError("redis-server is not installed: run scripts/bootstrap.sh (Debian package redis-server)")
        port = self.settings.redis_port
        if _port_open(port):
            raise StackError(f"port {port} is already taken by another program; set YITU_REDIS_PORT to a free port")
        self._prepare_run_dir()
        self.redis_dir.mkdir(exist_ok=True)
        if self.as_root:
            user = self._service_user()
            os.chown(self.redis_dir, user.pw_uid, user.pw_gid)
        os.chmod(self.redis_dir, 0o700)
        conf = self.redis_dir / "redis.conf"
        self._write_private(
            conf,
            "\n".join(
                [
                    "bind 127.0.0.1",
                    f"port {port}",
                    "protected-mode yes",
                    f"requirepass {self._secret('redis_password')}",
                    "daemonize yes",
                    f"pidfile {self._redis_pidfile}",
                    f"logfile {self.redis_dir / 'redis.log'}",
                    f"dir {self.redis_dir}",
                    # Redis holds live state only; PostGIS is the record. No snapshots.
                    'save ""',
                    "appendonly no",
                    "",
                ]
            ),
        )
        self._run([server, str(conf)], "starting Redis")
        deadline = time.monotonic() + 10
        while not _port_open(port):
            if time.monotonic() > deadline:
                raise StackError(f"Redis did not open port {port}; see {self.redis_dir / 'redis.log'}")
            time.sleep(0.05)
        log.info("Redis started port=%d", port)
        return True

    def stop_redis(self) -> bool:
        pid = self._redis_pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while self._redis_pid() is not None or _port_open(self.settings.redis_port):
            if time.monotonic() > deadline:
                raise StackError(f"Redis (pid {pid}) did not stop within 15 s")
            time.sleep(0.05)
        log.info("Redis stopped port=%d", self.settings.redis_port)
        return True

    # --- the streaming standby (`yitu db replica …`) -------------------------------------------
    # A hot standby of the embedded cluster on loopback, for reads (YITU_DATABASE_READ_URL): made by
    # pg_basebackup -R from the running primary, streaming through a physical replication slot (the
    # primary keeps the WAL a stopped standby still needs). The primary needs no change: initdb's
    # defaults are wal_level=replica, max_wal_senders=10, and pg_hba lets 127.0.0.1 replicate with
    # a password.
    REPLICA_SLOT = "yitu_replica"

    def _pg_start(self, bindir: Path, data: Path, log_file: Path, port: int, what: str) -> None:
        """``pg_ctl start`` of the cluster in ``data`` on ``port`` (the primary or the standby), waiting
        up to 60 s for it to accept connections; its server log goes to ``log_file``."""
        args = ["start", "-w", "-t", "60", "-D", str(data), "-l", str(log_file), "-o", f"-p {port}"]
        self._run([str(bindir / "pg_ctl"), *args], f"starting {what} (log: {log_file})")

    def _pg_ctl_status(self, data: Path) -> bool:
        if not (data / "PG_VERSION").exists():
            return False
        proc = subprocess.run(
            self._as_service([str(self.pg_bindir() / "pg_ctl"), "status", "-D", str(data)]),
            capture_output=True,
            text=True,
            check=False,  # a stopped server is an answer, not an error
        )
        return proc.returncode == 0

    def replica_running(self) -> bool:
        return self._pg_ctl_status(self.replica_data)

    def replica_url(self) -> str:
        """The runtime role's DSN on the standby: what YITU_DATABASE_READ_URL takes."""
        return self.settings.embedded_dsn_at(self.settings.replica_port)

    def _basebackup(self, bindir: Path) -> None:
        import psycopg

        with psycopg.connect(self.database_url(), autocommit=True, connect_timeout=10) as conn:
            row = conn.execute(
                "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (self.REPLICA_SLOT,)
            ).fetchone()
            if row is not None and row[0]:
                raise StackError(f"the replication slot {self.REPLICA_SLOT} is in use by another standby")
            if row is not None:  # left by a standby whose data is gone: made afresh below
                conn.execute("SELECT pg_drop_replication_slot(%s)", (self.REPLICA_SLOT,))
        log.info("copying the primary for the standby data=%s", self.replica_data)
        self._run(
            [
                str(bindir / "pg_basebackup"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.settings.pg_port),
                "-U",
                DB_USER,
                "-D",
                str(self.replica_data),
                "-R",  # standby.signal and primary_conninfo: it streams from the primary
                "-X",
                "stream",
                "-C",
                "-S",
                self.REPLICA_SLOT,
                "-c",
                "fast",
                "--no-password",
            ],
            "pg_basebackup (making the standby)",
            env={"PGPASSWORD": self._secret("pg_password")},
        )
        with open(self.replica_data / "postgresql.auto.conf", "a") as f:
            # Long reads (a CSV export) are not cancelled by the primary's vacuum of rows they see.
            f.write("# yitu embedded standby\nhot_standby = on\nhot_standby_feedback = on\n")

    def start_replica(self) -> bool:
        """Start the standby (making it first if need be); return True if this call started it."""
        if not self.wants_pg:
            raise StackError(
                "YITU_DATABASE_URL names an external PostgreSQL: set up its replica there and give it as "
                "YITU_DATABASE_READ_URL (README: External replica)"
            )
        if not self.pg_running():
            raise StackError("the embedded PostgreSQL is not running: run `yitu db up` first")
        if self.replica_running():
            return False
        port = self.settings.replica_port
        if _port_open(port):
            raise StackError(f"port {port} is already taken; set YITU_PG_REPLICA_PORT to a free port")
        bindir = self.pg_bindir()
        if not (self.replica_data / "PG_VERSION").exists():
            if self.replica_data.exists():
                shutil.rmtree(self.replica_data)
            self._basebackup(bindir)
        self._pg_start(bindir, self.replica_data, self.replica_log, port, "the standby")
        log.info("PostgreSQL standby started port=%d data=%s", port, self.replica_data)
        return True

    def stop_replica(self, purge: bool = False) -> bool:
        """Stop the standby; with ``purge`` also delete its data and free the primary's slot."""
        stopped = False
        if self.replica_running():
            self._run(
                [
                    str(self.pg_bindir() / "pg_ctl"),
                    "stop",
                    "-w",
                    "-t",
                    "60",
                    "-m",
                    "fast",
                    "-D",
                    str(self.replica_data),
                ],
                "stopping the standby",
            )
            log.info("PostgreSQL standby stopped port=%d", self.settings.replica_port)
            stopped = True
        if purge:
            if self.replica_data.exists():
                shutil.rmtree(self.replica_data)
            if self.pg_running():
                import psycopg

                with psycopg.connect(self.database_url(), autocommit=True, connect_timeout=10) as conn:
                    conn.execute(
                        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
                        (self.REPLICA_SLOT,),
                    )
        return stopped

    def replica_status(self) -> str:
        """One line: running or not, where, and how far behind (from the primary's view)."""
        port = self.settings.replica_port
        if not self.replica_running():
            made = "made, " if (self.replica_data / "PG_VERSION").exists() else ""
            return f"stopped ({made}embedded standby, 127.0.0.1:{port}, data {self.replica_data})"
        lag = "unknown"
        if self.pg_running():
            import psycopg

            with psycopg.connect(self.database_url(), autocommit=True, connect_timeout=10) as conn:
                row = conn.execute(
                    "SELECT r.state, pg_wal_lsn_diff(pg_current_wal_lsn(), r.replay_lsn)::bigint,"
                    " extract(epoch FROM r.replay_lag)::float8 FROM pg_stat_replication r"
                    " JOIN pg_replication_slots s ON s.active_pid = r.pid WHERE s.slot_name = %s",
                    (self.REPLICA_SLOT,),
                ).fetchone()
                current = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
            if row is None:
                lag = "not connected to the primary; " + self._standby_view(current[0] if current else None)
            else:
                lag = f"{row[0]}, {row[1]} bytes behind, replay lag {row[2] or 0:.3f} s"
        return f"running (embedded standby, 127.0.0.1:{port}, data {self.replica_data}; {lag})"

    def _standby_view(self, primary_lsn: str | None) -> str:
        """What the standby itself says while the primary does not see it: how far it has replayed
        (a standby started after a long stop replays the WAL it holds before it streams again, for
        minutes after a test suite's gigabytes) — or that it takes no connections yet."""
        import psycopg

        try:
            with psycopg.connect(self.replica_url(), autocommit=True, connect_timeout=5) as conn:
                row = conn.execute(
                    "SELECT pg_last_wal_replay_lsn()::text, pg_last_wal_receive_lsn()::text,"
                    " pg_wal_lsn_diff(%s::pg_lsn, pg_last_wal_replay_lsn())::bigint,"
                    " to_char(pg_last_xact_replay_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')",
                    (primary_lsn,),
                ).fetchone()
        except psycopg.OperationalError as exc:
            return f"the standby takes no connections yet ({str(exc).strip().splitlines()[-1]})"
        if row is None or row[0] is None:
            return "the standby has replayed nothing yet"
        replayed, received, behind, last = row
        out = f"the standby replayed to {replayed}"
        if behind is not None:
            out += f", {_size(max(0, int(behind)))} behind the primary"
        if received is not None:
            out += f" (received to {received})"
        if last is not None:
            out += f"; its last transaction replayed is from {last} UTC"
        return out

    # --- the whole stack --------------------------------------------------------------
    def up(self) -> UpReport:
        report = UpReport()
        for name, wanted, start in (
            ("postgresql", self.wants_pg, self.start_pg),
            ("redis", self.wants_redis, self.start_redis),
        ):
            if not wanted:
                report.external.append(name)
            elif start():
                report.started.append(name)
            else:
                report.already_running.append(name)
        return report

    def down(self, only: list[str] | None = None) -> list[str]:
        stopped = []
        if only is None and self.stop_replica():  # before its primary: it would only retry
            stopped.append("postgresql-replica")
        if (only is None or "redis" in only) and self.stop_redis():
            stopped.append("redis")
        if (only is None or "postgresql" in only) and self.stop_pg():
            stopped.append("postgresql")
        return stopped

    def status(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.wants_pg:
            state = "running" if self.pg_running() else "stopped"
            out["postgresql"] = f"{state} (embedded, 127.0.0.1:{self.settings.pg_port}, data {self.pg_data})"
        else:
            out["postgresql"] = "external (YITU_DATABASE_URL)"
        if self.wants_redis:
            state = "running" if self.redis_running() else "stopped"
            out["redis"] = f"{state} (embedded, 127.0.0.1:{self.settings.redis_port})"
        else:
            out["redis"] = "external (YITU_REDIS_URL)"
        return out

    def purge(self) -> None:
        """Stop both servers (and the standby) and delete their data (the demo database is rebuilt on next up)."""
        self.down()
        if self.run_dir.exists():
            shutil.rmtree(self.run_dir)
        link = self.home / "run"
        if link.is_symlink():
            link.unlink()


def _size(n: int) -> str:
    """Bytes as an operator reads them: 512 bytes, 3.4 MB, 1.3 GB."""
    if n < 1000:
        return f"{n} bytes"
    if n < 1_000_000:
        return f"{n / 1e3:.1f} kB"
    if n < 1_000_000_000:
        return f"{n / 1e6:.1f} MB"
    return f"{n / 1e9:.1f} GB"
