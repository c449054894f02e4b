"""Owner tokens: whoever creates a snippet gets a random token that lets them edit, delete
and re-highlight it. Only the token's SHA-256 is stored, so a copy of the database does
not hand anyone the tokens."""

from __future__ import annotations

import hashlib
import hmac
import secrets


def new_token() -> str:
    """A new owner token (32 URL-safe characters, 192 bits)."""
    return secrets.token_urlsafe(24)


def token_hash(token: str) -> str:
    """What is stored of a token: its SHA-256, in hex."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def owns(owner_hash: str | None, token: str | None) -> bool:
    """Whether the token is the one whose hash is stored (compared in constant time); a
    snippet without an owner is owned by nobody."""
    if not owner_hash or not token:
        return False
    return hmac.compare_digest(owner_hash, token_hash(token))
