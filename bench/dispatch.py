"""Dispatch benchmark: due SMS deliveries through Redis and a Dramatiq worker to a fake Twilio.

    .venv/bin/python bench/dispatch.py            # 20,000 deliveries, 2 processes x 8 threads

Two phases, the same worker command each time, in this run: the ceiling (a bare actor that
sleeps as long as the fake Twilio takes to answer) and the real `deliver` actor (claim,
policies, render, the Twilio SDK, record). Each phase's messages are queued before its worker
starts, and its rate runs from the first message done to the last, so neither queueing nor
start-up counts. Everything stays on 127.0.0.1; every wait has a deadline.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NAP_QUEUE = "bench-nap"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--deliveries", type=int, default=20_000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--latency-ms", type=float, default=5.0)
    parser.add_argument("--prefetch", type=int, default=0, help="0: Dramatiq's (2 x threads)")
    parser.add_argument("--db", default="sqlite", help="sqlite, or a PostgreSQL URL to fill")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14", help="emptied first")
    parser.add_argument("--timeout", type=float, default=600, help="give up after (seconds)")
    return parser


ARGS = _parser().parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    # worker.actors builds its broker on import, from the environment: this run's Redis.
    os.environ["MILEPOST_BROKER_URL"] = ARGS.redis

from worker import actors  # noqa: E402 — the broker the `nap` actor is declared on

if os.environ.get("EXP_SWITCH"):
    sys.setswitchinterval(float(os.environ["EXP_SWITCH"]))
if ARGS is None and os.environ.get("MILEPOST_BENCH_WARM_UP"):
    # In a worker process: load campaigns, templates and channels (the Twilio SDK imports ~3 MB
    # of modules on its first message) before the first message, as a long-running worker has.
    from worker.runtime import get_runtime

    _runtime = get_runtime()
    _runtime.campaigns, _runtime.channels["sms"].client.messages


@actors.dramatiq.actor(queue_name=NAP_QUEUE, max_retries=0)
def nap(seconds: float) -> None:
    """The ceiling: a job that only waits, as long as the provider takes to answer."""
    time.sleep(seconds)


def _zone_in_window() -> str:
    # A zone where it is mid-afternoon now, so quiet hours (checked for real) let every SMS go.
    hour = datetime.now(UTC).hour
    offset = (14 - hour + 12) % 24 - 12
    return f"Etc/GMT{-offset:+d}" if offset else "UTC"


def build(url: str, count: int) -> None:
    """A fresh ledger of ``count`` due marketing SMS, one per customer."""
    from sqlalchemy import insert

    from crm.db import get_engine
    from crm.migrate import upgrade
    from crm.models import Customer, Delivery, table

    upgrade(url)
    now = datetime.now(UTC) - timedelta(minutes=1)
    zone = _zone_in_window()
    customers = [
        {"id": i, "code": f"B{i}", "name": f"客户{i}", "phone": f"+86139{i:08d}", "timezone": zone}
        for i in range(1, count + 1)
    ]
    facts = {"customer": {"title": "王先生", "language": "zh"}, "vehicle": {"model": "Model Y"}}
    rows = [
        {
            **{"campaign": "first-service", "step": 0, "subject_id": i, "occurrence": "once"},
            **{"customer_id": i, "vehicle_id": i, "channel": "sms", "priority": 70},
            **{"template": "first-service/sms", "status": "pending", "attempts": 0},
            **{"due_at": now, "facts": facts, "created_at": now, "updated_at": now},
        }
        for i in range(1, count + 1)
    ]
    with get_engine(url).begin() as conn:
        conn.execute(insert(table(Customer)), customers)
        conn.execute(insert(table(Delivery)), rows)


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

    def __init__(self, args: argparse.Namespace, url: str) -> None:
        self.args, self.url = args, url
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
            "MILEPOST_SMS_RATE_PER_S": os.environ.get("EXP_RATE", "100000"),
            "dramatiq_queue_prefetch": str(self.args.prefetch),
            "MILEPOST_BENCH_WARM_UP": "1",
        }
        return self.fake_url

    def fake_stats(self) -> dict[str, Any]:
        import urllib.request

        with urllib.request.urlopen(f"{self.fake_url}/_fake/stats", timeout=5) as answer:
            return dict(json.load(answer))

    def phase(self, name: str, queue: str, messages: list[Any]) -> float:
        """Queue ``messages``, run the worker until they are done; messages per second."""
        import redis

        client = redis.Redis.from_url(self.args.redis)
        started = time.perf_counter()
        for message in messages:
            actors.broker.enqueue(message)
        print(f"{name}: queued {len(messages):,} in {time.perf_counter() - started:.1f} s")
        worker = self.start_worker()
        cpu = (_cpu_s(self.fake_pid), _redis_cpu_s(client), time.process_time())
        # An acked message leaves the `.msgs` hash: none left in it (or its delay queue) = done.
        total, left, first = len(messages), len(messages), (0.0, 0)
        while left:
            self.check_deadline(worker, name)
            left = sum(client.hlen(f"dramatiq:{q}.msgs") for q in (queue, f"{queue}.DQ"))
            last = time.perf_counter()
            if not first[0] and left < total:
                first = (last, total - left)
            time.sleep(0.01)
        used = {
            "worker": _cpu_s(worker.pid),
            "fake Twilio": _cpu_s(self.fake_pid) - cpu[0],
            "Redis": _redis_cpu_s(client) - cpu[1],
            "this script": time.process_time() - cpu[2],
        }
        self.stop(worker)
        rate = (total - first[1]) / max(last - first[0], 1e-6)
        print(
            f"{name}: CPU per message, ms: "
            + ", ".join(f"{who} {seconds / total * 1000:.2f}" for who, seconds in used.items())
        )
        print(f"{name}: {total:,} done, {rate:,.0f}/s ({last - first[0]:.1f} s)")
        return rate

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


def main(args: argparse.Namespace) -> None:
    out = ROOT / "bench" / "out"
    url = args.db
    if url == "sqlite":
        for stale in out.glob("dispatch.db*"):
            stale.unlink()
        url = f"sqlite:///{out / 'dispatch.db'}"
    import redis

    redis.Redis.from_url(args.redis).flushdb()
    t = time.perf_counter()
    build(url, args.deliveries)
    database = url.split(":")[0]
    print(f"ledger: {args.deliveries:,} due SMS on {database} in {time.perf_counter() - t:.1f} s")

    bench = Bench(args, url)
    try:
        bench.start_fake()
        nap_s = args.latency_ms / 1000
        naps = [nap.message(nap_s) for _ in range(args.deliveries)]
        ceiling = bench.phase("ceiling (bare 5 ms actor)", NAP_QUEUE, naps)
        jobs = [actors.deliver.message(i) for i in range(1, args.deliveries + 1)]
        rate = bench.phase("deliver", "deliver", jobs)
        stats = bench.fake_stats()
    finally:
        bench.close()
    from sqlalchemy import func, select

    from crm.db import get_engine
    from crm.models import Delivery, table

    D = table(Delivery)
    with get_engine(url).connect() as conn:
        statuses: dict[str, int] = dict(
            conn.execute(select(D.c.status, func.count()).group_by(D.c.status)).all()
        )
    print(f"ledger after: {statuses}; fake Twilio: {stats}")
    print(f"deliver / ceiling: {rate / ceiling:.2f} (target 0.6)")
    figures = {
        "deliveries": int(statuses.get("sent", 0)),
        "deliveries_per_s": round(rate),
        "ceiling_per_s": round(ceiling),
        "duplicates": int(stats["duplicates"]),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    assert ARGS is not None
    main(ARGS)
