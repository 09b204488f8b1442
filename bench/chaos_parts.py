"""The chaos benchmark's moving parts: the fake Twilio process, the supervised workers, the servers.

Used by bench/chaos.py. Every process started here is stopped by its own id (or its own process
group); the shared Redis and PostgreSQL servers are restarted only when asked, and
``ensure_servers`` starts whichever is down.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MILEPOST = str(Path(sys.executable).with_name("milepost"))
READY = "is ready for action"  # what a Dramatiq worker process logs once it consumes
REDIS_PORT = 6379
# The shared servers' restart commands, as an operator would type them. Redis keeps nothing on
# disk here: `shutdown nosave` loses every queued message, on purpose.
REDIS_START = ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1"]
REDIS_START += ["--port", str(REDIS_PORT), "--save", "", "--appendonly", "no"]


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:  # gone already
        return []


class FakeTwilio:
    """channels.fakes.twilio_server in a process of its own; its stats and counts over HTTP."""

    def __init__(self, latency_ms: float) -> None:
        command = [sys.executable, "-m", "channels.fakes.twilio_server", "--port", "0"]
        self.proc = subprocess.Popen(
            [*command, "--latency-ms", str(latency_ms)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        started = json.loads(self.proc.stdout.readline())
        self.url = str(started["base_url"])
        self.account_sid, self.auth_token = started["account_sid"], started["auth_token"]

    def settings(self) -> dict[str, str]:
        """The MILEPOST_* variables that point the SMS channel here."""
        return {
            "MILEPOST_TWILIO_ACCOUNT_SID": self.account_sid,
            "MILEPOST_TWILIO_AUTH_TOKEN": self.auth_token,
            "MILEPOST_TWILIO_FROM": "+8610690000",
            "MILEPOST_TWILIO_API_BASE": self.url,
        }

    def plan(self, to: str, reply: dict[str, Any], times: int | None = None) -> None:
        """Answer requests to ``to`` with ``reply`` (Reply's fields): ``times`` times, or always."""
        body = json.dumps({"to": to, "reply": reply, "times": times}).encode()
        request = urllib.request.Request(f"{self.url}/_fake/plan", body, method="POST")
        with urllib.request.urlopen(request, timeout=5) as answer:
            answer.read()

    def _get(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=60) as answer:
            return json.load(answer)

    def stats(self) -> dict[str, Any]:
        """Requests by status, messages created, distinct (to, body), duplicates."""
        return dict(self._get("/_fake/stats"))

    def created(self) -> dict[str, int]:
        """Messages created per recipient."""
        counts: dict[str, int] = {}
        for entry in self._get("/_fake/counts"):
            counts[entry["to"]] = counts.get(entry["to"], 0) + int(entry["count"])
        return counts

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Slot:
    """One worker command with one process: Dramatiq's main process and one worker child.

    The command is the one `milepost worker --processes 1` execs (worker.daemons), run
    directly: the CLI's own start-up (~3 s of imports) would only slow every restart down.
    Dramatiq's main process does not replace a child that died: it stops and exits non-zero,
    and the supervisor (compose's restart policy in production, ``Fleet`` here) starts it again.
    """

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.argv, self.env, self.log = name, argv, env, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_from = 0  # where this start's output begins in the log
        self.ready_at: float | None = None  # when it was seen consuming
        self.killed_at: float | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.log_from = out.tell()
            self.proc = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: cleanup reaches its child, only it
            )
        self.ready_at = self.killed_at = None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ready(self) -> bool:
        """Whether its worker process, since the last start, has logged that it consumes."""
        if self.ready_at is None and self.running():
            with self.log.open("rb") as log:
                log.seek(self.log_from)
                if READY.encode() in log.read():
                    self.ready_at = time.monotonic()
        return self.ready_at is not None and self.running()

    def worker_pid(self) -> int | None:
        """The Dramatiq worker process (the one with the threads), once it has started."""
        if not self.running():
            return None
        assert self.proc is not None
        children = _children(self.proc.pid)
        return children[0] if children else None

    def kill_worker(self) -> bool:
        """SIGKILL the worker process mid-work, as the OOM killer would; False if none yet."""
        pid = self.worker_pid()
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        self.killed_at = time.monotonic()
        return True

    def terminate(self) -> None:
        """SIGTERM, once: Dramatiq's main process passes it on, and its worker finishes its
        jobs (a second one would make the worker exit at once)."""
        if self.running():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 60) -> None:
        """Wait for it to exit after ``terminate``; SIGKILL its group if it takes too long."""
        if self.proc is None:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=timeout)
        with contextlib.suppress(ProcessLookupError):  # whatever is left of its group
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


