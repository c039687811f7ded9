"""Who holds a claim on a generation's call, and whether that claimant is still alive.

A claim (``LLMCallStarted``) carries the worker's identity and a lease. A later run may take a claim
over when its lease has expired, or at once when the claimant ran on this host and its process is
gone — which is what makes a plain re-run after ``kill -9`` continue without waiting.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from datetime import datetime
from typing import Any


def _proc_start(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        return fields[19].decode()  # starttime, in clock ticks since boot
    except (OSError, IndexError):
        return None


def worker_identity() -> dict[str, Any]:
    """Who is claiming: host, pid, the process start time (to tell a recycled pid apart) and a
    run id (to tell two runners in one process apart)."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "start": _proc_start(os.getpid()),
            "run": uuid.uuid4().hex[:12]}


def worker_is_dead(worker_json: str | None) -> bool:
    """True when the claimant ran on this host and that process no longer exists."""
    if not worker_json:
        return True
    try:
        worker = json.loads(worker_json)
    except ValueError:
        return True
    if worker.get("host") != socket.gethostname():
        return False  # another machine: only its lease expiry frees the claim
    pid = int(worker.get("pid") or 0)
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return worker.get("start") is not None and _proc_start(pid) != worker.get("start")


def iso_utc(dt: datetime) -> str:
    """UTC ISO-8601 with microseconds and a Z, as leases are written."""
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
