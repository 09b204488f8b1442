"""Daemons as child processes for the tests: start, wait for, stop with SIGTERM, always clean up."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[1]
MILEPOST = str(Path(sys.executable).with_name("milepost"))
T = TypeVar("T")


def milepost_env(**settings: str | int) -> dict[str, str]:
    """This environment without any MILEPOST_* of the developer's, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MILEPOST_")}
    env.update({f"MILEPOST_{name.upper()}": str(value) for name, value in settings.items()})
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(url: str) -> str | None:
    """The body at ``url``, or None while nothing answers there."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return str(response.read().decode())
    except OSError:
        return None


class Daemon:
    """A long-running command in a process group of its own, its output in ``log``."""

    def __init__(self, argv: list[str], env: Mapping[str, str], log: Path) -> None:
        self.log = log
        # Its temporary files (Prometheus' multiprocess folder) go with the test's own.
        env = {**env, "TMPDIR": str(log.parent)}
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                argv,
                env=env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # so cleanup reaches its children, and only them
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def says(self, text: str) -> bool:
        return text in self.output()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_for(self, probe: Callable[[], T | None], timeout: float, what: str) -> T:
        """Poll ``probe`` until it gives a value; fail with the daemon's output if it dies."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = probe()
            if value:
                return value
            if not self.alive():
                raise AssertionError(
                    f"exited {self.proc.returncode} before {what}:\n{self.output()}"
                )
            time.sleep(0.1)
        raise AssertionError(f"no {what} after {timeout} s:\n{self.output()}")

    def terminate(self) -> None:
        """Send SIGTERM, as `docker compose stop` does."""
        self.terminated = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)

    def exited(self, timeout: float = 20) -> tuple[int, float]:
        """Its exit status after `terminate`, and how long it took to exit."""
        code = self.proc.wait(timeout=timeout)
        return code, time.monotonic() - self.terminated

    def stop(self, timeout: float = 20) -> tuple[int, float]:
        self.terminate()
        return self.exited(timeout)

    def cleanup(self) -> None:
        """SIGKILL whatever is left of its process group (children outlive a killed parent)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
