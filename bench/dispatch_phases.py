"""The dispatch benchmark's moving parts: the fake Twilio, the worker command, one timed phase.

Used by bench/dispatch.py; every process it starts is stopped by ``close()``, by its own id.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import dramatiq

ROOT = Path(__file__).resolve().parents[1]


def _cpu_s(pid: int) -> float:
    """CPU seconds used so far by ``pid`` and its descendants (Linux /proc)."""
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rpartition(")")[2].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:  # gone, or not Linux
            continue
        todo += [int(child) for child in children]
    return total


def _redis_cpu_s(client: Any) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"] + info["used_cpu_sys"])


class Bench:
    """The fake Twilio, the Redis database and the worker command of one run."""

    def __init__(self, args: argparse.Namespace, url: str, broker: dramatiq.Broker) -> None:
        self.args, self.url, self.broker = args, url, broker
        self.deadline = time.monotonic() + args.timeout
        self.procs: list[subprocess.Popen[Any]] = []
        self.log = open(ROOT / "bench" / "out" / "dispatch-worker.log", "w")  # noqa: SIM115

    def start_fake(self) -> str:
        fake = [sys.executable, "-m", "channels.fakes.twilio_server", "--port", "0"]
        proc = subprocess.Popen(
            [*fake, "--latency-ms", str(self.args.latency_ms)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.procs.append(proc)
        self.fake_pid = proc.pid
        assert proc.stdout is not None
        started = json.loads(proc.stdout.readline())
        self.fake_url = str(started["base_url"])
        self.env = {
            **os.environ,
            "MILEPOST_DATABASE_URL": self.url,
            "MILEPOST_BROKER_URL": self.args.redis,
            "MILEPOST_TWILIO_ACCOUNT_SID": started["account_sid"],
            "MILEPOST_TWILIO_AUTH_TOKEN": started["auth_token"],
            "MILEPOST_TWILIO_FROM": "+8610690000",
            "MILEPOST_TWILIO_API_BASE": self.fake_url,
            # The Redis rate limiter runs for every SMS, set high enough not to hold them back.
            "MILEPOST_SMS_RATE_PER_S": "100000",
            "dramatiq_queue_prefetch": str(self.args.prefetch),
        }
        return self.fake_url

    def fake_stats(self) -> dict[str, Any]:
        import urllib.request

        with urllib.request.urlopen(f"{self.fake_url}/_fake/stats", timeout=5) as answer:
            return dict(json.load(answer))

    def phase(self, name: str, queue: str, messages: list[Any], per_message: int = 1) -> float:
        """Queue ``messages``, run the worker until they are done; items per second.

        ``per_message``: items (deliveries) each message carries.
        """
        import redis

        client = redis.Redis.from_url(self.args.redis)
        started = time.perf_counter()
        for message in messages:
            self.broker.enqueue(message)
        print(f"{name}: queued {len(messages):,} in {time.perf_counter() - started:.1f} s")
        worker = self.start_worker()
        # CPU is counted over the same window as the rate: the workers' boot (~2 s of CPU per
        # process: imports, campaigns, templates) is not a per-delivery cost.
        cpu: tuple[float, ...] = ()
        # An acked message leaves the `.msgs` hash: none left in it (or its delay queue) = done.
        total, left, first = len(messages), len(messages), (0.0, 0)
        while left:
            self.check_deadline(worker, name)
            left = sum(client.hlen(f"dramatiq:{q}.msgs") for q in (queue, f"{queue}.DQ"))
            last = time.perf_counter()
            if not first[0] and left < total:
                first = (last, total - left)
                cpu = self._cpu(worker, client)
            time.sleep(0.01)
        end = self._cpu(worker, client)
        whose = ("worker", "fake Twilio", "Redis", "this script")
        used = {who: end[at] - cpu[at] for at, who in enumerate(whose)}
        self.stop(worker)
        rate = (total - first[1]) * per_message / max(last - first[0], 1e-6)
        items = (total - first[1]) * per_message  # done inside the window
        print(
            f"{name}: CPU per item, ms: "
            + ", ".join(f"{who} {seconds / items * 1000:.2f}" for who, seconds in used.items())
        )
        print(f"{name}: {items:,} done, {rate:,.0f}/s ({last - first[0]:.1f} s)")
        return rate

    def _cpu(self, worker: subprocess.Popen[Any], client: Any) -> tuple[float, ...]:
        return (
            _cpu_s(worker.pid),
            _cpu_s(self.fake_pid),
            _redis_cpu_s(client),
            time.process_time(),
        )

    def start_worker(self) -> subprocess.Popen[Any]:
        command = [sys.executable, "-m", "dramatiq", "--path", ".", "--path", "bench"]
        command += ["--processes", str(self.args.processes), "--threads", str(self.args.threads)]
        proc = subprocess.Popen(
            [*command, "worker.actors", "dispatch"],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def check_deadline(self, worker: subprocess.Popen[Any], name: str) -> None:
        if worker.poll() is not None:
            raise SystemExit(f"{name}: the worker exited ({worker.returncode}); see the log")
        if time.monotonic() > self.deadline:
            raise SystemExit(f"{name}: not done within --timeout {self.args.timeout} s")

    def stop(self, proc: subprocess.Popen[Any]) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # dramatiq's main process stops its children
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # the group this run started, only it
                proc.wait()

    def close(self) -> None:
        for proc in reversed(self.procs):
            self.stop(proc)
        self.log.close()
