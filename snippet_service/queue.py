"""The queue client: arq on Redis with JSON job payloads, and the snippet-done channel."""

from __future__ import annotations

import json
from typing import Any

from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.jobs import Job

from snippet_service.config import Config

HIGHLIGHT_JOB = "highlight_snippet"
DONE_CHANNEL = "snippets:done"


def serialize(data: dict[str, Any]) -> bytes:
    """Job payloads are JSON: a planted pickle can never run code."""
    return json.dumps(data, separators=(",", ":")).encode()


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


async def enqueue_highlight(redis: ArqRedis, snippet_id: int, revision: int) -> Job | None:
    """Enqueue the highlight job (the snippet id is its only argument)."""
    return await redis.enqueue_job(
        HIGHLIGHT_JOB, snippet_id, _job_id=highlight_job_id(snippet_id, revision)
    )


async def publish_done(redis: ArqRedis, snippet_id: int) -> None:
    """Tell every web process that a snippet finished highlighting."""
    await redis.publish(DONE_CHANNEL, str(snippet_id))
