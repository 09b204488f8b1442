"""The sharded sweep for bench/sweep.py: a throw-away PostgreSQL database, and Dramatiq workers
on the real Redis broker, timed from the sweep message to the last `evaluate` acknowledged.

The workers are the plain `dramatiq` command on worker.actors, `--threads 1` (durable_rules
holds the GIL), with MILEPOST_SWEEP_LEDGER_ONLY so the sweep stops at the ledger (delivering
is bench/dispatch.py's to measure). Peak RSS per worker is VmHWM of each worker process.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
POSTGRES_ADMIN = os.environ.get(
    "MILEPOST_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("MILEPOST_BENCH_REDIS", "redis://127.0.0.1:6379/13")
READY = "is ready for action"  # what each Dramatiq worker process logs once it consumes


@contextmanager
def postgres_database(keep: bool = False) -> Iterator[str]:
    """A new, empty PostgreSQL database of its own (a SQLAlchemy URL), dropped afterwards."""
    import psycopg

    name = f"milepost_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        if keep:
            print(f"kept database {name}")
        else:
            from crm.db import get_engine

            get_engine(f"{base}/{name}").dispose()
            with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def analyze(url: str) -> None:
    """Fresh statistics, as autovacuum would have them by the morning's sweep."""
    import psycopg

    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute("ANALYZE")


class Workers:
    """`python -m dramatiq worker.actors --processes N --threads 1`, started and stopped."""

    def __init__(self, processes: int, env: dict[str, str]) -> None:
        command = [sys.executable, "-m", "dramatiq", "worker.actors"]
        command += ["--processes", str(processes), "--threads", "1"]
        self.processes = processes
        self.proc = subprocess.Popen(
            command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        self.ready = 0
        self.log: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)
            self.ready += READY in line

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while self.ready < self.processes:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the workers did not start:\n" + "".join(self.log[-30:]))
            time.sleep(0.05)

    def pids(self) -> list[int]:
        """The worker processes: the children of the `dramatiq` command."""
        pid = self.proc.pid
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]

    def peak_rss_mb(self) -> list[float]:
        """VmHWM of each worker process."""
        peaks = []
        for child in self.pids():
            status = Path(f"/proc/{child}/status").read_text()
            found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
            if found:
                peaks.append(round(int(found.group(1)) / 1024, 1))
        return peaks

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@contextmanager
def workers(processes: int, database_url: str) -> Iterator[Workers]:
    """Worker processes on the bench's Redis database (emptied first) and ``database_url``."""
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    env = {
        **os.environ,
        "MILEPOST_DATABASE_URL": database_url,
        "MILEPOST_BROKER_URL": REDIS_URL,
        "MILEPOST_SWEEP_LEDGER_ONLY": "1",
        "MILEPOST_METRICS_PORT": "0",  # no endpoint to collide with another run's
    }
    group = Workers(processes, env)
    try:
        group.wait_ready()
        yield group
    finally:
        group.stop()


class CpuUse:
    """CPU seconds spent by the workers, PostgreSQL, Redis and the whole machine in between."""

    def __init__(self, group: Workers) -> None:
        self.group = group
        self.start = self._now()

    def _now(self) -> dict[str, float]:
        tick = os.sysconf("SC_CLK_TCK")
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        busy = sum(map(int, fields)) - int(fields[3]) - int(fields[4])  # minus idle, iowait
        postgres = [
            p for p in Path("/proc").iterdir() if p.name.isdigit() and _comm(p) == "postgres"
        ]
        return {
            "workers": sum(_cpu(Path(f"/proc/{pid}")) for pid in self.group.pids()),
            "postgresql": sum(_cpu(p) for p in postgres),
            "redis": _redis_cpu(),
            "machine": busy / tick,
        }

    def since(self) -> dict[str, float]:
        end = self._now()
        return {name: round(end[name] - self.start[name], 1) for name in end}


def _comm(proc: Path) -> str:
    try:
        return (proc / "comm").read_text().strip()
    except OSError:
        return ""


def _cpu(proc: Path) -> float:
    try:
        fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # a process that ended in between
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _redis_cpu() -> float:
    import redis

    info = redis.Redis.from_url(REDIS_URL).info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def sweep(as_of: str, batch: int) -> float:
    """Send the `sweep` message and wait until every `evaluate` it queued is acknowledged.

    Returns the seconds that took; raises if any message was dead-lettered.
    """
    from worker import actors  # the caller set MILEPOST_BROKER_URL to REDIS_URL

    broker = actors.broker
    started = time.perf_counter()
    actors.sweep.send(as_of, batch)
    for queue in ("sweep", "evaluate"):
        broker.join(queue, interval=20)
    elapsed = time.perf_counter() - started
    client = broker.client
    dead = sum(int(client.zcard(f"{broker.namespace}:{q}.XQ")) for q in ("sweep", "evaluate"))
    if dead:
        raise RuntimeError(f"{dead} sweep messages failed; see the worker log")
    return elapsed
