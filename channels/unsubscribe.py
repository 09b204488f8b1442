"""Unsubscribe tokens: signed with the secret key, readable without a login, never expiring.

A token is ``<payload>.<signature>``, both unpadded URL-safe base64: the payload is
``<customer_id>:<channel>``, the signature HMAC-SHA256 over a purpose label and the payload.
It does not expire on purpose: a customer may click an old e-mail's link years later.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re

# The label keeps these signatures apart from anything else the same secret key ever signs.
PURPOSE = b"milepost-unsubscribe-v1\x00"
_CHANNEL = re.compile(r"[a-z]{1,20}")
_B64 = re.compile(r"[A-Za-z0-9_-]+")


class InvalidToken(ValueError):
    """The token was not made with this secret key, or was damaged on its way (copy, wrap)."""


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decode(text: str) -> bytes:
    # b64decode would skip stray characters and ignore the last bits; accept only canonical text.
    if not _B64.fullmatch(text):
        raise InvalidToken("unsubscribe token has characters outside URL-safe base64")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise InvalidToken("unsubscribe token is not valid base64") from None
    if _encode(raw) != text:
        raise InvalidToken("unsubscribe token is not valid base64")
    return raw


def _sign(secret: str | bytes, payload: bytes) -> bytes:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, PURPOSE + payload, hashlib.sha256).digest()


def make_token(secret: str | bytes, customer_id: int, channel: str = "email") -> str:
    """A token that lets the holder unsubscribe ``customer_id`` from ``channel``."""
    if isinstance(customer_id, bool) or not isinstance(customer_id, int) or customer_id < 0:
        raise ValueError(f"customer_id must be a non-negative int, not {customer_id!r}")
    if not _CHANNEL.fullmatch(channel):
        raise ValueError(f"channel must be a lowercase name like 'email', not {channel!r}")
    payload = f"{customer_id}:{channel}".encode("ascii")
    return f"{_encode(payload)}.{_encode(_sign(secret, payload))}"


def read_token(secret: str | bytes, token: str) -> tuple[int, str]:
    """The (customer_id, channel) a token was made for; InvalidToken if forged or garbled."""
    encoded_payload, dot, encoded_signature = token.strip().partition(".")
    if not dot or not encoded_payload or not encoded_signature:
        raise InvalidToken("unsubscribe token is incomplete (was the link cut short?)")
    payload = _decode(encoded_payload)
    if not hmac.compare_digest(_decode(encoded_signature), _sign(secret, payload)):
        raise InvalidToken("unsubscribe token signature does not match")
    # Signed by us, so well-formed unless the secret key was reused by something else.
    customer, _, channel = payload.decode("ascii", errors="replace").partition(":")
    if not customer.isascii() or not customer.isdigit() or not _CHANNEL.fullmatch(channel):
        raise InvalidToken("unsubscribe token payload is malformed")
    return int(customer), channel


def unsubscribe_url(base_url: str, token: str) -> str:
    """The public link for ``token`` under the API's ``base_url``."""
    return f"{base_url.rstrip('/')}/unsubscribe/{token}"
