"""``python -m snippet_service.cli``, run as a subprocess against a real highlighter, worker
and web app: paste (a file, standard input), get (exact bytes, ANSI, JSON), delete (with the
kept token, and a stranger's 403), burn after reading, usage errors and an unreachable
service. The module's tests share one stack."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from snippet_service.cli import EXPIRY_CHOICES, parser, protect_dashed
from snippet_service.valkey import free_port
from snippet_service.web.options import EXPIRY_CHOICES as SERVER_EXPIRY_CHOICES
from tests.conftest import MakeStack
from tests.servers import ROOT, Stack, base_env

CODE = "def greet() -> str:\n    return 'héllo, wörld ✓ 日本'\n\nprint(greet())"


@pytest.fixture
def cli_stack(make_stack: MakeStack) -> Stack:
    return make_stack(shared=True)


class Cli:
    """The CLI pointed at a stack, with a config directory of its own (its kept tokens)."""

    def __init__(self, url: str, config: Path) -> None:
        self.env = base_env(SNIPPET_SERVICE_URL=url, XDG_CONFIG_HOME=str(config))
        self.env.pop("SNIPPET_SERVICE_TOKENS", None)
        self.tokens = config / "snippet-service" / "tokens.json"

    def run(self, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([sys.executable, "-m", "snippet_service.cli", *args], cwd=ROOT,
                              env=self.env, input=stdin, capture_output=True, timeout=60)

    def ok(self, *args: str, stdin: bytes = b"") -> bytes:
        done = self.run(*args, stdin=stdin)
        assert done.returncode == 0, done.stderr.decode()
        assert done.stderr == b""
        return done.stdout

    def paste(self, *args: str, stdin: bytes = b"") -> tuple[str, str, str]:
        """Paste; the page URL, the owner token and the snippet's id."""
        lines = self.ok("paste", *args, stdin=stdin).decode().splitlines()
        assert len(lines) == 2, lines
        url, token = lines
        return url, token, url.rsplit("/", 1)[1]

    def fails(self, *args: str) -> str:
        """Run a command that must fail with exit status 1; its one line on stderr."""
        done = self.run(*args)
        assert done.returncode == 1, (done.stdout, done.stderr)
        assert done.stdout == b""
        message = done.stderr.decode()
        assert message.count("\n") == 1 and message.startswith("snippet-service: "), message
        return message.strip()


@pytest.fixture
def cli(cli_stack: Stack, tmp_path: Path) -> Cli:
    return Cli(cli_stack.url, tmp_path / "config")


def fetch(url: str, accept: str = "*/*") -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.status, answer.read()


