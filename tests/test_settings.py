"""Settings: keyword > environment > .env > defaults, and bad values named clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from cli.main import main
from services.settings import Settings


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for var in ("YITU_PORT", "YITU_LANG", "YITU_LOG_LEVEL", "YITU_DATABASE_URL", "YITU_REDIS_URL", "YITU_PG_PORT"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def test_defaults(in_tmp: Path) -> None:
    s = Settings()
    assert (s.port, s.lang, s.pg_port, s.redis_port, s.host) == (8050, "zh-CN", 55432, 56379, "127.0.0.1")
    assert s.database_url is None and s.embedded


def test_dotenv_overrides_defaults(in_tmp: Path) -> None:
    (in_tmp / ".env").write_text("YITU_PORT=9001\nYITU_LANG=en\n")
    s = Settings()
    assert (s.port, s.lang) == (9001, "en")


def test_environment_overrides_dotenv(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (in_tmp / ".env").write_text("YITU_PORT=9001\nYITU_LANG=en\n")
    monkeypatch.setenv("YITU_PORT", "9002")
    s = Settings()
    assert (s.port, s.lang) == (9002, "en")  # port from the environment, language still from .env


def test_keyword_overrides_environment(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YITU_PORT", "9002")
    assert Settings(port=9003).port == 9003


def test_secrets_are_not_printed(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YITU_DATABASE_URL", "postgresql://u:hunter2@db.example/yitu")
    s = Settings()
    assert "hunter2" not in repr(s) and "hunter2" not in str(s.model_dump())
    assert s.database_url is not None and s.database_url.get_secret_value().endswith("/yitu")
    assert s.embedded  # Redis is still the embedded one


@pytest.mark.parametrize(
    ("var", "value", "field"),
    [
        ("YITU_PORT", "70000", "port"),
        ("YITU_PORT", "eighty", "port"),
        ("YITU_PG_PORT", "80", "pg_port"),
        ("YITU_LANG", "fr", "lang"),
        ("YITU_LOG_FORMAT", "xml", "log_format"),
        ("YITU_SERVICE_USER", "root; rm -rf /", "service_user"),
        ("YITU_DB_POOL_MAX", "0", "db_pool_max"),
    ],
)
def test_bad_values_name_the_field(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch, var: str, value: str, field: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ValidationError) as err:
        Settings()
    assert field in {str(e["loc"][0]) for e in err.value.errors()}

    result = CliRunner().invoke(main, ["db", "status"])
    assert result.exit_code != 0
    assert var in result.output and "invalid settings" in result.output
    assert "Traceback" not in result.output


def test_pool_bounds_are_checked_together(in_tmp: Path) -> None:
    with pytest.raises(ValidationError, match="db_pool_max"):
        Settings(db_pool_min=5, db_pool_max=2)


def test_env_example_lists_every_setting() -> None:
    example = (Path(__file__).resolve().parent.parent / ".env.example").read_text()
    for name in Settings.model_fields:
        assert f"YITU_{name.upper()}=" in example, f"YITU_{name.upper()} missing from .env.example"


def test_env_example_as_dotenv_gives_the_defaults(in_tmp: Path) -> None:
    example = Path(__file__).resolve().parent.parent / ".env.example"
    (in_tmp / ".env").write_text(example.read_text())
    assert Settings() == Settings(_env_file=None)
