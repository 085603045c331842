"""The shared parts of one app process: settings, the PostGIS pool, the Redis client.

Built once in the app factory's lifespan; routes reach it through ``api.deps.services``, callbacks
through the getter the app factory hands them.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis
from psycopg_pool import ConnectionPool

from services.settings import Settings


@dataclass
class Services:
    settings: Settings
    pool: ConnectionPool
    redis: redis.Redis

    def close(self) -> None:
        self.pool.close()
        self.redis.close()


def open_redis(url: str, timeout: float) -> redis.Redis:
    return redis.Redis.from_url(
        url, socket_connect_timeout=timeout, socket_timeout=timeout, health_check_interval=15, decode_responses=True
    )
