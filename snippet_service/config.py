"""Settings read from the environment, with explicit casts and defaults."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import parse_qs, urlsplit

T = TypeVar("T")

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
LOG_FORMATS = ("text", "json")


class ConfigError(ValueError):
    """An environment variable holds a value we cannot use."""


def _port(raw: str) -> int:
    value = int(raw)
    if not 0 <= value <= 65535:
        raise ValueError("not a TCP port")
    return value


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


def _seconds(low: float, high: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        value = float(raw)
        if not low <= value <= high:
            raise ValueError(f"must be between {low:g} and {high:g} seconds")
        return value

    return parse


def _int_between(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = int(raw)
        if not low <= value <= high:
            raise ValueError(f"must be from {low} to {high}")
        return value

    return parse


def _fraction(raw: str) -> float:
    value = float(raw)
    if not 0 <= value <= 1:
        raise ValueError("must be from 0 to 1")
    return value


def _flag(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("use 1/0, true/false, yes/no or on/off")


def _choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ValueError(f"use one of {', '.join(choices)}")
        return value

    return parse


def _url(schemes: tuple[str, ...]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        parts = urlsplit(raw)
        if parts.scheme not in schemes:
            raise ValueError(f"expected a {'/'.join(schemes)} URL")
        if parts.scheme == "unix" and not parts.path:
            raise ValueError("a unix:// URL needs the socket's path")
        if parts.scheme != "unix" and not parts.hostname:
            raise ValueError("the URL has no host")
        return raw

    return parse


def _http_url(raw: str) -> str:
    value = _url(("http", "https"))(raw)
    return value if value.endswith("/") else value + "/"


REDIS_CERT_REQS = ("required", "optional", "none")
# scheme://user:password@ (the password runs to the last "@" before the path, as urlsplit
# reads it)
_URL_PASSWORD = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^/:@]*):([^/]*)@")


def _redis_url(raw: str) -> str:
    value = _url(("redis", "rediss", "unix"))(raw)
    parts = urlsplit(value)
    if parts.scheme != "unix" and parts.path not in ("", "/0") and not (
            parts.path[1:].isascii() and parts.path[1:].isdigit()):
        raise ValueError("the path must be a database number, as in redis://host:6379/0")
    for cert_reqs in parse_qs(parts.query).get("ssl_cert_reqs", []):
        if cert_reqs.lower() not in REDIS_CERT_REQS:
            raise ValueError(f"ssl_cert_reqs must be one of {', '.join(REDIS_CERT_REQS)}")
    return value


def _database_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError("expected a postgresql://user:password@host:port/database URL")
    if not parts.hostname and "host=" not in parts.query:
        raise ValueError("the URL has no host")
    return raw


def _readable_file(raw: str) -> Path:
    path = Path(raw)
    if not path.is_file():
        raise ValueError("no such file")
    return path


def mask_url(raw: str) -> str:
    """The URL with the password in it (if any) replaced by ``***``: for log lines and
    messages."""
    return _URL_PASSWORD.sub(r"\1\2:***@", raw, count=1)


def _read(
    env: Mapping[str, str], name: str, cast: Callable[[str], T], default: T
) -> T:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return cast(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}={mask_url(raw)!r} is invalid: {exc}") from None


@dataclass(frozen=True)
class Config:
    """Everything the web app, the worker and the highlighter read from the environment."""

    host: str = "127.0.0.1"
    port: int = 8080
    redis_url: str = field(default=DEFAULT_REDIS_URL, repr=False)  # may hold a password
    redis_url_set: bool = False
    redis_tls_ca_file: Path | None = None
    db_path: Path = Path("var/snippets.db")
    # PostgreSQL instead of the SQLite file db_path when set (it may hold a password).
    database_url: str = field(default="", repr=False)
    highlighter_url: str = "http://127.0.0.1:8081/"
    highlighter_url_set: bool = False
    highlighter_port: int = 8081
    worker_max_jobs: int = 200
    worker_processes: int = 1
    db_pool_size: int = 5
    max_snippet_bytes: int = 512 * 1024
    queue_name: str = "snippets:queue"
    highlight_retries: int = 10
    job_timeout: float = 10.0
    retry_delay_scale: float = 1.0
    worker_shutdown_grace: float = 25.0
    reconcile_interval: float = 15.0
    reconcile_after: float = 60.0
    dashboard_password: str = field(default="", repr=False)
    rate_limit_per_minute: int = 60
    # Hostile-client limits (README, "Limits and security").
    rate_limit_bytes_per_minute: int = 4 * 1024 * 1024
    daily_bytes_per_client: int = 64 * 1024 * 1024
    highlight_render_seconds: float = 5.0
    highlighter_queue: int = 32
    highlighter_host: str = "127.0.0.1"
    event_streams_per_client: int = 20
    event_streams_total: int = 1000
    body_read_timeout: float = 10.0
    body_bytes_in_flight_per_client: int = 8 * 1024 * 1024
    min_free_disk_mb: int = 100
    cookie_secure: bool = False
    log_format: str = "text"
    access_log: bool = False
    # Several hosts (README, "Running on several machines").
    host_name: str = field(default_factory=socket.gethostname)
    worker_live_within: float = 30.0
    # History (README, "Jobs dashboard"): finished jobs listed for this long, at most this many.
    finished_jobs_window: float = 3600.0
    finished_jobs_max: int = 100_000
    # The highlighter's circuit breaker (README, "Jobs dashboard"); 0 turns a rule off.
    breaker_failures: int = 5
    breaker_error_rate: float = 0.5
    breaker_window: float = 30.0
    breaker_min_calls: int = 20

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        """Read the configuration; raise ConfigError naming the first bad variable."""
        env = os.environ if env is None else env
        return cls(
            host=_read(env, "HOST", str, cls.host),
            port=_read(env, "PORT", _port, cls.port),
            redis_url=_read(env, "REDIS_URL", _redis_url, DEFAULT_REDIS_URL),
            redis_url_set=bool(env.get("REDIS_URL")),
            redis_tls_ca_file=_read(env, "REDIS_TLS_CA_FILE", _readable_file, None),
            db_path=_read(env, "SNIPPETS_DB", Path, cls.db_path),
            database_url=_read(env, "DATABASE_URL", _database_url, cls.database_url),
            highlighter_url=_read(env, "HIGHLIGHTER_URL", _http_url, cls.highlighter_url),
            highlighter_url_set=bool(env.get("HIGHLIGHTER_URL")),
            highlighter_port=_read(env, "HIGHLIGHTER_PORT", _port, cls.highlighter_port),
            worker_max_jobs=_read(env, "WORKER_MAX_JOBS", _positive_int, cls.worker_max_jobs),
            worker_processes=_read(env, "WORKER_PROCESSES", _positive_int, cls.worker_processes),
            db_pool_size=_read(env, "DB_POOL_SIZE", _positive_int, cls.db_pool_size),
            max_snippet_bytes=_read(
                env, "MAX_SNIPPET_BYTES", _positive_int, cls.max_snippet_bytes
            ),
            queue_name=_read(env, "QUEUE_NAME", str, cls.queue_name),
            highlight_retries=_read(
                env, "HIGHLIGHT_RETRIES", _int_between(0, 25), cls.highlight_retries
            ),
            job_timeout=_read(env, "JOB_TIMEOUT", _seconds(0.1, 3600), cls.job_timeout),
            retry_delay_scale=_read(
                env, "RETRY_DELAY_SCALE", _seconds(0, 100), cls.retry_delay_scale
            ),
            worker_shutdown_grace=_read(
                env, "WORKER_SHUTDOWN_GRACE", _seconds(0, 3600), cls.worker_shutdown_grace
            ),
            reconcile_interval=_read(
                env, "RECONCILE_INTERVAL", _seconds(0.1, 30), cls.reconcile_interval
            ),
            reconcile_after=_read(env, "RECONCILE_AFTER", _seconds(0, 86400), cls.reconcile_after),
            dashboard_password=_read(env, "DASHBOARD_PASSWORD", str, cls.dashboard_password),
            rate_limit_per_minute=_read(
                env, "RATE_LIMIT_PER_MINUTE", _non_negative_int, cls.rate_limit_per_minute
            ),
            rate_limit_bytes_per_minute=_read(
                env, "RATE_LIMIT_BYTES_PER_MINUTE", _non_negative_int,
                cls.rate_limit_bytes_per_minute,
            ),
            daily_bytes_per_client=_read(
                env, "DAILY_BYTES_PER_CLIENT", _non_negative_int, cls.daily_bytes_per_client
            ),
            highlight_render_seconds=_read(
                env, "HIGHLIGHT_RENDER_SECONDS", _seconds(0.1, 600), cls.highlight_render_seconds
            ),
            highlighter_queue=_read(env, "HIGHLIGHTER_QUEUE", _positive_int, cls.highlighter_queue),
            highlighter_host=_read(env, "HIGHLIGHTER_HOST", str, cls.highlighter_host),
            event_streams_per_client=_read(
                env, "EVENT_STREAMS_PER_CLIENT", _positive_int, cls.event_streams_per_client
            ),
            event_streams_total=_read(
                env, "EVENT_STREAMS_TOTAL", _positive_int, cls.event_streams_total
            ),
            body_read_timeout=_read(
                env, "BODY_READ_TIMEOUT", _seconds(0.1, 3600), cls.body_read_timeout
            ),
            body_bytes_in_flight_per_client=_read(
                env, "BODY_BYTES_IN_FLIGHT_PER_CLIENT", _positive_int,
                cls.body_bytes_in_flight_per_client,
            ),
            min_free_disk_mb=_read(env, "MIN_FREE_DISK_MB", _non_negative_int,
                                   cls.min_free_disk_mb),
            cookie_secure=_read(env, "COOKIE_SECURE", _flag, cls.cookie_secure),
            log_format=_read(env, "LOG_FORMAT", _choice(LOG_FORMATS), cls.log_format),
            access_log=_read(env, "ACCESS_LOG", _flag, cls.access_log),
            host_name=_read(env, "HOSTNAME", str.strip, "") or socket.gethostname(),
            worker_live_within=_read(env, "WORKER_LIVE_WITHIN", _seconds(1, 3600),
                                     cls.worker_live_within),
            finished_jobs_window=_read(env, "FINISHED_JOBS_WINDOW", _seconds(0, 7 * 86400),
                                       cls.finished_jobs_window),
            finished_jobs_max=_read(env, "FINISHED_JOBS_MAX", _non_negative_int,
                                    cls.finished_jobs_max),
            breaker_failures=_read(env, "BREAKER_FAILURES", _non_negative_int,
                                   cls.breaker_failures),
            breaker_error_rate=_read(env, "BREAKER_ERROR_RATE", _fraction,
                                     cls.breaker_error_rate),
            breaker_window=_read(env, "BREAKER_WINDOW", _seconds(1, 3600), cls.breaker_window),
            breaker_min_calls=_read(env, "BREAKER_MIN_CALLS", _positive_int,
                                    cls.breaker_min_calls),
        )
