"""The live event stream ``yitu:events``: its entries, and the one way in (the outbox relay's).

No writer publishes here. A change writes its events to the outbox in its own transaction
(geodata/outbox.py); the relay (services/relay.py, one leader across all processes) numbers
them and publishes them with :func:`publish`, so an event is in the stream once its change is
committed and Redis answers — after a crash, an outage or a restart too — and never twice.
Redis is live state, not the record: screens that miss entries (a gap in ``outbox_id``, a stream
lost with Redis) reload from PostGIS (services/live.py). The stream is capped
(``MAXLEN ~ 100000``) so it cannot fill Redis.

Entry fields: ``type`` (case.created, case.changed, case.attached, dispatch.*, van.moved,
areas.changed), ``event`` (the JSON object) and ``outbox_id`` (decimal: 1, 2, 3 … consecutive in
stream order).
"""

from __future__ import annotations

from collections.abc import Sequence

import redis

from geodata.outbox import LAST_KEY
from services import redisconn

STREAM = "yitu:events"
MAXLEN = 100_000

# Appends the rows whose outbox_id is above the stream's last one, in order, and skips the rest:
# atomic in Redis, so a relay that lost its lead while its XADDs were on the way (another took
# over and published them) cannot put an entry in twice. ARGV: MAXLEN, the outbox id the stream
# should end at or after (0: any), then id, type, event per row. A stream that ends before that
# id (a Sentinel failover promoted a replica the last entries had not reached) takes nothing:
# {-1, its last id}, and the relay publishes the missing entries again first (StreamBehind).
# KEYS: the stream, LAST_KEY (each family's newest outbox id among the entries added).
_PUBLISH = """
local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local last = 0
if #top > 0 then
  local f = top[1][2]
  for i = 1, #f, 2 do
    if f[i] == 'outbox_id' then last = tonumber(f[i + 1]) or 0 end
  end
end
local expect = tonumber(ARGV[2])
if last > 0 and last < expect then
  return {-1, last}
end
local added = 0
local newest = {}
for i = 3, #ARGV, 3 do
  local id = tonumber(ARGV[i])
  if id > last then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*',
               'type', ARGV[i + 1], 'event', ARGV[i + 2], 'outbox_id', ARGV[i])
    last = id
    added = added + 1
    newest[string.match(ARGV[i + 1], '^[^.]*')] = ARGV[i]
    newest['*'] = ARGV[i]
  end
end
local pairs_ = {}
for family, id in pairs(newest) do
  pairs_[#pairs_ + 1] = family
  pairs_[#pairs_ + 1] = id
end
if #pairs_ > 0 then redis.call('HSET', KEYS[2], unpack(pairs_)) end
return {added, last}
"""


class StreamBehind(redis.RedisError):
    """The stream ends before what the publisher put there (it lost entries to a failover)."""

    def __init__(self, last: int, expected: int) -> None:
        super().__init__(f"the stream ends at outbox id {last}, {expected} was published")
        self.last = last
        self.expected = expected


def publish(client: redis.Redis, rows: Sequence[tuple[int, str, str]], expect: int = 0) -> tuple[int, int]:
    """XADD ``rows`` (outbox id, type, event JSON; ascending ids) to the stream, in one atomic step.

    Rows at or below the stream's last ``outbox_id`` are already there and are skipped. Returns
    (entries added, the stream's last outbox id afterwards). With ``expect`` (the last id this
    publisher put there), a non-empty stream ending before it takes nothing and raises
    :class:`StreamBehind`. Raises Redis's errors.
    """
    if not rows:
        return 0, last_outbox_id(client)
    args: list[str | int] = [MAXLEN, expect]
    for outbox_id, kind, event in rows:
        args += [outbox_id, kind, event]
    added, last = client.register_script(_PUBLISH)(keys=[STREAM, LAST_KEY], args=args)
    if int(added) < 0:
        raise StreamBehind(int(last), expect)
    return int(added), int(last)


def last_outbox_id(client: redis.Redis) -> int:
    """The ``outbox_id`` of the stream's newest entry (0: an empty or new stream)."""
    rows = client.xrevrange(STREAM, count=1)
    fields = rows[0][1] if rows else None
    if not fields:
        return 0
    value = fields.get("outbox_id") or fields.get(b"outbox_id")
    return int(value) if value else 0


def stream_client(url: str, timeout: float) -> redis.Redis:
    """A client of the Redis ``url`` names (a Sentinel set's master too) with its own timeout: the
    relay's. Through Sentinel, the first command after a failover's error reaches the new master."""
    return redisconn.client(url, timeout=timeout)
