"""Structured log lines: ``ts level logger msg`` as key=value text, or one JSON object a line."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "color_message"}


def _fields(record: logging.LogRecord) -> dict[str, object]:
    out: dict[str, object] = {
        "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    for key, value in vars(record).items():
        if key not in _RESERVED and not key.startswith("_"):
            out[key] = value
    if record.exc_info:
        out["exc"] = logging.Formatter().formatException(record.exc_info)
    return out


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_fields(record), ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        f = _fields(record)
        exc = f.pop("exc", None)
        head = f"{f.pop('ts')} {str(f.pop('level')).upper():7} {f.pop('logger')}: {f.pop('msg')}"
        extra = " ".join(f"{k}={v}" for k, v in f.items())
        line = f"{head} {extra}".rstrip()
        return f"{line}\n{exc}" if exc else line


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("uvicorn.access",):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("uvicorn").handlers[:] = []
    logging.getLogger(
        "uvicorn"
    ).propagate = True  # under `uvicorn --factory` its own config had stopped it at "uvicorn"
    logging.getLogger("uvicorn.error").handlers[:] = []