def api_json(stack: Stack, ident: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(fetch(f"{stack.url}/api/snippets/{ident}")[1])
    return data


def test_paste_a_file(cli: Cli, cli_stack: Stack, tmp_path: Path) -> None:
    source = tmp_path / "greet.py"
    source.write_bytes(CODE.encode())
    url, token, ident = cli.paste(str(source))
    assert url == f"{cli_stack.url}/snippets/{ident}"
    assert len(ident) >= 10 and len(token) >= 20
    status, page = fetch(url, accept="text/html")
    assert status == 200 and b"greet.py" in page
    snippet = api_json(cli_stack, ident)
    assert (snippet["language"], snippet["detected"], snippet["title"]) == (
        "python", True, "greet.py")
    assert (snippet["visibility"], snippet["burn_after_reading"]) == ("unlisted", False)
    kept = json.loads(cli.tokens.read_text())
    assert kept == {cli_stack.url: {ident: token}}
    assert stat.S_IMODE(os.stat(cli.tokens).st_mode) == 0o600


def test_paste_stdin_with_options(cli: Cli, cli_stack: Stack) -> None:
    _, _, ident = cli.paste("-", "--lang", "ruby", "--title", "Greeting", "--expires", "1d",
                            "--public", stdin=b"puts 'hi'\n")
    snippet = api_json(cli_stack, ident)
    assert (snippet["language"], snippet["detected"], snippet["title"]) == (
        "ruby", False, "Greeting")
    assert snippet["visibility"] == "public" and snippet["expires_at"] is not None
    assert snippet["code"] == "puts 'hi'\n"


def test_get_round_trips_exact_bytes(cli: Cli, tmp_path: Path) -> None:
    source = tmp_path / "greet.py"
    source.write_bytes(CODE.encode())
    _, _, ident = cli.paste(str(source))
    assert cli.ok("get", ident) == CODE.encode()  # non-ASCII, no trailing newline
    shown = json.loads(cli.ok("get", ident, "--json"))
    assert shown["id"] == ident and shown["code"] == CODE and "owner_token" not in shown


def test_get_ansi(cli: Cli) -> None:
    _, _, ident = cli.paste("-", "--lang", "python", stdin=b"def f(x):\n    return x + 1\n")
    coloured = cli.ok("get", ident, "--ansi")
    assert b"\x1b[" in coloured and b"return" in coloured


def test_delete_with_the_kept_token(cli: Cli, cli_stack: Stack) -> None:
    _, _, ident = cli.paste("-", stdin=b"print('bye')\n")
    assert cli.ok("delete", ident) == f"deleted {ident}\n".encode()
    assert cli.fails("get", ident) == f"snippet-service: not found: {ident}"
    assert json.loads(cli.tokens.read_text()) == {}
    assert cli.fails("delete", ident) == f"snippet-service: not found: {ident}"


def test_delete_with_a_given_token(cli: Cli, cli_stack: Stack, tmp_path: Path) -> None:
    _, token, ident = cli.paste("-", stdin=b"print('mine')\n")
    elsewhere = Cli(cli_stack.url, tmp_path / "elsewhere")
    assert elsewhere.ok("delete", ident, "--token", token) == f"deleted {ident}\n".encode()
    assert cli.fails("get", ident) == f"snippet-service: not found: {ident}"


def test_delete_someone_elses_snippet(cli: Cli, cli_stack: Stack, tmp_path: Path) -> None:
    _, _, ident = cli.paste("-", stdin=b"print('not yours')\n")
    stranger = Cli(cli_stack.url, tmp_path / "stranger")
    message = stranger.fails("delete", ident)
    assert message.startswith("snippet-service: forbidden: Only the snippet's owner"), message
    assert "--token" in message
    assert stranger.fails("delete", ident, "--token", "wrong").startswith(
        "snippet-service: forbidden: ")
    assert cli.ok("get", ident) == b"print('not yours')\n"


def test_burn_after_reading(cli: Cli, cli_stack: Stack, tmp_path: Path) -> None:
    _, _, ident = cli.paste("-", "--burn", stdin=b"secret = 42\n")
    for _ in range(2):  # the owner's own reads (with the kept token) do not count
        assert cli.ok("get", ident) == b"secret = 42\n"
    stranger = Cli(cli_stack.url, tmp_path / "stranger")
    assert stranger.ok("get", ident) == b"secret = 42\n"
    assert stranger.fails("get", ident) == f"snippet-service: not found: {ident}"
    assert ident in json.loads(cli.tokens.read_text())[cli_stack.url]
    assert cli.fails("delete", ident) == f"snippet-service: not found: {ident}"
    assert json.loads(cli.tokens.read_text()) == {}  # a gone snippet's token is forgotten


def test_url_option_overrides_the_environment(cli_stack: Stack, tmp_path: Path) -> None:
    cli = Cli(f"http://127.0.0.1:{free_port()}", tmp_path / "config")
    lines = cli.ok("--url", cli_stack.url, "paste", "-", stdin=b"x = 1\n").decode().split()
    ident = lines[0].rsplit("/", 1)[1]
    assert cli.ok("get", ident, "--url", cli_stack.url + "/") == b"x = 1\n"
    assert json.loads(cli.tokens.read_text()) == {cli_stack.url: {ident: lines[1]}}


@pytest.mark.parametrize("args", [(), ("paste",), ("get",), ("paste", "-", "--expires", "2d"),
                                  ("get", "x", "--ansi", "--json"), ("frobnicate",)])
def test_usage_errors(tmp_path: Path, args: tuple[str, ...]) -> None:
    done = Cli("http://127.0.0.1:1", tmp_path).run(*args)
    assert done.returncode == 2 and b"usage: snippet-service-cli" in done.stderr


def test_unreachable_service(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    cli = Cli(url, tmp_path)
    assert cli.fails("get", "abcdefghijk").startswith(f"snippet-service: cannot reach {url}/")
    assert cli.fails("paste", "-").startswith("snippet-service: cannot reach ")
    assert not cli.tokens.exists()


def test_unreadable_file(tmp_path: Path) -> None:
    cli = Cli("http://127.0.0.1:1", tmp_path)
    missing = tmp_path / "missing.py"
    assert cli.fails("paste", str(missing)).startswith(f"snippet-service: cannot read {missing}")


def test_ids_and_tokens_may_start_with_a_dash() -> None:
    """URL-safe ids and tokens start with "-" one time in 64: they are values, not options."""
    shown = parser().parse_args(protect_dashed(["get", "-habcdefghij", "--ansi"]))
    assert (shown.id, shown.ansi, shown.json) == ("-habcdefghij", True, False)
    dropped = parser().parse_args(protect_dashed(
        ["delete", "--token", "-tok_en-0123456789", "--url", "http://x", "-Xyz_0123456"]))
    assert (dropped.id, dropped.token, dropped.url) == (
        "-Xyz_0123456", "-tok_en-0123456789", "http://x")
    assert parser().parse_args(protect_dashed(["get", "--", "-abcdefghijk"])).id == "-abcdefghijk"
    pasted = parser().parse_args(protect_dashed(["paste", "-", "--title", "t"]))
    assert (pasted.file, pasted.title, pasted.expires) == ("-", "t", "never")


def test_the_expiry_choices_are_the_servers() -> None:
    assert EXPIRY_CHOICES == tuple(SERVER_EXPIRY_CHOICES)
