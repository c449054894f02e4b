"""The small HTTP client the worker uses to reach the highlighting service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlencode

import aiohttp

# Pygments' HTML is up to about 27 times its input on dense one-character tokens (each in
# its own <span>, with < and & escaped), so the answer may be RESPONSE_BYTES_PER_CODE_BYTE
# times the largest code, and never less than MIN_RESPONSE_BYTES.
RESPONSE_BYTES_PER_CODE_BYTE = 32
MIN_RESPONSE_BYTES = 4 * 1024 * 1024
MAX_REASON_CHARS = 500
FORM_HEADERS = {"Content-Type": "application/x-www-form-urlencoded"}


class HighlighterError(Exception):
    """The highlighter could not produce HTML (each job decides which kinds it retries)."""

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class HighlighterUnavailable(HighlighterError):
    """A failure that may pass: connection errors, timeouts, 429 and 5xx answers."""


class HighlighterRejected(HighlighterError):
    """The highlighter refused this input (a 4xx answer); trying again will not help."""


def max_response_bytes(max_snippet_bytes: int) -> int:
    """The most of an answer the worker reads for code of up to ``max_snippet_bytes``."""
    return max(MIN_RESPONSE_BYTES, RESPONSE_BYTES_PER_CODE_BYTE * max_snippet_bytes)


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


async def _read_capped(response: aiohttp.ClientResponse, cap: int) -> bytes | None:
    """The body, or None once it grows past cap bytes: whatever Content-Length says, no
    more than cap bytes (plus one chunk) are read, and the connection is then dropped."""
    length = response.content_length
    if length is not None:
        return await response.read() if length <= cap else None
    body = bytearray()
    async for chunk in response.content.iter_chunked(64 * 1024):
        if len(body) + len(chunk) > cap:
            return None
        body += chunk
    return bytes(body)


def _one_line(text: str) -> str:
    """Untrusted text as one short line, fit for a snippet's error message and the logs."""
    return " ".join(text[: MAX_REASON_CHARS * 4].split())[:MAX_REASON_CHARS]


def _reason(body: bytes | None) -> str:
    """The start of an error body, for the snippet's error message."""
    return _one_line((body or b"")[: MAX_REASON_CHARS * 4].decode("utf-8", "replace"))


@asynccontextmanager
async def client_session(
    limit: int, total_timeout: float = 30.0
) -> AsyncIterator[aiohttp.ClientSession]:
    """One session per process, with explicit timeouts and a connection limit."""
    timeout = aiohttp.ClientTimeout(total=total_timeout, connect=5.0, sock_read=total_timeout)
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=limit, keepalive_timeout=30)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        yield session


async def highlight(session: aiohttp.ClientSession, url: str, lang: str, code: str,
                    max_bytes: int = MIN_RESPONSE_BYTES) -> str:
    """POST lang and code as a form; return the HTML (at most ``max_bytes``, see
    ``max_response_bytes``) or raise a HighlighterError."""
    form = urlencode({"lang": lang, "code": code}).encode()  # encoded once, sent as is
    return await _ask(session, url, form, "text/html", max_bytes)


async def highlight_ansi(session: aiohttp.ClientSession, url: str, lang: str, code: str,
                         max_bytes: int = MIN_RESPONSE_BYTES) -> str:
    """The code coloured for a 256-colour terminal (the form's ``format=ansi``): the text
    (at most ``max_bytes``, see ``max_response_bytes``) or a HighlighterError, as
    :func:`highlight`."""
    form = urlencode({"lang": lang, "code": code, "format": "ansi"}).encode()
    return await _ask(session, url, form, "text/plain", max_bytes)


async def _ask(session: aiohttp.ClientSession, url: str, form: bytes, expected_type: str,
               max_bytes: int) -> str:
    """POST the form; the answer of ``expected_type`` in UTF-8, or a HighlighterError."""
    try:
        async with session.post(
            url, data=form, headers=FORM_HEADERS, allow_redirects=False
        ) as response:
            body = await _read_capped(response, max_bytes)
            status = response.status
            retry_after = _retry_after(response.headers.get("Retry-After"))
            content_type = response.content_type
            charset = (response.charset or "utf-8").lower()
    except aiohttp.ClientResponseError as exc:
        # aiohttp's parser refused the answer (a bad status line, bytes past its framing…);
        # its message quotes those bytes, so it is not chained into stored tracebacks.
        raise HighlighterRejected(
            "highlighter sent a malformed HTTP response: "
            + _one_line(exc.message.partition("\n")[0]).rstrip(":")
        ) from None
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise HighlighterUnavailable(f"highlighter unreachable: {_one_line(repr(exc))}") from exc
    text = _reason(body)
    if status == 429 or status >= 500:
        raise HighlighterUnavailable(
            f"highlighter answered {status}: {text}", status=status, retry_after=retry_after
        )
    if status >= 400:
        raise HighlighterRejected(text or f"highlighter answered {status}", status=status)
    if status != 200:
        raise HighlighterUnavailable(f"highlighter answered {status}", status=status)
    if body is None:
        raise HighlighterRejected(
            f"highlighter response is over {max_bytes} bytes", status=status
        )
    if content_type != expected_type:
        raise HighlighterRejected(
            f"highlighter answered {content_type}, not {expected_type}", status=status
        )
    if charset not in ("utf-8", "utf8"):
        raise HighlighterRejected(f"highlighter answered {charset}, not UTF-8", status=status)
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise HighlighterRejected("highlighter response is not UTF-8", status=status) from None
