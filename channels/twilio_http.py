"""The HTTP client the Twilio SDK sends through: http.client, kept-alive, a timeout, no retries.

Why not the SDK's TwilioHttpClient: it returns each answer through an attribute shared by every
thread using the client (``_test_only_last_response``), so in a threaded worker one thread can
read another's answer (a wrong message SID) or None. It goes through requests, which scans
os.environ twice per call for proxies: ~0.8 ms of CPU per SMS. urllib3 alone, which this used
before, still cost ~0.19 ms per request over the standard library's http.client (its pool,
Timeout and retry objects, its own response and header types), a fifth of a delivery's CPU.
What it did for us here is small, and below: a stack of idle keep-alive connections per
origin, a check that an idle one was not closed by the server, a CONNECT proxy.

Errors say whether the request can have left, which decides between retrying and `unknown`:
NotSent when no connection could be made (refused, DNS, connect timeout, the proxy, TLS and
its certificate: all before a byte of the request is written); anything raised after that
(TimeoutError, a reset, http.client.HTTPException) means Twilio may have the message.
"""

from __future__ import annotations

import json
import logging
import os
import select
import ssl
import threading
import urllib.request
from base64 import b64encode
from http.client import HTTPConnection, HTTPSConnection
from urllib.parse import unquote, urlencode, urlsplit

from twilio.http import HttpClient
from twilio.http.response import Response

http_log = logging.getLogger("milepost.channels.sms.http")
_JSON_TYPES = ("application/json", "application/scim+json")


class NotSent(ConnectionError):
    """No connection to the provider could be made: nothing of the request was sent."""


def _tls_context() -> ssl.SSLContext:
    # The CA bundle requests would use, so the choice of client changes no trust decision.
    ca_certs = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if not ca_certs:
        import certifi

        ca_certs = certifi.where()
    return ssl.create_default_context(cafile=ca_certs)


def _dropped(conn: HTTPConnection) -> bool:
    """Whether an idle connection is unusable: between requests a server sends nothing, so
    anything readable (its close, most often after its keep-alive timeout) ends it."""
    if conn.sock is None:
        return True
    poller = select.poll()  # not select(): a busy worker's descriptors can pass 1024
    poller.register(conn.sock, select.POLLIN)
    return bool(poller.poll(0))


class TimeoutHttpClient(HttpClient):
    """Sends the SDK's requests with a timeout and no retries, optionally to another base URL."""

    def __init__(self, timeout: float, api_base: str | None = None, pool_size: int = 32) -> None:
        super().__init__(http_log, False, timeout)
        self.api_base = api_base.rstrip("/") if api_base else None
        self.pool_size = pool_size  # idle connections kept per origin (a worker's threads)
        self._idle: dict[tuple[str, str, int], list[HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._tls: ssl.SSLContext | None = None
        self._auth: dict[tuple[str, str], str] = {}

    def request(
        self,
        method: str,
        uri: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        """Send one request; the SDK's Response. Never retried: a second POST, a second SMS."""
        url = urlsplit(self._rewrite(uri))
        target = (url.path or "/") + (f"?{url.query}" if url.query else "")
        if params:
            target += ("&" if url.query else "?") + urlencode(params, doseq=True)
        fields = dict(headers or {})
        if auth:
            fields["Authorization"] = self._basic(auth)
        if fields.get("Content-Type") in _JSON_TYPES:
            body = json.dumps(data or {})
        else:
            body = urlencode(data or {}, doseq=True)
            if data:
                fields.setdefault("Content-Type", "application/x-www-form-urlencoded")
        method = method.upper()
        sending = method not in ("GET", "DELETE")
        default_port = 443 if url.scheme == "https" else 80
        origin = (url.scheme, url.hostname or "", url.port or default_port)
        conn = self._checkout(origin, timeout or self.timeout or 60.0)
        try:
            conn.request(method, target, body if sending else None, fields)
            answer = conn.getresponse()
            content = answer.read()
        except BaseException:
            conn.close()  # half a request or answer on it: it serves no other
            raise
        if answer.will_close:
            conn.close()
        else:
            self._checkin(origin, conn)
        if self.logger.isEnabledFor(logging.DEBUG):  # the URL and status, never the form
            self.logger.debug("%s %s: %s", method, url.geturl(), answer.status)
        return Response(answer.status, content.decode("utf-8", "replace"), answer.headers)

    def _checkout(self, origin: tuple[str, str, int], timeout: float) -> HTTPConnection:
        """An idle connection to ``origin`` that still works, or a new one, connected."""
        while True:
            with self._lock:
                idle = self._idle.get(origin)
                conn = idle.pop() if idle else None  # the most recent: least likely timed out
            if conn is None:
                break
            if _dropped(conn):
                conn.close()
                continue
            assert conn.sock is not None
            conn.sock.settimeout(timeout)
            conn.timeout = timeout
            return conn
        conn = self._new(origin, timeout)
        try:
            conn.connect()
        except OSError as exc:  # also ssl's errors, and a proxy's refusal of the tunnel
            conn.close()
            raise NotSent(f"no connection to {origin[1]}:{origin[2]}: {exc}") from exc
        return conn

    def _checkin(self, origin: tuple[str, str, int], conn: HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(origin, [])
            if len(idle) < self.pool_size:
                idle.append(conn)
                return
        conn.close()

    def _new(self, origin: tuple[str, str, int], timeout: float) -> HTTPConnection:
        scheme, host, port = origin
        proxy = urllib.request.getproxies().get(scheme)
        if proxy and urllib.request.proxy_bypass(host):
            proxy = None
        through = urlsplit(proxy if "://" in proxy else f"http://{proxy}") if proxy else None
        at = (through.hostname or "", through.port or 8080) if through else (host, port)
        conn: HTTPConnection
        if scheme == "https":
            if self._tls is None:
                self._tls = _tls_context()
            conn = HTTPSConnection(*at, timeout=timeout, context=self._tls)
        else:
            conn = HTTPConnection(*at, timeout=timeout)
        if through:  # a tunnel through the proxy (CONNECT), TLS end to end with the provider
            tunnel = {}
            if through.username:
                user, password = unquote(through.username), unquote(through.password or "")
                tunnel["Proxy-Authorization"] = self._basic((user, password))
            conn.set_tunnel(host, port, tunnel)
        return conn

    def _basic(self, auth: tuple[str, str]) -> str:
        found = self._auth.get(auth)
        if found is None:
            found = "Basic " + b64encode(":".join(auth).encode()).decode()
            self._auth[auth] = found
        return found

    def _rewrite(self, url: str) -> str:
        """Send to ``api_base`` instead of any *.twilio.com host when one is configured."""
        parts = urlsplit(url)
        if self.api_base and (parts.hostname or "").endswith("twilio.com"):
            return self.api_base + parts.path + (f"?{parts.query}" if parts.query else "")
        return url
