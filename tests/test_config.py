"""Bad configuration fails at start with a message naming the variable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from snippet_service.config import Config, ConfigError
from tests.servers import ROOT, base_env


def test_defaults() -> None:
    config = Config.from_env({})
    assert (config.host, config.port, config.highlighter_port) == ("127.0.0.1", 8080, 8081)
    assert config.db_path == Path("var/snippets.db")
    assert config.highlighter_url == "http://127.0.0.1:8081/"
    assert config.db_pool_size == 5
    assert config.worker_max_jobs >= 100
    assert not config.redis_url_set


def test_values_are_read_and_cast() -> None:
    config = Config.from_env({"PORT": "9000", "WORKER_MAX_JOBS": "500",
                              "HIGHLIGHTER_URL": "http://h.example:1", "REDIS_URL": "redis://r/2"})
    assert config.port == 9000
    assert config.worker_max_jobs == 500
    assert config.highlighter_url == "http://h.example:1/"
    assert config.redis_url == "redis://r/2" and config.redis_url_set


def test_unix_socket_redis_url() -> None:
    assert Config.from_env({"REDIS_URL": "unix:///run/valkey.sock"}).redis_url_set


@pytest.mark.parametrize(("name", "value"), [
    ("HIGHLIGHT_RETRIES", "26"), ("REDIS_URL", "unix://"),
    ("PORT", "http"), ("PORT", "70000"), ("HIGHLIGHTER_PORT", "-1"), ("WORKER_MAX_JOBS", "0"),
    ("DB_POOL_SIZE", "five"), ("REDIS_URL", "localhost:6379"), ("HIGHLIGHTER_URL", "ftp://x/"),
])
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Config.from_env({name: value})


@pytest.mark.parametrize("script", [["run_web.py"], ["run_worker.py"],
                                    ["-m", "snippet_service.highlighter"]])
def test_processes_refuse_to_start_with_bad_values(script: list[str]) -> None:
    result = subprocess.run([sys.executable, *script], cwd=ROOT, capture_output=True, text=True,
                            env=base_env(DB_POOL_SIZE="0", PORT="1", HIGHLIGHTER_PORT="1"),
                            timeout=30)
    assert result.returncode != 0
    assert "DB_POOL_SIZE='0' is invalid" in result.stderr
