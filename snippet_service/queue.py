"""The queue client: arq on Redis with JSON job payloads, and the snippet-done channel."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any

from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import job_key_prefix as JOB_KEY_PREFIX
from arq.constants import result_key_prefix as RESULT_KEY_PREFIX
from arq.jobs import Job
from redis.exceptions import RedisError

from snippet_service.config import Config

logger = logging.getLogger("snippet_service.queue")

# arq drops a job's payload this long after it was enqueued; 25 retries on Sidekiq's
# schedule (HIGHLIGHT_RETRIES' maximum) take about 21 days.
JOB_EXPIRES = timedelta(days=30)
HIGHLIGHT_JOB = "highlight_snippet"
EXPIRE_JOB = "expire_snippet"
RECONCILE_JOB = "reconcile"
DONE_CHANNEL = "snippets:done"


def _json_default(value: object) -> object:
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def serialize(data: dict[str, Any]) -> bytes:
    """Job payloads and results are JSON: a planted pickle can never run code."""
    return json.dumps(data, separators=(",", ":"), default=_json_default).encode()


def deserialize(payload: bytes) -> dict[str, Any]:
    """Decode a JSON job payload."""
    data = json.loads(payload)
    if not isinstance(data, dict):
        raise ValueError("job payload is not a JSON object")
    return data


def redis_settings(config: Config) -> RedisSettings:
    """arq connection settings for REDIS_URL."""
    settings = RedisSettings.from_dsn(config.redis_url)
    settings.conn_timeout = 2
    settings.conn_retries = 2
    return settings


async def open_pool(config: Config) -> ArqRedis:
    """An arq pool on REDIS_URL using the JSON serializer."""
    return await create_pool(
        redis_settings(config),
        job_serializer=serialize,
        job_deserializer=deserialize,
        default_queue_name=config.queue_name,
    )


def highlight_job_id(snippet_id: int, revision: int) -> str:
    """The job id of one revision of a snippet: enqueueing it twice is harmless."""
    return f"highlight:{snippet_id}:{revision}"


def revision_of(job_id: str) -> int | None:
    """The snippet revision a highlight job id names (None for other job ids)."""
    parts = job_id.split(":")
    if (len(parts) >= 3 and parts[0] == "highlight"
            and all(part.isascii() and part.isdigit() for part in parts[1:3])):
        return int(parts[2])
    return None


def expire_job_id(snippet_id: int) -> str:
    return f"expire:{snippet_id}"


async def enqueue_highlight(
    redis: ArqRedis, snippet_id: int, revision: int, run_at: datetime | None = None
) -> Job | None:
    """Enqueue the highlight job (the snippet id is its only argument), deferred to run_at."""
    return await redis.enqueue_job(
        HIGHLIGHT_JOB,
        snippet_id,
        _job_id=highlight_job_id(snippet_id, revision),
        _defer_until=run_at,
        _expires=JOB_EXPIRES,
    )


async def enqueue_expiry(redis: ArqRedis, snippet_id: int, run_at: datetime) -> Job | None:
    """Enqueue the deferred delete of an expiring snippet."""
    return await redis.enqueue_job(
        EXPIRE_JOB, snippet_id, _job_id=expire_job_id(snippet_id), _defer_until=run_at
    )


async def job_is_live(redis: ArqRedis, job_id: str) -> bool:
    """Whether the job is queued, deferred or running (its payload is in Redis)."""
    return bool(await redis.exists(JOB_KEY_PREFIX + job_id))


async def clear_result(redis: ArqRedis, job_id: str) -> None:
    """Forget a finished job's kept result so the same job id can be enqueued again."""
    await redis.delete(RESULT_KEY_PREFIX + job_id)


async def publish_done(redis: ArqRedis, snippet_id: int) -> None:
    """Tell every web process that a snippet finished highlighting (best effort: pages
    also re-read the database every few seconds)."""
    try:
        await redis.publish(DONE_CHANNEL, str(snippet_id))
    except (RedisError, OSError) as exc:
        logger.warning("could not announce snippet %d: %r", snippet_id, exc)
