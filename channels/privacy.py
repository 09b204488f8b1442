"""Mask phone numbers and e-mail addresses before they reach a log line or an error message."""

from __future__ import annotations

import logging
import re

import phonenumbers

# E.164 (+8613812341234, also written with spaces or dashes) and bare Chinese mobile numbers.
_PHONE = re.compile(r"\+\d(?:[ \-]?\d){6,14}(?!\d)|(?<![\w.+])1[3-9]\d{9}(?![\w.])")
_EMAIL = re.compile(r"[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+")


def mask_phone(phone: str) -> str:
    """``+8613812341234`` -> ``+86138****1234``: country code, <= 3 leading and 4 last digits."""
    digits = "".join(c for c in phone if c.isdigit())
    prefix = ""
    if phone.strip().startswith("+"):
        try:
            parsed = phonenumbers.parse(phone)
            prefix = f"+{parsed.country_code}"
            digits = digits[len(str(parsed.country_code)) :]
        except phonenumbers.NumberParseException:
            prefix = "+"
    # Always hide at least four digits, so a short number is not given away whole.
    tail = min(4, max(len(digits) - 4, 0))
    head = min(3, max(len(digits) - 4 - tail, 0))
    return f"{prefix}{digits[:head]}****{digits[len(digits) - tail :] if tail else ''}"


def mask_email(address: str) -> str:
    """``wang.wei@example.cn`` -> ``w***@example.cn``: the domain stays, for troubleshooting."""
    local, at, domain = address.strip().rpartition("@")
    if not at:
        return "***"
    return f"{local[:1]}***@{domain}"


def mask_text(text: str) -> str:
    """``text`` with every e-mail address and phone number in it masked."""
    text = _EMAIL.sub(lambda m: mask_email(m.group()), text)
    return _PHONE.sub(lambda m: mask_phone(m.group()), text)


class MaskingFilter(logging.Filter):
    """A logging filter that masks phone numbers and addresses in messages and tracebacks."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = mask_text(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            # The formatter reuses exc_text, so the traceback is masked once, here.
            record.exc_text = mask_text(logging.Formatter().formatException(record.exc_info))
        return True


def mask_handlers(logger: logging.Logger | None = None) -> None:
    """Add a MaskingFilter to every handler of ``logger`` (the root) that has none yet.

    On the handlers, not the logger: a logger's filters see only records logged to it by name,
    while a handler's see every record that reaches it from any logger below.
    """
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, MaskingFilter) for f in handler.filters):
            handler.addFilter(MaskingFilter())
