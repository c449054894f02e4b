"""``python -m snippet_service.cli`` (``snippet-service-cli``): ``paste FILE``, ``get ID``
and ``delete ID`` from a terminal, over the JSON API of ``SNIPPET_SERVICE_URL`` (default
http://127.0.0.1:8080) or ``--url``. ``paste`` prints the page URL and the owner token, one
per line, and keeps the token in ``$XDG_CONFIG_HOME/snippet-service/tokens.json`` (or the
file ``SNIPPET_SERVICE_TOKENS`` names) so that ``delete ID`` needs no ``--token``. Exit
status: 0 done, 1 failed (one line on stderr), 2 bad usage. Only the standard library: it
starts fast and needs no event loop.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

# The server's expiry choices (snippet_service/web/options.py; a client imports nothing of
# the web app: tests/test_cli.py checks the two agree).
EXPIRY_CHOICES = ("never", "10m", "1h", "1d", "1w", "1mo", "1y")
PROG = "snippet-service"
DEFAULT_URL = "http://127.0.0.1:8080"
TIMEOUT = 10.0
# The server waits up to 10 s for the worker's terminal colouring, then answers 503 with
# Retry-After: wait a little longer than it does, and ask again a few times.
ANSI_TIMEOUT = 15.0
ANSI_ATTEMPTS = 3
USER_AGENT = "snippet-service-cli"
# Ids and owner tokens are URL-safe base64, so one may start with "-": longer than any
# option, it is a value (argparse would take it for an unknown option).
DASHED_VALUE = re.compile(r"-[A-Za-z0-9_-]{9,}")


class Failure(Exception):
    """A failed command: its one-line message for stderr (and the HTTP status, if any)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def base_url(given: str | None) -> str:
    url = given or os.environ.get("SNIPPET_SERVICE_URL") or DEFAULT_URL
    return url.rstrip("/")


def tokens_path() -> Path:
    named = os.environ.get("SNIPPET_SERVICE_TOKENS")
    if named:
        return Path(named).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "snippet-service" / "tokens.json"


