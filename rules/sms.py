"""Fit a text to SMS: choose GSM-7 or UCS-2 and count the segments a provider will bill.

Decisions: typographic punctuation is replaced by ASCII, and Latin letters with accents GSM-7
lacks by their base letter (GSM-7 keeps é, ü, ñ and a few more), only when the whole text then fits
GSM-7 in no more segments than UCS-2 would need. An empty text is one segment (a message
always takes at least one PDU; the template store refuses empty SMS bodies anyway). A
concatenated message never splits an extension character's escape pair or a UTF-16 surrogate
pair across two segments, as handsets and providers do, so the count can exceed a plain
ceil(length / 153).
"""

from __future__ import annotations

import unicodedata
from functools import cache
from typing import Literal

Encoding = Literal["GSM-7", "UCS-2"]

# GSM 03.38 default alphabet (the escape 0x1B itself is not a character) ...
GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# ... and its extension table: each costs two septets (escape + character).
GSM_EXTENSION = frozenset("^{}\\[~]|€\f")
_GSM_ALL = GSM_BASIC | GSM_EXTENSION

SINGLE = {"GSM-7": 160, "UCS-2": 70}  # septets / UTF-16 code units in a lone message
PART = {"GSM-7": 153, "UCS-2": 67}  # per part once concatenated (the header takes the rest)

_ASCII_LOOKALIKES = str.maketrans(
    {
        **dict.fromkeys("‘’‚‛′`´", "'"),
        **dict.fromkeys("“”„‟″«»", '"'),
        **dict.fromkeys("‐‑‒–—―−", "-"),
        **dict.fromkeys("\u00a0\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f", " "),
        "…": "...",
        "\t": " ",
        "\u200b": "",
        "\ufeff": "",
    }
)


def is_gsm7(text: str) -> bool:
    """Every character of ``text`` is in the GSM-7 basic set or its extension table."""
    return _GSM_ALL.issuperset(text)


def _has_wide(text: str, encoding: Encoding) -> bool:
    """Whether a character of ``text`` takes two units: an escape pair, a surrogate pair."""
    if encoding == "GSM-7":
        return not GSM_EXTENSION.isdisjoint(text)
    return bool(text) and max(text) > "\uffff"


def _widths(text: str, encoding: Encoding) -> list[int]:
    if encoding == "GSM-7":
        return [2 if c in GSM_EXTENSION else 1 for c in text]
    return [2 if ord(c) > 0xFFFF else 1 for c in text]


def count_segments(text: str, encoding: Encoding) -> int:
    """Segments needed for ``text`` in ``encoding``, never splitting a character."""
    if not _has_wide(text, encoding):  # nearly every text (set operations run in C: every SMS)
        return 1 if len(text) <= SINGLE[encoding] else -(-len(text) // PART[encoding])
    widths = _widths(text, encoding)
    if sum(widths) <= SINGLE[encoding]:
        return 1
    limit, segments, used = PART[encoding], 1, 0
    for width in widths:
        if used + width > limit:
            segments, used = segments + 1, 0
        used += width
    return segments


def _unaccent(text: str) -> str:
    """Latin letters outside GSM-7 as their base letter (ç -> c, ã -> a, ő -> o), as carriers'
    "smart encoding" does; ``text`` unchanged if any other character is outside GSM-7."""
    outside = set(text) - _GSM_ALL
    if not outside:
        return text
    table = {}
    for char in outside:
        base = _base_letter(char)
        if base is None:  # Chinese, emoji...: UCS-2 it is
            return text
        table[ord(char)] = base
    return text.translate(table)


@cache
def _base_letter(char: str) -> str | None:
    base = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
    return base if base and base.isascii() and is_gsm7(base) else None


def fit(text: str) -> tuple[str, Encoding, int]:
    """(text, encoding, segments); typographic punctuation becomes ASCII and accented Latin
    letters their base letter, if that makes it GSM-7."""
    if is_gsm7(text):
        return text, "GSM-7", count_segments(text, "GSM-7")
    as_is = count_segments(text, "UCS-2")
    plain = _unaccent(text.translate(_ASCII_LOOKALIKES))
    # "…" becomes three septets: keep UCS-2 in the rare case that is cheaper.
    if is_gsm7(plain) and (segments := count_segments(plain, "GSM-7")) <= as_is:
        return plain, "GSM-7", segments
    return text, "UCS-2", as_is
