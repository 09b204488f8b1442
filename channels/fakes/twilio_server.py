"""A fake Twilio REST API: a real HTTP server on 127.0.0.1 that records requests and obeys a script.

    with FakeTwilio() as fake:                       # a free port; fake.base_url
        fake.then(Reply.error(21610))                # the next request: recipient unsubscribed
        fake.for_recipient("+8613800000000", Reply.server_error())
        ...
        fake.count("+8613812341234", "Hello")         # how often that text reached that phone

    python -m channels.fakes.twilio_server --port 8099 --latency-ms 5

It runs on channels.fakes.http_server (asyncio: a late answer is a timer, not a thread), which
keeps up with 16 benchmark clients at 5 ms latency. Other processes read GET /_fake/stats and
/_fake/counts, and POST /_fake/reset and /_fake/plan (JSON).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import signal
import threading
from collections import Counter, deque
from typing import Any
from urllib.parse import parse_qs

from channels.fakes.http_server import Answer, HTTPServer, basic_auth, reason
from channels.fakes.http_server import Request as HTTPRequest
from channels.fakes.twilio_replies import (
    API_VERSION,
    Reply,
    Request,
    error_json,
    message_json,
    new_sid,
    validate,
)

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "fake-auth-token"
_MESSAGES = re.compile(rf"/{API_VERSION}/Accounts/([^/]+)/Messages\.json")


class FakeTwilio:
    """A fake Twilio Messages API on a local port; thread-safe, usable as a context manager."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        account_sid: str = ACCOUNT_SID,
        auth_token: str = AUTH_TOKEN,
        latency_s: float = 0.0,
        keep: int = 100_000,
    ) -> None:
        self.account_sid, self.auth_token = account_sid, auth_token
        self.latency_s = latency_s  # every answer waits this long (a provider's round trip)
        self._address = (host, port)
        self._lock = threading.Lock()
        self._next: deque[Reply] = deque()
        self._by_to: dict[str, tuple[Reply, int | None]] = {}
        self._requests: deque[Request] = deque(maxlen=keep)  # bounded: long benchmarks
        self._counts: Counter[tuple[str, str]] = Counter()
        self._statuses: Counter[int] = Counter()
        self._server: HTTPServer | None = None

    # -- lifecycle
    def start(self) -> FakeTwilio:
        """Listen and serve in a background thread."""
        self._server = HTTPServer(self.handle, *self._address)
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut open connections, so a client sees the server gone."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> FakeTwilio:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def close_idle_connections(self) -> None:
        """Close the clients' idle keep-alive connections, as Twilio's servers do in time."""
        assert self._server is not None, "start() the fake first"
        self._server.close_idle()

    @property
    def connections_accepted(self) -> int:
        """Connections clients opened so far (fewer than requests: they were kept alive)."""
        assert self._server is not None, "start() the fake first"
        return self._server.accepted

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``: what replaces https://api.twilio.com."""
        assert self._server is not None, "start() the fake first"
        return f"http://{self._server.host}:{self._server.port}"

    # -- the script
    def then(self, reply: Reply, times: int = 1) -> None:
        """Answer the next ``times`` requests (any recipient) with ``reply``."""
        with self._lock:
            self._next.extend([reply] * times)

    def for_recipient(self, to: str, reply: Reply, times: int | None = None) -> None:
        """Answer requests to ``to`` with ``reply``: ``times`` times, or until reset."""
        with self._lock:
            self._by_to[to] = (reply, times)

    def reset(self) -> None:
        """Forget the script, the recorded requests and the counts."""
        with self._lock:
            self._next.clear()
            self._by_to.clear()
            self._requests.clear()
            self._counts.clear()
            self._statuses.clear()

    # -- what happened
    @property
    def requests(self) -> list[Request]:
        """Every request to the Messages endpoint, oldest first (the last ``keep``)."""
        with self._lock:
            return list(self._requests)

    def count(self, to: str, body: str) -> int:
        """How many messages with ``body`` were created for ``to``."""
        with self._lock:
            return self._counts[(to, body)]

    def duplicates(self) -> dict[tuple[str, str], int]:
        """(to, body) pairs created more than once, with their counts."""
        with self._lock:
            return {pair: n for pair, n in self._counts.items() if n > 1}

    def stats(self) -> dict[str, Any]:
        """Totals: requests by status, messages created, distinct (to, body), extra copies."""
        with self._lock:
            created = sum(self._counts.values())
            return {
                "requests": sum(self._statuses.values()),
                "by_status": {str(s): n for s, n in sorted(self._statuses.items())},
                "created": created,
                "distinct": len(self._counts),
                "duplicates": created - len(self._counts),
            }

    # -- serving (on the server's loop thread)
    def handle(self, request: HTTPRequest) -> Answer:
        """The answer to one HTTP request: the Messages endpoint, or a /_fake/ control."""
        path = request.path.partition("?")[0]
        match = _MESSAGES.fullmatch(path)
        if request.method == "POST" and match:
            form = parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True)
            auth = basic_auth(request.headers)
            return self._create(match.group(1), auth, {k: v[-1] for k, v in form.items()})
        if (request.method, path) == ("GET", "/_fake/stats"):
            return _json(200, self.stats())
        if (request.method, path) == ("GET", "/_fake/counts"):
            with self._lock:
                counts = [{"to": t, "body": b, "count": n} for (t, b), n in self._counts.items()]
            return _json(200, counts)
        if (request.method, path) == ("POST", "/_fake/reset"):
            self.reset()
            return _json(200, {"ok": True})
        if (request.method, path) == ("POST", "/_fake/plan"):
            try:  # {"reply": {Reply's fields}, "times": 1, "to": null}
                plan = json.loads(request.body or b"{}")
                reply = Reply(**plan.get("reply", {}))
            except (ValueError, TypeError, AttributeError) as exc:
                return _json(400, {"error": f"bad plan: {exc}"})
            if plan.get("to"):
                self.for_recipient(plan["to"], reply, plan.get("times"))
            else:
                self.then(reply, plan.get("times", 1))
            return _json(200, {"ok": True})
        return _json(404, error_json(20404, path=path))

    def _create(self, path_sid: str, auth: tuple[str, str] | None, form: dict[str, str]) -> Answer:
        authorized = auth == (self.account_sid, self.auth_token)
        to, body = form.get("To", ""), form.get("Body", "")
        with self._lock:
            if not authorized:
                reply = Reply.error(20003)
            elif path_sid != self.account_sid:
                reply = Reply.error(20404)
            else:
                reply = self._scripted(to) or validate(form)
            sid = new_sid() if reply.accepts else None
            if sid:
                self._counts[(to, body)] += 1
            status = 0 if reply.reset else reply.status  # 0: no answer at all
            self._statuses[status] += 1
            user = auth[0] if auth else None
            self._requests.append(Request(path_sid, user, authorized, form, status, sid))
        delay = self.latency_s + reply.delay_s
        if sid:
            return _json(201, message_json(path_sid, sid, form), delay, reply.reset)
        if reply.code is None:  # a gateway's plain-text answer
            text = f"{reply.status} {reason(reply.status)}\n".encode()
            return Answer(reply.status, text, "text/plain", delay_s=delay)
        path = f"/{API_VERSION}/Accounts/{path_sid}/Messages.json"
        return _json(reply.status, error_json(reply.code, reply.status, to=to, path=path), delay)

    def _scripted(self, to: str) -> Reply | None:
        if to in self._by_to:
            reply, times = self._by_to[to]
            if times is not None:
                if times <= 1:
                    del self._by_to[to]
                else:
                    self._by_to[to] = (reply, times - 1)
            return reply
        return self._next.popleft() if self._next else None


def _json(status: int, payload: Any, delay_s: float = 0.0, reset: bool = False) -> Answer:
    headers = (("Twilio-Request-Id", new_sid("RQ")),)
    return Answer(
        status, json.dumps(payload).encode(), headers=headers, delay_s=delay_s, reset=reset
    )


def main(argv: list[str] | None = None) -> None:
    """Serve until SIGINT/SIGTERM; print one JSON line with the URL first and the stats last."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099, help="0 picks a free port")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay before each answer")
    parser.add_argument("--account-sid", default=ACCOUNT_SID)
    parser.add_argument("--auth-token", default=AUTH_TOKEN)
    args = parser.parse_args(argv)
    fake = FakeTwilio(
        host=args.host,
        port=args.port,
        account_sid=args.account_sid,
        auth_token=args.auth_token,
        latency_s=args.latency_ms / 1000,
    )
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with fake:
        start = {"base_url": fake.base_url, "account_sid": fake.account_sid}
        print(json.dumps({**start, "auth_token": fake.auth_token}), flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            done.wait()
        print(json.dumps(fake.stats()), flush=True)


if __name__ == "__main__":
    main()