class Fleet:
    """Worker commands kept running: ``supervise()`` restarts whichever exited."""

    def __init__(self, count: int, threads: int, env: dict[str, str], logs: Path) -> None:
        from worker.daemons import worker_command
        from worker.settings import Settings

        one = Settings(worker_processes=1, worker_threads=threads, metrics_port=0)
        argv, extra = worker_command(one)
        self.slots = [
            Slot(f"worker-{n}", argv, env | extra, logs / f"chaos-worker-{n}.log")
            for n in range(1, count + 1)
        ]
        self.kills = 0

    def start(self) -> None:
        for slot in self.slots:
            slot.log.unlink(missing_ok=True)
            slot.start()

    def ready(self) -> bool:
        return all(slot.ready() for slot in self.slots)

    def supervise(self) -> None:
        for slot in self.slots:
            if slot.proc is not None and not slot.running():
                slot.start()
            elif slot.ready_at is None:
                slot.ready()
            elif slot.killed_at is not None and time.monotonic() - slot.killed_at > 10:
                # Its main process should have exited a second after the child died.
                slot.stop(timeout=0)
                slot.start()

    def kill_one(self, rng: random.Random, at_work_s: float) -> str | None:
        """SIGKILL the worker process of a random worker that has been consuming for at least
        ``at_work_s``; its name, or None if none has.

        Why not any: one killed while it boots and warms up (imports, the first connections)
        would never send, so the chaos would test start-up over and over; and Dramatiq's main
        process waits --worker-fork-timeout (30 s) for a child killed before it was ready.
        """
        now = time.monotonic()
        candidates = [
            s
            for s in self.slots
            if s.killed_at is None and s.ready() and s.ready_at and now - s.ready_at >= at_work_s
        ]
        if not candidates:
            return None
        victim = rng.choice(candidates)
        if not victim.kill_worker():
            return None
        self.kills += 1
        return victim.name

    def stop(self) -> None:
        for slot in self.slots:  # all at once: each takes a moment to finish its jobs
            slot.terminate()
        for slot in self.slots:
            slot.stop()


class Daemon:
    """A long-running milepost command (the scheduler), its output in ``log``."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.argv, self.env, self.log = argv, env, log
        log.unlink(missing_ok=True)
        self.restarts = 0
        self.proc = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as out:
            return subprocess.Popen(
                self.argv, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )

    def keep_running(self) -> None:
        """Start it again if it exited, as compose's restart policy would; it should not."""
        if self.proc.poll() is not None:
            self.restarts += 1
            self.proc = self._start()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# -- the shared servers


def redis_up() -> bool:
    probe = ["redis-cli", "-p", str(REDIS_PORT), "ping"]
    done = subprocess.run(probe, capture_output=True, text=True, check=False)
    return done.stdout.strip() == "PONG"


def restart_redis() -> float:
    """Stop Redis without saving (its queues are gone) and start it again; seconds down."""
    started = time.monotonic()
    shutdown = ["redis-cli", "-p", str(REDIS_PORT), "shutdown", "nosave"]
    subprocess.run(shutdown, capture_output=True, check=False)  # it closes the connection
    _until(lambda: not redis_up(), 10, "Redis to stop")
    subprocess.run(REDIS_START, check=True, capture_output=True)
    _until(redis_up, 20, "Redis to start")
    return time.monotonic() - started


def _cluster() -> list[str]:
    (version,) = os.listdir("/etc/postgresql")
    return ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main"]


def postgres_up() -> bool:
    done = subprocess.run([*_cluster(), "status"], capture_output=True, check=False)
    return done.returncode == 0


def restart_postgres() -> float:
    """Restart the PostgreSQL cluster (fast shutdown: open connections are cut); seconds down."""
    started = time.monotonic()
    subprocess.run([*_cluster(), "restart"], check=True, capture_output=True)
    _until(postgres_up, 60, "PostgreSQL to start")
    return time.monotonic() - started


def ensure_servers() -> list[str]:
    """Start Redis and PostgreSQL if either is down; what had to be started."""
    started = []
    if not redis_up():
        subprocess.run(REDIS_START, check=False, capture_output=True)
        started.append("Redis")
    if not postgres_up():
        subprocess.run([*_cluster(), "start"], check=False, capture_output=True)
        started.append("PostgreSQL")
    return started


def _until(probe: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up waiting for {what} after {timeout} s")
        time.sleep(0.1)
