"""A worker module whose process is killed while it boots: `python -m dramatiq dies_at_boot`.

SIGKILL, as the kernel's OOM killer or a crash would: the process never tells Dramatiq's main
process it booted, unlike one that raises.
"""

from __future__ import annotations

import os
import signal

os.kill(os.getpid(), signal.SIGKILL)
