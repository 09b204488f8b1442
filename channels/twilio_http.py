"""The HTTP client the Twilio SDK sends through: urllib3, a timeout, no retries, a fake's URL.

Why not the SDK's TwilioHttpClient: it returns each answer through an attribute shared by every
thread using the client (``_test_only_last_response``), so in a threaded worker one thread can
read another's answer (a wrong message SID) or None. It also goes through requests, which scans
os.environ twice per call for proxies and costs ~0.8 ms of CPU per SMS where urllib3 alone costs
~0.3 ms: at a few thousand SMS a second that is most of a core. The SDK plugs clients in here.

Errors are urllib3's, unwrapped (``retries=False``): ConnectTimeoutError (which includes refused
connections and DNS failures) means nothing was sent; ReadTimeoutError and ProtocolError mean the
request may have reached Twilio.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.request
from base64 import b64encode
from typing import Any
from urllib.parse import urlencode, urlsplit

import urllib3
from twilio.http import HttpClient
from twilio.http.response import Response

http_log = logging.getLogger("milepost.channels.sms.http")
_JSON_TYPES = ("application/json", "application/scim+json")


def _pool_manager(api_base: str, pool_size: int) -> urllib3.PoolManager:
    """A pool for ``api_base``, through the proxy the environment names for it, if any."""
    host = urlsplit(api_base).hostname or ""
    proxy = urllib.request.getproxies().get(urlsplit(api_base).scheme)
    # The CA bundle requests would use, so moving off requests changes no trust decision.
    ca_certs = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if not ca_certs:
        import certifi

        ca_certs = certifi.where()
    options: dict[str, Any] = {"maxsize": pool_size, "retries": False, "ca_certs": ca_certs}
    if proxy and not urllib.request.proxy_bypass(host):
        return urllib3.ProxyManager(proxy, **options)
    return urllib3.PoolManager(**options)


class TimeoutHttpClient(HttpClient):
    """Sends the SDK's requests with a timeout and no retries, optionally to another base URL."""

    def __init__(self, timeout: float, api_base: str | None = None, pool_size: int = 32) -> None:
        super().__init__(http_log, False, timeout)
        self.api_base = api_base.rstrip("/") if api_base else None
        # One pool per worker process; its connections are kept alive between messages.
        self.pool = _pool_manager(self.api_base or "https://api.twilio.com", pool_size)
        # The host's own connection pool, looked up once per origin: PoolManager.urlopen parses
        # the URL and normalises a pool key on every call, ~40 µs of a worker's CPU per SMS.
        self._origins: dict[str, urllib3.HTTPConnectionPool] = {}
        self._timeouts: dict[float, urllib3.Timeout] = {}
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
        """Send one request; the SDK's Response, or a urllib3 error (never retried)."""
        url = self._rewrite(uri)
        if params:
            url += ("&" if "?" in url else "?") + urlencode(params, doseq=True)
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
        pool, target = self._origin(url)
        answer = pool.urlopen(
            method,
            target,
            body=body if sending else None,
            headers=fields,
            timeout=self._timeout(timeout or self.timeout),
            retries=False,  # a retried POST could create a second message
            redirect=allow_redirects,
            assert_same_host=False,  # a proxy pool takes absolute URLs
        )
        text = answer.data.decode("utf-8", "replace")
        if self.logger.isEnabledFor(logging.DEBUG):  # the URL and status, never the form
            self.logger.debug("%s %s: %s", method.upper(), url, answer.status)
        return Response(answer.status, text, answer.headers)

    def _origin(self, url: str) -> tuple[urllib3.HTTPConnectionPool, str]:
        """The connection pool for ``url``'s origin, and what to ask it for."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        pool = self._origins.get(origin)
        if pool is None:
            pool = self._origins.setdefault(origin, self.pool.connection_from_url(origin))
        if isinstance(self.pool, urllib3.ProxyManager):  # a proxy wants the whole URL
            return pool, url
        return pool, parts.path + (f"?{parts.query}" if parts.query else "")

    def _timeout(self, seconds: float) -> urllib3.Timeout:
        found = self._timeouts.get(seconds)
        if found is None:
            found = urllib3.Timeout(connect=seconds, read=seconds)
            self._timeouts[seconds] = found
        return found

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
