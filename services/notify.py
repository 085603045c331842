"""The deadline warnings' webhook (``YITU_NOTIFY_WEBHOOK_URL``): each warning POSTed once, as JSON.

The body is a group robot's text message — ``{"msgtype": "text", "text": {"content": ...}}``, the
shape WeCom (企业微信) and DingTalk (钉钉) robots take — plus yitu's own fields under ``"yitu"``
(the warning's id, the case code, type, level, deadline) for a receiver that is a program. No
personal data: no parties, no description, no assignee's name; the code, the case type, the level,
the deadline and the names of the town and village.

Once, across processes and restarts: the delivery state is on the warning's row (geodata/warnings.py,
027). A process claims one due row at a time (``FOR UPDATE SKIP LOCKED``) and commits the claim
(``sending``, leased for ``lease`` seconds) before it sends; a 2xx answer (and, when the body is
JSON with an ``errcode``, ``errcode`` 0, as the robots answer) marks it ``sent`` and it is never
sent again. A failure is retried with exponential backoff (``notify_backoff_seconds`` doubled per
attempt, at most an hour apart) up to ``notify_max_attempts``, then ``failed``; the rest of the round
waits for the next one, since a receiver that failed once is likely down for the others too. A
process that dies while sending leaves a claim whose lease runs out: another takes it again. That
one case — killed after the receiver took the message and before the mark was committed — is the
only way a message goes twice, so each carries ``Idempotency-Key: yitu-warning-<id>`` (and the id
in ``yitu.key``) for a receiver that wants to drop a repeat.

The URL is a secret (a robot's URL carries its key): it is never logged, nor put in an error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson

from geodata import warnings
from geodata.clock import shown
from services.runtime import Services
from services.settings import Settings

log = logging.getLogger("yitu.notify")

BACKOFF_MAX = timedelta(hours=1)
ROUND_MAX = 100  # deliveries per round at most (the job runs again soon)
POLL_SECONDS = 5.0  # how often a process looks for deliveries due (one indexed probe)

_LEVELS = {
    "zh-CN": {"grid": "网格级", "village": "村级", "town": "镇级", "banner": "旗级"},
    "en": {"grid": "grid level", "village": "village level", "town": "town level", "banner": "banner level"},
}
_TEXT = {
    "zh-CN": "【一图指挥】临期预警：案件 {code}（{type}，{level}）将于 {deadline} 到期，剩余约 {left}。{place}",
    "en": "[yitu] Deadline warning: case {code} ({type}, {level}) is due at {deadline}, about {left} from now. {place}",
}


@dataclass(frozen=True)
class Delivery:
    """How one process delivers: where to, how long a POST may take, the retry policy."""

    url: str
    timeout: float
    backoff: timedelta
    max_attempts: int
    lang: str = "zh-CN"
    public_url: str | None = None

    @classmethod
    def of(cls, settings: Settings) -> Delivery | None:
        """The delivery of ``settings``; None when no webhook is configured."""
        if settings.notify_webhook_url is None:
            return None
        return cls(
            url=settings.notify_webhook_url.get_secret_value(),
            timeout=settings.notify_timeout,
            backoff=timedelta(seconds=settings.notify_backoff_seconds),
            max_attempts=settings.notify_max_attempts,
            lang=settings.lang,
            public_url=settings.public_url,
        )

    @property
    def lease(self) -> timedelta:
        """How long a claim holds: well past the longest a POST may take."""
        return timedelta(seconds=max(60.0, 3 * self.timeout))

    def retry_at(self, attempts: int, now: datetime) -> datetime | None:
        """When to try again after ``attempts`` failed ones (None: give up)."""
        if attempts >= self.max_attempts:
            return None
        wait: timedelta = min(self.backoff * 2 ** (attempts - 1), BACKOFF_MAX)
        return now + wait


def _left(deadline: datetime, now: datetime, lang: str) -> str:
    minutes = max(0, int((deadline - now).total_seconds() // 60))
    h, m = divmod(minutes, 60)
    if lang == "zh-CN":
        return f"{h}小时{m:02d}分" if h else f"{m}分钟"
    return f"{h} h {m:02d} min" if h else f"{m} min"


def message(row: Mapping[str, Any], delivery: Delivery, now: datetime) -> dict[str, Any]:
    """The JSON body for one warning (a claimed row of geodata/warnings.py ``claim``)."""
    lang = delivery.lang if delivery.lang in _TEXT else "zh-CN"
    deadline: datetime = row["deadline"]
    place = " ".join(p for p in (row.get("town"), row.get("village")) if p)
    url = f"{delivery.public_url.rstrip('/')}/cases/{row['code']}" if delivery.public_url else None
    content = (
        _TEXT[lang]
        .format(
            code=row["code"],
            type=row["type_zh"] if lang == "zh-CN" else row["type_en"],
            level=_LEVELS[lang][row["level"]],
            deadline=shown(deadline, "%m-%d %H:%M"),
            left=_left(deadline, now, lang),
            place=place,
        )
        .strip()
    )
    if url:
        content += f"\n{url}"
    return {
        "msgtype": "text",
        "text": {"content": content},
        "yitu": {
            "event": "deadline_warning",
            "id": row["id"],
            "key": f"yitu-warning-{row['id']}",
            "code": row["code"],
            "case_type": row["type"],
            "level": row["level"],
            "step": row["step"],
            "deadline": deadline.astimezone(UTC).isoformat(),
            "raised_at": row["raised_at"].astimezone(UTC).isoformat(),
            "attempt": row["attempts"],
            **({"url": url} if url else {}),
        },
    }


def post(client: httpx.Client, delivery: Delivery, body: Mapping[str, Any]) -> str | None:
    """Send one message; None when the receiver took it, else why not (never naming the URL)."""
    try:
        r = client.post(
            delivery.url,
            content=orjson.dumps(body),
            headers={"Content-Type": "application/json", "Idempotency-Key": body["yitu"]["key"]},
            timeout=delivery.timeout,
        )
    except httpx.HTTPError as exc:  # the message would carry the URL: only the kind of failure
        return type(exc).__name__
    if not 200 <= r.status_code < 300:
        return f"HTTP {r.status_code}"
    try:  # WeCom and DingTalk answer 200 with {"errcode": 0} on success, another errcode on refusal
        answer = r.json()
    except ValueError:
        return None
    code = answer.get("errcode", 0) if isinstance(answer, dict) else 0
    return None if code in (0, "0") else f"errcode {str(code)[:40]}"


def deliver_due(
    svc: Services,
    delivery: Delivery,
    *,
    stopping: Callable[[], bool] = lambda: False,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    client: httpx.Client | None = None,
) -> dict[str, int]:
    """One round: send the deliveries due, one claim at a time, until none is due, one fails, the
    process stops or ROUND_MAX went. Returns how many were sent and failed."""
    sent = failed = 0
    own = client is None
    http = client or httpx.Client(follow_redirects=False, trust_env=False)
    try:
        for _ in range(ROUND_MAX):
            if stopping():
                break
            with svc.pool.connection() as conn:  # the claim is committed before anything is sent
                rows = warnings.claim(conn, now(), delivery.lease)
            if not rows:
                break
            row = rows[0]
            why = post(http, delivery, message(row, delivery, now()))
            with svc.pool.connection() as conn:
                if why is None:
                    warnings.mark_sent(conn, row["id"], now())
                    sent += 1
                    continue
                retry = delivery.retry_at(row["attempts"], now())
                warnings.mark_failed(conn, row["id"], why, retry)
            failed += 1
            log.warning(
                "webhook delivery failed warning=%d case=%s attempt=%d error=%s %s",
                row["id"],
                row["code"],
                row["attempts"],
                why,
                f"retry_at={retry.isoformat()}" if retry else "giving up",
            )
            break
    finally:
        if own:
            http.close()
    if sent:
        log.info("webhook deliveries sent=%d", sent)
    return {"sent": sent, "failed": failed}
