"""The queue client: arq on Redis with JSON job payloads, and the snippet-done channel."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import job_key_prefix as JOB_KEY_PREFIX
from arq.constants import result_key_prefix as RESULT_KEY_PREFIX
from arq.jobs import Job, serialize_job
from arq.utils import timestamp_ms, to_unix_ms
from redis.exceptions import (
    AuthenticationError,
    AuthenticationWrongNumberOfArgsError,
    RedisError,
    ResponseError,
)

from snippet_service.config import Config, mask_url
from snippet_service.db import ID_PATTERN

logger = logging.getLogger("snippet_service.queue")

# arq drops a job's payload this long after it was enqueued; 25 retries on Sidekiq's
# schedule (HIGHLIGHT_RETRIES' maximum) take about 21 days.
JOB_EXPIRES = timedelta(days=30)
HIGHLIGHT_JOB = "highlight_snippet"
EXPIRE_JOB = "expire_snippet"
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


class JobFailed(Exception):
    """A failed job's result as read back through arq's ``Job`` API: JSON keeps only the
    error's text ("ErrorClass: message"), and this carries it."""


def deserialize(payload: bytes) -> dict[str, Any]:
    """Decode a JSON job payload or result.

    A failed job's result (``"s": false``) becomes an exception again, so that arq's
    ``Job.result()`` raises it and ``Job.abort()`` recognises a cancelled job."""
    data = json.loads(payload)
    if not isinstance(data, dict):
        raise ValueError("job payload is not a JSON object")
    if data.get("s") is False and isinstance(data.get("r"), str):
        text = data["r"]
        data["r"] = (asyncio.CancelledError(text) if text.startswith("CancelledError")
                     else JobFailed(text))
    return data


def redis_settings(config: Config) -> RedisSettings:
    """arq connection settings for REDIS_URL: ``redis://``, ``rediss://`` (TLS) or
    ``unix://``, with a user name and password when the URL carries them.

    A TLS server's certificate is verified, host name included, against the system's CAs
    and REDIS_TLS_CA_FILE; ``?ssl_cert_reqs=none`` in the URL turns that off (insecure)."""
    settings = RedisSettings.from_dsn(config.redis_url)
    parts = urlsplit(config.redis_url)
    # arq hands the URL's user name and password on still percent-encoded
    settings.username = unquote(parts.username) if parts.username else None
    settings.password = unquote(parts.password) if parts.password else None
    if settings.ssl:
        cert_reqs = parse_qs(parts.query).get("ssl_cert_reqs", ["required"])[-1].lower()
        settings.ssl_cert_reqs = cert_reqs
        settings.ssl_check_hostname = cert_reqs == "required"
        if config.redis_tls_ca_file is not None:
            settings.ssl_ca_certs = str(config.redis_tls_ca_file)
    settings.conn_timeout = 2
    settings.conn_retries = 2
    return settings


class RedisRefused(Exception):
    """Redis will not take us as configured (a wrong password, a certificate that does not
    verify): a configuration error, not an outage, so waiting will not help."""


def refusal(exc: BaseException) -> str | None:
    """Why Redis refused us, if ``exc`` (or what it wraps) is a wrong password or a TLS
    certificate that does not verify; None for anything else (an outage, say)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, AuthenticationError | AuthenticationWrongNumberOfArgsError):
            return f"Redis refused the password in REDIS_URL ({current})"
        if isinstance(current, ResponseError) and str(current).startswith("NOPERM"):
            return f"Redis refused the user in REDIS_URL ({current})"
        if isinstance(current, ssl.SSLCertVerificationError):
            return ("the Redis server's TLS certificate does not verify "
                    f"({current.verify_message or current}); give its CA in "
                    "REDIS_TLS_CA_FILE")
        current = current.__cause__ or current.__context__
    return None


async def open_pool(config: Config) -> ArqRedis:
    """An arq pool on REDIS_URL using the JSON serializer; raises :class:`RedisRefused`
    when Redis refuses the password or its certificate does not verify."""
    settings = redis_settings(config)
    options: dict[str, Any] = {"job_serializer": serialize, "job_deserializer": deserialize,
                               "default_queue_name": config.queue_name}
    try:  # one try first: a refusal is not worth retrying
        return await create_pool(settings, retry=settings.conn_retries, **options)
    except (RedisError, OSError) as exc:
        reason = refusal(exc)
        if reason is not None:
            raise RedisRefused(f"{reason} at {mask_url(config.redis_url)}") from None
        logger.warning("Redis at %s: %r; trying again", mask_url(config.redis_url), exc)
    await asyncio.sleep(settings.conn_retry_delay)
    return await create_pool(settings, retry=1, **options)


@asynccontextmanager
async def redis_ctx(config: Config) -> AsyncIterator[ArqRedis]:
    """The process's arq pool on REDIS_URL, open for the block."""
    redis = await open_pool(config)
    try:
        yield redis
    finally:
        await redis.aclose(close_connection_pool=True)