def load_tokens() -> dict[str, dict[str, str]]:
    """The kept owner tokens by base URL, then snippet id (empty if none are kept)."""
    try:
        data = json.loads(tokens_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_tokens(tokens: dict[str, dict[str, str]]) -> None:
    """Write the tokens file atomically, readable by its owner only (mode 0600)."""
    path = tokens_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=".tokens-", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(tokens, out, indent=2, sort_keys=True)
            out.write("\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def keep(base: str, ident: str, token: str | None) -> None:
    """Keep the owner token of snippet ``ident`` of the service at ``base`` (None: forget it)."""
    tokens = load_tokens()
    kept = tokens.setdefault(base, {})
    if token is not None:
        kept[ident] = token
    elif kept.pop(ident, None) is None:
        return
    save_tokens({url: ids for url, ids in tokens.items() if ids})


def server_text(error: urllib.error.HTTPError) -> str:
    """The server's message in an error answer: the JSON ``error``, else its first line."""
    try:
        body = error.read().decode("utf-8", "replace")
    except OSError:
        body = ""
    try:
        data = json.loads(body)
        if isinstance(data, dict) and isinstance(data.get("error"), str):
            return str(data["error"])
    except ValueError:
        pass
    lines = [line.strip() for line in body.splitlines() if line.strip()]
    return lines[0] if lines and not lines[0].startswith("<") else error.reason or ""


def request(method: str, url: str, *, body: dict[str, Any] | None = None,
            headers: dict[str, str] | None = None, ident: str = "",
            timeout: float = TIMEOUT) -> bytes:
    """Send one request; the answer's body, or Failure with one line."""
    data = None if body is None else json.dumps(body).encode("utf-8")
    sent = {"User-Agent": USER_AGENT, **(headers or {})}
    if data is not None:
        sent["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, headers=sent, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as answer:
            return bytes(answer.read())
    except urllib.error.HTTPError as error:
        text = " ".join(server_text(error).split())  # one line, whatever the server sent
        if error.code == 404:
            message = f"not found: {ident}" if ident else f"not found: {text}"
        elif error.code == 403:
            message = f"forbidden: {text}"
        else:
            message = f"server error {error.code}: {text}"
        raise Failure(message, error.code) from None
    except (urllib.error.URLError, OSError) as error:  # refused, unknown host, timed out
        reason = getattr(error, "reason", error)
        raise Failure(f"cannot reach {url}: {reason}") from None


def snippet_url(base: str, ident: str, api: bool = False) -> str:
    return f"{base}{'/api' if api else ''}/snippets/{urllib.parse.quote(ident, safe='')}"


def read_code(source: str) -> str:
    """The code to paste: the file's text, or standard input's for ``-``."""
    try:
        raw = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except OSError as error:
        raise Failure(f"cannot read {source}: {error.strerror or error}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Failure(f"{source} is not UTF-8 text") from None


def paste(args: argparse.Namespace) -> None:
    base = base_url(args.url)
    title = args.title if args.title is not None else (
        None if args.file == "-" else Path(args.file).name)
    body: dict[str, Any] = {
        "language": args.lang or "auto", "code": read_code(args.file), "title": title,
        "expires_in": args.expires, "visibility": "public" if args.public else "unlisted",
        "burn_after_reading": args.burn,
    }
    raw = request("POST", f"{base}/api/snippets", body=body)
    try:
        created = json.loads(raw)
        ident, url, token = created["id"], created["url"], created["owner_token"]
    except (ValueError, KeyError, TypeError):
        raise Failure("the server's answer is not a created snippet") from None
    print(url)
    print(token, flush=True)
    try:
        keep(base, ident, token)
    except OSError as error:  # the snippet exists: say so, but the paste itself worked
        print(f"{PROG}: cannot keep the owner token in {tokens_path()}: "
              f"{error.strerror or error}", file=sys.stderr)


def get(args: argparse.Namespace) -> None:
    base, ident = base_url(args.url), args.id
    # The owner's own reading (a token kept by paste) does not use up a burn-after-reading
    # snippet's one view.
    token = load_tokens().get(base, {}).get(ident)
    owner = {"Authorization": f"Bearer {token}"} if token else {}
    if args.json:
        raw = request("GET", snippet_url(base, ident, api=True), headers=owner, ident=ident)
        try:
            print(json.dumps(json.loads(raw), indent=2, ensure_ascii=False))
        except ValueError:
            raise Failure("the server's answer is not JSON") from None
        return
    url = snippet_url(base, ident) + ("?format=ansi" if args.ansi else "?format=text")
    attempts = ANSI_ATTEMPTS if args.ansi else 1
    for attempt in range(1, attempts + 1):
        try:
            raw = request("GET", url, headers={"Accept": "text/plain", **owner}, ident=ident,
                          timeout=ANSI_TIMEOUT if args.ansi else TIMEOUT)
        except Failure as failure:  # 503: the colouring is not ready yet
            if failure.status != 503 or attempt == attempts:
                raise
            time.sleep(2)
        else:
            sys.stdout.buffer.write(raw)  # the code exactly, as served
            sys.stdout.buffer.flush()
            return


def delete(args: argparse.Namespace) -> None:
    base, ident = base_url(args.url), args.id
    token = args.token or load_tokens().get(base, {}).get(ident)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        request("DELETE", snippet_url(base, ident, api=True), headers=headers, ident=ident)
    except Failure as failure:
        if failure.status == 404:  # gone already (expired, burned): its token is no use
            keep(base, ident, None)
        if token is None and failure.status == 403:
            raise Failure(f"{failure} (no owner token kept for {ident}: use --token)") from None
        raise
    keep(base, ident, None)
    print(f"deleted {ident}")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog=f"{PROG}-cli",
                                  description="Paste, read and delete snippets.")
    top.add_argument("--url", help="the service's base URL (default: $SNIPPET_SERVICE_URL, "
                                   f"else {DEFAULT_URL})")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    new = commands.add_parser("paste", help="paste a file (- for standard input)")
    new.add_argument("file", metavar="FILE")
    new.add_argument("--lang", help="a language alias (default: detected)")
    new.add_argument("--title", help="the title (default: the file's name)")
    new.add_argument("--expires", choices=list(EXPIRY_CHOICES), default="never")
    new.add_argument("--burn", action="store_true", help="delete it once someone reads it")
    new.add_argument("--public", action="store_true", help="list it on the front page")
    new.set_defaults(run=paste)
    show = commands.add_parser("get", help="print a snippet's code")
    show.add_argument("id", metavar="ID", type=str.strip)
    how = show.add_mutually_exclusive_group()
    how.add_argument("--ansi", action="store_true", help="coloured for a terminal")
    how.add_argument("--json", action="store_true", help="the snippet as the API shows it")
    show.set_defaults(run=get)
    drop = commands.add_parser("delete", help="delete a snippet you own")
    drop.add_argument("id", metavar="ID", type=str.strip)
    drop.add_argument("--token", type=str.strip,
                      help="its owner token (default: the one kept by paste)")
    drop.set_defaults(run=delete)
    for sub in (new, show, drop):  # --url after the command works too
        sub.add_argument("--url", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return top


def protect_dashed(argv: list[str]) -> list[str]:
    """After ``get`` or ``delete``, mark a dashed id or token as a value (a leading space
    makes argparse take it as one; the parser strips it)."""
    commands = [n for n, arg in enumerate(argv) if arg in ("paste", "get", "delete")]
    if not commands or argv[commands[0]] == "paste":
        return argv
    start = commands[0] + 1
    return argv[:start] + [" " + arg if DASHED_VALUE.fullmatch(arg) else arg
                           for arg in argv[start:]]


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(protect_dashed(sys.argv[1:] if argv is None else argv))
    try:
        args.run(args)
    except Failure as failure:
        print(f"{PROG}: {failure}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