def highlight_job_id(snippet_id: str, revision: int) -> str:
    """The job id of one revision of a snippet: enqueueing it twice is harmless."""
    return f"highlight:{snippet_id}:{revision}"


def highlight_target(job_id: str) -> tuple[str, int] | None:
    """The (snippet id, revision) a highlight job id names (None for other job ids)."""
    parts = job_id.split(":")
    if (len(parts) >= 3 and parts[0] == "highlight" and ID_PATTERN.fullmatch(parts[1])
            and parts[2].isascii() and parts[2].isdigit()):
        return parts[1], int(parts[2])
    return None


def revision_of(job_id: str) -> int | None:
    """The snippet revision a highlight job id names (None for other job ids)."""
    target = highlight_target(job_id)
    return target[1] if target else None


def expire_job_id(snippet_id: str) -> str:
    return f"expire:{snippet_id}"


async def enqueue_highlight(
    redis: ArqRedis, snippet_id: str, revision: int, run_at: datetime | None = None
) -> Job | None:
    """Enqueue the highlight job (the snippet id is its only argument), deferred to run_at."""
    return await redis.enqueue_job(
        HIGHLIGHT_JOB,
        snippet_id,
        _job_id=highlight_job_id(snippet_id, revision),
        _defer_until=run_at,
        _expires=JOB_EXPIRES,
    )


# arq's enqueue_job for many jobs in one round trip: each job is added (payload with its
# expiry, then its queue entry) unless its payload or its kept result already exists.
# KEYS: the queue. ARGV: job key prefix, result key prefix, and one JSON array of
# [id, payload, score, expiry ms] per job, all strings (one argument to send, not four per
# job: packing arguments is what costs the client). Returns 1 or 0 per job.
_ENQUEUE_MANY = """
local added = {}
for i, job in ipairs(cjson.decode(ARGV[3])) do
  local id = job[1]
  if redis.call('EXISTS', ARGV[1] .. id, ARGV[2] .. id) == 0 then
    redis.call('PSETEX', ARGV[1] .. id, job[4], job[2])
    redis.call('ZADD', KEYS[1], job[3], id)
    added[i] = 1
  else
    added[i] = 0
  end
end
return added
"""


@dataclass(frozen=True)
class NewJob:
    """One job for :func:`enqueue_many`: arq's function name, its arguments and id."""

    function: str
    args: tuple[Any, ...]
    job_id: str
    run_at: datetime | None = None
    expires: timedelta | None = None


async def enqueue_many(redis: ArqRedis, jobs: list[NewJob], queue_name: str) -> list[bool]:
    """Enqueue jobs exactly as ``ArqRedis.enqueue_job`` would (same payloads, scores and
    expiries, a job id already queued or finished is left alone), in one round trip.
    Returns, per job, whether it was added."""
    if not jobs:
        return []
    now = timestamp_ms()
    rows: list[list[str]] = []
    for job in jobs:
        score = to_unix_ms(job.run_at) if job.run_at is not None else now
        expires_ms = (int(job.expires.total_seconds() * 1000) if job.expires
                      else score - now + redis.expires_extra_ms)
        # serialize() writes ASCII JSON, which survives the trip through cjson unchanged
        payload = serialize_job(job.function, job.args, {}, None, now, serializer=serialize)
        rows.append([job.job_id, payload.decode(), str(score), str(expires_ms)])
    added = await redis.eval(  # type: ignore[misc]
        _ENQUEUE_MANY, 1, queue_name, JOB_KEY_PREFIX, RESULT_KEY_PREFIX,
        json.dumps(rows, separators=(",", ":")),
    )
    return [bool(flag) for flag in added]


def snippet_jobs(snippet_id: str, revision: int, highlight_at: datetime | None,
                 expires_at: datetime | None) -> list[NewJob]:
    """A new snippet's jobs: its highlight (deferred to highlight_at) and, for an expiring
    snippet, its deferred delete."""
    jobs = [NewJob(HIGHLIGHT_JOB, (snippet_id,), highlight_job_id(snippet_id, revision),
                   highlight_at, JOB_EXPIRES)]
    if expires_at is not None:
        jobs.append(NewJob(EXPIRE_JOB, (snippet_id,), expire_job_id(snippet_id), expires_at))
    return jobs


async def job_is_live(redis: ArqRedis, job_id: str) -> bool:
    """Whether the job is queued, deferred or running (its payload is in Redis)."""
    return bool(await redis.exists(JOB_KEY_PREFIX + job_id))


async def clear_result(redis: ArqRedis, job_id: str) -> None:
    """Forget a finished job's kept result so the same job id can be enqueued again."""
    await redis.delete(RESULT_KEY_PREFIX + job_id)


async def publish_done(redis: ArqRedis, snippet_id: str) -> None:
    """Tell every web process that a snippet finished highlighting (best effort: pages
    also re-read the database every few seconds)."""
    try:
        await redis.publish(DONE_CHANNEL, snippet_id)
    except (RedisError, OSError) as exc:
        logger.warning("could not announce snippet %s: %r", snippet_id, exc)
